"""Soak: mixed traffic for DURATION seconds, run in a subprocess with a server
of its own (``make soak``: 30 minutes; ``tests/test_soak.py``: 2 minutes).

Two pairs of participants, each pair in a room of its own. In each pair the
first publishes a 440 Hz tone and sends numbered reliable data (20 per
second); the second reads the tone through an ``AudioStream`` and calls the
first over RPC (5 per second). Every INTERVAL seconds one participant, in
turn, gets a ``simulate_scenario`` (a resume, then a full reconnect, then a
node failure, ...). The process's RSS is sampled every 5 s.

Prints one JSON object: RSS samples and growth after warm-up (the first fifth
of the run, at least 30 s), handles and pending requests at the end, data
sent/received/lost (and lost outside ``ReliableDataMayBeLost`` ranges), RPC
outcomes, audio frames read, and the events each participant saw.

Usage (from the repository root):
    python -m tests.faults.soak DURATION INTERVAL BACKEND [--check]
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time
from array import array
from collections import Counter
from typing import Any

import anyio

import lkrtc_trio as lk
from lkrtc_trio._runtime import live_native_handles, pending_requests
from lkrtc_trio.testing import LocalServer, mint_token

RATE = 48000
TONE = memoryview(
    array("h", (int(8000 * math.sin(2 * math.pi * 440 * i / RATE)) for i in range(RATE)))
)
SCENARIOS = [
    lk.SimulateScenario.SIMULATE_SIGNAL_RECONNECT,
    lk.SimulateScenario.SIMULATE_FULL_RECONNECT,
    lk.SimulateScenario.SIMULATE_NODE_FAILURE,
    lk.SimulateScenario.SIMULATE_MIGRATION,
]


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


class Pair:
    """One pair's bookkeeping, preallocated for the whole run so that the
    soak's own memory does not grow (what RSS measures is the library)."""

    def __init__(self, name: str, duration: float) -> None:
        self.name = name
        capacity = int(duration * 25) + 1000  # sends are 20 per second
        self.seqs = array("q", bytes(8 * capacity))  # payload -> sequence (0: failed)
        self.got = bytearray(capacity)  # payload -> received
        self.sent = 0
        self.send_errors: Counter[str] = Counter()
        self.received = self.duplicates = 0
        self.last = -1
        self.in_order = True
        self.reports: list[dict[str, Any]] = []
        self.rpc: Counter[str] = Counter()
        self.frames = 0
        self.events: list[tuple[float, str, str]] = []

    def arrived(self, i: int) -> None:
        self.received += 1
        if self.got[i]:
            self.duplicates += 1
        self.got[i] = 1
        self.in_order = self.in_order and i > self.last
        self.last = i


async def run_pair(pair: Pair, url: str, stop: anyio.Event, t0: float, rooms: list[Any]) -> None:
    a_id, b_id = f"{pair.name}-talker", f"{pair.name}-listener"
    opts = lk.RoomOptions(reconnect_timeout=30)
    async with (
        lk.open_room(url, mint_token(a_id, pair.name), options=opts) as a,
        lk.open_room(url, mint_token(b_id, pair.name), options=opts) as b,
        anyio.create_task_group() as tg,
    ):
        rooms.extend([a, b])

        @a.local_participant.register_rpc_method("echo")
        async def echo(data: lk.RpcInvocationData) -> str:
            return data.payload

        async def watch(who: str, room: lk.Room) -> None:
            async for e in room.events(max_buffer=100_000):
                if isinstance(e, lk.DataReceived):
                    pair.arrived(int(e.payload))
                elif isinstance(e, lk.ReliableDataMayBeLost):
                    pair.reports.append(dataclasses.asdict(e))
                elif isinstance(e, (lk.Reconnecting, lk.Reconnected, lk.Disconnected)):
                    pair.events.append((round(time.monotonic() - t0, 2), who, type(e).__name__))
                elif isinstance(e, lk.TrackSubscribed) and who == "listener":
                    tg.start_soon(listen, e.track)

        async def listen(track: Any) -> None:
            async with lk.AudioStream(track, sample_rate=RATE, num_channels=1) as stream:
                async for _ in stream:
                    pair.frames += 1

        async def talk() -> None:
            source = lk.AudioSource(RATE, 1)
            track = lk.LocalAudioTrack.create_audio_track("tone", source)
            try:
                options = lk.TrackPublishOptions(source=lk.TrackSource.SOURCE_MICROPHONE)
                await a.local_participant.publish_track(track, options)
                n = 0
                while True:
                    frame = lk.AudioFrame.create(RATE, 1, RATE // 100)
                    frame.data[:] = TONE[n : n + RATE // 100]
                    n = (n + RATE // 100) % RATE
                    await source.capture_frame(frame)
            finally:
                source.clear_queue()
                track.close()
                source.close()

        async def send() -> None:
            i = 0
            while not stop.is_set():
                try:
                    seq = await a.local_participant.publish_data(b"%d" % i)
                    pair.seqs[i] = seq or 0
                except lk.LiveKitError as exc:
                    pair.send_errors[type(exc).__name__] += 1
                i += 1
                pair.sent = i
                await anyio.sleep(0.05)

        async def call() -> None:
            while not stop.is_set():
                try:
                    await b.local_participant.perform_rpc(
                        destination_identity=a_id, method="echo", payload="x"
                    )
                    pair.rpc["ok"] += 1
                except lk.RpcError as exc:
                    pair.rpc[f"RpcError({exc.code})"] += 1
                except lk.LiveKitError as exc:
                    pair.rpc[type(exc).__name__] += 1
                await anyio.sleep(0.2)

        tg.start_soon(watch, "talker", a)
        tg.start_soon(watch, "listener", b)
        with anyio.fail_after(15):
            await b.wait_for_participant(a_id)
            await a.wait_for_participant(b_id)
        tg.start_soon(talk)
        async with anyio.create_task_group() as traffic:
            traffic.start_soon(send)
            traffic.start_soon(call)
        await anyio.sleep(5)  # stragglers
        tg.cancel_scope.cancel()


async def main(duration: float, interval: float, url: str) -> dict[str, Any]:
    t0 = time.monotonic()
    stop = anyio.Event()
    pairs = [Pair("soak-a", duration), Pair("soak-b", duration)]
    rooms: list[Any] = []
    samples: list[tuple[float, float]] = []
    faults: list[tuple[float, str, str]] = []

    async def sample() -> None:
        while True:
            samples.append((round(time.monotonic() - t0, 1), round(rss_mib(), 2)))
            await anyio.sleep(5)

    async def inject() -> None:
        k = 0
        while True:
            await anyio.sleep(interval)
            live = [r for r in rooms if r.isconnected()]
            if not live:
                continue
            room = live[k % len(live)]
            kind = SCENARIOS[k % len(SCENARIOS)]
            faults.append(
                (round(time.monotonic() - t0, 1), room.local_participant.identity, kind.name)
            )
            try:
                await room.simulate_scenario(kind)
            except lk.LiveKitError as exc:
                faults.append((round(time.monotonic() - t0, 1), "error", repr(exc)))
            k += 1

    async with anyio.create_task_group() as tg:
        tg.start_soon(sample)
        tg.start_soon(inject)
        async with anyio.create_task_group() as run:
            for pair in pairs:
                run.start_soon(run_pair, pair, url, stop, t0, rooms)
            await anyio.sleep(duration)
            stop.set()
        tg.cancel_scope.cancel()
    with anyio.move_on_after(10):
        while pending_requests() or live_native_handles():
            await anyio.sleep(0.1)

    warm = max(30.0, duration / 5)
    base = [r for t, r in samples if t <= warm][-1]
    after = [r for t, r in samples if t > warm]
    out: dict[str, Any] = {
        "duration": round(time.monotonic() - t0, 1),
        "rss": samples,
        "rss_at_warm_up": base,
        "rss_growth_max": round(max(after, default=base) - base, 2),
        "rss_growth_end": round((after[-1] if after else base) - base, 2),
        "handles": live_native_handles(),
        "pending": pending_requests(),
        "faults": faults,
        "pairs": {},
    }
    for p in pairs:
        lost = [i for i in range(p.sent) if not p.got[i]]
        silent = [
            i
            for i in lost
            if p.seqs[i]  # its call succeeded
            and not any(r["first_sequence"] <= p.seqs[i] <= r["last_sequence"] for r in p.reports)
        ]
        out["pairs"][p.name] = {
            "sent": p.sent,
            "received": p.received,
            "duplicates": p.duplicates,
            "in_order": p.in_order,
            "lost": len(lost),
            "lost_silently": len(silent),
            "lost_silently_first": silent[:20],
            "send_errors": dict(p.send_errors),
            "reports": len(p.reports),
            "rpc": dict(p.rpc),
            "audio_frames": p.frames,
            "events": p.events,
        }
    return out


if __name__ == "__main__":
    duration, interval, backend = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
    with LocalServer() as info:
        result = anyio.run(main, duration, interval, info.url, backend=backend)
    print(json.dumps(result))
    if "--check" in sys.argv:  # make soak: assert, and say so
        from tests.test_soak import check_soak

        check_soak(result, duration, interval)
        pairs = result["pairs"].values()
        print(
            f"soak {backend} {result['duration']} s: RSS {result['rss_at_warm_up']} MiB after "
            f"warm-up, growth max {result['rss_growth_max']} MiB, end "
            f"{result['rss_growth_end']} MiB; {len(result['faults'])} faults; data sent "
            f"{sum(p['sent'] for p in pairs)}, lost {sum(p['lost'] for p in pairs)} "
            f"(silently {sum(p['lost_silently'] for p in pairs)}); handles {result['handles']}, "
            f"pending {result['pending']}: OK",
            file=sys.stderr,
        )
