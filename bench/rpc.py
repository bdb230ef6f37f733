"""RPC round trip with a 100-byte payload: latency and throughput.

For each contender, a callee process and a caller process join the same
(fresh) room on the local server, both running that contender's SDK. The
callee registers method ``echo`` (an async handler returning the payload) and
reports ready; the caller waits until it sees the callee (lkrtc-trio:
``room.wait_for_participant``; official SDK: polling ``remote_participants``;
joins are announced up to a few seconds late), warms up with 20 calls, then:

* "sequential 1000": 1000 ``perform_rpc`` calls one after the other, each
  timed on its own; one p50 and one p99 (ms) per round;
* "100 concurrent": 2000 calls through 100 workers (100 calls in flight at a
  time), total calls / wall time.

Every response is checked to equal the payload. The callee leaves when the
parent closes its stdin. 5 rounds per contender alternate lkrtc-trio and
official (one p50, one p99 and one calls/s per round).

Child mode: ``python -m bench.rpc child {lkrtc|official} {caller|callee} URL
ROOM``; the caller prints one JSON object, the callee prints a ready line.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from functools import partial
from typing import IO, Any

from bench._common import ROUNDS, Row, retried, row

PAYLOAD = "p" * 100
CALLER, CALLEE = "rpc-caller", "rpc-callee"
METHOD = "echo"
WARMUP = 20
SEQUENTIAL = 1000
CONCURRENT_CALLS = 2000
IN_FLIGHT = 100
#: seconds the caller waits to see the callee
JOIN_TIMEOUT = 30.0

SCENARIO = "RPC round trip 100 B"
READY = '{"ready": true}'

Call = Callable[[], Awaitable[str]]


def _summary(latencies: list[float], calls: int, wall: float) -> dict[str, float]:
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    return {"p50_ms": cuts[49] * 1e3, "p99_ms": cuts[98] * 1e3, "calls_per_s": calls / wall}


async def _sequential(call: Call, now: Callable[[], float]) -> list[float]:
    for _ in range(WARMUP):
        if await call() != PAYLOAD:
            raise RuntimeError("echo returned a different payload")
    latencies = []
    for _ in range(SEQUENTIAL):
        t = now()
        got = await call()
        latencies.append(now() - t)
        if got != PAYLOAD:
            raise RuntimeError("echo returned a different payload")
    return latencies


# -- lkrtc-trio ---------------------------------------------------------------------
async def lkrtc_caller(url: str, room_name: str) -> dict[str, float]:
    import trio

    import lkrtc_trio as lk
    from lkrtc_trio.testing import mint_token

    now = time.perf_counter
    with trio.fail_after(150):
        async with lk.open_room(url, mint_token(CALLER, room_name)) as room:
            with trio.fail_after(JOIN_TIMEOUT):
                await room.wait_for_participant(CALLEE)
            perform = room.local_participant.perform_rpc

            async def call() -> str:
                return await perform(destination_identity=CALLEE, method=METHOD, payload=PAYLOAD)

            latencies = await _sequential(call, now)
            left = CONCURRENT_CALLS

            async def worker() -> None:
                nonlocal left
                while left > 0:
                    left -= 1
                    if await call() != PAYLOAD:
                        raise RuntimeError("echo returned a different payload")

            t = now()
            async with trio.open_nursery() as nursery:
                for _ in range(IN_FLIGHT):
                    nursery.start_soon(worker)
            wall = now() - t
    return _summary(latencies, CONCURRENT_CALLS, wall)


async def lkrtc_callee(url: str, room_name: str) -> None:
    import trio

    import lkrtc_trio as lk
    from lkrtc_trio.testing import mint_token

    async def echo(data: lk.RpcInvocationData) -> str:
        return data.payload

    async with lk.open_room(url, mint_token(CALLEE, room_name)) as room:
        room.local_participant.register_rpc_method(METHOD, echo)
        print(READY, flush=True)
        with trio.move_on_after(300):
            await trio.to_thread.run_sync(sys.stdin.read, abandon_on_cancel=True)


# -- official SDK ---------------------------------------------------------------------
async def official_caller(url: str, room_name: str) -> dict[str, float]:
    import asyncio

    from livekit import rtc

    from lkrtc_trio.testing import mint_token

    now = time.perf_counter
    room = rtc.Room()
    await asyncio.wait_for(room.connect(url, mint_token(CALLER, room_name)), 30)
    try:
        deadline = now() + JOIN_TIMEOUT
        while CALLEE not in room.remote_participants:
            if now() > deadline:
                raise TimeoutError(f"{CALLEE} did not show up")
            await asyncio.sleep(0.02)
        perform = room.local_participant.perform_rpc

        async def call() -> str:
            return str(await perform(destination_identity=CALLEE, method=METHOD, payload=PAYLOAD))

        latencies = await asyncio.wait_for(_sequential(call, now), 120)
        left = CONCURRENT_CALLS

        async def worker() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                if await call() != PAYLOAD:
                    raise RuntimeError("echo returned a different payload")

        t = now()
        await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(IN_FLIGHT))), 120)
        wall = now() - t
    finally:
        await room.disconnect()
    return _summary(latencies, CONCURRENT_CALLS, wall)


async def official_callee(url: str, room_name: str) -> None:
    import asyncio

    from livekit import rtc

    from lkrtc_trio.testing import mint_token

    room = rtc.Room()
    await asyncio.wait_for(room.connect(url, mint_token(CALLEE, room_name)), 30)
    try:

        async def echo(data: Any) -> str:
            return str(data.payload)

        room.local_participant.register_rpc_method(METHOD, echo)
        print(READY, flush=True)
        loop = asyncio.get_running_loop()
        # the executor thread is left behind if this times out; the process exits anyway
        await asyncio.wait_for(loop.run_in_executor(None, sys.stdin.read), 300)
    finally:
        await room.disconnect()


def child(contender: str, role: str, url: str, room_name: str) -> None:
    if contender == "lkrtc":
        import trio

        if role == "caller":
            print(json.dumps(trio.run(lkrtc_caller, url, room_name)), flush=True)
        else:
            trio.run(lkrtc_callee, url, room_name)
    elif contender == "official":
        import asyncio

        if role == "caller":
            print(json.dumps(asyncio.run(official_caller(url, room_name))), flush=True)
        else:
            asyncio.run(official_callee(url, room_name))
    else:
        raise SystemExit(f"unknown contender {contender!r}")


# -- parent -------------------------------------------------------------------------------
def _tail(f: IO[str]) -> str:
    f.seek(0)
    return f.read()[-3000:]


def _readline(proc: subprocess.Popen[str], timeout: float) -> str:
    """The child's next stdout line ("" if none within ``timeout``)."""
    box: list[str] = []
    stream = proc.stdout
    assert stream is not None
    reader = threading.Thread(target=lambda: box.append(stream.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    return box[0] if box else ""


def measure(url: str, contender: str, room_name: str) -> dict[str, float]:
    """One round: a callee and a caller process of ``contender`` (in a room
    named ``room_name`` plus a random suffix: a retried round starts afresh)."""
    room_name = f"{room_name}-{uuid.uuid4().hex[:4]}"
    args = [sys.executable, "-m", "bench.rpc", "child", contender]
    with (
        tempfile.TemporaryFile("w+") as callee_err,
        tempfile.TemporaryFile("w+") as caller_err,
    ):
        callee = subprocess.Popen(
            [*args, "callee", url, room_name],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=callee_err,
            text=True,
        )
        caller: subprocess.Popen[str] | None = None
        try:
            if _readline(callee, 60).strip() != READY:
                callee.kill()
                callee.wait()
                raise RuntimeError(f"{contender} RPC callee did not start:\n{_tail(callee_err)}")
            caller = subprocess.Popen(
                [*args, "caller", url, room_name],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=caller_err,
                text=True,
            )
            out, _ = caller.communicate(timeout=180)
            lines = [ln for ln in out.splitlines() if ln.startswith("{")]
            if caller.returncode != 0 or not lines:
                raise RuntimeError(
                    f"{contender} RPC caller failed ({caller.returncode}):\n{_tail(caller_err)}"
                    f"\ncallee:\n{_tail(callee_err)}"
                )
            result: dict[str, float] = json.loads(lines[-1])
        finally:
            if caller is not None and caller.poll() is None:
                caller.kill()
                caller.wait()
            assert callee.stdin is not None
            try:
                callee.stdin.close()
                callee.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                callee.kill()
                callee.wait()
    return result


def run(url: str) -> list[Row]:
    """``ROUNDS`` interleaved rounds per contender, each in a fresh room."""
    tag = uuid.uuid4().hex[:8]
    got: dict[str, list[dict[str, float]]] = {"lkrtc": [], "official": []}
    for i in range(ROUNDS):
        for contender in got:
            got[contender].append(
                retried(
                    f"rpc {contender} round {i}",
                    partial(measure, url, contender, f"rpc-{tag}-{contender}-{i}"),
                )
            )
    rows = []
    for case, metric, key, better in (
        ("sequential 1000", "p50 ms", "p50_ms", "lower"),
        ("sequential 1000", "p99 ms", "p99_ms", "lower"),
        ("100 concurrent", "calls/s", "calls_per_s", "higher"),
    ):
        for contender, results in got.items():
            rows.append(row(SCENARIO, case, contender, metric, better, [r[key] for r in results]))
    return rows


if __name__ == "__main__":
    if len(sys.argv) >= 6 and sys.argv[1] == "child" and sys.argv[3] in ("caller", "callee"):
        child(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5])
    else:
        raise SystemExit(
            "usage: python -m bench.rpc child {lkrtc|official} {caller|callee} URL ROOM"
        )
