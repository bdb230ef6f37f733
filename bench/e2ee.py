"""CPU seconds per second of end-to-end encrypted 48 kHz stereo audio, published
and received, against the same audio in the clear, and against the official SDK
with the same shared key.

``python -m bench e2ee`` (inside ``python -m lkrtc_trio.testing.netns``) runs it
alone: for each round and each contender (lkrtc-trio, official asyncio SDK), a
plain pair and an encrypted pair (``RoomOptions.encryption`` with one shared
key, AES-GCM frames, PBKDF2), each pair a publisher process and a subscriber
process in a fresh room, as in ``bench/audio_cpu.py``. Each child measures its
own process CPU time (user + system, native threads included, so the frame
encryption and decryption too) over the streaming window only and reports
``cpu_s / audio_s``. The subscriber checks that what it received is the tone
(not the silence of frames it could not decrypt) and fails the round otherwise.

Rows: CPU per audio second for publish and receive, encrypted and plain (paired
lkrtc-trio vs official per round), and "encrypted / plain CPU", the overhead of
encryption within each contender, computed per round from that round's two
pairs.

Child mode: ``python -m bench.e2ee child {lkrtc|official} {pub|sub}
{plain|e2ee} URL ROOM SECONDS``. ``run(url)``: ``ROUNDS`` interleaved rounds,
8 s of audio measured in each.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
import uuid
from functools import partial
from typing import Any

from bench._common import ROUNDS, Row, retried, row
from bench.audio_cpu import CHANNELS, FRAME, RATE, cpu, tone_bytes

KEY = b"bench shared key"
SCENARIO = "E2EE audio 48 kHz stereo"
#: the peak of the last frame a subscriber received must reach this (the tone's
#: peak is 0.5 of full scale; frames that fail to decrypt play as silence)
MIN_PEAK = 4000


def _peak(pcm: bytes) -> int:
    import array

    samples = array.array("h")
    samples.frombytes(pcm[: len(pcm) - len(pcm) % 2])
    return max((abs(v) for v in samples), default=0)


async def lkrtc_pub(url: str, room: str, seconds: float, mode: str) -> dict[str, float]:
    import lkrtc_trio as lk
    from lkrtc_trio.testing import mint_token

    options = lk.RoomOptions()
    if mode == "e2ee":
        provider = lk.KeyProviderOptions(shared_key=KEY)
        options = lk.RoomOptions(encryption=lk.E2EEOptions(key_provider_options=provider))
    frames = tone_bytes()
    async with (
        lk.open_room(url, mint_token("pub", room), options=options) as r,
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
        cryptors = len(r.e2ee_manager.frame_cryptors())
        track.close()
    return {"audio_s": audio, "cpu_s": used, "wall_s": wall, "cryptors": cryptors}


async def lkrtc_sub(url: str, room: str, seconds: float, mode: str) -> dict[str, float]:
    import trio

    import lkrtc_trio as lk
    from lkrtc_trio.testing import mint_token

    options = lk.RoomOptions()
    if mode == "e2ee":
        provider = lk.KeyProviderOptions(shared_key=KEY)
        options = lk.RoomOptions(encryption=lk.E2EEOptions(key_provider_options=provider))
    async with lk.open_room(url, mint_token("sub", room), options=options) as r:
        with r.events() as events:
            async for e in events:
                if isinstance(e, lk.TrackSubscribed):
                    track = e.track
                    break
        stream = lk.AudioStream(track, sample_rate=RATE, num_channels=CHANNELS, capacity=1000)
        samples = 0
        last = await stream.receive()
        t0, c0 = time.monotonic(), cpu()
        with trio.move_on_after(seconds + 5):
            async for frame in stream:
                samples += frame.samples_per_channel
                last = frame
                if samples >= seconds * RATE:
                    break
        audio, used, wall = samples / RATE, cpu() - c0, time.monotonic() - t0
        peak = _peak(bytes(last.data))
        cryptors = len(r.e2ee_manager.frame_cryptors())
        stream.close()
    return {"audio_s": audio, "cpu_s": used, "wall_s": wall, "peak": peak, "cryptors": cryptors}


def _official_options(mode: str) -> Any:
    from livekit import rtc

    if mode != "e2ee":
        return rtc.RoomOptions()
    provider = rtc.KeyProviderOptions(shared_key=KEY)
    return rtc.RoomOptions(encryption=rtc.E2EEOptions(key_provider_options=provider))


async def official_pub(url: str, room: str, seconds: float, mode: str) -> dict[str, float]:
    from livekit import rtc

    from lkrtc_trio.testing import mint_token

    frames = tone_bytes()
    r = rtc.Room()
    await r.connect(url, mint_token("pub", room), options=_official_options(mode))
    src = rtc.AudioSource(RATE, CHANNELS)
    track = rtc.LocalAudioTrack.create_audio_track("tone", src)
    await r.local_participant.publish_track(track)
    t0, c0 = time.monotonic(), cpu()
    n = 0
    while n < seconds * 100:
        await src.capture_frame(rtc.AudioFrame(frames[n % 100], RATE, CHANNELS, FRAME))
        n += 1
    audio, used, wall = n / 100, cpu() - c0, time.monotonic() - t0
    cryptors = len(r.e2ee_manager.frame_cryptors()) if mode == "e2ee" else 0
    await r.disconnect()
    return {"audio_s": audio, "cpu_s": used, "wall_s": wall, "cryptors": cryptors}


async def official_sub(url: str, room: str, seconds: float, mode: str) -> dict[str, float]:
    import asyncio

    from livekit import rtc

    from lkrtc_trio.testing import mint_token

    r = rtc.Room()
    got: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    @r.on("track_subscribed")
    def _on(track: Any, *_: Any) -> None:
        if not got.done():
            got.set_result(track)

    await r.connect(url, mint_token("sub", room), options=_official_options(mode))
    track = await got
    stream = rtc.AudioStream(track, sample_rate=RATE, num_channels=CHANNELS)
    samples = 0
    it = stream.__aiter__()
    last = (await it.__anext__()).frame
    t0, c0 = time.monotonic(), cpu()
    while samples < seconds * RATE:
        ev = await asyncio.wait_for(it.__anext__(), timeout=5)
        samples += ev.frame.samples_per_channel
        last = ev.frame
    audio, used, wall = samples / RATE, cpu() - c0, time.monotonic() - t0
    peak = _peak(bytes(last.data.cast("B")))
    cryptors = len(r.e2ee_manager.frame_cryptors()) if mode == "e2ee" else 0
    await stream.aclose()
    await r.disconnect()
    return {"audio_s": audio, "cpu_s": used, "wall_s": wall, "peak": peak, "cryptors": cryptors}


def child(contender: str, role: str, mode: str, url: str, room: str, seconds: float) -> None:
    if contender == "lkrtc":
        import trio

        fn = lkrtc_pub if role == "pub" else lkrtc_sub
        out = trio.run(fn, url, room, seconds, mode)
    else:
        import asyncio

        fn = official_pub if role == "pub" else official_sub
        out = asyncio.run(fn(url, room, seconds, mode))
    print(json.dumps(out), flush=True)


def measure(url: str, contender: str, mode: str, seconds: float, tag: str) -> dict[str, Any]:
    """One pair: a subscriber and a publisher process of ``contender``, in
    ``mode`` (``plain`` or ``e2ee``).

    Raises:
        RuntimeError: a child failed or exited abnormally, or an encrypted
            subscriber did not receive the tone (it could not decrypt).
    """
    room = f"e2ee-{contender}-{mode}-{tag}-{uuid.uuid4().hex[:8]}"
    args = [sys.executable, "-m", "bench.e2ee", "child", contender]
    with tempfile.TemporaryFile("w+") as sub_err, tempfile.TemporaryFile("w+") as pub_err:
        sub = subprocess.Popen(
            [*args, "sub", mode, url, room, str(seconds)],
            stdout=subprocess.PIPE,
            stderr=sub_err,
            text=True,
        )
        time.sleep(1.0)
        # the publisher sends 4 s more than the subscriber measures
        pub = subprocess.Popen(
            [*args, "pub", mode, url, room, str(seconds + 4)],
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
                    f"e2ee {contender} {mode} {role} failed ({proc.returncode}), room {room}:\n"
                    f"{err.read()[-3000:]}"
                )
            data = json.loads(lines[-1])
            res[role] = {**data, "cpu_per_audio_s": data["cpu_s"] / data["audio_s"]}
    if res["receive"]["peak"] < MIN_PEAK:
        raise RuntimeError(
            f"e2ee {contender} {mode}: the subscriber received no tone "
            f"(peak {res['receive']['peak']}), room {room}"
        )
    want = 1 if mode == "e2ee" else 0
    if (res["publish"]["cryptors"], res["receive"]["cryptors"]) != (want, want):
        raise RuntimeError(f"e2ee {contender} {mode}: frame cryptors {res}")
    return res


def run(url: str, seconds: float = 8.0, rounds: int = ROUNDS) -> list[Row]:
    """Per round: plain and encrypted pairs of each contender, interleaved."""
    samples: dict[tuple[str, str, str], list[float]] = {}
    for i in range(rounds):
        for contender in ("lkrtc", "official"):
            cost: dict[str, dict[str, Any]] = {}
            for mode in ("plain", "e2ee"):
                cost[mode] = retried(
                    f"e2ee {contender} {mode} round {i}",
                    partial(measure, url, contender, mode, seconds, str(i)),
                )
            for role in ("publish", "receive"):
                plain = cost["plain"][role]["cpu_per_audio_s"]
                crypt = cost["e2ee"][role]["cpu_per_audio_s"]
                samples.setdefault((f"{role}, encrypted", contender, "cpu"), []).append(crypt)
                samples.setdefault((f"{role}, plain", contender, "cpu"), []).append(plain)
                samples.setdefault((role, contender, "overhead"), []).append(crypt / plain)
    metrics = {"cpu": "CPU s per audio s", "overhead": "encrypted / plain CPU"}
    return [
        row(SCENARIO, case, contender, metrics[kind], "lower", s)
        for (case, contender, kind), s in samples.items()
    ]


def main() -> None:
    from lkrtc_trio.testing import LocalServer, install_server

    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 8.0
    results: dict[str, Any] = {"seconds": seconds, "rate": RATE, "channels": CHANNELS}
    with LocalServer(binary=install_server()) as info:
        for i, contender in enumerate(["lkrtc", "official"]):
            for mode in ("plain", "e2ee"):
                res = measure(info.url, contender, mode, seconds, str(i))
                results.setdefault(f"{contender} {mode}", []).append(res)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "child":
        child(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6], float(sys.argv[7]))
    else:
        main()
