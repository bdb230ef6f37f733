"""Memory and native handles over a long run: RSS growth and live handles after.

One process per contender (lkrtc-trio, official asyncio SDK) joins two rooms
of one fresh room name: "a" (sends data, calls RPCs) and "b" (receives data,
serves the RPC method ``echo``), and waits until each sees the other. Then:

1. warm-up: batches of ``WARM_MESSAGES`` data messages and ``WARM_RPCS``
   RPCs, repeated until ``WARM_SECONDS`` (25 s) have passed, longer than the
   bounded windows either SDK keeps (lkrtc-trio remembers the reliable sends
   of the last 20 s, to report what a reconnection may have lost: about 3
   MiB at this rate, a constant once full); ``gc.collect()``; RSS is read
   (``/proc/self/statm``);
2. the measured run: ``MESSAGES`` data messages and ``RPCS`` RPCs;
   ``gc.collect()``; RSS is read again. "RSS growth MiB" is the difference.
3. both rooms are closed (lkrtc-trio: the ``open_room`` blocks end; official:
   ``disconnect()``, then the Room objects are dropped) and after
   ``gc.collect()`` the live native handles are counted: lkrtc-trio
   ``live_native_handles()``; official: the ``FfiHandle`` objects in
   ``livekit.rtc._ffi_client._live_handles`` that are not disposed yet (the
   weak set also holds handles already dropped whose Python object is still
   alive; those are not live native handles; the raw size is reported in the
   child's JSON as ``weakset``).

Data messages are 64 bytes (reliable, topic "m", a 4-byte sequence number
first, built per send, so no payload list inflates the RSS), sent ``WINDOW``
calls in flight, and at most ``LAG`` ahead of what "b" has received (a
semaphore), so neither SDK piles up an unbounded backlog. "b" counts every
message and checks that each sequence number arrives exactly once (a missing
one fails the run). RPCs: 100-byte payloads, echoed, ``RPC_WINDOW`` in flight,
every answer checked. Receiving: lkrtc-trio iterates one ``room.events()``
subscription; the official SDK counts in a ``room.on("data_received")``
callback. Identical windows for both contenders.

A round takes about a minute (the native core delivers about 700-1500 such
messages per second here; both contenders run at once). Once the warm-up is
past the bounded windows, the growth does not follow the message count
(earlier measurements, 10000 or 100000 messages: +0.3 to +0.6 MiB, both
SDKs, and lkrtc-trio's Python heap grows by under 3 KiB per tracemalloc):
what is left is allocator noise of about half a MiB, not a leak. So
``python -m bench`` runs 5 rounds of 20000 messages (a fresh process and
room each) rather than one of 100000; a leak of even 100 bytes per message
would still show as 2 MiB per round. ``python -m bench.memory 5`` runs
100000 messages + 1000 RPCs once.

Child mode: ``python -m bench.memory child {lkrtc|official} URL ROOM [SCALE]``;
prints one JSON line. ``run(url)``: 5 rounds; in each, one process per
contender, both at the same time (the metrics are memory and handles, not
speed; see ``run``), so round r of each contender is paired.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

from bench._common import ROUNDS, Row, child_json, retried, row
from bench.data import SEE_TIMEOUT, Lost, official_see

SCENARIO = "Memory"
WARM_MESSAGES, WARM_RPCS = 5000, 50
#: the warm-up repeats its batch until this long has passed (> lkrtc-trio's 20 s send ledger)
WARM_SECONDS = 25.0
#: sequence numbers the receiving side can track (preallocated before the baseline)
CAPACITY = 1_000_000
MESSAGES, RPCS = 20_000, 200
CASE = f"{MESSAGES} data messages + {RPCS} RPCs, per round"
WINDOW = 8
RPC_WINDOW = 10
LAG = 1000
SIZE = 64
TOPIC = "m"
PHASE_TIMEOUT = 300.0


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def counts(scale: float) -> tuple[int, int, int, int]:
    """(warm-up batch messages, warm-up batch RPCs, messages, RPCs), scaled for
    quick tries."""
    warm, warm_rpcs, messages, rpcs = (
        max(1, round(n * scale)) for n in (WARM_MESSAGES, WARM_RPCS, MESSAGES, RPCS)
    )
    return warm, warm_rpcs, messages, rpcs


def message(seq: int) -> bytes:
    return seq.to_bytes(4, "big") + bytes(SIZE - 4)


def rpc_payload(i: int) -> str:
    return f"{i:08d}".ljust(100, "x")


class Counter:
    """Messages received by "b": each sequence number exactly once."""

    def __init__(self, total: int) -> None:
        self.seen = bytearray(total)
        self.got = 0
        self.target = 0

    def add(self, payload: bytes) -> bool:
        """Counts one message; True when ``target`` is reached."""
        seq = int.from_bytes(payload[:4], "big")
        if len(payload) != SIZE or seq >= len(self.seen) or self.seen[seq]:
            raise Lost(f"unexpected message #{seq} ({len(payload)} bytes)")
        self.seen[seq] = 1
        self.got += 1
        return self.got == self.target


# -- lkrtc-trio --------------------------------------------------------------------------


async def lkrtc_child(url: str, room: str, scale: float) -> dict[str, Any]:
    import trio

    import lkrtc_trio as lk
    from lkrtc_trio.testing import mint_token

    out: dict[str, Any] = {}
    warm, warm_rpcs, messages, rpcs = counts(scale)
    counter = Counter(CAPACITY + messages)
    lag = trio.Semaphore(LAG)
    reached = trio.Event()
    next_seq = 0

    def echo(data: lk.RpcInvocationData) -> str:
        return data.payload

    async with (
        lk.open_room(url, mint_token("a", room)) as a,
        lk.open_room(url, mint_token("b", room)) as b,
    ):
        b.local_participant.register_rpc_method("echo", echo)
        with b.events(max_buffer=LAG + 1000) as events:

            async def receive() -> None:
                async for e in events:
                    if isinstance(e, lk.DataReceived) and e.topic == TOPIC:
                        lag.release()
                        if counter.add(e.payload):
                            reached.set()

            async def send(n: int) -> None:
                nonlocal next_seq
                publish = a.local_participant.publish_data
                end = next_seq + n

                async def worker() -> None:
                    nonlocal next_seq
                    while next_seq < end:
                        seq = next_seq
                        next_seq += 1
                        await lag.acquire()
                        await publish(message(seq), reliable=True, topic=TOPIC)

                async with trio.open_nursery() as nursery:
                    for _ in range(WINDOW):
                        nursery.start_soon(worker)

            async def call(n: int) -> None:
                perform = a.local_participant.perform_rpc
                todo = iter(range(n))

                async def worker() -> None:
                    for i in todo:
                        p = rpc_payload(i)
                        got = await perform(destination_identity="b", method="echo", payload=p)
                        if got != p:
                            raise Lost(f"RPC {i} answered {got[:20]!r}")

                async with trio.open_nursery() as nursery:
                    for _ in range(RPC_WINDOW):
                        nursery.start_soon(worker)

            async def phase(n: int, rpcs: int) -> float:
                nonlocal reached
                t0 = time.perf_counter()
                reached = trio.Event()
                counter.target = counter.got + n
                with trio.fail_after(PHASE_TIMEOUT):
                    await send(n)
                    await reached.wait()
                    await call(rpcs)
                return time.perf_counter() - t0

            async with trio.open_nursery() as nursery:
                nursery.start_soon(receive)
                with trio.fail_after(SEE_TIMEOUT):
                    await a.wait_for_participant("b")
                    await b.wait_for_participant("a")
                t0, out["warm_messages"] = time.perf_counter(), 0
                while not out["warm_messages"] or time.perf_counter() - t0 < WARM_SECONDS:
                    await phase(warm, warm_rpcs)
                    out["warm_messages"] += warm
                out["warm_s"] = time.perf_counter() - t0
                gc.collect()
                out["rss_before"] = rss_mib()
                out["run_s"] = await phase(messages, rpcs)
                gc.collect()
                out["rss_after"] = rss_mib()
                nursery.cancel_scope.cancel()
    gc.collect()
    out["received"] = counter.got
    out["handles"] = lk.live_native_handles()
    out["rss_closed"] = rss_mib()
    return out


# -- official SDK -------------------------------------------------------------------------


async def official_child(url: str, room: str, scale: float) -> dict[str, Any]:
    import asyncio

    from livekit import rtc
    from livekit.rtc import _ffi_client

    from lkrtc_trio.testing import mint_token

    out: dict[str, Any] = {}
    warm, warm_rpcs, messages, rpcs = counts(scale)
    counter = Counter(CAPACITY + messages)
    lag = asyncio.Semaphore(LAG)
    state: dict[str, Any] = {"reached": asyncio.Event()}
    failure: list[BaseException] = []
    next_seq = 0

    def on_data(pkt: Any) -> None:
        if pkt.topic != TOPIC:
            return
        lag.release()
        try:
            if counter.add(pkt.data):
                state["reached"].set()
        except Lost as exc:
            failure.append(exc)
            state["reached"].set()

    def echo(data: Any) -> str:
        return str(data.payload)

    a, b = rtc.Room(), rtc.Room()
    b.on("data_received", on_data)
    await a.connect(url, mint_token("a", room))
    await b.connect(url, mint_token("b", room))

    async def send(a: Any, n: int) -> None:
        nonlocal next_seq
        publish = a.local_participant.publish_data
        end = next_seq + n

        async def worker() -> None:
            nonlocal next_seq
            while next_seq < end:
                seq = next_seq
                next_seq += 1
                await lag.acquire()
                await publish(message(seq), reliable=True, topic=TOPIC)

        await asyncio.gather(*(worker() for _ in range(WINDOW)))

    async def call(a: Any, n: int) -> None:
        perform = a.local_participant.perform_rpc
        todo = iter(range(n))

        async def worker() -> None:
            for i in todo:
                p = rpc_payload(i)
                got = await perform(destination_identity="b", method="echo", payload=p)
                if got != p:
                    raise Lost(f"RPC {i} answered {got[:20]!r}")

        await asyncio.gather(*(worker() for _ in range(RPC_WINDOW)))

    async def phase(a: Any, n: int, rpcs: int) -> float:
        t0 = time.perf_counter()
        state["reached"] = reached = asyncio.Event()
        counter.target = counter.got + n

        async def body() -> None:
            await send(a, n)
            await reached.wait()
            if failure:
                raise failure[0]
            await call(a, rpcs)

        await asyncio.wait_for(body(), PHASE_TIMEOUT)
        return time.perf_counter() - t0

    try:
        b.local_participant.register_rpc_method("echo", echo)
        await official_see(a, "b", SEE_TIMEOUT)
        await official_see(b, "a", SEE_TIMEOUT)
        t0, out["warm_messages"] = time.perf_counter(), 0
        while not out["warm_messages"] or time.perf_counter() - t0 < WARM_SECONDS:
            await phase(a, warm, warm_rpcs)
            out["warm_messages"] += warm
        out["warm_s"] = time.perf_counter() - t0
        gc.collect()
        out["rss_before"] = rss_mib()
        out["run_s"] = await phase(a, messages, rpcs)
        gc.collect()
        out["rss_after"] = rss_mib()
    finally:
        await a.disconnect()
        await b.disconnect()
    del a, b, on_data
    state.clear()
    gc.collect()
    live = list(_ffi_client._live_handles)
    out["received"] = counter.got
    out["handles"] = sum(1 for h in live if not h.disposed)
    out["weakset"] = len(live)
    del live
    out["rss_closed"] = rss_mib()
    return out


# -- processes ----------------------------------------------------------------------------


def child(contender: str, url: str, room: str, scale: float = 1.0) -> None:
    if contender == "lkrtc":
        import trio

        out = trio.run(lkrtc_child, url, room, scale)
    else:
        import asyncio

        out = asyncio.run(official_child(url, room, scale))
    print(json.dumps(out), flush=True)


def measure(url: str, contender: str, tag: str, scale: float = 1.0) -> dict[str, Any]:
    room = f"memory-{contender}-{tag}-{uuid.uuid4().hex[:8]}"
    res: dict[str, Any] = child_json(
        "bench.memory", "child", contender, url, room, str(scale), timeout=2 * PHASE_TIMEOUT + 60
    )
    _, _, messages, _ = counts(scale)
    if res["received"] != res["warm_messages"] + messages:
        raise Lost(f"{contender}: {res['received']} messages received")
    res["growth"] = res["rss_after"] - res["rss_before"]
    return res


def run(url: str, rounds: int = ROUNDS) -> list[Row]:
    """The two contenders' processes of a round run at the same time (each in
    its own room): the metrics are memory and handles, not speed, and a round
    (25 s of warm-up, then 20000 messages) takes about a minute."""
    samples: dict[tuple[str, str], list[float]] = {}
    contenders = ("lkrtc", "official")
    for i in range(rounds):
        with ThreadPoolExecutor(len(contenders)) as pool:
            futures = [
                pool.submit(retried, f"memory {c} round {i}", partial(measure, url, c, str(i)))
                for c in contenders
            ]
            results = [f.result() for f in futures]
        for contender, res in zip(contenders, results, strict=True):
            samples.setdefault((contender, "RSS growth MiB"), []).append(res["growth"])
            samples.setdefault((contender, "live native handles after"), []).append(res["handles"])
    return [
        row(SCENARIO, CASE, contender, metric, "lower", s)
        for (contender, metric), s in samples.items()
    ]


def main() -> None:
    """``python -m bench.memory [SCALE [CONTENDER...]]``: details as JSON (SCALE
    multiplies every count, for quick tries)."""
    from lkrtc_trio.testing import LocalServer, install_server

    scale = float(sys.argv[1]) if len(sys.argv) > 1 else 1.0
    contenders = sys.argv[2:] or ["lkrtc", "official"]
    results: dict[str, Any] = {"scale": scale}
    with LocalServer(binary=install_server()) as info:
        for contender in contenders:
            results[contender] = measure(info.url, contender, "main", scale)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "child":
        child(sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5]) if len(sys.argv) > 5 else 1)
    else:
        main()
