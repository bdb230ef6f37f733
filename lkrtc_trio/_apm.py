"""Audio processing: the native WebRTC AudioProcessingModule.

Echo cancellation (AEC3), noise suppression, a high-pass filter and gain
control (AGC2), applied in place to 10 ms frames of int16 PCM. Every call is a
synchronous request to the native core (tens of microseconds per frame): there
is nothing to await and nothing to cancel.
"""

from __future__ import annotations

from typing import Any, final

import anyio

from ._audio import AudioFrame
from ._errors import NativeError, ResourceClosedError
from ._proto import ffi_pb2
from ._runtime import get_runtime

__all__ = ["AudioProcessingModule"]

#: Sample rates the native module accepts (WebRTC resamples internally);
#: lkrtc_trio also requires the rate to be a multiple of 100 Hz so that a
#: frame is exactly 10 ms long.
MIN_SAMPLE_RATE = 8_000
MAX_SAMPLE_RATE = 384_000
#: ``set_stream_delay_ms`` range: WebRTC clamps other values into it and
#: reports an error.
MAX_STREAM_DELAY_MS = 500


@final
class AudioProcessingModule:
    """The WebRTC audio processing module of the native core.

    Args:
        echo_cancellation: cancel the echo of the far end (the audio you play,
            given to :meth:`process_reverse_stream`) in the near end (the
            microphone, given to :meth:`process_stream`). WebRTC's AEC3.
        noise_suppression: suppress stationary noise in the near end.
        high_pass_filter: remove low frequencies (hum, rumble) from the near end.
        auto_gain_control: enable WebRTC's gain controller 2 with its adaptive
            digital controller (WebRTC defaults: starts at +15 dB, changes at
            most 6 dB/s, never below 0 dB, keeps the output noise floor under
            -50 dBFS) and its limiter. Steady sounds count as noise: a
            continuous tone is boosted at first, then back to unity gain after
            about 2.5 s; audio near full scale is limited.

    Frames must be exactly 10 ms long (``samples_per_channel * 100 ==
    sample_rate``) at 8000 to 384000 Hz (a multiple of 100 Hz), with any
    number of channels, in a writable buffer: the module writes its output
    over the input, in place. Typical use, per 10 ms::

        apm.process_reverse_stream(played_frame)  # far end, before playing it
        apm.process_stream(mic_frame)  # near end, then send mic_frame

    Every method is a synchronous call to the native core: nothing to await,
    nothing to cancel. Close it (``close()``/``aclose()``, ``with`` or
    ``async with``) to release its native handle.

    Raises:
        NativeError: the native core refused to create the module.
    """

    __slots__ = (
        "_auto_gain_control",
        "_echo_cancellation",
        "_handle",
        "_high_pass_filter",
        "_noise_suppression",
        "_rt",
    )

    def __init__(
        self,
        *,
        echo_cancellation: bool = False,
        noise_suppression: bool = False,
        high_pass_filter: bool = False,
        auto_gain_control: bool = False,
    ) -> None:
        self._rt = rt = get_runtime()
        req = ffi_pb2.FfiRequest()
        msg = req.new_apm
        # proto2 ``required`` fields: all four are always set.
        msg.echo_canceller_enabled = bool(echo_cancellation)
        msg.noise_suppression_enabled = bool(noise_suppression)
        msg.high_pass_filter_enabled = bool(high_pass_filter)
        msg.gain_controller_enabled = bool(auto_gain_control)
        resp = rt.request(req).new_apm
        if not resp.apm.handle.id:
            raise NativeError("AudioProcessingModule: the native core returned no module")
        self._handle = rt.own(resp.apm.handle.id, "apm")
        self._echo_cancellation = bool(echo_cancellation)
        self._noise_suppression = bool(noise_suppression)
        self._high_pass_filter = bool(high_pass_filter)
        self._auto_gain_control = bool(auto_gain_control)

    @property
    def echo_cancellation(self) -> bool:
        return self._echo_cancellation

    @property
    def noise_suppression(self) -> bool:
        return self._noise_suppression

    @property
    def high_pass_filter(self) -> bool:
        return self._high_pass_filter

    @property
    def auto_gain_control(self) -> bool:
        return self._auto_gain_control

    @property
    def closed(self) -> bool:
        return bool(self._handle.closed)

    def process_stream(self, data: AudioFrame) -> None:
        """Processes one 10 ms near-end (microphone) frame in place.

        The frame's buffer is lent to the native core for the duration of the
        call (no copy) and overwritten with the processed audio. A frame over
        read-only memory (e.g. built over ``bytes``) is refused rather than
        silently copied, because the caller would never see the output: build
        it with ``AudioFrame.create`` or over a ``bytearray``.

        Synchronous: nothing to await, nothing to cancel.

        Raises:
            ValueError: the frame is not exactly 10 ms, its sample rate is not
                supported, or its buffer is read-only (nothing is sent).
            ResourceClosedError: the module is closed.
            NativeError: the native module failed to process the frame.
        """
        self._process(data, "apm_process_stream")

    def process_reverse_stream(self, data: AudioFrame) -> None:
        """Processes one 10 ms far-end frame (the audio you are about to
        play), the reference of the echo canceller, in place.

        Same buffer rules as :meth:`process_stream` (lent without a copy,
        overwritten, must be writable). Synchronous: nothing to await,
        nothing to cancel.

        Raises:
            ValueError: the frame is not exactly 10 ms, its sample rate is not
                supported, or its buffer is read-only (nothing is sent).
            ResourceClosedError: the module is closed.
            NativeError: the native module failed to process the frame.
        """
        self._process(data, "apm_process_reverse_stream")

    def set_stream_delay_ms(self, delay_ms: int) -> None:
        """Tells the echo canceller the delay, in ms, between a far-end frame
        given to :meth:`process_reverse_stream` and the near-end frame given
        to :meth:`process_stream` that holds its echo:
        ``(t_render - t_analyze) + (t_process - t_capture)``.

        Meant for echo cancellation (call it whenever the delay estimate
        changes); AEC3 also estimates the delay itself. Synchronous: nothing
        to await, nothing to cancel.

        Raises:
            ValueError: ``delay_ms`` is outside 0..500 (the native module would
                clamp it and report an error; nothing is sent).
            ResourceClosedError: the module is closed.
            NativeError: the native module refused the delay.
        """
        if isinstance(delay_ms, bool) or not isinstance(delay_ms, int):
            raise TypeError("delay_ms must be an int")
        if not 0 <= delay_ms <= MAX_STREAM_DELAY_MS:
            raise ValueError(f"delay_ms must be within 0..{MAX_STREAM_DELAY_MS}, got {delay_ms}")
        req = ffi_pb2.FfiRequest()
        msg = req.apm_set_stream_delay
        msg.apm_handle = self._check_open()
        msg.delay_ms = delay_ms
        resp = self._rt.request(req).apm_set_stream_delay
        if resp.error:
            raise NativeError(f"AudioProcessingModule.set_stream_delay_ms: {resp.error}")

    def _process(self, frame: AudioFrame, field: str) -> None:
        _check_frame(frame)
        handle_id = self._check_open()
        req = ffi_pb2.FfiRequest()
        msg: Any = getattr(req, field)
        msg.apm_handle = handle_id
        msg.size = frame._buf.nbytes
        msg.sample_rate = frame.sample_rate
        msg.num_channels = frame.num_channels
        rt = self._rt
        pin, msg.data_ptr = rt.pin(frame._buf)
        try:
            resp = getattr(rt.request(req), field)
        finally:
            rt.unpin(pin)
        if resp.error:
            raise NativeError(f"AudioProcessingModule.{field[4:]}: {resp.error}")

    def _check_open(self) -> int:
        if self._handle.closed:
            raise ResourceClosedError("the audio processing module is closed")
        handle_id: int = self._handle.id
        return handle_id

    def close(self) -> None:
        """Releases the native module (idempotent)."""
        self._handle.close()

    async def aclose(self) -> None:
        """Same as :meth:`close`, plus a checkpoint."""
        self.close()
        await anyio.lowlevel.checkpoint()

    def __enter__(self) -> AudioProcessingModule:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> AudioProcessingModule:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        flags = [
            name
            for name in (
                "echo_cancellation",
                "noise_suppression",
                "high_pass_filter",
                "auto_gain_control",
            )
            if getattr(self, name)
        ]
        state = " closed" if self.closed else ""
        return f"<AudioProcessingModule {'+'.join(flags) or 'passthrough'}{state}>"


def _check_frame(frame: AudioFrame) -> None:
    """Everything the native core would otherwise abort the process on (its
    Rust layer asserts a whole number of 10 ms chunks) or reject."""
    rate = frame.sample_rate
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE or rate % 100:
        raise ValueError(
            f"unsupported sample rate {rate} Hz: the audio processing module takes "
            f"{MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE} Hz in multiples of 100 Hz "
            "(10 ms frames of a whole number of samples)"
        )
    if frame.samples_per_channel * 100 != rate:
        raise ValueError(
            f"the audio processing module takes 10 ms frames: {rate // 100} samples per "
            f"channel at {rate} Hz, got {frame.samples_per_channel}"
        )
    if frame._buf.readonly:
        raise ValueError(
            "the frame's buffer is read-only and the audio processing module writes its "
            "output in place: build the frame with AudioFrame.create() or over a bytearray"
        )
