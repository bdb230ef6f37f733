"""Fault injection, run in a subprocess: buffers handed to the native core must
survive cancellation, an exception leaving the room, and the garbage collector.

Each round opens a publisher and a subscriber room, publishes two audio tones
and a video track, and runs capture loops (audio, video) and a ``publish_data``
loop whose payloads are memoryviews (of bytearrays, sliced and cast), then
raises inside the ``async with`` block so every loop is cancelled mid-call.
Between rounds the exception's traceback stays alive in a reference cycle and
``gc.collect()`` runs; then the next round opens new rooms. Before the fix this
sequence ended in a segmentation fault (CPython 3.10-3.12: the collector cleared
a memoryview that cffi still held an export on).

Prints one JSON line at the end; exit 0 on success.

Usage: python buffer_gc.py URL ROOM ROUNDS [BACKEND]   (BACKEND: trio | asyncio)
"""

from __future__ import annotations

import gc
import json
import math
import sys
from typing import Any

import anyio

import lkrtc_trio as lk
from lkrtc_trio._runtime import get_runtime, live_native_handles, pending_requests
from lkrtc_trio.testing import mint_token

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup


class Boom(Exception):
    pass


async def play(source: lk.AudioSource, hz: int, counts: dict[str, int]) -> None:
    n, i = 480, 0
    while True:
        frame = lk.AudioFrame.create(48000, 1, n)
        mv = memoryview(frame.data).cast("B").cast("h")
        for k in range(n):
            mv[k] = int(8000 * math.sin(2 * math.pi * hz * (i * n + k) / 48000))
        await source.capture_frame(frame)
        counts["audio"] += 1
        i += 1


async def film(source: lk.VideoSource, counts: dict[str, int]) -> None:
    i = 0
    while True:
        frame = lk.VideoFrame.create(64, 48, lk.VideoBufferType.RGBA)
        view = memoryview(frame.data)
        view[0 : len(view) : 4] = bytes([i % 256]) * (len(view) // 4)
        source.capture_frame(frame)
        if i % 10 == 0:
            frame.convert(lk.VideoBufferType.I420)  # a synchronous loan
        counts["video"] += 1
        i += 1
        await anyio.sleep(0.01)


async def send(lp: lk.LocalParticipant, counts: dict[str, int]) -> None:
    i = 0
    while True:
        raw = bytearray(b"%08d" % i * 128)
        # a slice of a cast of a view: the shapes users hand over
        payload = memoryview(raw).cast("B")[8:]
        await lp.publish_data(payload, reliable=True, topic="gc")
        counts["data"] += 1
        i += 1


async def one_round(url: str, room: str, n: int, counts: dict[str, int]) -> BaseException:
    owned: list[Any] = []  # sources and tracks: the caller's to close
    try:
        async with (
            lk.open_room(url, mint_token(f"pub-{n}", room)) as a,
            lk.open_room(
                url,
                mint_token(f"sub-{n}", room),
                options=lk.RoomOptions(auto_subscribe=False),
            ),
            anyio.create_task_group() as tg,
        ):
            lp = a.local_participant
            for name, hz in (("low", 440), ("high", 660)):
                audio = lk.AudioSource(48000, 1)
                track = lk.LocalAudioTrack.create_audio_track(name, audio)
                owned += [audio, track]
                await lp.publish_track(track)
                tg.start_soon(play, audio, hz, counts)
            video = lk.VideoSource(64, 48)
            vtrack = lk.LocalVideoTrack.create_video_track("cam", video)
            owned += [video, vtrack]
            await lp.publish_track(vtrack)
            tg.start_soon(film, video, counts)
            tg.start_soon(send, lp, counts)
            await anyio.sleep(0.6)
            raise Boom(f"round {n}")
    except BaseException as exc:
        if not isinstance(exc, Boom) and not (
            isinstance(exc, BaseExceptionGroup) and exc.subgroup(Boom) is not None
        ):
            raise
        return exc
    finally:
        for thing in owned:
            thing.close()
    raise AssertionError("the room block did not raise")


async def main(url: str, room: str, rounds: int) -> dict[str, Any]:
    counts = {"audio": 0, "video": 0, "data": 0}
    kept: list[Any] = []
    for n in range(rounds):
        exc = await one_round(f"{url}", f"{room}-{n % 3}", n, counts)
        # Keep the traceback (and every frame it holds: captures in flight,
        # their closures, payload views) in a reference cycle for the
        # collector to find, the way a logged or re-raised error would.
        cycle: list[Any] = [exc, exc.__traceback__]
        cycle.append(cycle)
        kept.append(cycle)
        del exc, cycle
        if n % 2:
            kept.clear()
        gc.collect()
    kept.clear()
    gc.collect()
    with anyio.move_on_after(10):
        while live_native_handles() or pending_requests():
            await anyio.sleep(0.05)
    leftover = {"handles": get_runtime().live_handles(), "pending": pending_requests()}
    # a final room still works after all of it
    async with lk.open_room(url, mint_token("last", room)) as last:
        await last.local_participant.publish_data(memoryview(b"still alive"))
    gc.collect()
    return {
        "rounds": rounds,
        "counts": counts,
        "leftover": leftover,
        "handles": live_native_handles(),
        "pending": pending_requests(),
        "pinned": get_runtime().dispatcher.pinned(),
        "alive": True,
    }


if __name__ == "__main__":
    backend = sys.argv[4] if len(sys.argv) > 4 else "trio"
    result = anyio.run(main, sys.argv[1], sys.argv[2], int(sys.argv[3]), backend=backend)
    print(json.dumps(result), flush=True)
