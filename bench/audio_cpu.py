"""CPU seconds per second of 48 kHz stereo audio, published and received.

``python -m bench.audio_cpu [SECONDS]`` starts a local server and, for each
contender (lkrtc-trio, official asyncio SDK), runs a publisher process and a
subscriber process. Each child measures its own process CPU time (user +
system, native threads included) over the streaming window only and reports
``cpu_s / audio_s``. Prints one JSON object.

Child mode: ``python -m bench.audio_cpu child {lkrtc|official} {pub|sub} URL
ROOM SECONDS``. ``run(url)`` (``python -m bench``): 5 interleaved rounds per
contender, 8 s of audio measured in each.
"""

from __future__ import annotations

import json
import math
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from functools import partial
from typing import Any

from bench._common import ROUNDS, Row, retried, row

RATE, CHANNELS = 48000, 2
FRAME = RATE // 100


def cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def tone_bytes() -> list[bytes]:
    """One second of a 440 Hz stereo tone as 100 frames of 10 ms (int16 LE)."""
    import array

    frames = []
    for f in range(100):
        samples = array.array("h")
        for i in range(FRAME):
            v = int(0.5 * 32767 * math.sin(2 * math.pi * 440 * (f * FRAME + i) / RATE))
            samples.extend((v, v))
        frames.append(samples.tobytes())
    return frames


async def lkrtc_pub(url: str, room: str, seconds: float) -> dict[str, float]:
    import lkrtc_trio as lk
    from lkrtc_trio.testing import mint_token

    frames = tone_bytes()
    async with (
        lk.open_room(url, mint_token("pub", room)) as r,
        lk.AudioSource(RATE, CHANNELS) as src,
    ):
        track = lk.LocalAudioTrack.create_audio_track("tone", src)
        await r.local_participant.publish_track(track)
        t0, c0 = time.monotonic(), cpu()
        n = 0
        while n < seconds * 100:
            await src.capture_frame(lk.AudioFrame(frames[n % 100], RATE, CHANNELS, FRAME))
            n += 1
        audio, used, wall = n / 100, cpu() - c0, time.monotonic() - t0
        track.close()
    return {"audio_s": audio, "cpu_s": used, "wall_s": wall}


async def lkrtc_sub(url: str, room: str, seconds: float) -> dict[str, float]:
    import trio

    import lkrtc_trio as lk
    from lkrtc_trio.testing import mint_token

    async with lk.open_room(url, mint_token("sub", room)) as r:
        with r.events() as events:
            async for e in events:
                if isinstance(e, lk.TrackSubscribed):
                    track = e.track
                    break
        stream = lk.AudioStream(track, sample_rate=RATE, num_channels=CHANNELS, capacity=1000)
        samples = 0
        await stream.receive()
        t0, c0 = time.monotonic(), cpu()
        with trio.move_on_after(seconds + 5):
            async for frame in stream:
                samples += frame.samples_per_channel
                if samples >= seconds * RATE:
                    break
        audio, used, wall = samples / RATE, cpu() - c0, time.monotonic() - t0
        stream.close()
    return {"audio_s": audio, "cpu_s": used, "wall_s": wall}


async def official_pub(url: str, room: str, seconds: float) -> dict[str, float]:
    from livekit import rtc

    from lkrtc_trio.testing import mint_token

    frames = tone_bytes()
    r = rtc.Room()
    await r.connect(url, mint_token("pub", room))
    src = rtc.AudioSource(RATE, CHANNELS)
    track = rtc.LocalAudioTrack.create_audio_track("tone", src)
    await r.local_participant.publish_track(track)
    t0, c0 = time.monotonic(), cpu()
    n = 0
    while n < seconds * 100:
        await src.capture_frame(rtc.AudioFrame(frames[n % 100], RATE, CHANNELS, FRAME))
        n += 1
    audio, used, wall = n / 100, cpu() - c0, time.monotonic() - t0
    await r.disconnect()
    return {"audio_s": audio, "cpu_s": used, "wall_s": wall}


async def official_sub(url: str, room: str, seconds: float) -> dict[str, float]:
    import asyncio

    from livekit import rtc

    from lkrtc_trio.testing import mint_token

    r = rtc.Room()
    got: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    @r.on("track_subscribed")
    def _on(track: Any, *_: Any) -> None:
        if not got.done():
            got.set_result(track)

    await r.connect(url, mint_token("sub", room))
    track = await got
    stream = rtc.AudioStream(track, sample_rate=RATE, num_channels=CHANNELS)
    samples = 0
    it = stream.__aiter__()
    await it.__anext__()
    t0, c0 = time.monotonic(), cpu()
    while samples < seconds * RATE:
        ev = await asyncio.wait_for(it.__anext__(), timeout=5)
        samples += ev.frame.samples_per_channel
    audio, used, wall = samples / RATE, cpu() - c0, time.monotonic() - t0
    await stream.aclose()
    await r.disconnect()
    return {"audio_s": audio, "cpu_s": used, "wall_s": wall}


def child(contender: str, role: str, url: str, room: str, seconds: float) -> None:
    if contender == "lkrtc":
        import trio

        fn = lkrtc_pub if role == "pub" else lkrtc_sub
        out = trio.run(fn, url, room, seconds)
    else:
        import asyncio

        fn = official_pub if role == "pub" else official_sub
        out = asyncio.run(fn(url, room, seconds))
    print(json.dumps(out), flush=True)


def measure(url: str, contender: str, seconds: float, tag: str) -> dict[str, Any]:
    """One round: a subscriber and a publisher process of ``contender``.

    Raises:
        RuntimeError: a child failed or exited abnormally, even after printing
            its result (a native crash at exit counts: it is reported).
    """
    room = f"cpu-{contender}-{tag}-{uuid.uuid4().hex[:8]}"
    args = [sys.executable, "-m", "bench.audio_cpu", "child", contender]
    with tempfile.TemporaryFile("w+") as sub_err, tempfile.TemporaryFile("w+") as pub_err:
        sub = subprocess.Popen(
            [*args, "sub", url, room, str(seconds)],
            stdout=subprocess.PIPE,
            stderr=sub_err,
            text=True,
        )
        time.sleep(1.0)
        # the publisher sends 4 s more than the subscriber measures (subscribing takes a moment)
        pub = subprocess.Popen(
            [*args, "pub", url, room, str(seconds + 4)],
            stdout=subprocess.PIPE,
            stderr=pub_err,
            text=True,
        )
        outs: dict[str, str] = {}
        try:
            outs["receive"] = sub.communicate(timeout=seconds + 60)[0]
            outs["publish"] = pub.communicate(timeout=seconds + 60)[0]
        finally:
            for proc in (sub, pub):
                if proc.poll() is None:
                    proc.kill()
                    proc.communicate()
        res: dict[str, Any] = {}
        for role, proc, err in (("publish", pub, pub_err), ("receive", sub, sub_err)):
            lines = [ln for ln in outs.get(role, "").splitlines() if ln.startswith("{")]
            if proc.returncode != 0 or not lines:
                err.seek(0)
                raise RuntimeError(
                    f"audio_cpu {contender} {role} failed ({proc.returncode}), room {room}:\n"
                    f"{err.read()[-3000:]}"
                )
            data = json.loads(lines[-1])
            res[role] = {**data, "cpu_per_audio_s": data["cpu_s"] / data["audio_s"]}
    return res


def run(url: str, seconds: float = 8.0, rounds: int = ROUNDS) -> list[Row]:
    """Publisher and subscriber processes per contender, interleaved rounds."""
    samples: dict[tuple[str, str], list[float]] = {}
    for i in range(rounds):
        for contender in ("lkrtc", "official"):
            res = retried(
                f"audio_cpu {contender} round {i}",
                partial(measure, url, contender, seconds, str(i)),
            )
            for role in ("publish", "receive"):
                samples.setdefault((role, contender), []).append(res[role]["cpu_per_audio_s"])
    return [
        row("Audio 48 kHz stereo", role, contender, "CPU s per audio s", "lower", s)
        for (role, contender), s in samples.items()
    ]


def main() -> None:
    from lkrtc_trio.testing import LocalServer, install_server

    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 10.0
    results: dict[str, Any] = {"seconds": seconds, "rate": RATE, "channels": CHANNELS}
    with LocalServer(binary=install_server()) as info:
        for i, contender in enumerate(["lkrtc", "official", "lkrtc", "official"]):
            res = measure(info.url, contender, seconds, str(i))
            results.setdefault(contender, []).append(res)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "child":
        child(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], float(sys.argv[6]))
    else:
        main()
