"""AudioMixer with pure Python sources (no server): mixing, sources coming and
going, stalls, back-pressure, pacing, errors, cancellation and closing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import numpy as np
import pytest

import lkrtc_trio as lk

RATE = 48000
FRAME = 480  # 10 ms


def frame_of(samples: np.ndarray[Any, Any], channels: int = 1, rate: int = RATE) -> lk.AudioFrame:
    arr = np.ascontiguousarray(samples, dtype=np.int16).reshape(-1)
    return lk.AudioFrame(arr.data, rate, channels, arr.shape[0] // channels)


def tone(freq: float, amplitude: float, seconds: float) -> np.ndarray[Any, Any]:
    t = np.arange(int(RATE * seconds)) / RATE
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.int16)


async def frames_of(
    signal: np.ndarray[Any, Any], size: int = FRAME
) -> AsyncIterator[lk.AudioFrame]:
    for i in range(0, len(signal), size):
        yield frame_of(signal[i : i + size])


class Constant:
    """An endless (or ``count``-frame) source of constant frames; records
    how many frames it produced and whether its generator was finalized."""

    def __init__(self, value: int, count: int | None = None, delay: float | None = None) -> None:
        self.value, self.count, self.delay = value, count, delay
        self.produced = 0
        self.finalized = False
        self.gen = self._gen()

    async def _gen(self) -> AsyncIterator[lk.AudioFrame]:
        data = np.full(FRAME, self.value, np.int16)
        try:
            while self.count is None or self.produced < self.count:
                if self.delay is not None:
                    await anyio.sleep(self.delay)
                self.produced += 1
                yield frame_of(data)
        finally:
            self.finalized = True


class Stalling:
    """Yields ``samples`` samples of ``value``, then sleeps forever."""

    def __init__(self, value: int, samples: int = FRAME) -> None:
        self.finalized = False
        self.gen = self._gen(value, samples)

    async def _gen(self, value: int, samples: int) -> AsyncIterator[lk.AudioFrame]:
        try:
            yield frame_of(np.full(samples, value, np.int16))
            await anyio.sleep_forever()
        finally:
            self.finalized = True


async def collect(mixer: lk.AudioMixer, limit: float = 2.0) -> np.ndarray[Any, Any]:
    out = []
    with anyio.fail_after(limit):
        async for frame in mixer:
            out.append(frame.to_numpy().copy())
    return np.concatenate(out) if out else np.zeros((0, mixer.num_channels), np.int16)


async def take(mixer: lk.AudioMixer, n: int, limit: float = 1.0) -> list[np.ndarray[Any, Any]]:
    out = []
    with anyio.fail_after(limit):
        for _ in range(n):
            frame = await mixer.__anext__()
            assert frame.samples_per_channel == mixer.blocksize
            out.append(frame.to_numpy()[:, 0].copy())
    return out


def level(spectrum: np.ndarray[Any, Any], freq: int) -> float:
    return float(spectrum[freq - 2 : freq + 3].max())  # 1 Hz bins (1 s of audio)


async def test_two_tones_mix_at_the_right_frequencies_and_levels() -> None:
    handles = lk.live_native_handles()
    a, b = tone(440, 12000, 1.0), tone(1000, 6000, 1.0)
    async with lk.AudioMixer(RATE, 1) as mixer:
        assert mixer.blocksize == RATE // 10
        mixer.add_stream(frames_of(a))
        mixer.add_stream(frames_of(b, size=320))  # frame size need not match
        mixer.end_input()
        mixed = await collect(mixer)
    assert mixed.shape == (RATE, 1)
    assert np.array_equal(mixed[:, 0], a.astype(np.int32) + b)  # exact sum, in step
    spectrum = np.abs(np.fft.rfft(mixed[:, 0].astype(float) * np.hanning(RATE)))
    first = int(np.argmax(spectrum))
    rest = spectrum.copy()
    rest[max(0, first - 20) : first + 20] = 0
    second = int(np.argmax(rest))
    assert (first, second) == (440, 1000)  # 1 Hz bins; the louder tone first
    rest[second - 20 : second + 20] = 0
    assert rest.max() < level(spectrum, 1000) / 100  # nothing else
    assert level(spectrum, 440) / level(spectrum, 1000) == pytest.approx(2.0, rel=0.05)
    assert lk.live_native_handles() == handles  # no native object involved


async def test_loud_pair_is_clipped_never_wrapped_stereo() -> None:
    a, b = tone(440, 30000, 0.2), tone(445, 30000, 0.2)
    stereo_a = np.stack([a, -a], axis=1)
    stereo_b = np.stack([b, -b], axis=1)

    async def src(sig: np.ndarray[Any, Any]) -> AsyncIterator[lk.AudioFrame]:
        for i in range(0, len(sig), FRAME):
            yield frame_of(sig[i : i + FRAME], channels=2)

    async with lk.AudioMixer(RATE, 2, blocksize=960) as mixer:
        mixer.add_stream(src(stereo_a))
        mixer.add_stream(src(stereo_b))
        mixer.end_input()
        mixed = await collect(mixer)
    expected = np.clip(stereo_a.astype(np.int32) + stereo_b, -32768, 32767)
    assert np.array_equal(mixed, expected)
    assert mixed.max() == 32767 and mixed.min() == -32768  # clipped on both channels
    assert np.array_equal(mixed[:, 1], np.clip(-(a.astype(np.int32) + b), -32768, 32767))


async def test_sources_of_any_async_iterable_kind() -> None:
    send, receive = anyio.create_memory_object_stream[lk.AudioFrame](10)
    finalized: list[str] = []

    class Iterable:  # __aiter__ returns an async generator the mixer owns
        async def __aiter__(self) -> AsyncIterator[lk.AudioFrame]:
            try:
                for _ in range(3):
                    yield frame_of(np.full(FRAME, 10, np.int16))
            finally:
                finalized.append("iterable")

    async with lk.AudioMixer(RATE, 1, blocksize=FRAME, stream_timeout_ms=5000) as mixer:
        mixer.add_stream(Iterable())
        mixer.add_stream(receive)
        mixer.end_input()
        async with send:
            for _ in range(3):
                await send.send(frame_of(np.full(FRAME, 1, np.int16)))
        mixed = await collect(mixer)
    assert mixed[:, 0].tolist() == [11] * 3 * FRAME
    assert finalized == ["iterable"]


async def test_add_while_running() -> None:
    a, b = Constant(100), Constant(1000)
    async with lk.AudioMixer(RATE, 1, blocksize=FRAME, capacity=1) as mixer:
        mixer.add_stream(a.gen)
        assert {int(f[0]) for f in await take(mixer, 5)} == {100}
        mixer.add_stream(b.gen)
        mixer.add_stream(b.gen)  # already there: nothing happens
        got = [int(f.max()) for f in await take(mixer, 20)]
    assert got[-10:] == [1100] * 10  # b joined within a few frames and stays
    assert a.finalized and b.finalized


async def test_remove_while_running() -> None:
    a, b = Constant(100), Constant(1000)
    async with lk.AudioMixer(RATE, 1, blocksize=FRAME, capacity=1) as mixer:
        mixer.add_stream(a.gen)
        mixer.add_stream(b.gen)
        assert {int(v) for f in await take(mixer, 5) for v in f} == {1100}
        mixer.remove_stream(b.gen)
        mixer.remove_stream(b.gen)  # unknown now: nothing happens
        got = [int(f.max()) for f in await take(mixer, 10)]
        with anyio.fail_after(1):
            while not b.finalized:  # its reader was cancelled, its generator closed
                await anyio.sleep(0.001)
    # at most capacity (1) + the block being handed over still held b's audio
    assert got[2:] == [100] * 8
    assert a.finalized


async def test_source_that_ends_is_dropped() -> None:
    a, b = Constant(100), Constant(1000, count=3)
    # a long timeout: if the ended source were still waited for, take() would fail
    async with lk.AudioMixer(RATE, 1, blocksize=FRAME, stream_timeout_ms=10_000) as mixer:
        mixer.add_stream(a.gen)
        mixer.add_stream(b.gen)
        got = [int(f.max()) for f in await take(mixer, 10)]
    assert got == [1100] * 3 + [100] * 7
    assert b.finalized


async def test_end_input_flushes_partial_blocks_and_ends() -> None:
    a = np.arange(5 * FRAME, dtype=np.int16)
    b = np.full(3 * 240, 7, np.int16)  # 1.5 blocks: the last one is zero-padded
    async with lk.AudioMixer(RATE, 1, blocksize=FRAME, stream_timeout_ms=10_000) as mixer:
        mixer.add_stream(frames_of(a))
        mixer.add_stream(frames_of(b, size=240))
        mixer.end_input()
        with pytest.raises(RuntimeError):
            mixer.add_stream(frames_of(a))
        mixed = await collect(mixer)
        with pytest.raises(StopAsyncIteration):
            await mixer.__anext__()  # still ended
    expected = a.astype(np.int32)
    expected[: len(b)] += b
    assert np.array_equal(mixed[:, 0], expected)


async def test_end_input_with_no_source_ends_at_once() -> None:
    async with lk.AudioMixer(RATE, 1) as mixer:
        mixer.end_input()
        assert len(await collect(mixer, limit=0.5)) == 0


async def test_stalled_source_does_not_stop_the_mix() -> None:
    a, stalled = Constant(100), Stalling(1000, samples=240)
    async with lk.AudioMixer(RATE, 1, blocksize=FRAME, stream_timeout_ms=50) as mixer:
        mixer.add_stream(a.gen)
        mixer.add_stream(stalled.gen)
        t0 = anyio.current_time()
        got = await take(mixer, 10)
        elapsed = anyio.current_time() - t0
    # the stalled source's half block, zero-padded, then only a
    assert got[0].tolist() == [1100] * 240 + [100] * 240
    assert all(f.tolist() == [100] * FRAME for f in got[1:])
    assert elapsed < 0.5  # one timeout (50 ms), not one per block
    assert stalled.finalized  # closing the mixer closed the sleeping generator


async def test_new_source_gets_a_timeout_to_start() -> None:
    slow = Constant(1000, delay=0.02)  # its first frame comes after 20 ms
    async with lk.AudioMixer(RATE, 1, blocksize=FRAME, stream_timeout_ms=300) as mixer:
        mixer.add_stream(Constant(100).gen)
        mixer.add_stream(slow.gen)
        got = await take(mixer, 3)
    assert [int(f.max()) for f in got] == [1100] * 3  # waited for it, did not skip it


async def test_capacity_back_pressure_bounds_what_is_read() -> None:
    src = Constant(1)
    async with lk.AudioMixer(RATE, 1, blocksize=FRAME, capacity=3) as mixer:
        mixer.add_stream(src.gen)
        await anyio.sleep(0.1)  # a consumer that does not consume
        held = src.produced
        await anyio.sleep(0.05)
        assert src.produced == held  # everything waits: nothing read meanwhile
        # capacity frames + the block being sent + 2 buffered blocks + 1 waiting frame
        assert 3 <= held <= 3 + 1 + 2 + 1
        await take(mixer, 20)  # consuming lets it go on
        assert src.produced >= 20


async def test_realtime_paces_blocks_by_the_clock() -> None:
    async with lk.AudioMixer(RATE, 1, blocksize=FRAME, realtime=True) as mixer:
        mixer.add_stream(Constant(5).gen)
        await take(mixer, 1)
        t0 = anyio.current_time()
        await take(mixer, 20)  # 20 x 10 ms
        elapsed = anyio.current_time() - t0
    assert 0.15 <= elapsed <= 1.0, elapsed


async def test_cancelled_receive_loses_no_frame() -> None:
    async def counting() -> AsyncIterator[lk.AudioFrame]:
        for i in range(20):
            await anyio.sleep(0.004)
            yield frame_of(np.full(FRAME, i, np.int16))

    got: list[int] = []
    async with lk.AudioMixer(RATE, 1, blocksize=FRAME, stream_timeout_ms=1000) as mixer:
        mixer.add_stream(counting())
        mixer.end_input()
        cancelled = 0
        with anyio.fail_after(2):
            while True:
                with anyio.move_on_after(0.002) as scope:
                    try:
                        frame = await mixer.__anext__()
                    except StopAsyncIteration:
                        break
                    got.append(int(frame.to_numpy()[0, 0]))
                cancelled += scope.cancelled_caught
    assert got == list(range(20))
    assert cancelled > 0


async def test_cancelling_the_scope_around_the_mixer_leaves_no_task() -> None:
    before = len(anyio.get_running_tasks())
    a, stalled = Constant(1), Stalling(2)
    with anyio.fail_after(1):
        with anyio.CancelScope() as scope:
            async with lk.AudioMixer(RATE, 1, blocksize=FRAME) as mixer:
                mixer.add_stream(a.gen)
                mixer.add_stream(stalled.gen)
                async for _ in mixer:
                    scope.cancel()
                    await anyio.sleep(1)  # cancelled here
        assert scope.cancelled_caught
    assert a.finalized and stalled.finalized
    assert len(anyio.get_running_tasks()) == before


async def test_aclose_is_bounded_and_structured() -> None:
    before = len(anyio.get_running_tasks())
    a, stalled = Constant(1), Stalling(2)
    async with lk.AudioMixer(RATE, 1, blocksize=FRAME) as mixer:
        mixer.add_stream(a.gen)
        mixer.add_stream(stalled.gen)
        await take(mixer, 2)
        with anyio.fail_after(1):
            await mixer.aclose()
        # when aclose returns, every task of the mixer is gone, generators closed
        assert len(anyio.get_running_tasks()) == before
        assert a.finalized and stalled.finalized
        with pytest.raises(StopAsyncIteration):
            await mixer.__anext__()  # unconsumed frames were dropped
        with pytest.raises(RuntimeError):
            mixer.add_stream(Constant(3).gen)
        mixer.end_input()  # harmless once closed
        await mixer.aclose()  # idempotent
    assert len(anyio.get_running_tasks()) == before


async def test_source_error_is_raised_from_the_iteration() -> None:
    other = Constant(1)

    async def failing() -> AsyncIterator[lk.AudioFrame]:
        yield frame_of(np.full(FRAME, 2, np.int16))
        raise ZeroDivisionError("boom")

    async with lk.AudioMixer(RATE, 1, blocksize=FRAME) as mixer:
        mixer.add_stream(other.gen)
        mixer.add_stream(failing())
        with pytest.raises(ZeroDivisionError, match="boom"), anyio.fail_after(1):
            async for _ in mixer:
                pass
        with pytest.raises(StopAsyncIteration):
            await mixer.__anext__()  # raised once; the mixer is stopped
        with pytest.raises(RuntimeError):
            mixer.add_stream(Constant(3).gen)
    assert other.finalized  # the other readers were cancelled


async def test_wrong_format_frame_raises_value_error() -> None:
    async def wrong() -> AsyncIterator[lk.AudioFrame]:
        yield frame_of(np.zeros(160, np.int16), rate=16000)

    async with lk.AudioMixer(RATE, 1) as mixer:
        mixer.add_stream(wrong())
        with pytest.raises(ValueError, match="16000 Hz"), anyio.fail_after(1):
            await mixer.__anext__()


async def test_unreported_source_error_is_raised_when_leaving() -> None:
    async def failing() -> AsyncIterator[lk.AudioFrame]:
        raise ZeroDivisionError("unseen")
        yield frame_of(np.zeros(FRAME, np.int16))  # pragma: no cover

    with pytest.raises(ZeroDivisionError, match="unseen"):
        async with lk.AudioMixer(RATE, 1) as mixer:
            mixer.add_stream(failing())
            await anyio.sleep(0.02)


async def test_body_exception_propagates_unwrapped() -> None:
    stalled = Stalling(1)
    with pytest.raises(KeyError):
        async with lk.AudioMixer(RATE, 1) as mixer:
            mixer.add_stream(stalled.gen)
            await anyio.sleep(0.01)
            raise KeyError("body")
    assert stalled.finalized


async def test_iterating_without_async_with_raises() -> None:
    mixer = lk.AudioMixer(RATE, 1)
    mixer.add_stream(Constant(1).gen)  # allowed before entering, like the official SDK
    with pytest.raises(RuntimeError, match="async with"):
        async for _ in mixer:
            pass
    await mixer.aclose()
    with pytest.raises(RuntimeError):
        mixer.add_stream(Constant(1).gen)
    with pytest.raises(RuntimeError):
        async with mixer:
            pass


async def test_entered_only_once() -> None:
    async with lk.AudioMixer(RATE, 1) as mixer:
        with pytest.raises(RuntimeError):
            await mixer.__aenter__()


def test_invalid_arguments() -> None:
    cases: list[dict[str, Any]] = [
        {"sample_rate": 0, "num_channels": 1},
        {"sample_rate": 48000, "num_channels": 0},
        {"sample_rate": 48000, "num_channels": 1, "blocksize": -1},
        {"sample_rate": 48000, "num_channels": 1, "capacity": -1},
        {"sample_rate": 48000, "num_channels": 1, "stream_timeout_ms": -1},
        {"sample_rate": 5, "num_channels": 1},  # sample_rate // 10 == 0
    ]
    for kwargs in cases:
        with pytest.raises(ValueError):
            lk.AudioMixer(**kwargs)
    assert lk.AudioMixer(16000, 2, blocksize=0).blocksize == 1600
