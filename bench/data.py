"""Reliable ``publish_data`` throughput, delivered: messages/s and MB/s; and the
event-loop thread's CPU per message sent and received.

For each contender (lkrtc-trio, official asyncio SDK) a receiver process and a
sender process of that contender join a fresh room. The sender waits until it
sees the receiver and until the receiver said "ready" over the data channel
(so both directions work; the receiver repeats "ready" every second until the
first message arrives, as a packet sent right after a join can be dropped),
then, for each case (1 KiB x 2000, 15 KiB x 500,
60 KiB = 61440 bytes x 150), sends the M payloads with
``await publish_data(payload, reliable=True, topic="b")``, ``WINDOW`` calls in
flight at a time (identical for both contenders; 1 = strictly sequential), and
waits for the receiver's "done" before the next case.

The payloads are built before the clock starts; each starts with a 4-byte
sequence number and the case index. The receiver checks the size, the case
and that every sequence number arrives exactly once; a missing, duplicated or
malformed message (or none within ``CASE_TIMEOUT``) fails the run: it raises
instead of reporting a smaller number.

Timing: both processes run on the same machine and read ``time.time()``. The
interval is from just before the sender's first ``publish_data`` to the
receiver's arrival of the last of the M messages (the receiver reports its own
timestamp). messages/s = M / interval, MB/s = M * size / 1e6 / interval.

Receiving: lkrtc-trio iterates one ``room.events()`` subscription; the official
SDK counts in a ``room.on("data_received")`` callback (each SDK's natural way).

Where the time goes (measured on 2 cores, private netns): both SDKs load the
same ``liblivekit_ffi``, whose libwebrtc log sink is registered at verbose
level, so dcsctp formats every SCTP packet as a hex dump (and, with log
capture on, as in both SDKs, forwards it as a native log record). That costs
about 4 ms of sender and 5-6 ms of receiver CPU per 15 KiB message, mostly in
libwebrtc's network thread, the same for both contenders; with the server on
the same 2 cores it caps delivery near 100-150 messages/s of 15 KiB for
either SDK. ``python -m bench.data [WINDOW]`` prints the per-message CPU
(whole process and event-loop thread) next to the rates.

Loop-thread CPU rows (1 KiB and 15 KiB): ``time.thread_time()`` read on the
thread that runs the event loop (trio or asyncio: the main thread), divided by
M, in microseconds. Sender: from just before the first ``publish_data`` to the
return of the last one. Receiver: from the start of the case (before its first
message) to the arrival of its last message. This is the CPU the SDK's Python
side spends on the loop, which every other task of the application competes
for; the native core's threads are not in it. Note the SDKs do not split the
work the same way: the official SDK parses each native event (protobuf) and
runs its queue filters in the native callback thread, holding the GIL but off
the loop thread, so that part is not in its loop-thread figure; lkrtc-trio
only copies the bytes there and parses on the loop, so its figure includes
the parsing. The whole-process CPU (``send_cpu_us``/``recv_cpu_us``) is in
the ``python -m bench.data`` output.

Child mode: ``python -m bench.data child {lkrtc|official} {send|recv} URL ROOM
WINDOW``; each prints one JSON line. ``run(url)``: 5 rounds per contender,
interleaved (round r of lkrtc-trio, then round r of the official SDK), each a
fresh pair of processes and a fresh room; one sample per row per round.
"""

from __future__ import annotations

import json
import resource
import struct
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from functools import partial
from typing import Any

from bench._common import ROUNDS, Row, retried, row

SCENARIO = "publish_data reliable"
#: (case name, payload bytes, messages)
CASES: list[tuple[str, int, int]] = [
    ("1 KiB", 1024, 2000),
    ("15 KiB", 15 * 1024, 500),
    ("60 KiB", 61440, 150),
]
#: cases that also get loop-thread CPU rows
CPU_CASES = ("1 KiB", "15 KiB")
#: publish_data calls in flight at a time (both contenders)
WINDOW = 1
SEE_TIMEOUT = 20.0  # seconds to see each other (joins are announced up to ~3 s late)
CASE_TIMEOUT = 60.0  # seconds for one case to be delivered completely
GONE_TIMEOUT = 10.0  # the receiver stays until the sender left, at most this long
#: a receiver repeats its "ready" this often until the sender's first message arrives
READY_EVERY = 1.0
#: ... checking this often whether it arrived (the repeating stops within this)
HEARD_POLL = 0.05
HEADER = struct.Struct("!IB")  # sequence number, case index
TOPIC, CTL = "b", "ctl"


def cpu() -> float:
    """CPU seconds of this process so far (native threads included)."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


class CpuMeter:
    """Process CPU and event-loop (main thread) CPU since creation, seconds."""

    def __init__(self) -> None:
        self.process, self.loop = cpu(), time.thread_time()

    def result(self) -> dict[str, float]:
        return {"cpu": cpu() - self.process, "loop_cpu": time.thread_time() - self.loop}


class Lost(Exception):
    """A message was lost, duplicated or malformed: the run failed."""


def payloads(case: int, size: int, count: int) -> list[bytes]:
    filler = bytes(size - HEADER.size)
    return [HEADER.pack(seq, case) + filler for seq in range(count)]


class Tally:
    """Counts the messages of one case; raises on a duplicate or malformed one."""

    def __init__(self, case: int, size: int, count: int) -> None:
        self.case, self.size, self.count = case, size, count
        self.seen = bytearray(count)
        self.got = 0
        self.first = self.last = 0.0

    def add(self, payload: bytes) -> bool:
        """Counts one message; True once all have arrived."""
        now = time.time()
        if len(payload) != self.size:
            raise Lost(f"case {self.case}: a message of {len(payload)} bytes, not {self.size}")
        seq, case = HEADER.unpack_from(payload)
        if case != self.case or seq >= self.count or self.seen[seq]:
            raise Lost(f"case {self.case}: unexpected message #{seq} of case {case}")
        self.seen[seq] = 1
        self.got += 1
        if self.got == 1:
            self.first = now
        if self.got == self.count:
            self.last = now
            return True
        return False

    def result(self) -> dict[str, float]:
        return {"first": self.first, "last": self.last, "got": self.got}


def windows(items: Sequence[bytes], window: int) -> list[Iterator[bytes]]:
    """``window`` workers sharing one iterator: sends start in sequence order."""
    it = iter(items)
    return [it] * window


# -- lkrtc-trio --------------------------------------------------------------------------


async def lkrtc_send_all(
    publish: Callable[[bytes], Awaitable[None]], items: Sequence[bytes], window: int
) -> None:
    import trio

    async def worker(it: Iterator[bytes]) -> None:
        for p in it:
            await publish(p)

    if window == 1:
        for p in items:
            await publish(p)
        return
    async with trio.open_nursery() as nursery:
        for it in windows(items, window):
            nursery.start_soon(worker, it)


async def lkrtc_control(events: Any, expected: bytes) -> None:
    """Waits for a control message (topic ``ctl``) with exactly ``expected``."""
    import lkrtc_trio as lk

    async for e in events:
        if isinstance(e, lk.DataReceived) and e.topic == CTL and e.payload == expected:
            return
    raise RuntimeError("the room ended")


async def lkrtc_announce(lp: Any, payload: bytes, heard: Callable[[], bool]) -> None:
    """Publishes ``payload`` (topic ``ctl``) every ``READY_EVERY`` seconds until
    ``heard()``. The peers see each other as soon as the server announces a
    join, which can be before the other side's data channel is open; a packet
    sent then can be dropped (seen on a loaded machine: the sender never got
    the one "ready" and the run failed). The receiver's other side ignores
    repeats."""
    import trio

    while True:
        await lp.publish_data(payload, topic=CTL)
        for _ in range(round(READY_EVERY / HEARD_POLL)):
            await trio.sleep(HEARD_POLL)
            if heard():
                return


async def lkrtc_wait_gone(room: Any, identity: str, timeout: float) -> None:
    """Stays until ``identity`` has left (at most ``timeout``): leaving right
    after the last ``publish_data`` returned could drop that packet unsent."""
    import trio

    import lkrtc_trio as lk

    with room.events() as events, trio.move_on_after(timeout):
        if identity not in room.remote_participants:
            return
        async for e in events:
            if isinstance(e, lk.ParticipantDisconnected) and e.participant.identity == identity:
                return


async def lkrtc_sender(url: str, room: str, window: int) -> dict[str, Any]:
    import trio

    import lkrtc_trio as lk
    from lkrtc_trio.testing import mint_token

    out: dict[str, Any] = {}
    async with lk.open_room(url, mint_token("send", room)) as r:
        lp = r.local_participant

        async def publish(p: bytes) -> None:
            await lp.publish_data(p, reliable=True, topic=TOPIC)

        with r.events(max_buffer=1000) as events:
            with trio.fail_after(SEE_TIMEOUT):
                await r.wait_for_participant("recv")
                await lkrtc_control(events, b"ready")
            for k, (name, size, count) in enumerate(CASES):
                items = payloads(k, size, count)
                meter, t0 = CpuMeter(), time.time()
                await lkrtc_send_all(publish, items, window)
                t1, used = time.time(), meter.result()
                with trio.fail_after(CASE_TIMEOUT):
                    await lkrtc_control(events, f"done {k}".encode())
                out[name] = {"start": t0, "sent": t1, **used}
    return out


async def lkrtc_receiver(url: str, room: str) -> dict[str, Any]:
    import trio

    import lkrtc_trio as lk
    from lkrtc_trio.testing import mint_token

    out: dict[str, Any] = {}
    async with lk.open_room(url, mint_token("recv", room)) as r:
        lp = r.local_participant
        with r.events(max_buffer=10_000) as events:
            with trio.fail_after(SEE_TIMEOUT):
                await r.wait_for_participant("send")
            tallies = [Tally(k, size, count) for k, (_name, size, count) in enumerate(CASES)]
            async with trio.open_nursery() as nursery:
                nursery.start_soon(lkrtc_announce, lp, b"ready", lambda: tallies[0].got > 0)
                for k, (name, _size, count) in enumerate(CASES):
                    meter = CpuMeter()
                    tally = tallies[k]
                    done = False
                    with trio.move_on_after(CASE_TIMEOUT):
                        async for e in events:
                            if (
                                isinstance(e, lk.DataReceived)
                                and e.topic == TOPIC
                                and tally.add(e.payload)
                            ):
                                done = True
                                break
                    if not done:
                        raise Lost(f"{name}: {tally.got} of {count} messages arrived")
                    out[name] = {**tally.result(), **meter.result()}
                    await lp.publish_data(f"done {k}".encode(), topic=CTL)
                nursery.cancel_scope.cancel()
        await lkrtc_wait_gone(r, "send", GONE_TIMEOUT)
    return out


# -- official SDK -------------------------------------------------------------------------


async def official_see(room: Any, identity: str, timeout: float) -> None:
    """Waits until the official room sees ``identity`` (participant_connected)."""
    import asyncio

    fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def on(p: Any) -> None:
        if p.identity == identity and not fut.done():
            fut.set_result(None)

    room.on("participant_connected", on)
    try:
        if identity not in room.remote_participants:
            await asyncio.wait_for(fut, timeout)
    finally:
        room.off("participant_connected", on)


async def official_wait_gone(room: Any, identity: str, timeout: float) -> None:
    """Stays until ``identity`` has left (at most ``timeout``); see lkrtc_wait_gone."""
    import asyncio

    fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def on(p: Any, *_: Any) -> None:
        if p.identity == identity and not fut.done():
            fut.set_result(None)

    room.on("participant_disconnected", on)
    try:
        if identity in room.remote_participants:
            await asyncio.wait_for(fut, timeout)
    except asyncio.TimeoutError:
        pass
    finally:
        room.off("participant_disconnected", on)


async def official_announce(lp: Any, payload: bytes, heard: Callable[[], bool]) -> None:
    """As lkrtc_announce, for the official SDK."""
    import asyncio

    while True:
        await lp.publish_data(payload, topic=CTL)
        for _ in range(round(READY_EVERY / HEARD_POLL)):
            await asyncio.sleep(HEARD_POLL)
            if heard():
                return


class OfficialControl:
    """Control messages (topic ``ctl``) received by an official room."""

    def __init__(self, room: Any) -> None:
        import asyncio

        self.queue: asyncio.Queue[bytes] = asyncio.Queue()
        room.on("data_received", self._on)

    def _on(self, pkt: Any) -> None:
        if pkt.topic == CTL:
            self.queue.put_nowait(pkt.data)

    async def wait(self, expected: bytes, timeout: float) -> None:
        import asyncio

        async def get() -> None:
            while await self.queue.get() != expected:
                pass

        await asyncio.wait_for(get(), timeout)


async def official_send_all(
    publish: Callable[[bytes], Awaitable[None]], items: Sequence[bytes], window: int
) -> None:
    import asyncio

    async def worker(it: Iterator[bytes]) -> None:
        for p in it:
            await publish(p)

    if window == 1:
        for p in items:
            await publish(p)
        return
    await asyncio.gather(*(worker(it) for it in windows(items, window)))


async def official_sender(url: str, room: str, window: int) -> dict[str, Any]:
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
        await ctl.wait(b"ready", SEE_TIMEOUT)
        for k, (name, size, count) in enumerate(CASES):
            items = payloads(k, size, count)
            meter, t0 = CpuMeter(), time.time()
            await official_send_all(publish, items, window)
            t1, used = time.time(), meter.result()
            await ctl.wait(f"done {k}".encode(), CASE_TIMEOUT)
            out[name] = {"start": t0, "sent": t1, **used}
    finally:
        await r.disconnect()
    return out


async def official_receiver(url: str, room: str) -> dict[str, Any]:
    import asyncio

    from livekit import rtc

    from lkrtc_trio.testing import mint_token

    out: dict[str, Any] = {}
    r = rtc.Room()
    tallies = [Tally(k, size, count) for k, (_name, size, count) in enumerate(CASES)]
    done = [asyncio.Event() for _ in CASES]
    failure: list[BaseException] = []

    def on_data(pkt: Any) -> None:
        if pkt.topic != TOPIC:
            return
        try:
            k = pkt.data[4] if len(pkt.data) > 4 else -1
            if not 0 <= k < len(tallies):
                raise Lost(f"a message of an unknown case {k}")
            if tallies[k].add(pkt.data):
                done[k].set()
        except Lost as exc:
            failure.append(exc)
            for d in done:
                d.set()

    r.on("data_received", on_data)
    await r.connect(url, mint_token("recv", room))
    try:
        lp = r.local_participant
        await official_see(r, "send", SEE_TIMEOUT)
        announce = asyncio.create_task(official_announce(lp, b"ready", lambda: tallies[0].got > 0))
        for k, (name, _size, count) in enumerate(CASES):
            meter = CpuMeter()
            try:
                await asyncio.wait_for(done[k].wait(), CASE_TIMEOUT)
            except asyncio.TimeoutError:
                raise Lost(f"{name}: {tallies[k].got} of {count} messages arrived") from None
            if failure:
                raise failure[0]
            out[name] = {**tallies[k].result(), **meter.result()}
            await lp.publish_data(f"done {k}".encode(), topic=CTL)
        announce.cancel()
        await official_wait_gone(r, "send", GONE_TIMEOUT)
    finally:
        await r.disconnect()
    return out


# -- processes ----------------------------------------------------------------------------


def child(contender: str, role: str, url: str, room: str, window: int) -> None:
    if contender == "lkrtc":
        import trio

        if role == "send":
            out = trio.run(lkrtc_sender, url, room, window)
        else:
            out = trio.run(lkrtc_receiver, url, room)
    else:
        import asyncio

        if role == "send":
            out = asyncio.run(official_sender(url, room, window))
        else:
            out = asyncio.run(official_receiver(url, room))
    print(json.dumps(out), flush=True)


def pair(
    module: str, contender: str, url: str, room: str, extra: Sequence[str], timeout: float
) -> tuple[Any, Any]:
    """Runs a receiver and a sender child of ``module``; returns their JSON
    (sender, receiver). Raises RuntimeError if either fails."""
    base = [sys.executable, "-m", module, "child", contender]
    procs = {
        role: subprocess.Popen(
            [*base, role, url, room, *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for role in ("recv", "send")
    }
    outs: dict[str, tuple[str, str]] = {}
    deadline = time.monotonic() + timeout
    try:
        for role, proc in procs.items():
            outs[role] = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    results = {}
    for role, proc in procs.items():
        stdout, stderr = outs[role]
        lines = [ln for ln in stdout.splitlines() if ln.startswith("{")]
        if proc.returncode != 0 or not lines:
            others = "".join(
                f"\n--- {other} ({p.returncode}):\n{outs[other][1][-6000:]}"
                for other, p in procs.items()
                if other != role
            )
            raise RuntimeError(
                f"{module} {contender} {role} failed ({proc.returncode}), room {room}:\n"
                f"{stderr[-3000:]}{others}"
            )
        results[role] = json.loads(lines[-1])
    return results["send"], results["recv"]


def measure(url: str, contender: str, tag: str, window: int = WINDOW) -> dict[str, Any]:
    room = f"data-{contender}-{tag}-{uuid.uuid4().hex[:8]}"
    sent, got = pair("bench.data", contender, url, room, [str(window)], timeout=240)
    res = {}
    for name, size, count in CASES:
        interval = got[name]["last"] - sent[name]["start"]
        res[name] = {
            "messages/s": count / interval,
            "MB/s": count * size / 1e6 / interval,
            "send_s": sent[name]["sent"] - sent[name]["start"],
            "interval_s": interval,
            # CPU us per message, event-loop thread (rows for CPU_CASES) and
            # whole process (diagnostic only)
            "send_loop_us": sent[name]["loop_cpu"] / count * 1e6,
            "recv_loop_us": got[name]["loop_cpu"] / count * 1e6,
            "send_cpu_us": sent[name]["cpu"] / count * 1e6,
            "recv_cpu_us": got[name]["cpu"] / count * 1e6,
        }
    return res


#: (metric, key in measure()'s result, better) of every row of a case
METRICS = [("messages/s", "messages/s", "higher"), ("MB/s", "MB/s", "higher")]
CPU_METRICS = [
    ("loop-thread CPU us/msg, sent", "send_loop_us", "lower"),
    ("loop-thread CPU us/msg, received", "recv_loop_us", "lower"),
]


def run(url: str, rounds: int = ROUNDS) -> list[Row]:
    """``rounds`` rounds, each lkrtc-trio then official (fresh processes and
    room); one sample per row per round."""
    contenders = ("lkrtc", "official")
    samples: dict[tuple[str, str, str], list[float]] = {}
    for i in range(rounds):
        for contender in contenders:
            res = retried(f"data {contender} round {i}", partial(measure, url, contender, str(i)))
            for name, _size, _count in CASES:
                for metric, key, _better in METRICS + CPU_METRICS:
                    samples.setdefault((name, metric, contender), []).append(res[name][key])
    rows = []
    for name, _size, _count in CASES:
        metrics = METRICS + (CPU_METRICS if name in CPU_CASES else [])
        for metric, _key, better in metrics:
            for contender in contenders:
                rows.append(
                    row(SCENARIO, name, contender, metric, better, samples[name, metric, contender])
                )
    return rows


def main() -> None:
    """``python -m bench.data [WINDOW]``: one round per contender, details as JSON."""
    from lkrtc_trio.testing import LocalServer, install_server

    window = int(sys.argv[1]) if len(sys.argv) > 1 else WINDOW
    results: dict[str, Any] = {"window": window}
    with LocalServer(binary=install_server()) as info:
        for contender in ("lkrtc", "official"):
            results[contender] = measure(info.url, contender, "main", window)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "child":
        child(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], int(sys.argv[6]))
    else:
        main()
