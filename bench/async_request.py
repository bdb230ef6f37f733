"""Asynchronous FFI requests completed through the event path: us per request.

One participant, alone in a room, sends reliable 16-byte ``publish_data``
packets. Each call is an asynchronous request: the response carries an
``async_id`` and the call then waits for its completion event, which the
native core delivers on one of its threads. So every operation exercises the
whole path: request, native work, event callback, hand-over to the loop,
routing to the one waiting caller.

* "Async request via event path": sequential ``await publish_data(b"x" * 16)``
  after a warm-up; each sample is the mean over 2000 calls.
* "In-flight scaling": N calls started at once (a trio nursery for lkrtc-trio,
  ``asyncio.gather`` for the official SDK), the batch's wall time / N; batches
  are repeated until a sample covers at least 2000 calls (N = 1: 2000
  sequential calls). lkrtc-trio routes each completion to its waiter in O(1);
  the official SDK hands every event to every pending call's queue, so its
  cost per call grows with N.

Each contender runs in its own process (``python -m bench.async_request child
{lkrtc|official} URL ROOM``, printing one JSON object); ``run(url)`` runs
them in 5 interleaved rounds, one sample per row per round (sequential: the
median of the child's repeats).
"""

from __future__ import annotations

import json
import math
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from bench._common import ROUNDS, Row, child_json, retried, row

PAYLOAD = b"x" * 16
SEQ_OPS = 2000
SEQ_REPEATS = 5
WARMUP = 300
SCALING_N = (1, 10, 100, 1000)
#: each scaling sample covers at least this many completed requests
PER_SAMPLE = 2000
#: scaling samples per N in one child (the official SDK's N = 1000 sample alone
#: takes about 10 s on 2 cores)
SCALING_SAMPLES = 1

SEQ = ("Async request via event path", "publish_data 16 B, alone in room", "us/op")
SCALING = ("In-flight scaling", "us per completed request")

Op = Callable[[], Awaitable[None]]
Batch = Callable[[int], Awaitable[None]]


async def _measure(op: Op, batch: Batch, now: Callable[[], float]) -> dict[str, Any]:
    """The child's whole measurement, on whichever loop runs it."""
    for _ in range(WARMUP):
        await op()
    await batch(100)
    seq = []
    for _ in range(SEQ_REPEATS):
        t = now()
        for _ in range(SEQ_OPS):
            await op()
        seq.append((now() - t) / SEQ_OPS * 1e6)
    scaling: dict[str, list[float]] = {str(n): [] for n in SCALING_N}
    for _ in range(SCALING_SAMPLES):
        for n in SCALING_N:
            batches = math.ceil(PER_SAMPLE / n)
            t = now()
            if n == 1:
                for _ in range(batches):
                    await op()
            else:
                for _ in range(batches):
                    await batch(n)
            scaling[str(n)].append((now() - t) / (batches * n) * 1e6)
    return {"seq": seq, "scaling": scaling}


async def lkrtc_child(url: str, room_name: str) -> dict[str, Any]:
    import trio

    import lkrtc_trio as lk
    from lkrtc_trio.testing import mint_token

    with trio.fail_after(120):
        async with lk.open_room(url, mint_token("async-request", room_name)) as room:
            publish = room.local_participant.publish_data

            async def op() -> None:
                await publish(PAYLOAD)

            async def batch(n: int) -> None:
                async with trio.open_nursery() as nursery:
                    for _ in range(n):
                        nursery.start_soon(publish, PAYLOAD)

            return await _measure(op, batch, time.perf_counter)


async def official_child(url: str, room_name: str) -> dict[str, Any]:
    import asyncio

    from livekit import rtc

    from lkrtc_trio.testing import mint_token

    room = rtc.Room()
    await asyncio.wait_for(room.connect(url, mint_token("async-request", room_name)), 30)
    try:
        publish = room.local_participant.publish_data

        async def op() -> None:
            await publish(PAYLOAD)

        async def batch(n: int) -> None:
            await asyncio.gather(*(publish(PAYLOAD) for _ in range(n)))

        return await asyncio.wait_for(_measure(op, batch, time.perf_counter), 120)
    finally:
        await room.disconnect()


def child(contender: str, url: str, room_name: str) -> None:
    if contender == "lkrtc":
        import trio

        out = trio.run(lkrtc_child, url, room_name)
    elif contender == "official":
        import asyncio

        out = asyncio.run(official_child(url, room_name))
    else:
        raise SystemExit(f"unknown contender {contender!r}")
    print(json.dumps(out), flush=True)


def _round(url: str, contender: str, room_name: str) -> Any:
    """One child of ``contender`` in a fresh room (a random suffix: a retried
    round starts afresh)."""
    room_name = f"{room_name}-{uuid.uuid4().hex[:4]}"
    return child_json("bench.async_request", "child", contender, url, room_name, timeout=180)


def run(url: str) -> list[Row]:
    """``ROUNDS`` interleaved rounds per contender, each a fresh process and room:
    one sample per row per round: the median of the child's ``SEQ_REPEATS``
    sequential samples, and its one sample per N."""
    seq: dict[str, list[float]] = {"lkrtc": [], "official": []}
    scaling: dict[tuple[str, int], list[float]] = {}
    tag = uuid.uuid4().hex[:8]
    for i in range(ROUNDS):
        for contender in seq:
            got = retried(
                f"async_request {contender} round {i}",
                partial(_round, url, contender, f"async-req-{tag}-{contender}-{i}"),
            )
            seq[contender].append(statistics.median(got["seq"]))
            for n in SCALING_N:
                scaling.setdefault((contender, n), []).extend(got["scaling"][str(n)])
    rows = [row(*SEQ[:2], contender, SEQ[2], "lower", s) for contender, s in seq.items()]
    for n in SCALING_N:
        for contender in seq:
            rows.append(
                row(SCALING[0], f"N={n}", contender, SCALING[1], "lower", scaling[contender, n])
            )
    return rows


if __name__ == "__main__":
    if len(sys.argv) >= 5 and sys.argv[1] == "child":
        child(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        raise SystemExit("usage: python -m bench.async_request child {lkrtc|official} URL ROOM")
