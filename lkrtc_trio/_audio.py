"""Audio: frames (int16 PCM, zero-copy views), sources and resampling."""

from __future__ import annotations

import contextlib
import io
import wave
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, final

import anyio

from ._errors import LiveKitError, NativeError, ResourceClosedError
from ._proto import audio_frame_pb2, ffi_pb2
from ._runtime import get_runtime

if TYPE_CHECKING:
    import numpy as np

__all__ = ["AudioFrame", "AudioResampler", "AudioSource", "combine_audio_frames"]

_SAMPLE = 2  # bytes per int16 sample


@final
class AudioFrame:
    """Interleaved 16-bit PCM audio.

    ``data`` is a memoryview of int16 samples over the frame's own buffer: no
    copy, writable when the buffer is (``create()`` and received frames are).
    ``to_numpy()`` gives a (samples_per_channel, num_channels) int16 view and
    ``from_numpy()`` wraps an int16 array without a copy when it is
    C-contiguous. ``userdata`` is a dict of your own carried with the frame
    (it is not sent: it stays in this process).

    Raises:
        ValueError: the buffer is shorter than ``num_channels *
            samples_per_channel`` samples, or a size is not positive.
    """

    __slots__ = ("_buf", "_userdata", "num_channels", "sample_rate", "samples_per_channel")

    def __init__(
        self,
        data: bytes | bytearray | memoryview,
        sample_rate: int,
        num_channels: int,
        samples_per_channel: int,
        *,
        userdata: dict[str, Any] | None = None,
    ) -> None:
        if sample_rate <= 0 or num_channels <= 0 or samples_per_channel < 0:
            raise ValueError("sample_rate and num_channels must be > 0")
        view = memoryview(data).cast("B")
        need = num_channels * samples_per_channel * _SAMPLE
        if view.nbytes < need:
            raise ValueError(
                f"audio buffer has {view.nbytes} bytes, needs {need} "
                f"({num_channels} ch x {samples_per_channel} samples x int16)"
            )
        self._buf = view[:need]
        self.sample_rate = sample_rate
        self.num_channels = num_channels
        self.samples_per_channel = samples_per_channel
        self._userdata = userdata

    @property
    def userdata(self) -> dict[str, Any]:
        """A dict of your own that travels with this frame object (created
        empty on first use; not sent over the network)."""
        if self._userdata is None:
            self._userdata = {}
        return self._userdata

    @classmethod
    def from_numpy(cls, array: np.ndarray[Any, Any], sample_rate: int) -> AudioFrame:
        """A frame over an int16 array: shape (samples,) for mono or
        (samples, channels) interleaved. No copy when the array is
        C-contiguous (the frame then shares, and writes through to, its
        memory); otherwise the samples are copied once.

        Raises:
            TypeError: the array's dtype is not int16 (convert explicitly,
                e.g. ``(x * 32767).astype(np.int16)``: a silent conversion
                would hide clipping).
            ValueError: more than 2 dimensions, or an invalid sample rate.
        """
        import numpy as np

        if array.dtype != np.int16:
            raise TypeError(f"AudioFrame.from_numpy needs int16 samples, got {array.dtype}")
        if array.ndim == 1:
            samples, channels = array.shape[0], 1
        elif array.ndim == 2:
            samples, channels = array.shape
        else:
            raise ValueError("AudioFrame.from_numpy needs shape (samples,) or (samples, channels)")
        if not array.flags.c_contiguous:
            array = np.ascontiguousarray(array)
        return cls(array.data.cast("B"), sample_rate, channels, samples)

    def to_wav_bytes(self) -> bytes:
        """The frame as a complete WAV file (16-bit PCM, the frame's rate and
        channels)."""
        out = io.BytesIO()
        with wave.open(out, "wb") as wav:
            wav.setnchannels(self.num_channels)
            wav.setsampwidth(_SAMPLE)
            wav.setframerate(self.sample_rate)
            wav.writeframes(self._buf)
        return out.getvalue()

    @classmethod
    def create(cls, sample_rate: int, num_channels: int, samples_per_channel: int) -> AudioFrame:
        """A zeroed, writable frame."""
        return cls(
            bytearray(num_channels * samples_per_channel * _SAMPLE),
            sample_rate,
            num_channels,
            samples_per_channel,
        )

    @property
    def data(self) -> memoryview:
        """The samples as int16 (interleaved by channel), without a copy."""
        return self._buf.cast("h")

    @property
    def duration(self) -> float:
        """Seconds of audio in the frame."""
        return self.samples_per_channel / self.sample_rate

    def to_numpy(self) -> np.ndarray[Any, Any]:
        """A (samples_per_channel, num_channels) int16 numpy view (no copy).

        Raises:
            ImportError: numpy is not installed.
        """
        import numpy as np

        return np.frombuffer(self._buf, dtype=np.int16).reshape(
            self.samples_per_channel, self.num_channels
        )

    def _buffer_info(self, msg: Any) -> None:
        msg.num_channels = self.num_channels
        msg.sample_rate = self.sample_rate
        msg.samples_per_channel = self.samples_per_channel

    @classmethod
    def _from_native(cls, rt: Any, owned: Any) -> AudioFrame:
        """Copies a native frame buffer (once) and releases its handle."""
        info = owned.info
        try:
            data = rt.backend.read_into_bytearray(
                info.data_ptr, info.num_channels * info.samples_per_channel * _SAMPLE
            )
        finally:
            rt._release(owned.handle.id)
        return cls(data, info.sample_rate, info.num_channels, info.samples_per_channel)

    def __repr__(self) -> str:
        return (
            f"<AudioFrame {self.sample_rate} Hz {self.num_channels} ch "
            f"{self.samples_per_channel} samples>"
        )


def combine_audio_frames(frames: AudioFrame | Iterable[AudioFrame]) -> AudioFrame:
    """One frame holding ``frames`` one after the other (a single copy into a
    new buffer; ``userdata`` is not carried). A single frame is returned as
    is.

    Raises:
        ValueError: no frames, or frames that differ in sample rate or
            channel count (the message names the first one that differs).
    """
    if isinstance(frames, AudioFrame):
        return frames
    frames = list(frames)
    if not frames:
        raise ValueError("combine_audio_frames: no frames")
    rate, channels = frames[0].sample_rate, frames[0].num_channels
    for i, frame in enumerate(frames):
        if frame.sample_rate != rate or frame.num_channels != channels:
            raise ValueError(
                f"combine_audio_frames: frame {i} is {frame.sample_rate} Hz x "
                f"{frame.num_channels} ch, frame 0 is {rate} Hz x {channels} ch"
            )
    out = bytearray(sum(f._buf.nbytes for f in frames))
    offset = 0
    for frame in frames:
        end = offset + frame._buf.nbytes
        out[offset:end] = frame._buf
        offset = end
    return AudioFrame(out, rate, channels, sum(f.samples_per_channel for f in frames))


@final
class AudioSource:
    """Audio you produce, to publish through a :class:`LocalAudioTrack`.

    Args:
        sample_rate: Hz (e.g. 48000).
        num_channels: 1 or 2.
        queue_size_ms: how much audio the native core buffers ahead of real
            time; ``capture_frame`` waits while it is full. 0 disables the
            queue (frames go straight to the encoder).

    Raises:
        ValueError: invalid rate, channel count or queue size.

    Close it (``close()``/``aclose()``/``async with``) to release its native
    handle; tracks created from it keep working until they are closed.
    """

    def __init__(self, sample_rate: int, num_channels: int, queue_size_ms: int = 1000) -> None:
        if sample_rate <= 0 or num_channels not in (1, 2) or queue_size_ms < 0:
            raise ValueError("invalid sample_rate, num_channels (1 or 2) or queue_size_ms")
        self._rt = rt = get_runtime()
        req = ffi_pb2.FfiRequest()
        msg = req.new_audio_source
        msg.type = audio_frame_pb2.AudioSourceType.AUDIO_SOURCE_NATIVE
        msg.sample_rate = sample_rate
        msg.num_channels = num_channels
        msg.queue_size_ms = queue_size_ms
        owned = rt.request(req).new_audio_source.source
        self._handle = rt.own(owned.handle.id, "audio_source")
        self.sample_rate = sample_rate
        self.num_channels = num_channels
        self.queue_size_ms = queue_size_ms
        self._playout_end = 0.0  # loop time when queued audio finishes playing
        # The native source takes one capture at a time: a capture whose caller
        # was cancelled is still in flight until its completion arrives.
        self._in_flight: anyio.Event | None = None

    @property
    def queued_duration(self) -> float:
        """Seconds of captured audio not yet played out (an estimate)."""
        try:
            now = anyio.current_time()
        except Exception:
            return 0.0
        return max(0.0, self._playout_end - now)

    async def capture_frame(self, frame: AudioFrame) -> None:
        """Queues ``frame`` for sending; waits while the queue is full.

        The frame's buffer is lent to the native core without a copy and held
        until the native core is done with it, even if this call is cancelled
        (do not write to it before then).
        Captures are serialized: a call waits for the previous one (also one
        whose caller was cancelled) to be taken by the native source.

        Raises:
            ValueError: the frame's rate or channel count differs from the source's.
            ResourceClosedError: the source is closed.
            NativeError: the native core refused the frame.

        Cancellation: returns at once; the frame may still be played.
        """
        if frame.sample_rate != self.sample_rate or frame.num_channels != self.num_channels:
            raise ValueError(
                f"frame is {frame.sample_rate} Hz x {frame.num_channels} ch, source is "
                f"{self.sample_rate} Hz x {self.num_channels} ch"
            )
        if self._handle.closed:
            raise ResourceClosedError("the audio source is closed")
        if not frame.samples_per_channel:
            return
        while self._in_flight is not None:
            await self._in_flight.wait()
        if self._handle.closed:
            raise ResourceClosedError("the audio source is closed")
        rt = self._rt
        req = ffi_pb2.FfiRequest()
        msg = req.capture_audio_frame
        msg.source_handle = self._handle.id
        frame._buffer_info(msg.buffer)
        done = self._in_flight = anyio.Event()

        def finished(_late: Any = None) -> None:
            # Also the reaper of a cancelled call (run with the completion, or
            # with the NativePanicError after a panic): the next capture may go.
            done.set()
            if self._in_flight is done:
                self._in_flight = None

        # Lent to the native core without a copy; the dispatcher holds the pin
        # until the completion arrives, even if this call is cancelled.
        pin, msg.buffer.data_ptr = rt.pin(frame._buf)
        try:
            cb = await rt.request_async(req, "capture_audio_frame", reaper=finished, pin=pin)
        except anyio.get_cancelled_exc_class():
            raise  # sent: `finished` runs when the native core completes it
        except BaseException:
            finished()
            raise
        finished()
        now = anyio.current_time()
        self._playout_end = max(self._playout_end, now) + frame.duration
        if cb.error:
            raise NativeError(f"capture_frame: {cb.error}")

    def clear_queue(self) -> None:
        """Drops the audio queued but not yet played."""
        if self._handle.closed:
            return
        req = ffi_pb2.FfiRequest()
        req.clear_audio_buffer.source_handle = self._handle.id
        self._rt.request(req)
        self._playout_end = 0.0

    async def wait_for_playout(self) -> None:
        """Waits until the audio captured so far has played out (estimated from
        real time). Cancellation: returns at once."""
        while True:
            remaining = self._playout_end - anyio.current_time()
            if remaining <= 0:
                return
            await anyio.sleep(remaining)

    def close(self) -> None:
        """Drops the audio still queued and releases the native source
        (idempotent).

        The queue is emptied first on purpose: the native source's 10 ms
        playout task races with the source's destruction (livekit 1.2 does not
        stop that task before freeing the source), and a tick that is busy
        feeding queued audio to the encoder while the last reference goes away
        can leave the closing thread waiting for ever. With an empty queue a
        tick is a few instructions, so the window all but closes.
        """
        if self._handle.closed:
            return
        with contextlib.suppress(LiveKitError):  # native core gone (panic, fork)
            self.clear_queue()
        self._handle.close()

    async def aclose(self) -> None:
        self.close()
        await anyio.lowlevel.checkpoint()

    async def __aenter__(self) -> AudioSource:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


@final
class AudioResampler:
    """Converts audio between sample rates (the native sox resampler).

    ``push(frame)`` returns the frames ready so far (possibly none);
    ``flush()`` returns the rest. Close it to release its native handle.

    Args:
        input_rate: Hz of the frames pushed.
        output_rate: Hz of the frames returned.
        num_channels: channels of the frames pushed (kept as is).
        quality: 0 quick ... 4 very high (sox quality recipes).

    Raises:
        ValueError: invalid rates, channel count or quality.
    """

    def __init__(
        self, input_rate: int, output_rate: int, *, num_channels: int = 1, quality: int = 2
    ) -> None:
        if input_rate <= 0 or output_rate <= 0 or num_channels <= 0 or not 0 <= quality <= 4:
            raise ValueError("invalid rates, num_channels or quality")
        self._rt = rt = get_runtime()
        req = ffi_pb2.FfiRequest()
        msg = req.new_sox_resampler
        msg.input_rate = float(input_rate)
        msg.output_rate = float(output_rate)
        msg.num_channels = num_channels
        msg.input_data_type = audio_frame_pb2.SoxResamplerDataType.SOXR_DATATYPE_INT16I
        msg.output_data_type = audio_frame_pb2.SoxResamplerDataType.SOXR_DATATYPE_INT16I
        msg.quality_recipe = quality  # type: ignore[assignment]
        resp = rt.request(req).new_sox_resampler
        if resp.HasField("error") and resp.error:
            raise NativeError(f"AudioResampler: {resp.error}")
        self._handle = rt.own(resp.resampler.handle.id, "audio_resampler")
        self.input_rate = input_rate
        self.output_rate = output_rate
        self.num_channels = num_channels

    def push(self, frame: AudioFrame) -> list[AudioFrame]:
        """Resamples ``frame``.

        Raises:
            ValueError: the frame's rate or channel count is not the resampler's.
            NativeError: the native resampler failed.
        """
        if frame.sample_rate != self.input_rate or frame.num_channels != self.num_channels:
            raise ValueError("frame format does not match the resampler's input")
        req = ffi_pb2.FfiRequest()
        msg = req.push_sox_resampler
        msg.resampler_handle = self._check_open()
        msg.size = frame._buf.nbytes
        rt = self._rt
        pin, msg.data_ptr = rt.pin(frame._buf)
        try:
            resp = rt.request(req).push_sox_resampler
        finally:
            rt.unpin(pin)
        return self._output(resp)

    def flush(self) -> list[AudioFrame]:
        """Returns the audio still inside the resampler."""
        req = ffi_pb2.FfiRequest()
        req.flush_sox_resampler.resampler_handle = self._check_open()
        return self._output(self._rt.request(req).flush_sox_resampler)

    def _check_open(self) -> int:
        if self._handle.closed:
            raise ResourceClosedError("the resampler is closed")
        return self._handle.id

    def _output(self, resp: Any) -> list[AudioFrame]:
        if resp.error:
            raise NativeError(f"AudioResampler: {resp.error}")
        if not resp.size:
            return []
        data = self._rt.backend.read_into_bytearray(resp.output_ptr, resp.size)
        samples = resp.size // (_SAMPLE * self.num_channels)
        return [AudioFrame(data, self.output_rate, self.num_channels, samples)]

    def close(self) -> None:
        """Releases the native resampler (idempotent)."""
        self._handle.close()

    async def aclose(self) -> None:
        self.close()
        await anyio.lowlevel.checkpoint()

    def __enter__(self) -> AudioResampler:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> AudioResampler:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
