"""Test tones: a phase-continuous sine captured in 10 ms frames, and the
dominant frequency of what was received (shared by the media, stats, TURN and
E2EE tests)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np

import lkrtc_trio as lk

RATE = 48000
FRAME = RATE // 100  # 10 ms
AMPLITUDE = 0.5


async def play(
    source: lk.AudioSource, plan: Sequence[tuple[float, float]], amplitude: float = AMPLITUDE
) -> None:
    """Captures (frequency, seconds) segments, phase-continuous, in 10 ms
    frames; a segment of ``math.inf`` seconds plays until cancelled."""
    t = np.arange(FRAME) / RATE
    phase = 0.0
    for freq, seconds in plan:
        frames = itertools.count() if math.isinf(seconds) else range(round(seconds * 100))
        for _ in frames:
            frame = lk.AudioFrame.create(RATE, 1, FRAME)
            frame.to_numpy()[:, 0] = (
                amplitude * 32767 * np.sin(phase + 2 * np.pi * freq * t)
            ).astype(np.int16)
            phase = (phase + 2 * np.pi * freq * FRAME / RATE) % (2 * np.pi)
            await source.capture_frame(frame)


def dominant(samples: np.ndarray) -> float:
    """The strongest frequency of ``samples`` (mono, ``RATE``), in Hz."""
    spec = np.abs(np.fft.rfft(samples.astype(float) * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / RATE)[np.argmax(spec)])
