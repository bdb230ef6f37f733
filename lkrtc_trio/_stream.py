"""Media in: ``AudioStream`` and ``VideoStream``, async iterators of frames.

Each stream is the dispatcher's sink for its native stream handle. Frames go
into a bounded buffer; when the consumer falls behind, the **oldest** frame is
dropped (media is real time: the newest audio and video matter most) and
counted in ``dropped_frames``. A stream ends (iteration stops) when its track
is unsubscribed, its participant leaves, the room closes, or you close it;
closing releases its native handle at once.

``AudioStream(..., noise_cancellation=...)`` runs a :class:`FrameProcessor`
on each frame before it is buffered, or has the native core run an audio
filter plugin (:func:`load_audio_filter_plugin`, :class:`NoiseCancellationOptions`).
"""

from __future__ import annotations

import json
import logging
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar, final

import anyio

from ._audio import AudioFrame
from ._errors import NativeError, ResourceClosedError
from ._proto import audio_frame_pb2, ffi_pb2, video_frame_pb2
from ._runtime import Runtime, get_runtime
from ._track import Track, TrackKind, TrackSource
from ._video import FrameMetadata, VideoBufferType, VideoFrame, VideoRotation

if TYPE_CHECKING:
    from ._participant import Participant

__all__ = [
    "AudioStream",
    "FrameProcessor",
    "NoiseCancellationOptions",
    "VideoStream",
    "load_audio_filter_plugin",
]

F = TypeVar("F")
S = TypeVar("S", bound="_MediaStream[Any]")
_log = logging.getLogger("lkrtc_trio")


class FrameProcessor(ABC, Generic[F]):
    """Your own per-frame processing (a denoiser, a gain, a VAD tap...) that an
    ``AudioStream`` applies to each frame before delivering it (the official
    SDK's protocol and names).

    Implement ``enabled`` and ``_process(frame) -> frame`` (return the frame
    to deliver: the same object changed in place, or a new one of the same
    format) and ``_close()``. ``_process`` runs synchronously on the event
    loop as each frame arrives (keep it to well under a frame's duration; a
    slow processor delays every task of the loop). While ``enabled`` is
    False frames pass through untouched. If ``_process`` raises, that frame
    is delivered unprocessed, the exception is logged and counted in the
    stream's ``processing_errors``: a bug in a denoiser must not silence the
    audio. ``_close()`` is called once when the stream closes, unless the
    stream was created with ``auto_close_noise_cancellation=False``.
    """

    @property
    @abstractmethod
    def enabled(self) -> bool: ...

    @abstractmethod
    def _process(self, frame: F) -> F: ...

    @abstractmethod
    def _close(self) -> None: ...


@final
@dataclass(frozen=True)
class NoiseCancellationOptions:
    """A native audio filter for ``AudioStream(noise_cancellation=...)``: the
    ``module_id`` a plugin was loaded under with
    :func:`load_audio_filter_plugin`, and its options (sent to it as JSON).

    Raises:
        TypeError: options that are not JSON-serializable.
    """

    module_id: str
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        json.dumps(dict(self.options))


def load_audio_filter_plugin(
    module_id: str, path: str, dependencies: Sequence[str] | None = None
) -> None:
    """Loads a native audio filter plugin (a shared library built for the
    LiveKit native core, e.g. a noise canceller) into the native core under
    ``module_id``; streams then use it through
    ``NoiseCancellationOptions(module_id, options)``. Loading the same module
    id twice is allowed (the native core keeps the first).

    Raises:
        NativeError: the native core could not load the plugin (the message
            says why: a missing file, a library that is not a filter plugin).

    Synchronous: nothing to cancel.
    """
    req = ffi_pb2.FfiRequest()
    msg = req.load_audio_filter_plugin
    msg.module_id = module_id
    msg.plugin_path = str(path)
    msg.dependencies[:] = [str(d) for d in dependencies or ()]
    resp = get_runtime().request(req).load_audio_filter_plugin
    if resp.error:
        raise NativeError(f"load_audio_filter_plugin({path!r}): {resp.error}")


class _MediaStream(Generic[F]):
    _event_field = ""

    def __init__(
        self,
        rt: Runtime,
        track: Track | None,
        capacity: int,
        request: Any,
        field: str,
        attach: Callable[[Any], None],
    ) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self._rt = rt
        owned = getattr(rt.request(request), field).stream
        self._handle = rt.own(owned.handle.id, field)
        self._track = track
        self._capacity = capacity
        self._frames: deque[F] = deque()
        self._wakeup: anyio.Event | None = None
        self._ended = False
        self._failure: BaseException | None = None
        self.dropped_frames = 0
        self.received_frames = 0
        try:
            rt.add_sink(self._handle.id, self)
        except BaseException:
            self._handle.close()
            raise
        attach(self)

    @property
    def track(self) -> Track | None:
        """The track read (None for a stream created with ``from_participant``:
        the native core follows whichever track of that source the participant
        publishes)."""
        return self._track

    # -- dispatcher sink (loop thread) ---------------------------------------------
    def _convert(self, frame_msg: Any) -> F:
        raise NotImplementedError

    def on_native_event(self, event: Any) -> None:
        msg = getattr(event, self._event_field)
        if msg.HasField("frame_received"):
            frame = self._convert(msg.frame_received)
            if self._ended:
                return
            self.received_frames += 1
            if len(self._frames) >= self._capacity:
                self._frames.popleft()
                self.dropped_frames += 1
            self._frames.append(frame)
            self._wake()
        elif msg.HasField("eos"):
            self._end()

    def on_native_failure(self, exc: BaseException) -> None:
        self._failure = exc
        self._end()

    def _wake(self) -> None:
        if self._wakeup is not None:
            self._wakeup.set()
            self._wakeup = None

    def _end(self) -> None:
        """No more frames: unroute and release the native stream (buffered
        frames can still be read)."""
        if self._ended:
            return
        self._ended = True
        self._rt.dispatcher.remove_sink(self._handle.id, self)
        self._handle.close()
        self._wake()

    # -- consumer ---------------------------------------------------------------------
    async def receive(self) -> F:
        """The next frame.

        Raises:
            anyio.EndOfStream: the stream ended and every buffered frame was read.
            NativePanicError: the native core panicked.

        Cancellation: nothing is lost. Always a checkpoint, even with frames
        buffered (like trio's own receive).
        """
        await anyio.lowlevel.checkpoint_if_cancelled()
        while True:
            if self._frames:
                frame = self._frames.popleft()
                await anyio.lowlevel.cancel_shielded_checkpoint()
                return frame
            if self._ended:
                if self._failure is not None:
                    from ._errors import NativePanicError

                    raise NativePanicError(str(self._failure)) from self._failure
                raise anyio.EndOfStream
            if self._wakeup is None:
                self._wakeup = anyio.Event()
            await self._wakeup.wait()

    def __aiter__(self: S) -> S:
        return self

    async def __anext__(self) -> F:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    def close(self) -> None:
        """Stops the stream and releases its native handle (idempotent);
        buffered frames are dropped."""
        self._end()
        self._frames.clear()

    async def aclose(self) -> None:
        self.close()
        await anyio.lowlevel.checkpoint()

    async def __aenter__(self: S) -> S:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def _for_track(track: Track, kind: TrackKind, what: str) -> Callable[[Any], None]:
    if not isinstance(track, Track):
        raise TypeError(f"{what} needs a Track, got {type(track).__name__}")
    if track.kind != kind:
        raise TypeError(
            f"{what} needs a{'n audio' if kind == TrackKind.KIND_AUDIO else ' video'} track"
        )
    if track.closed:
        raise ResourceClosedError("the track is closed (unsubscribed or its room closed)")
    return track._add_stream


def _for_participant(
    participant: Participant, track_source: TrackSource | int, msg: Any
) -> Callable[[Any], None]:
    """Fills a ``*_stream_from_participant`` request; returns how to attach the
    stream to the participant (it ends when the participant leaves)."""
    source = TrackSource(track_source)
    rec = participant._rec
    if rec.handle.closed:
        raise ResourceClosedError("the participant has left (or its room closed)")
    msg.participant_handle = rec.handle.id
    msg.track_source = int(source)
    return rec.streams.add


@final
class AudioStream(_MediaStream[AudioFrame]):
    """Audio frames of a track, as an async iterator (``async for frame in stream``).

    Args:
        track: a subscribed remote audio track (or a local one).
        sample_rate: the rate to deliver (the native core resamples);
            default 48000 Hz.
        num_channels: the channel count to deliver (the native core
            remixes); default 1 (mono).
        frame_size_ms: duration of each frame (default: the native 10 ms).
        capacity: frames buffered before the oldest is dropped (default 100,
            1 s of 10 ms frames).
        noise_cancellation: a :class:`FrameProcessor` applied to each frame
            (in this process), or :class:`NoiseCancellationOptions` naming a
            native filter plugin (run by the native core before the frame
            reaches Python).
        auto_close_noise_cancellation: call the processor's ``_close()``
            when this stream closes (default True; False to share one
            processor between streams).

    Raises:
        TypeError: not an audio track, or ``noise_cancellation`` of another type.
        ResourceClosedError: the track is already closed.
        ValueError: invalid format or capacity.
        NativeError: the native core refused the stream (e.g. an unknown
            filter module id).

    Must be created inside the event loop (trio or asyncio). ``from_track``
    and ``from_participant`` are the official SDK's keyword-only spellings.
    """

    _event_field = "audio_stream_event"

    def __init__(
        self,
        track: Track,
        *,
        sample_rate: int = 48000,
        num_channels: int = 1,
        frame_size_ms: int | None = None,
        capacity: int = 100,
        noise_cancellation: NoiseCancellationOptions | FrameProcessor[AudioFrame] | None = None,
        auto_close_noise_cancellation: bool = True,
    ) -> None:
        attach = _for_track(track, TrackKind.KIND_AUDIO, "AudioStream")
        req = ffi_pb2.FfiRequest()
        msg = req.new_audio_stream
        msg.track_handle = track._handle.id
        self._setup(
            msg,
            sample_rate,
            num_channels,
            frame_size_ms,
            noise_cancellation,
            auto_close_noise_cancellation,
        )
        super().__init__(track._rt, track, capacity, req, "new_audio_stream", attach)

    @classmethod
    def from_track(
        cls,
        *,
        track: Track,
        sample_rate: int = 48000,
        num_channels: int = 1,
        frame_size_ms: int | None = None,
        capacity: int = 100,
        noise_cancellation: NoiseCancellationOptions | FrameProcessor[AudioFrame] | None = None,
        auto_close_noise_cancellation: bool = False,
    ) -> AudioStream:
        """``AudioStream(track, ...)``, keyword-only as in the official SDK
        (whose ``from_track`` leaves the processor open by default, so this
        does too). Raises as the constructor."""
        return cls(
            track,
            sample_rate=sample_rate,
            num_channels=num_channels,
            frame_size_ms=frame_size_ms,
            capacity=capacity,
            noise_cancellation=noise_cancellation,
            auto_close_noise_cancellation=auto_close_noise_cancellation,
        )

    @classmethod
    def from_participant(
        cls,
        *,
        participant: Participant,
        track_source: TrackSource | int,
        sample_rate: int = 48000,
        num_channels: int = 1,
        frame_size_ms: int | None = None,
        capacity: int = 100,
        noise_cancellation: NoiseCancellationOptions | FrameProcessor[AudioFrame] | None = None,
        auto_close_noise_cancellation: bool = True,
    ) -> AudioStream:
        """The audio of ``participant``'s track of ``track_source`` (e.g. its
        microphone), whichever track that is: the native core waits until it
        is published and subscribed, and follows it if it is published again.
        Ends when the participant leaves or the room closes (or you close it).
        ``stream.track`` is None.

        Raises:
            ResourceClosedError: the participant has already left.
            ValueError, TypeError, NativeError: as the constructor.
        """
        req = ffi_pb2.FfiRequest()
        msg = req.audio_stream_from_participant
        attach = _for_participant(participant, track_source, msg)
        stream = cls.__new__(cls)  # the constructor takes a track
        stream._setup(
            msg,
            sample_rate,
            num_channels,
            frame_size_ms,
            noise_cancellation,
            auto_close_noise_cancellation,
        )
        _MediaStream.__init__(
            stream, get_runtime(), None, capacity, req, "audio_stream_from_participant", attach
        )
        return stream

    def _setup(
        self,
        msg: Any,
        sample_rate: int,
        num_channels: int,
        frame_size_ms: int | None,
        noise_cancellation: NoiseCancellationOptions | FrameProcessor[AudioFrame] | None,
        auto_close: bool,
    ) -> None:
        if sample_rate <= 0 or num_channels <= 0:
            raise ValueError("invalid sample_rate or num_channels")
        if frame_size_ms is not None and frame_size_ms <= 0:
            raise ValueError("frame_size_ms must be > 0")
        msg.type = audio_frame_pb2.AudioStreamType.AUDIO_STREAM_NATIVE
        msg.sample_rate = sample_rate
        msg.num_channels = num_channels
        if frame_size_ms is not None:
            msg.frame_size_ms = frame_size_ms
        self._processor: FrameProcessor[AudioFrame] | None = None
        self._auto_close = auto_close
        if isinstance(noise_cancellation, NoiseCancellationOptions):
            msg.audio_filter_module_id = noise_cancellation.module_id
            msg.audio_filter_options = json.dumps(dict(noise_cancellation.options))
        elif isinstance(noise_cancellation, FrameProcessor):
            self._processor = noise_cancellation
        elif noise_cancellation is not None:
            raise TypeError(
                "noise_cancellation must be a FrameProcessor or NoiseCancellationOptions, "
                f"got {type(noise_cancellation).__name__}"
            )
        self.sample_rate = sample_rate
        self.num_channels = num_channels
        #: frames a FrameProcessor raised on (delivered unprocessed)
        self.processing_errors = 0

    def _convert(self, frame_msg: Any) -> AudioFrame:
        frame = AudioFrame._from_native(self._rt, frame_msg.frame)
        processor = self._processor
        if processor is not None and processor.enabled:
            try:
                return processor._process(frame)
            except Exception:
                self.processing_errors += 1
                if self.processing_errors == 1:
                    _log.warning(
                        "FrameProcessor failed; delivering frames unprocessed", exc_info=True
                    )
        return frame

    def close(self) -> None:
        """Stops the stream, releases its native handle and (unless
        ``auto_close_noise_cancellation`` was False) closes its
        FrameProcessor (idempotent); buffered frames are dropped."""
        super().close()
        processor, self._processor = self._processor, None
        if processor is not None and self._auto_close:
            processor._close()


def _video_format(msg: Any, format: VideoBufferType | int | None) -> None:
    msg.type = video_frame_pb2.VideoStreamType.VIDEO_STREAM_NATIVE
    if format is not None:
        msg.format = int(VideoBufferType(format))
    msg.normalize_stride = True


@final
class VideoStream(_MediaStream[VideoFrame]):
    """Video frames of a track, as an async iterator.

    Args:
        track: a subscribed remote video track (or a local one).
        format: deliver frames in this buffer type (converted by the native
            core); default: as decoded (I420).
        capacity: frames buffered before the oldest is dropped (default 4).

    Raises:
        TypeError: not a video track.
        ResourceClosedError: the track is already closed.

    Must be created inside the event loop.
    """

    _event_field = "video_stream_event"

    def __init__(
        self,
        track: Track,
        *,
        format: VideoBufferType | int | None = None,
        capacity: int = 4,
    ) -> None:
        attach = _for_track(track, TrackKind.KIND_VIDEO, "VideoStream")
        req = ffi_pb2.FfiRequest()
        msg = req.new_video_stream
        msg.track_handle = track._handle.id
        _video_format(msg, format)
        super().__init__(track._rt, track, capacity, req, "new_video_stream", attach)

    @classmethod
    def from_track(
        cls, *, track: Track, format: VideoBufferType | int | None = None, capacity: int = 4
    ) -> VideoStream:
        """``VideoStream(track, ...)``, keyword-only as in the official SDK.
        Raises as the constructor."""
        return cls(track, format=format, capacity=capacity)

    @classmethod
    def from_participant(
        cls,
        *,
        participant: Participant,
        track_source: TrackSource | int,
        format: VideoBufferType | int | None = None,
        capacity: int = 4,
    ) -> VideoStream:
        """The video of ``participant``'s track of ``track_source`` (e.g. its
        camera), whichever track that is (see
        :meth:`AudioStream.from_participant`). Ends when the participant
        leaves or the room closes; ``stream.track`` is None.

        Raises:
            ResourceClosedError: the participant has already left.
            ValueError: an invalid capacity, source or format.
        """
        req = ffi_pb2.FfiRequest()
        msg = req.video_stream_from_participant
        attach = _for_participant(participant, track_source, msg)
        _video_format(msg, format)
        stream = cls.__new__(cls)  # the constructor takes a track
        _MediaStream.__init__(
            stream, get_runtime(), None, capacity, req, "video_stream_from_participant", attach
        )
        return stream

    def _convert(self, frame_msg: Any) -> VideoFrame:
        frame = VideoFrame._from_native(self._rt, frame_msg.buffer)
        frame.timestamp_us = frame_msg.timestamp_us
        frame.rotation = VideoRotation(frame_msg.rotation)
        if frame_msg.HasField("metadata"):
            frame.metadata = FrameMetadata._from_proto(frame_msg.metadata)
        return frame
