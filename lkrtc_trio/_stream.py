"""Media in: ``AudioStream`` and ``VideoStream``, async iterators of frames.

Each stream is the dispatcher's sink for its native stream handle. Frames go
into a bounded buffer; when the consumer falls behind, the **oldest** frame is
dropped (media is real time: the newest audio and video matter most) and
counted in ``dropped_frames``. A stream ends (iteration stops) when its track
is unsubscribed, its participant leaves, the room closes, or you close it;
closing releases its native handle at once.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Generic, TypeVar, final

import anyio

from ._audio import AudioFrame
from ._errors import ResourceClosedError
from ._proto import audio_frame_pb2, ffi_pb2, video_frame_pb2
from ._track import Track, TrackKind
from ._video import FrameMetadata, VideoBufferType, VideoFrame, VideoRotation

__all__ = ["AudioStream", "VideoStream"]

F = TypeVar("F")
S = TypeVar("S", bound="_MediaStream[Any]")


class _MediaStream(Generic[F]):
    _event_field = ""

    def __init__(self, track: Track, capacity: int, request: Any, field: str) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        if track.closed:
            raise ResourceClosedError("the track is closed (unsubscribed or its room closed)")
        rt = self._rt = track._rt
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
        track._add_stream(self)

    @property
    def track(self) -> Track:
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


@final
class AudioStream(_MediaStream[AudioFrame]):
    """Audio frames of a track, as an async iterator (``async for frame in stream``).

    Args:
        track: a subscribed remote audio track (or a local one).
        sample_rate / num_channels: the format to deliver (the native core
            resamples and remixes); default 48000 Hz mono.
        frame_size_ms: duration of each frame (default: the native 10 ms).
        capacity: frames buffered before the oldest is dropped (default 100,
            1 s of 10 ms frames).

    Raises:
        TypeError: not an audio track.
        ResourceClosedError: the track is already closed.
        ValueError: invalid format or capacity.

    Must be created inside the event loop (trio or asyncio).
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
    ) -> None:
        if track.kind != TrackKind.KIND_AUDIO:
            raise TypeError("AudioStream needs an audio track")
        if sample_rate <= 0 or num_channels <= 0:
            raise ValueError("invalid sample_rate or num_channels")
        req = ffi_pb2.FfiRequest()
        msg = req.new_audio_stream
        msg.track_handle = track._handle.id
        msg.type = audio_frame_pb2.AudioStreamType.AUDIO_STREAM_NATIVE
        msg.sample_rate = sample_rate
        msg.num_channels = num_channels
        if frame_size_ms is not None:
            msg.frame_size_ms = frame_size_ms
        self.sample_rate = sample_rate
        self.num_channels = num_channels
        super().__init__(track, capacity, req, "new_audio_stream")

    def _convert(self, frame_msg: Any) -> AudioFrame:
        return AudioFrame._from_native(self._rt, frame_msg.frame)


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
        if track.kind != TrackKind.KIND_VIDEO:
            raise TypeError("VideoStream needs a video track")
        req = ffi_pb2.FfiRequest()
        msg = req.new_video_stream
        msg.track_handle = track._handle.id
        msg.type = video_frame_pb2.VideoStreamType.VIDEO_STREAM_NATIVE
        if format is not None:
            msg.format = int(VideoBufferType(format))  # type: ignore[assignment]
        msg.normalize_stride = True
        super().__init__(track, capacity, req, "new_video_stream")

    def _convert(self, frame_msg: Any) -> VideoFrame:
        frame = VideoFrame._from_native(self._rt, frame_msg.buffer)
        frame.timestamp_us = frame_msg.timestamp_us
        frame.rotation = VideoRotation(frame_msg.rotation)
        if frame_msg.HasField("metadata"):
            frame.metadata = FrameMetadata._from_proto(frame_msg.metadata)
        return frame
