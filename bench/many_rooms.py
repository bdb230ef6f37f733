"""Many rooms in one process: RPC + data per room, and audio per room.

The official SDK hands every native event to every ``Room`` object of the
process (and to every in-flight request's queue); each room's task then
drops the events of the other rooms. lkrtc-trio routes each event to the one
consumer that owns its handle. This scenario measures what that means when one
process holds R rooms.

Setup (one round of one contender): two processes join R rooms, each room
holding exactly two participants.

* The *measured* process (the contender: ``lkrtc`` = lkrtc-trio on trio,
  ``official`` = ``livekit.rtc`` on asyncio) joins participant ``meas`` in
  each room.
* A *peer* process joins participant ``peer`` in each room. It is the same
  for both contenders (lkrtc-trio, the cheaper of the two), so only the
  measured side differs.

RPC variant, R = 1, 10, 50, 100: in each room the measured participant calls
``ping`` on its peer at 5 calls/s (each room starts at a random phase of the
200 ms period, so the rooms do not fire in the same millisecond; a room has at
most one call in flight: when a call overruns its slot the missed slots are
skipped, so an overloaded process shows a lower achieved rate instead of an
ever-growing backlog). The peer's handler publishes one reliable data packet
(the call's sequence number) to ``meas`` before it returns, so the measured
process both calls and receives an event in every room.

Audio variant, R = 1, 5, 10: the peer publishes a 440 Hz tone (``AudioSource``
+ ``LocalAudioTrack``, 48 kHz mono, 10 ms frames, paced in real time by the
source) in each room; the measured process subscribes and reads an
``AudioStream`` (48 kHz mono) per room, counting the frames it receives. No
RPC in this variant. Opus decoding costs about 0.05 CPU s per audio second
per room in the native core, so more rooms would measure the codec rather
than the SDK.

Stages: within a round the R values are stages of the same pair of processes
(rooms are added: 1, then 9 more, then 40 more, ...), which saves joining and
leaving 161 rooms per round. At each stage the parent first has the peer join
the new rooms, then the measured process joins them (at most ``JOIN_PARALLEL``
joins at a time), waits for the peer (and, for audio, its track), starts the
new rooms' work, warms up ``WARMUP`` s, then measures a ``WINDOW`` s window
over all R rooms:

* loop-thread CPU: ``time.thread_time()`` of the thread running the event
  loop (the main thread, for trio and asyncio), over the window, per wall
  second (1.0 = that thread was busy the whole window). The native core's
  threads are not in it; process CPU (``getrusage``, all threads) is a row of
  its own, as is the machine's busy fraction (``/proc/stat``, all cores: the
  server and the peer share them);
* RPC p50 / p99 (ms) over every call of every room started in the window
  (after the window the child waits until those calls finished or failed,
  at most the 10 s response timeout); achieved calls/s per room;
* data delivered: of the calls of the window that succeeded, the fraction
  whose data packet arrived (counted ``GRACE`` s after the last one ended);
* audio: frames received in the window over the expected 100 per second per
  room, and frames dropped (lkrtc-trio: ``AudioStream.dropped_frames``, its
  bounded buffer drops the oldest frame when the reader falls behind; the
  official SDK's default stream queue is unbounded and never drops, so its
  figure is the shortfall, expected - received, when positive);
* join time: the wall time the measured process spent joining its R rooms
  (summed over the stages; informational).

A room that fails to join, or is lost, is reported (rows "rooms joined"), not
hidden; a stage with no completed call fails the round.

Rounds: 3 (``SCENARIO_ROUNDS``), not ``ROUNDS`` (5): one round of both
variants takes about 2 minutes per contender on 2 cores (measured: about 75 s
for the RPC stages, joining 100 rooms from each of two processes, and 36 s
for the audio stages; 7 warm-ups and windows of 12 s), so about 4 minutes per
round of both contenders; 5 rounds would take about 20 minutes, over the
15-minute budget of this scenario; 3 take 12 to 15. Interleaved as elsewhere: round r of
lkrtc-trio, round r of the official SDK, for the RPC variant then the audio
variant, then round r + 1. Each round runs in fresh processes and fresh rooms
and ends with both processes leaving every room and exiting (exit status 0
required).

Where the machine caps R: the server, the peer and the measured process share
2 cores. The rows "machine CPU busy", "peer process CPU" and "RPC calls/s per
room" show where a stage ran out of CPU (docs/performance.md lists them), and
"loop lag p99" (how late a task sleeping 20 ms wakes up) separates time spent
on the measured process's event loop from time spent elsewhere (the native
core's threads, the peer, the server, waiting for a core). 50 rooms x 5
calls/s means 250 RPCs and 250 data packets a second through each of the two
client processes and the server, each room with its own peer connection and
data channels in the native core, so from R = 50 the machine is mostly busy
and latency is mostly CPU contention; docs/performance.md has the figures of
the last run.

``BENCH_MANY_ROOMS_QUICK=1`` (for development): 1 round, R = 1, 10 and audio
R = 1, 2, shorter windows.

Child mode: ``python -m bench.many_rooms child {peer|lkrtc|official} {rpc|audio}
URL PREFIX``; it reads ``grow N`` lines on stdin (join rooms PREFIX-0 ..
PREFIX-(N-1)) and answers with one JSON line each; it leaves every room and
exits when stdin closes. ``python -m bench.many_rooms`` runs the scenario
against a local server and prints the rows.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import resource
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from functools import partial
from typing import IO, Any

from bench._common import Row, retried, row

RPC_SCENARIO = "Many rooms per process: RPC 5/s per room + data back"
AUDIO_SCENARIO = "Many rooms per process: 48 kHz mono audio per room"

QUICK = os.environ.get("BENCH_MANY_ROOMS_QUICK") == "1"
#: rounds per contender (not ROUNDS = 5: see the module docstring)
SCENARIO_ROUNDS = 1 if QUICK else 3
RPC_STAGES: tuple[int, ...] = (1, 10) if QUICK else (1, 10, 50, 100)
AUDIO_STAGES: tuple[int, ...] = (1, 2) if QUICK else (1, 5, 10)
WARMUP = 2.0 if QUICK else 4.0  # seconds after the stage's joins, before the window
WINDOW = 4.0 if QUICK else 8.0  # seconds measured per stage
GRACE = 1.5  # seconds for the window's last data packets to arrive
RATE = 5.0  # RPC calls per second per room
RESPONSE_TIMEOUT = 10.0  # seconds, perform_rpc's response timeout
JOIN_PARALLEL = 10  # room joins at a time, per process
JOIN_TIMEOUT = 60.0  # seconds for one room's join
SEE_TIMEOUT = 30.0  # seconds to see the peer (and, for audio, its track) in a room
CHILD_BUDGET = 900.0  # seconds a child may live in all

MEAS, PEER = "meas", "peer"
METHOD, TOPIC = "ping", "mr"
SR = 48000
FRAME = SR // 100  # samples per 10 ms frame, mono


def process_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def machine_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of all cores, from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])
    return total - idle, total


class Meter:
    """Wall, loop-thread, process and machine CPU from creation to ``stop()``
    (call both on the loop thread)."""

    def __init__(self) -> None:
        self.wall, self.loop, self.proc = time.perf_counter(), time.thread_time(), process_cpu()
        self.ticks = machine_ticks()

    def stop(self) -> dict[str, float]:
        wall = time.perf_counter() - self.wall
        busy, total = machine_ticks()
        return {
            "window_s": wall,
            "loop_cpu": (time.thread_time() - self.loop) / wall,
            "process_cpu": (process_cpu() - self.proc) / wall,
            "machine_busy": (busy - self.ticks[0]) / max(1, total - self.ticks[1]),
        }


#: the loop-lag probe's sleep: how late each wake-up comes is the loop's lag
#: (50 wake-ups a second: about 0.01 CPU s/s of the loop thread, on both SDKs)
LAG_PROBE = 0.02


async def trio_lag_probe(lags: list[float]) -> None:
    """Sleeps ``LAG_PROBE`` over and over, appending how late each wake-up was
    (s): the time work on the loop thread keeps a ready task waiting."""
    import trio

    while True:
        t = time.perf_counter()
        await trio.sleep(LAG_PROBE)
        lags.append(time.perf_counter() - t - LAG_PROBE)


async def asyncio_lag_probe(lags: list[float]) -> None:
    """As :func:`trio_lag_probe`, on asyncio."""
    import asyncio

    while True:
        t = time.perf_counter()
        await asyncio.sleep(LAG_PROBE)
        lags.append(time.perf_counter() - t - LAG_PROBE)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-quantile (0..1) of ``values``, linear between closest ranks."""
    s = sorted(values)
    pos = (len(s) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


class RoomLog:
    """One room's RPC calls ([start, latency, seq, state]; state 0 in flight,
    1 ok, 2 failed) and the sequence numbers of the data packets received."""

    def __init__(self) -> None:
        self.calls: list[list[float]] = []
        self.got: set[int] = set()

    def start(self, seq: int) -> list[float]:
        call = [time.perf_counter(), 0.0, float(seq), 0.0]
        self.calls.append(call)
        return call

    @staticmethod
    def end(call: list[float], ok: bool) -> None:
        call[1] = time.perf_counter() - call[0]
        call[3] = 1.0 if ok else 2.0

    def on_data(self, payload: bytes) -> None:
        with contextlib.suppress(ValueError):
            self.got.add(int(payload))


def pending_before(logs: Sequence[RoomLog], t: float) -> bool:
    return any(c[3] == 0 and c[0] < t for log in logs for c in log.calls)


def rpc_stats(logs: Sequence[RoomLog], w0: float, w1: float) -> dict[str, float]:
    latencies: list[float] = []
    started = failed = ok = delivered = 0
    for log in logs:
        for start, latency, seq, state in log.calls:
            if not w0 <= start < w1:
                continue
            started += 1
            if state == 0:
                continue  # still in flight after the response timeout: not counted
            latencies.append(latency)
            if state == 2:
                failed += 1
                continue
            ok += 1
            delivered += int(seq) in log.got
    if not latencies:
        raise RuntimeError(f"no RPC call of the window finished ({len(logs)} rooms)")
    return {
        "calls": started,
        "failed": failed,
        "unfinished": started - len(latencies),
        "calls_per_room_s": started / max(1, len(logs)) / (w1 - w0),
        "p50_ms": percentile(latencies, 0.50) * 1e3,
        "p99_ms": percentile(latencies, 0.99) * 1e3,
        "max_ms": max(latencies) * 1e3,
        "data_expected": ok,
        "data_delivered": delivered,
        "delivered": delivered / ok if ok else 0.0,
    }


class AudioCount:
    """Frames a room's stream delivered (and, lkrtc-trio, dropped)."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.samples = 0

    def snapshot(self) -> tuple[float, int]:
        return self.samples / FRAME, int(getattr(self.stream, "dropped_frames", 0))


def audio_stats(
    counts: Sequence[AudioCount], before: Sequence[tuple[float, int]], seconds: float
) -> dict[str, float]:
    received = dropped = 0.0
    for c, (f0, d0) in zip(counts, before, strict=True):
        f1, d1 = c.snapshot()
        received += f1 - f0
        dropped += d1 - d0
    expected = 100 * seconds * len(counts)
    counts_drops = bool(counts) and hasattr(counts[0].stream, "dropped_frames")
    return {
        "frames_received": received,
        "frames_expected": expected,
        "received_fraction": received / expected if expected else 0.0,
        # lkrtc-trio: frames its bounded buffer dropped; the official SDK's
        # queue is unbounded (never drops): its shortfall instead
        "dropped": dropped if counts_drops else max(0.0, round(expected - received)),
    }


def tone_frames() -> list[bytes]:
    """One second of a 440 Hz mono tone, 100 frames of 10 ms (int16 LE)."""
    import array

    out = []
    for f in range(100):
        samples = array.array(
            "h",
            (
                int(0.3 * 32767 * math.sin(2 * math.pi * 440 * (f * FRAME + i) / SR))
                for i in range(FRAME)
            ),
        )
        out.append(samples.tobytes())
    return out


def stage_result(
    n: int, joined: int, lost: list[str], failures: list[str], join_s: float
) -> dict[str, Any]:
    return {
        "rooms": n,
        "joined": joined,
        "join_failures": failures[-5:],
        "lost": lost[-5:],
        "join_s": join_s,
    }


# -- lkrtc-trio: the peer and the measured process ------------------------------------


async def lkrtc_child(role: str, mode: str, url: str, prefix: str) -> None:
    """``role`` "peer" or "lkrtc" (measured); answers ``grow N`` lines."""
    import trio

    import lkrtc_trio as lk
    from lkrtc_trio.testing import mint_token

    opts = lk.RoomOptions(connect_timeout=JOIN_TIMEOUT)
    identity = PEER if role == "peer" else MEAS
    logs: list[RoomLog] = []
    counts: list[AudioCount] = []
    lost: list[str] = []
    failures: list[str] = []
    served = {"handled": 0, "publish_errors": 0}
    frames = tone_frames()

    async def serve_peer(room: Any) -> None:
        lp = room.local_participant

        async def ping(data: lk.RpcInvocationData) -> str:
            served["handled"] += 1
            try:
                await lp.publish_data(
                    data.payload.encode(),
                    reliable=True,
                    destination_identities=[MEAS],
                    topic=TOPIC,
                )
            except Exception:
                served["publish_errors"] += 1
            return data.payload

        lp.register_rpc_method(METHOD, ping)

    async def tone(src: Any) -> None:
        n = 0
        while True:
            await src.capture_frame(lk.AudioFrame(frames[n % 100], SR, 1, FRAME))
            n += 1

    async def rpc_loop(room: Any, log: RoomLog) -> None:
        perform = room.local_participant.perform_rpc
        period = 1 / RATE
        nxt = time.perf_counter() + random.uniform(0, period)
        seq = 0
        while True:
            now = time.perf_counter()
            if nxt > now:
                await trio.sleep(nxt - now)
            elif now - nxt > period:
                nxt = now  # overran: skip the missed slots
            call = log.start(seq)
            try:
                got = await perform(
                    destination_identity=PEER,
                    method=METHOD,
                    payload=str(seq),
                    response_timeout=RESPONSE_TIMEOUT,
                )
                log.end(call, got == str(seq))
            except lk.RpcError:
                log.end(call, False)
            seq += 1
            nxt += period

    async def data_loop(room: Any, log: RoomLog, *, task_status: Any) -> None:
        with room.events(max_buffer=10_000) as events:
            task_status.started()
            async for e in events:
                if isinstance(e, lk.DataReceived) and e.topic == TOPIC:
                    log.on_data(e.payload)

    async def consume(stream: Any, count: AudioCount) -> None:
        async for frame in stream:
            count.samples += frame.samples_per_channel

    async def audio_track(room: Any) -> Any:
        with trio.fail_after(SEE_TIMEOUT):
            while True:
                p = room.remote_participants.get(PEER)
                for pub in [] if p is None else p.track_publications.values():
                    if pub.track is not None:
                        return pub.track
                await trio.sleep(0.05)

    async def hold(i: int, *, task_status: Any) -> None:
        started = False
        try:
            async with contextlib.AsyncExitStack() as stack:
                room = await stack.enter_async_context(
                    lk.open_room(url, mint_token(identity, f"{prefix}-{i}"), options=opts)
                )
                inner = await stack.enter_async_context(trio.open_nursery())
                if role == "peer":
                    if mode == "rpc":
                        await serve_peer(room)
                    else:
                        src = await stack.enter_async_context(lk.AudioSource(SR, 1))
                        track = lk.LocalAudioTrack.create_audio_track("tone", src)
                        await room.local_participant.publish_track(track)
                        inner.start_soon(tone, src)
                else:
                    if mode == "rpc":
                        with trio.fail_after(SEE_TIMEOUT):
                            await room.wait_for_participant(PEER)
                        log = RoomLog()
                        await inner.start(data_loop, room, log)
                        inner.start_soon(rpc_loop, room, log)
                        logs.append(log)
                    else:
                        stream = lk.AudioStream(await audio_track(room), sample_rate=SR)
                        stack.callback(stream.close)
                        count = AudioCount(stream)
                        inner.start_soon(consume, stream, count)
                        counts.append(count)
                task_status.started()
                started = True
                await trio.sleep_forever()
        except Exception as exc:
            if not started:
                raise
            lost.append(f"room {i}: {exc!r}"[:300])

    async with trio.open_nursery() as nursery:

        async def join(i: int, limiter: trio.CapacityLimiter) -> None:
            async with limiter:
                try:
                    with trio.fail_after(JOIN_TIMEOUT + SEE_TIMEOUT):
                        await nursery.start(hold, i)
                except Exception as exc:
                    failures.append(f"room {i}: {exc!r}"[:300])

        current = 0
        join_total = 0.0
        with trio.fail_after(CHILD_BUDGET):
            while True:
                line = await trio.to_thread.run_sync(sys.stdin.readline, abandon_on_cancel=True)
                if not line.strip():
                    break
                if line.split()[0] == "stat":
                    stat = {"t": time.perf_counter(), "cpu": process_cpu(), **served}
                    print(json.dumps(stat), flush=True)
                    continue
                n = int(line.split()[1])
                t0 = time.perf_counter()
                limiter = trio.CapacityLimiter(JOIN_PARALLEL)
                async with trio.open_nursery() as joins:
                    for i in range(current, n):
                        joins.start_soon(join, i, limiter)
                join_total += time.perf_counter() - t0
                current = n
                res = stage_result(n, n - len(failures), lost, failures, join_total)
                if role == "lkrtc":
                    await trio.sleep(WARMUP)
                    if mode == "rpc":
                        meter = Meter()
                        w0 = time.perf_counter()
                        lags: list[float] = []
                        async with trio.open_nursery() as probe:
                            probe.start_soon(trio_lag_probe, lags)
                            await trio.sleep(WINDOW)
                            probe.cancel_scope.cancel()
                        w1 = time.perf_counter()
                        res.update(meter.stop())
                        res["loop_lag_p99_ms"] = percentile(lags, 0.99) * 1000
                        for _ in range(int((RESPONSE_TIMEOUT + 2) / 0.1)):
                            if not pending_before(logs, w1):
                                break
                            await trio.sleep(0.1)
                        await trio.sleep(GRACE)
                        res.update(rpc_stats(logs, w0, w1))
                    else:
                        before = [c.snapshot() for c in counts]
                        meter = Meter()
                        await trio.sleep(WINDOW)
                        res.update(meter.stop())
                        res.update(audio_stats(counts, before, res["window_s"]))
                print(json.dumps(res), flush=True)
        nursery.cancel_scope.cancel()
    if role == "peer":
        print(json.dumps({"bye": True, **served}), flush=True)


# -- official SDK: the measured process ------------------------------------------------


async def official_child(mode: str, url: str, prefix: str) -> None:
    import asyncio

    from livekit import rtc

    from lkrtc_trio.testing import mint_token

    loop = asyncio.get_running_loop()
    rooms: list[Any] = []
    streams: list[Any] = []
    tasks: set[asyncio.Task[None]] = set()
    logs: list[RoomLog] = []
    counts: list[AudioCount] = []
    failures: list[str] = []
    lost: list[str] = []

    async def rpc_loop(room: Any, log: RoomLog) -> None:
        perform = room.local_participant.perform_rpc
        period = 1 / RATE
        nxt = time.perf_counter() + random.uniform(0, period)
        seq = 0
        while True:
            now = time.perf_counter()
            if nxt > now:
                await asyncio.sleep(nxt - now)
            elif now - nxt > period:
                nxt = now  # overran: skip the missed slots
            call = log.start(seq)
            try:
                got = await perform(
                    destination_identity=PEER,
                    method=METHOD,
                    payload=str(seq),
                    response_timeout=RESPONSE_TIMEOUT,
                )
                log.end(call, got == str(seq))
            except rtc.RpcError:
                log.end(call, False)
            seq += 1
            nxt += period

    async def consume(stream: Any, count: AudioCount) -> None:
        async for ev in stream:
            count.samples += ev.frame.samples_per_channel

    def spawn(coro: Any, what: str) -> None:
        task = loop.create_task(coro)
        tasks.add(task)

        def done(t: asyncio.Task[None]) -> None:
            tasks.discard(t)
            if not t.cancelled() and t.exception() is not None:
                lost.append(f"{what}: {t.exception()!r}"[:300])

        task.add_done_callback(done)

    async def see(room: Any) -> Any:
        """Waits for the peer (rpc) or its subscribed track (audio)."""
        for _ in range(int(SEE_TIMEOUT / 0.05)):
            p = room.remote_participants.get(PEER)
            if p is not None and mode == "rpc":
                return p
            for pub in [] if p is None else p.track_publications.values():
                if pub.track is not None:
                    return pub.track
            await asyncio.sleep(0.05)
        raise TimeoutError(f"no {PEER} {'participant' if mode == 'rpc' else 'track'}")

    async def join(i: int, sem: asyncio.Semaphore) -> None:
        async with sem:
            room = rtc.Room()
            rooms.append(room)
            log = RoomLog()
            if mode == "rpc":

                def on_data(pkt: Any) -> None:
                    if pkt.topic == TOPIC:
                        log.on_data(pkt.data)

                room.on("data_received", on_data)
            try:
                await asyncio.wait_for(
                    room.connect(
                        url,
                        mint_token(MEAS, f"{prefix}-{i}"),
                        rtc.RoomOptions(connect_timeout=JOIN_TIMEOUT),
                    ),
                    JOIN_TIMEOUT + 5,
                )
            except Exception as exc:
                failures.append(f"room {i}: {exc!r}"[:300])
                return
            try:
                seen = await see(room)
            except Exception as exc:
                failures.append(f"room {i}: {exc!r}"[:300])
                return
            if mode == "rpc":
                logs.append(log)
                spawn(rpc_loop(room, log), f"room {i} rpc")
            else:
                stream = rtc.AudioStream(seen, sample_rate=SR, num_channels=1)
                streams.append(stream)
                count = AudioCount(stream)
                counts.append(count)
                spawn(consume(stream, count), f"room {i} audio")

    async def stages() -> None:
        current = 0
        join_total = 0.0
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line.strip():
                return
            n = int(line.split()[1])
            t0 = time.perf_counter()
            sem = asyncio.Semaphore(JOIN_PARALLEL)
            await asyncio.gather(*(join(i, sem) for i in range(current, n)))
            join_total += time.perf_counter() - t0
            current = n
            res = stage_result(n, n - len(failures), lost, failures, join_total)
            await asyncio.sleep(WARMUP)
            if mode == "rpc":
                meter = Meter()
                w0 = time.perf_counter()
                lags: list[float] = []
                probe = asyncio.ensure_future(asyncio_lag_probe(lags))
                await asyncio.sleep(WINDOW)
                probe.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await probe
                w1 = time.perf_counter()
                res.update(meter.stop())
                res["loop_lag_p99_ms"] = percentile(lags, 0.99) * 1000
                for _ in range(int((RESPONSE_TIMEOUT + 2) / 0.1)):
                    if not pending_before(logs, w1):
                        break
                    await asyncio.sleep(0.1)
                await asyncio.sleep(GRACE)
                res.update(rpc_stats(logs, w0, w1))
            else:
                before = [c.snapshot() for c in counts]
                meter = Meter()
                await asyncio.sleep(WINDOW)
                res.update(meter.stop())
                res.update(audio_stats(counts, before, res["window_s"]))
            print(json.dumps(res), flush=True)

    try:
        await asyncio.wait_for(stages(), CHILD_BUDGET)
    finally:
        for t in list(tasks):
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.wait_for(
            asyncio.gather(
                *(s.aclose() for s in streams),
                *(r.disconnect() for r in rooms),
                return_exceptions=True,
            ),
            60,
        )


def child(role: str, mode: str, url: str, prefix: str) -> None:
    if role in ("peer", "lkrtc"):
        import trio

        trio.run(lkrtc_child, role, mode, url, prefix)
    elif role == "official":
        import asyncio

        asyncio.run(official_child(mode, url, prefix))
    else:
        raise SystemExit(f"unknown role {role!r}")


# -- parent ----------------------------------------------------------------------------


def _tail(f: IO[str]) -> str:
    f.seek(0)
    return f.read()[-3000:]


def _ask(proc: subprocess.Popen[str], line: str, timeout: float) -> dict[str, Any]:
    """Sends ``line`` to the child and returns its next JSON line (within
    ``timeout``); raises RuntimeError if none."""
    stdin, stdout = proc.stdin, proc.stdout
    assert stdin is not None and stdout is not None
    stdin.write(line + "\n")
    stdin.flush()
    box: list[dict[str, Any]] = []

    def read() -> None:
        for text in stdout:
            if text.startswith("{"):
                box.append(json.loads(text))
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout)
    if not box:
        raise RuntimeError(f"no answer to {line!r} within {timeout:.0f} s")
    return box[0]


def measure(url: str, contender: str, mode: str, stages: Sequence[int], tag: str) -> list[Any]:
    """One round: a peer process and a measured process (``contender``) grow
    through ``stages``; returns the measured process's stage results."""
    prefix = f"mr-{mode}-{contender}-{tag}-{uuid.uuid4().hex[:6]}"
    base = [sys.executable, "-m", "bench.many_rooms", "child"]
    with tempfile.TemporaryFile("w+") as peer_err, tempfile.TemporaryFile("w+") as meas_err:
        procs = {
            name: subprocess.Popen(
                [*base, role, mode, url, prefix],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
            )
            for name, role, err in (("peer", "peer", peer_err), ("meas", contender, meas_err))
        }
        peer, meas = procs["peer"], procs["meas"]
        results: list[Any] = []
        try:
            try:
                prev = 0
                for n in stages:
                    ack = _ask(peer, f"grow {n}", 60 + 1.5 * (n - prev))
                    if ack.get("joined") != n:
                        raise RuntimeError(f"the peer joined {ack.get('joined')} of {n} rooms")
                    s0 = _ask(peer, "stat", 10)
                    res = _ask(meas, f"grow {n}", 90 + 1.5 * (n - prev) + RESPONSE_TIMEOUT + 30)
                    s1 = _ask(peer, "stat", 10)
                    res["peer_cpu"] = (s1["cpu"] - s0["cpu"]) / (s1["t"] - s0["t"])
                    results.append(res)
                    print(f"   {contender} {mode} R={n}: {_brief(res)}", flush=True)
                    prev = n
            except Exception as exc:
                raise RuntimeError(
                    f"many_rooms {contender} {mode}: {exc}\n--- measured stderr:\n"
                    f"{_tail(meas_err)}\n--- peer stderr:\n{_tail(peer_err)}"
                ) from exc
            for name in ("meas", "peer"):
                proc = procs[name]
                assert proc.stdin is not None
                proc.stdin.close()
                proc.wait(timeout=90)
                if proc.returncode != 0:
                    err = meas_err if name == "meas" else peer_err
                    raise RuntimeError(
                        f"many_rooms {contender} {mode}: {name} exited with "
                        f"{proc.returncode}:\n{_tail(err)}"
                    )
        finally:
            for proc in procs.values():
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
    return results


def _brief(res: dict[str, Any]) -> str:
    keys = (
        "joined",
        "join_s",
        "loop_cpu",
        "loop_lag_p99_ms",
        "process_cpu",
        "machine_busy",
        "peer_cpu",
        "p50_ms",
        "p99_ms",
        "calls_per_room_s",
        "delivered",
        "received_fraction",
        "dropped",
    )
    return " ".join(f"{k}={res[k]:.3g}" for k in keys if k in res)


#: (metric, key in a stage result, better) per variant
RPC_METRICS = [
    ("loop-thread CPU s per s", "loop_cpu", "lower"),
    ("RPC p50 ms", "p50_ms", "lower"),
    ("RPC p99 ms", "p99_ms", "lower"),
    ("loop lag p99 ms", "loop_lag_p99_ms", "lower"),
    ("RPC calls/s per room", "calls_per_room_s", "higher"),
    ("data delivered fraction", "delivered", "higher"),
    ("rooms joined", "joined", "higher"),
    ("join s, all R rooms", "join_s", "lower"),
    ("process CPU s per s", "process_cpu", "lower"),
    ("peer process CPU s per s", "peer_cpu", "lower"),
    ("machine CPU busy fraction", "machine_busy", "lower"),
]
AUDIO_METRICS = [
    ("loop-thread CPU s per s", "loop_cpu", "lower"),
    ("frames received / expected", "received_fraction", "higher"),
    ("frames dropped", "dropped", "lower"),
    ("rooms joined", "joined", "higher"),
    ("join s, all R rooms", "join_s", "lower"),
    ("process CPU s per s", "process_cpu", "lower"),
    ("peer process CPU s per s", "peer_cpu", "lower"),
    ("machine CPU busy fraction", "machine_busy", "lower"),
]
VARIANTS = [
    ("rpc", RPC_SCENARIO, RPC_STAGES, RPC_METRICS),
    ("audio", AUDIO_SCENARIO, AUDIO_STAGES, AUDIO_METRICS),
]


def run(url: str, rounds: int = SCENARIO_ROUNDS) -> list[Row]:
    """``rounds`` interleaved rounds: per round, each variant, lkrtc-trio then
    official (fresh processes and rooms); one sample per row per round."""
    tag = uuid.uuid4().hex[:6]
    contenders = ("lkrtc", "official")
    got: dict[tuple[str, str], list[list[Any]]] = {}
    for i in range(rounds):
        for mode, _scenario, stages, _metrics in VARIANTS:
            for contender in contenders:
                got.setdefault((mode, contender), []).append(
                    retried(
                        f"many_rooms {mode} {contender} round {i}",
                        partial(measure, url, contender, mode, stages, f"{tag}{i}"),
                    )
                )
    rows = []
    for mode, scenario, stages, metrics in VARIANTS:
        for k, n in enumerate(stages):
            for metric, key, better in metrics:
                for contender in contenders:
                    samples = [float(r[k][key]) for r in got[mode, contender]]
                    rows.append(row(scenario, f"R={n}", contender, metric, better, samples))
    return rows


def main() -> None:
    from lkrtc_trio.testing import LocalServer, install_server

    with LocalServer(binary=install_server()) as info:
        rows = run(info.url, rounds=1)
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "child":
        child(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5])
    else:
        main()
