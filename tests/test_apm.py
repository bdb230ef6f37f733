"""AudioProcessingModule against the real native core (no server), and against the official SDK.

The official SDK runs in a child process (``tests/peers/official_apm.py``): one process cannot
initialise the native library twice. All differential cases go through ONE child process.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import lkrtc_trio as lk

OFFICIAL_APM = Path(__file__).parent / "peers" / "official_apm.py"
RATE = 48_000

Int16 = np.ndarray[Any, np.dtype[np.int16]]

FEATURES = ("echo_cancellation", "noise_suppression", "high_pass_filter", "auto_gain_control")


def flags(**on: bool) -> dict[str, bool]:
    return {name: bool(on.get(name, False)) for name in FEATURES}


def speech_like(rate: int, seconds: float, seed: int, amplitude: float = 0.3) -> Int16:
    """Harmonic tone bursts (80-300 ms, f0 120-300 Hz, 5 harmonics, sin² envelope) with
    gaps, plus white noise at 1 % of full scale. Deterministic for a seed."""
    rng = np.random.default_rng(seed)
    n = int(rate * seconds)
    out = np.zeros(n)
    start = 0
    while start < n:
        length = min(int(rng.uniform(0.08, 0.3) * rate), n - start)
        gap = int(rng.uniform(0.02, 0.15) * rate)
        f0 = rng.uniform(120, 300)
        t = np.arange(length) / rate
        burst = sum(
            np.sin(2 * np.pi * f0 * h * t + rng.uniform(0, 2 * np.pi)) / h for h in range(1, 6)
        )
        out[start : start + length] = burst * np.sin(np.pi * np.arange(length) / length) ** 2
        start += length + gap
    out = amplitude * out / np.max(np.abs(out)) + 0.01 * rng.standard_normal(n)
    result: Int16 = np.clip(out * 32767, -32768, 32767).astype(np.int16)
    return result


def tone(freq: float, rate: int, seconds: float, amplitude: float) -> Int16:
    t = np.arange(int(rate * seconds)) / rate
    return (amplitude * 32767 * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def to_frames(samples: Int16, rate: int, channels: int = 1) -> Int16:
    """(frames, samples_per_10ms * channels), interleaved; ``samples`` is (n,) or (n, ch)."""
    spc = rate // 100
    flat = samples.reshape(-1, channels)
    count = flat.shape[0] // spc
    return flat[: count * spc].reshape(count, spc * channels)


def echo_of(far: Int16, rate: int) -> Int16:
    """The far end delayed 10 ms at half level (works along axis 0, any channel count)."""
    delay = rate // 100
    near = np.zeros_like(far)
    near[delay:] = far[:-delay] // 2
    return near


def process(
    features: dict[str, bool],
    rate: int,
    channels: int,
    near: Int16,
    far: Int16 | None = None,
    delay_ms: int | None = None,
) -> Int16:
    """The same procedure as ``official_apm.run_job``, through lkrtc_trio."""
    spc = rate // 100
    out = np.empty_like(near)
    with lk.AudioProcessingModule(**features) as apm:
        for i in range(near.shape[0]):
            if far is not None:
                reverse = lk.AudioFrame.create(rate, channels, spc)
                reverse.to_numpy().reshape(-1)[:] = far[i]
                apm.process_reverse_stream(reverse)
            if delay_ms is not None:
                apm.set_stream_delay_ms(delay_ms)
            frame = lk.AudioFrame.create(rate, channels, spc)
            frame.to_numpy().reshape(-1)[:] = near[i]
            apm.process_stream(frame)
            out[i] = frame.to_numpy().reshape(-1)
    return out


def level_db(samples: Int16) -> float:
    """Mean power in dB (re 1 LSB²)."""
    return float(10 * np.log10(np.mean(samples.astype(np.float64) ** 2) + 1e-12))


def run_official(
    jobs: list[dict[str, Any]], arrays: dict[str, Int16], tmp: Path
) -> dict[str, Int16]:
    jobs_path, out_path = tmp / "jobs.npz", tmp / "out.npz"
    np.savez(jobs_path, jobs=np.array(json.dumps(jobs)), **arrays)  # type: ignore[arg-type]
    proc = subprocess.run(
        [sys.executable, str(OFFICIAL_APM), str(jobs_path), str(out_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    with np.load(out_path) as data:
        return {key: data[key] for key in data.files}


def test_matches_the_official_sdk_sample_for_sample(tmp_path: Path) -> None:
    """Each feature alone and all four together, at 48 kHz mono, plus all four in stereo
    at 48 kHz and in mono at 16 kHz: lkrtc_trio's output equals the official SDK's
    (``livekit.rtc.AudioProcessingModule``, in a child process) exactly. The module is
    deterministic (same input, same output, run after run), so equality is exact."""
    far = speech_like(RATE, 3.0, seed=11)
    near = echo_of(far, RATE)
    local = speech_like(RATE, 3.0, seed=12)
    far_st = np.stack([far, speech_like(RATE, 3.0, seed=13)], axis=1)
    near_st = echo_of(far_st, RATE)
    far16 = speech_like(16_000, 3.0, seed=14)
    near16 = echo_of(far16, 16_000)
    cases: list[tuple[str, dict[str, bool], int, int, Int16, Int16 | None, int | None]] = [
        ("hpf", flags(high_pass_filter=True), RATE, 1, to_frames(local, RATE), None, None),
        ("ns", flags(noise_suppression=True), RATE, 1, to_frames(local, RATE), None, None),
        ("agc", flags(auto_gain_control=True), RATE, 1, to_frames(local // 8, RATE), None, None),
        (
            "aec",
            flags(echo_cancellation=True),
            RATE,
            1,
            to_frames(near, RATE),
            to_frames(far, RATE),
            10,
        ),
        (
            "all",
            {name: True for name in FEATURES},
            RATE,
            1,
            to_frames(near + local // 4, RATE),
            to_frames(far, RATE),
            10,
        ),
        (
            "all_stereo",
            {name: True for name in FEATURES},
            RATE,
            2,
            to_frames(near_st, RATE, 2),
            to_frames(far_st, RATE, 2),
            10,
        ),
        (
            "all_16k",
            {name: True for name in FEATURES},
            16_000,
            1,
            to_frames(near16, 16_000),
            to_frames(far16, 16_000),
            10,
        ),
    ]
    jobs: list[dict[str, Any]] = []
    arrays: dict[str, Int16] = {}
    for name, features, rate, channels, near_frames, far_frames, delay in cases:
        jobs.append(
            {
                "name": name,
                "flags": features,
                "sample_rate": rate,
                "num_channels": channels,
                "delay_ms": delay,
            }
        )
        arrays[f"near_{name}"] = near_frames
        if far_frames is not None:
            arrays[f"far_{name}"] = far_frames
    baseline = lk.live_native_handles()
    official = run_official(jobs, arrays, tmp_path)
    for name, features, rate, channels, near_frames, far_frames, delay in cases:
        ours = process(features, rate, channels, near_frames, far_frames, delay)
        theirs = official[f"out_{name}"]
        assert ours.shape == theirs.shape == near_frames.shape
        assert not np.array_equal(ours, near_frames), f"{name}: the module did nothing"
        differ = int(np.count_nonzero(ours != theirs))
        assert np.array_equal(ours, theirs), f"{name}: {differ} samples differ"
        # And deterministic within lkrtc_trio: a second fresh module gives the same.
        assert np.array_equal(
            ours, process(features, rate, channels, near_frames, far_frames, delay)
        )
    assert lk.live_native_handles() == baseline


def test_noise_suppression_lowers_white_noise_by_10_db() -> None:
    """4 s of white noise (standard deviation 10 % of full scale) at 48 kHz; the first
    0.5 s (50 frames) is skipped as warm-up. Measured: 15.0 dB lower (14.8 dB without
    skipping), as with the official module (about 15 dB)."""
    baseline = lk.live_native_handles()
    rng = np.random.default_rng(1)
    noise = to_frames((rng.standard_normal(4 * RATE) * 0.1 * 32767).astype(np.int16), RATE)
    out = process(flags(noise_suppression=True), RATE, 1, noise)
    reduction = level_db(noise[50:]) - level_db(out[50:])
    assert reduction >= 10, f"noise only {reduction:.1f} dB lower"
    assert lk.live_native_handles() == baseline


def test_echo_cancellation_removes_20_db_of_echo() -> None:
    """Far end: 4 s speech-like signal through ``process_reverse_stream``; near end: the far
    end delayed 10 ms at half level (pure echo), ``set_stream_delay_ms(10)`` before each
    near-end frame. Residual over the last 2 s (after convergence) versus the echo there:
    measured 47.0 dB lower (52.9 dB over the last 1 s). Bit-identical output with
    ``set_stream_delay_ms`` 0 or 20; 47.4 dB without calling it: AEC3 estimates the delay
    itself."""
    baseline = lk.live_native_handles()
    far = speech_like(RATE, 4.0, seed=2)
    near = to_frames(echo_of(far, RATE), RATE)
    out = process(flags(echo_cancellation=True), RATE, 1, near, to_frames(far, RATE), 10)
    reduction = level_db(near[-200:]) - level_db(out[-200:])
    assert reduction >= 20, f"echo only {reduction:.1f} dB lower"
    assert lk.live_native_handles() == baseline


def test_auto_gain_control_boosts_then_decays_to_unity_and_limits_near_full_scale() -> None:
    """What ``auto_gain_control=True`` does to a steady 440 Hz tone over 4 s at 48 kHz.

    The native core enables WebRTC's gain controller 2 with its adaptive digital
    controller (livekit rust-sdks ``apm.h``: ``gain_controller2.enabled`` and
    ``adaptive_digital.enabled``), WebRTC defaults otherwise: initial gain 15 dB, gain
    headroom 5 dB, changes limited to 6 dB/s, gain between 0 and 50 dB, output noise kept
    under -50 dBFS; then the limiter. (The installed core does have the adaptive part on:
    a fixed 0 dB gain would not give the +15 dB start measured here.) A steady tone is what
    the noise-level estimator takes for the noise floor, so the allowed gain is -50 dBFS
    minus the tone's level: negative, hence 0 dB. The gain thus starts at about
    15 dB and falls 6 dB/s to 0 dB, reached after 2.5 s; from then on the tone passes
    sample for sample unchanged. That is why a 4 s quiet tone looks unchanged when only its
    end (or its level after the ramp) is measured.

    Measured, quiet tone (amplitude 1 % of full scale, -40 dBFS peak): +14.7 dB over the
    first 100 ms, +11.7 / +8.7 / +5.7 / +2.7 dB over the following 0.5 s steps, and frames
    250-399 (2.5-4 s) bit-exact. A -20 dBFS tone behaves the same. Louder tone (50 %): the
    limiter caps the boost at about +5.8 dB (peaks at 32767), then the same ramp to 0 dB and
    bit-exact output. Near full scale (99 %): the limiter takes 0.2 dB off in the steady
    state (about 1 dB during the ramp), peaks 31790.
    """
    baseline = lk.live_native_handles()

    def gains(amplitude: float) -> tuple[Int16, Int16, list[float]]:
        tone_frames = to_frames(tone(440, RATE, 4.0, amplitude), RATE)
        out = process(flags(auto_gain_control=True), RATE, 1, tone_frames)
        per_half_second = [
            level_db(out[i : i + 10]) - level_db(tone_frames[i : i + 10]) for i in range(0, 400, 50)
        ]
        return tone_frames, out, per_half_second

    quiet_in, quiet_out, quiet = gains(0.01)
    assert 12 <= quiet[0] <= 17, quiet  # initial boost, about 15 dB
    assert all(a > b for a, b in itertools.pairwise(quiet[:5])), quiet  # ramps down
    assert 2.0 <= quiet[1] - quiet[2] <= 4.0, quiet  # 6 dB/s
    assert np.array_equal(quiet_out[260:], quiet_in[260:])  # unity gain after 2.6 s

    loud_in, loud_out, loud = gains(0.5)
    assert 3 <= loud[0] <= 8, loud  # limited boost
    assert np.abs(loud_out[:100]).max() >= 32000  # driven to the limiter
    assert np.array_equal(loud_out[260:], loud_in[260:])

    full_in, full_out, _ = gains(0.99)
    steady = level_db(full_out[-100:]) - level_db(full_in[-100:])
    assert -0.5 <= steady <= -0.05, steady  # the limiter trims it
    assert np.abs(full_out[-100:]).max() < np.abs(full_in[-100:]).max()
    assert lk.live_native_handles() == baseline


def test_high_pass_filter_removes_hum_keeps_1khz() -> None:
    """3 s tones at 30 % of full scale, 48 kHz, first 0.5 s skipped. Measured: 50 Hz hum
    21.2 dB lower, 1 kHz 0.45 dB lower (30 Hz: 81 dB, 60 Hz: 0.5 dB: a steep cut below
    about 55 Hz)."""
    baseline = lk.live_native_handles()

    def attenuation(freq: float) -> float:
        tone_frames = to_frames(tone(freq, RATE, 3.0, 0.3), RATE)
        out = process(flags(high_pass_filter=True), RATE, 1, tone_frames)
        return level_db(tone_frames[50:]) - level_db(out[50:])

    assert attenuation(50) >= 15
    assert abs(attenuation(1000)) <= 1.5
    assert lk.live_native_handles() == baseline


@pytest.mark.parametrize(
    ("rate", "samples"),
    [
        (48_000, 240),  # 5 ms
        (48_000, 960),  # 20 ms (the native core would take it in 10 ms chunks)
        (48_000, 479),
        (16_000, 320),
        (44_100, 441),  # 10 ms at 44.1 kHz is fine ...
        (22_050, 220),  # ... 22.05 kHz has no whole 10 ms frame
        (7_000, 70),  # below 8 kHz: refused by WebRTC
        (400_000, 4000),  # above 384 kHz: refused by WebRTC
    ],
)
def test_frame_validation_before_sending(rate: int, samples: int) -> None:
    """Bad frames raise ValueError before anything reaches the native core (whose Rust
    layer aborts the whole process on a frame that is not whole 10 ms chunks)."""
    baseline = lk.live_native_handles()
    with lk.AudioProcessingModule(noise_suppression=True) as apm:
        frame = lk.AudioFrame.create(rate, 1, samples)
        if rate == 44_100:
            apm.process_stream(frame)  # accepted
            apm.process_reverse_stream(frame)
        else:
            with pytest.raises(ValueError, match=r"10 ms|sample rate"):
                apm.process_stream(frame)
            with pytest.raises(ValueError, match=r"10 ms|sample rate"):
                apm.process_reverse_stream(frame)
    assert lk.live_native_handles() == baseline


def test_the_official_sdk_lets_a_bad_frame_abort_the_process() -> None:
    """Why the checks above matter: the official SDK sends a 5 ms frame to the same
    native module, whose Rust layer panics and aborts the whole process (SIGABRT),
    in a subprocess here. A 10 ms frame returns normally there."""

    def official(samples: int) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(OFFICIAL_APM), "crash", str(samples)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    aborted, fine = official(240), official(480)
    assert aborted.returncode in (-6, 134), (aborted.returncode, aborted.stderr[-2000:])
    assert "returned" not in aborted.stdout
    assert fine.returncode == 0 and "returned" in fine.stdout, fine.stderr[-2000:]


def test_sample_rates_channels_and_readonly_buffers() -> None:
    baseline = lk.live_native_handles()
    with lk.AudioProcessingModule(echo_cancellation=True, high_pass_filter=True) as apm:
        assert lk.live_native_handles() == baseline + 1
        assert apm.echo_cancellation and apm.high_pass_filter
        assert not apm.noise_suppression and not apm.auto_gain_control
        for rate in (8_000, 16_000, 32_000, 44_100, 48_000, 96_000):
            for channels in (1, 2):
                frame = lk.AudioFrame.create(rate, channels, rate // 100)
                apm.process_reverse_stream(frame)
                apm.process_stream(frame)
        readonly = lk.AudioFrame(bytes(960), 48_000, 1, 480)
        with pytest.raises(ValueError, match="read-only"):
            apm.process_stream(readonly)
        with pytest.raises(ValueError, match="read-only"):
            apm.process_reverse_stream(readonly)
        misaligned = lk.AudioFrame(memoryview(bytearray(961))[1:], 48_000, 1, 480)
        with pytest.raises(lk.NativeError, match="aligned"):  # the native core's own check
            apm.process_stream(misaligned)
        apm.set_stream_delay_ms(0)
        apm.set_stream_delay_ms(500)
        for bad in (-1, 501, 2**40):  # the native module clamps and reports an error
            with pytest.raises(ValueError, match="delay_ms"):
                apm.set_stream_delay_ms(bad)
    assert lk.live_native_handles() == baseline


def test_closed_module_raises_resource_closed() -> None:
    baseline = lk.live_native_handles()
    apm = lk.AudioProcessingModule(noise_suppression=True)
    assert lk.live_native_handles() == baseline + 1
    apm.close()
    apm.close()  # idempotent
    assert apm.closed and "closed" in repr(apm)
    assert lk.live_native_handles() == baseline
    frame = lk.AudioFrame.create(48_000, 1, 480)
    with pytest.raises(lk.ResourceClosedError):
        apm.process_stream(frame)
    with pytest.raises(lk.ResourceClosedError):
        apm.process_reverse_stream(frame)
    with pytest.raises(lk.ResourceClosedError):
        apm.set_stream_delay_ms(10)
    assert lk.live_native_handles() == baseline


async def test_async_use_inside_a_running_loop() -> None:
    """Synchronous calls from inside a running trio / asyncio loop; ``async with`` and
    ``aclose()`` (idempotent) release the handle."""
    baseline = lk.live_native_handles()
    far = to_frames(speech_like(RATE, 0.5, seed=3), RATE)
    near = to_frames(echo_of(speech_like(RATE, 0.5, seed=3), RATE), RATE)
    async with lk.AudioProcessingModule(echo_cancellation=True, noise_suppression=True) as apm:
        assert lk.live_native_handles() == baseline + 1
        for i in range(near.shape[0]):
            reverse = lk.AudioFrame.create(RATE, 1, 480)
            reverse.to_numpy()[:, 0] = far[i]
            apm.process_reverse_stream(reverse)
            apm.set_stream_delay_ms(10)
            frame = lk.AudioFrame.create(RATE, 1, 480)
            frame.to_numpy()[:, 0] = near[i]
            apm.process_stream(frame)
    assert apm.closed and lk.live_native_handles() == baseline
    await apm.aclose()
    with pytest.raises(lk.ResourceClosedError):
        apm.process_stream(lk.AudioFrame.create(RATE, 1, 480))
