"""Room events delivered to K consumers: events/s.

For each contender a receiver process and a sender process of that contender
join a fresh room (the sender waits until it sees the receiver and got its
"ready" over the data channel). For each K in 1, 10, 100 the receiver sets up
K consumers, each in its own task:

* lkrtc-trio: K ``room.events(max_buffer=E + 64)`` subscriptions, each
  iterated by its own task (the buffer holds a whole burst, so no consumer
  can overflow by falling behind; an overflow would fail the run);
* official SDK: K listeners registered with ``room.on("data_received", ...)``,
  each pushing the packet into its own unbounded ``asyncio.Queue`` that its own
  task consumes (the SDK calls listeners synchronously on its event task, so a
  queue per consumer is the equivalent of a subscription consumed by a task).

Then it says "ready K" (repeated every second until the first event arrives:
see bench/data.py); the sender publishes E small reliable packets (16
bytes, topic "e"; ``WINDOW`` calls in flight, the same for both contenders).
Every consumer checks that each of the E sequence numbers arrives exactly
once; a lost or duplicated packet (or none within ``PHASE_TIMEOUT``) fails
the run. events/s delivered = K * E / (time from the first consumer's first
event to the last consumer's E-th event), all on the receiver's clock
(``time.perf_counter``).

With K = 1 and K = 10 the receiver keeps up with the data channel, so those
rates follow how fast the sender's packets get through (see bench/data.py);
K = 100 measures the fan-out.

"loop-thread CPU us/event, received": the receiver's ``time.thread_time()``
on its event-loop thread, from before the K consumers are set up to the last
consumer's E-th event, divided by K * E (see bench/data.py for what this
includes and what each SDK does off the loop thread). ``python -m bench.events
[E]`` also prints the receiver's whole-process CPU per delivered event.

Child mode: ``python -m bench.events child {lkrtc|official} {send|recv} URL
ROOM E``. ``run(url)``: 5 rounds per contender, interleaved (round r of
lkrtc-trio, then round r of the official SDK), fresh processes and room each.
"""

from __future__ import annotations

import json
import struct
import sys
import time
import uuid
from collections.abc import Callable
from functools import partial
from typing import Any

from bench._common import ROUNDS, Row, retried, row
from bench.data import (
    CTL,
    GONE_TIMEOUT,
    SEE_TIMEOUT,
    CpuMeter,
    Lost,
    OfficialControl,
    lkrtc_announce,
    lkrtc_control,
    lkrtc_send_all,
    lkrtc_wait_gone,
    official_announce,
    official_see,
    official_send_all,
    official_wait_gone,
    pair,
)

SCENARIO = "Room events"
CONSUMERS = [1, 10, 100]
EVENTS = 2000
WINDOW = 4
PHASE_TIMEOUT = 60.0
TOPIC = "e"
HEADER = struct.Struct("!IB")  # sequence number, phase index
SIZE = 16


def case_name(k: int) -> str:
    return f"K={k}"


def packets(phase: int, count: int) -> list[bytes]:
    filler = bytes(SIZE - HEADER.size)
    return [HEADER.pack(seq, phase) + filler for seq in range(count)]


class Consumer:
    """One consumer's count; raises on a duplicate or foreign packet."""

    __slots__ = ("count", "first", "got", "last", "phase", "seen")

    def __init__(self, phase: int, count: int) -> None:
        self.phase, self.count = phase, count
        self.seen = bytearray(count)
        self.got = 0
        self.first = self.last = 0.0

    def add(self, payload: bytes) -> bool:
        seq, phase = HEADER.unpack_from(payload)
        if phase != self.phase or seq >= self.count or self.seen[seq]:
            raise Lost(f"phase {self.phase}: unexpected packet #{seq} of phase {phase}")
        self.seen[seq] = 1
        self.got += 1
        if self.got == 1:
            self.first = time.perf_counter()
        if self.got == self.count:
            self.last = time.perf_counter()
            return True
        return False


def started(c: Consumer) -> Callable[[], bool]:
    """True once ``c`` got its first event (stops the "ready" announcements)."""
    return lambda: c.got > 0


def summary(k: int, consumers: list[Consumer], events: int) -> dict[str, float]:
    missing = [c.got for c in consumers if c.got != events]
    if missing:
        raise Lost(
            f"K={k}: {len(missing)} consumers got fewer than {events} events (e.g. {missing[0]})"
        )
    t0 = min(c.first for c in consumers)
    t1 = max(c.last for c in consumers)
    return {"events/s": k * events / (t1 - t0), "seconds": t1 - t0}


# -- lkrtc-trio --------------------------------------------------------------------------


async def lkrtc_sender(url: str, room: str, events: int) -> dict[str, Any]:
    import trio

    import lkrtc_trio as lk
    from lkrtc_trio.testing import mint_token

    out: dict[str, Any] = {}
    async with lk.open_room(url, mint_token("send", room)) as r:
        lp = r.local_participant

        async def publish(p: bytes) -> None:
            await lp.publish_data(p, reliable=True, topic=TOPIC)

        with r.events(max_buffer=1000) as ctl:
            with trio.fail_after(SEE_TIMEOUT):
                await r.wait_for_participant("recv")
            for phase, k in enumerate(CONSUMERS):
                items = packets(phase, events)
                with trio.fail_after(PHASE_TIMEOUT):
                    await lkrtc_control(ctl, f"ready {phase}".encode())
                    t0 = time.perf_counter()
                    await lkrtc_send_all(publish, items, WINDOW)
                    out[case_name(k)] = {"send_s": time.perf_counter() - t0}
                    await lkrtc_control(ctl, f"done {phase}".encode())
    return out


async def lkrtc_receiver(url: str, room: str, events: int) -> dict[str, Any]:
    import trio

    import lkrtc_trio as lk
    from lkrtc_trio.testing import mint_token

    async def consume(sub: lk.EventSubscription, c: Consumer) -> None:
        async for e in sub:
            if isinstance(e, lk.DataReceived) and e.topic == TOPIC and c.add(e.payload):
                return

    out: dict[str, Any] = {}
    async with lk.open_room(url, mint_token("recv", room)) as r:
        lp = r.local_participant
        with trio.fail_after(SEE_TIMEOUT):
            await r.wait_for_participant("send")
        for phase, k in enumerate(CONSUMERS):
            consumers = [Consumer(phase, events) for _ in range(k)]
            meter = CpuMeter()
            subs = [r.events(max_buffer=events + 64) for _ in range(k)]
            try:
                with trio.move_on_after(PHASE_TIMEOUT):
                    async with trio.open_nursery() as nursery:
                        for sub, c in zip(subs, consumers, strict=True):
                            nursery.start_soon(consume, sub, c)
                        nursery.start_soon(
                            lkrtc_announce,
                            lp,
                            f"ready {phase}".encode(),
                            started(consumers[0]),
                        )
            finally:
                for sub in subs:
                    sub.close()
            out[case_name(k)] = {**summary(k, consumers, events), **meter.result()}
            await lp.publish_data(f"done {phase}".encode(), topic=CTL)
        await lkrtc_wait_gone(r, "send", GONE_TIMEOUT)
    return out


# -- official SDK -------------------------------------------------------------------------


async def official_sender(url: str, room: str, events: int) -> dict[str, Any]:
    from livekit import rtc

    from lkrtc_trio.testing import mint_token

    out: dict[str, Any] = {}
    r = rtc.Room()
    ctl = OfficialControl(r)
    await r.connect(url, mint_token("send", room))
    try:
        lp = r.local_participant

        async def publish(p: bytes) -> None:
            await lp.publish_data(p, reliable=True, topic=TOPIC)

        await official_see(r, "recv", SEE_TIMEOUT)
        for phase, k in enumerate(CONSUMERS):
            items = packets(phase, events)
            await ctl.wait(f"ready {phase}".encode(), PHASE_TIMEOUT)
            t0 = time.perf_counter()
            await official_send_all(publish, items, WINDOW)
            out[case_name(k)] = {"send_s": time.perf_counter() - t0}
            await ctl.wait(f"done {phase}".encode(), PHASE_TIMEOUT)
    finally:
        await r.disconnect()
    return out


async def official_receiver(url: str, room: str, events: int) -> dict[str, Any]:
    import asyncio

    from livekit import rtc

    from lkrtc_trio.testing import mint_token

    async def consume(queue: asyncio.Queue[Any], c: Consumer) -> None:
        while True:
            pkt = await queue.get()
            if pkt.topic == TOPIC and c.add(pkt.data):
                return

    def listener(queue: asyncio.Queue[Any]) -> Any:
        def on_data(pkt: Any) -> None:
            queue.put_nowait(pkt)

        return on_data

    out: dict[str, Any] = {}
    r = rtc.Room()
    await r.connect(url, mint_token("recv", room))
    try:
        lp = r.local_participant
        await official_see(r, "send", SEE_TIMEOUT)
        for phase, k in enumerate(CONSUMERS):
            consumers = [Consumer(phase, events) for _ in range(k)]
            meter = CpuMeter()
            queues: list[asyncio.Queue[Any]] = [asyncio.Queue() for _ in range(k)]
            listeners = [listener(q) for q in queues]
            for fn in listeners:
                r.on("data_received", fn)
            tasks = [
                asyncio.create_task(consume(q, c)) for q, c in zip(queues, consumers, strict=True)
            ]
            announce = asyncio.create_task(
                official_announce(lp, f"ready {phase}".encode(), started(consumers[0]))
            )
            try:
                await asyncio.wait_for(asyncio.gather(*tasks), PHASE_TIMEOUT)
            except asyncio.TimeoutError:
                pass  # summary() reports what is missing
            finally:
                announce.cancel()
                for t in tasks:
                    t.cancel()
                for fn in listeners:
                    r.off("data_received", fn)
            out[case_name(k)] = {**summary(k, consumers, events), **meter.result()}
            await lp.publish_data(f"done {phase}".encode(), topic=CTL)
        await official_wait_gone(r, "send", GONE_TIMEOUT)
    finally:
        await r.disconnect()
    return out


# -- processes ----------------------------------------------------------------------------


def child(contender: str, role: str, url: str, room: str, events: int) -> None:
    if contender == "lkrtc":
        import trio

        fn = lkrtc_sender if role == "send" else lkrtc_receiver
        out = trio.run(fn, url, room, events)
    else:
        import asyncio

        ofn = official_sender if role == "send" else official_receiver
        out = asyncio.run(ofn(url, room, events))
    print(json.dumps(out), flush=True)


def measure(url: str, contender: str, tag: str, events: int = EVENTS) -> dict[str, Any]:
    room = f"events-{contender}-{tag}-{uuid.uuid4().hex[:8]}"
    sent, got = pair("bench.events", contender, url, room, [str(events)], timeout=300)
    res = {}
    for k in CONSUMERS:
        name = case_name(k)
        r = got[name]
        res[name] = {
            "events/s": r["events/s"],
            "seconds": r["seconds"],
            "send_s": sent[name]["send_s"],
            # diagnostics (not rows): receiver CPU per delivered event, process and loop
            "recv_cpu_us": r["cpu"] / (k * events) * 1e6,
            "recv_loop_us": r["loop_cpu"] / (k * events) * 1e6,
        }
    return res


#: (metric, key in measure()'s result, better) of every row of a case
METRICS = [
    ("events/s delivered", "events/s", "higher"),
    ("loop-thread CPU us/event, received", "recv_loop_us", "lower"),
]


def run(url: str, rounds: int = ROUNDS) -> list[Row]:
    contenders = ("lkrtc", "official")
    samples: dict[tuple[str, str, str], list[float]] = {}
    for i in range(rounds):
        for contender in contenders:
            res = retried(f"events {contender} round {i}", partial(measure, url, contender, str(i)))
            for k in CONSUMERS:
                name = case_name(k)
                for metric, key, _better in METRICS:
                    samples.setdefault((name, metric, contender), []).append(res[name][key])
    return [
        row(
            SCENARIO,
            case_name(k),
            contender,
            metric,
            better,
            samples[case_name(k), metric, contender],
        )
        for k in CONSUMERS
        for metric, _key, better in METRICS
        for contender in contenders
    ]


def main() -> None:
    """``python -m bench.events [E]``: one round per contender, details as JSON."""
    from lkrtc_trio.testing import LocalServer, install_server

    events = int(sys.argv[1]) if len(sys.argv) > 1 else EVENTS
    results: dict[str, Any] = {"events": events, "window": WINDOW}
    with LocalServer(binary=install_server()) as info:
        for contender in ("lkrtc", "official"):
            results[contender] = measure(info.url, contender, "main", events)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "child":
        child(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], int(sys.argv[6]))
    else:
        main()
