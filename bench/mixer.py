"""CPU seconds per mixed audio second: ``AudioMixer`` with 2, 8 and 32 sources.

lkrtc-trio's ``AudioMixer`` (on trio) against the official
``livekit.rtc.AudioMixer`` (on asyncio). No server: each source is an
in-memory async generator yielding pre-built 10 ms frames of a 440 Hz tone
(48 kHz mono, built before the measured window, each contender with its own
``AudioFrame`` type) as fast as the mixer takes them (no real-time pacing).
Both mixers use the same blocksize (the default: 100 ms = 4800 samples) and
``end_input()``, and are drained to the end. The measured window is the
iteration of the mixer (first to last mixed frame); the metric is the
process CPU time (user + system) over that window divided by the seconds of
mixed audio that came out.

Each child checks its result: the output holds exactly the sources' length
of audio, and its peak is exactly ``sources x`` the tone's peak (the tones are
in phase, so the mix is the tone times the source count, below full scale);
the parent checks that both contenders output the same sample count and peak.

Child mode: ``python -m bench.mixer child {lkrtc|official}``: one warm-up
run, then every case once; prints one JSON object. ``run(url)`` (``python -m
bench``, the url is unused): ``ROUNDS`` interleaved rounds, one child per
contender per round. ``python -m bench.mixer`` runs the rounds and prints
the rows.
"""

from __future__ import annotations

import json
import math
import resource
import sys
import time
from functools import partial
from typing import Any

from bench._common import ROUNDS, Row, child_json, retried, row

RATE, FRAME = 48000, 480
AMPLITUDE = 1000  # x 32 sources stays below int16 full scale: no clipping
#: sources -> seconds of audio per source in one measurement (~0.5-2.5 s of CPU each)
CASES = {2: 240.0, 8: 120.0, 32: 40.0}
SCENARIO = "AudioMixer 48 kHz mono, 100 ms blocks (no server)"


def cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def tone_frames() -> tuple[list[bytes], int]:
    """One second of the tone as 100 frames of 10 ms (int16 LE), and its peak."""
    import numpy as np

    t = np.arange(RATE) / RATE
    tone = (AMPLITUDE * np.sin(2 * math.pi * 440 * t)).astype(np.int16)
    return [tone[i : i + FRAME].tobytes() for i in range(0, RATE, FRAME)], int(tone.max())


def result(samples: int, peak: int, used: float, wall: float) -> dict[str, float]:
    return {
        "audio_s": samples / RATE,
        "samples": samples,
        "peak": peak,
        "cpu_s": used,
        "wall_s": wall,
    }


async def lkrtc_case(sources: int, seconds: float) -> dict[str, float]:
    import numpy as np

    import lkrtc_trio as lk

    raw, _ = tone_frames()
    frames = [lk.AudioFrame(b, RATE, 1, FRAME) for b in raw]
    n = int(seconds * 100)

    async def source() -> Any:
        for i in range(n):
            yield frames[i % 100]

    samples = peak = 0
    async with lk.AudioMixer(RATE, 1) as mixer:
        for _ in range(sources):
            mixer.add_stream(source())
        mixer.end_input()
        t0, c0 = time.monotonic(), cpu()
        async for frame in mixer:
            samples += frame.samples_per_channel
            peak = max(peak, int(np.frombuffer(frame.data, np.int16).max()))
        used, wall = cpu() - c0, time.monotonic() - t0
    return result(samples, peak, used, wall)


async def official_case(sources: int, seconds: float) -> dict[str, float]:
    import numpy as np
    from livekit import rtc

    raw, _ = tone_frames()
    frames = [rtc.AudioFrame(b, RATE, 1, FRAME) for b in raw]
    n = int(seconds * 100)

    async def source() -> Any:
        for i in range(n):
            yield frames[i % 100]

    samples = peak = 0
    mixer = rtc.AudioMixer(RATE, 1)
    for _ in range(sources):
        mixer.add_stream(source())
    mixer.end_input()
    t0, c0 = time.monotonic(), cpu()
    async for frame in mixer:
        samples += frame.samples_per_channel
        peak = max(peak, int(np.frombuffer(frame.data, np.int16).max()))
    used, wall = cpu() - c0, time.monotonic() - t0
    await mixer.aclose()
    return result(samples, peak, used, wall)


def check(res: dict[str, float], sources: int, seconds: float, tone_peak: int) -> None:
    """Raises RuntimeError unless the mix has the right length and peak."""
    want = int(seconds * RATE)
    if res["samples"] != want or res["peak"] != sources * tone_peak:
        raise RuntimeError(
            f"bad mix for {sources} sources: {res['samples']} samples (want {want}), "
            f"peak {res['peak']} (want {sources * tone_peak})"
        )


def child(contender: str) -> None:
    if contender == "lkrtc":
        import trio

        def go(sources: int, seconds: float) -> dict[str, float]:
            return trio.run(lkrtc_case, sources, seconds)

    else:
        import asyncio

        def go(sources: int, seconds: float) -> dict[str, float]:
            return asyncio.run(official_case(sources, seconds))

    _, tone_peak = tone_frames()
    go(4, 2.0)  # warm-up (imports, first calls)
    out: dict[str, Any] = {}
    for sources, seconds in CASES.items():
        res = go(sources, seconds)
        check(res, sources, seconds, tone_peak)
        out[str(sources)] = {**res, "cpu_per_audio_s": res["cpu_s"] / res["audio_s"]}
    print(json.dumps(out), flush=True)


def measure(contender: str) -> dict[str, Any]:
    """One round of one contender (a fresh process).

    Raises:
        RuntimeError: the child failed, or its mix was wrong.
    """
    res: dict[str, Any] = child_json("bench.mixer", "child", contender, timeout=120)
    return res


def run(url: str = "", rounds: int = ROUNDS) -> list[Row]:
    """Both contenders, ``rounds`` interleaved rounds; ``url`` is unused."""
    samples: dict[tuple[int, str], list[float]] = {}
    for i in range(rounds):
        got = {
            contender: retried(f"mixer {contender} round {i}", partial(measure, contender))
            for contender in ("lkrtc", "official")
        }
        for sources in CASES:
            ours, theirs = got["lkrtc"][str(sources)], got["official"][str(sources)]
            if (ours["samples"], ours["peak"]) != (theirs["samples"], theirs["peak"]):
                raise RuntimeError(f"the mixers disagree for {sources} sources: {ours} vs {theirs}")
            for contender in ("lkrtc", "official"):
                samples.setdefault((sources, contender), []).append(
                    got[contender][str(sources)]["cpu_per_audio_s"]
                )
    return [
        row(SCENARIO, f"{sources} sources", contender, "CPU s per mixed audio s", "lower", s)
        for (sources, contender), s in samples.items()
    ]


def main() -> None:
    from bench.__main__ import summarize, table

    for line in table(summarize(run())):
        print(line)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "child":
        child(sys.argv[2])
    else:
        main()
