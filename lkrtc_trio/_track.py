"""Tracks, publish options and the media enums (values are the native ones)."""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING, Any, final

import anyio

from ._errors import NativeError, ResourceClosedError
from ._proto import ffi_pb2
from ._runtime import OwnedHandle, Runtime, get_runtime
from ._stats import RtcStat, StatsReports
from ._video import FrameMetadataFeature

if TYPE_CHECKING:
    from ._audio import AudioSource
    from ._video import VideoSource

__all__ = [
    "LocalAudioTrack",
    "LocalTrack",
    "LocalVideoTrack",
    "RemoteAudioTrack",
    "RemoteTrack",
    "RemoteVideoTrack",
    "StreamState",
    "Track",
    "TrackKind",
    "TrackPublishOptions",
    "TrackSource",
    "VideoCodec",
]


class TrackKind(IntEnum):
    KIND_UNKNOWN = 0
    KIND_AUDIO = 1
    KIND_VIDEO = 2


class TrackSource(IntEnum):
    SOURCE_UNKNOWN = 0
    SOURCE_CAMERA = 1
    SOURCE_MICROPHONE = 2
    SOURCE_SCREENSHARE = 3
    SOURCE_SCREENSHARE_AUDIO = 4


class StreamState(IntEnum):
    STATE_UNKNOWN = 0
    STATE_ACTIVE = 1
    STATE_PAUSED = 2


class VideoCodec(IntEnum):
    VP8 = 0
    H264 = 1
    AV1 = 2
    VP9 = 3
    H265 = 4


@final
@dataclass(frozen=True, kw_only=True)
class TrackPublishOptions:
    """How to publish a track. Every field is optional.

    Attributes:
        source: what the track is (microphone, camera, screen share...).
        simulcast: send several video layers (video only).
        video_codec: the video codec.
        video_max_bitrate / video_max_framerate: encoding limits (video).
        audio_max_bitrate: encoding limit (audio), bits per second.
        dtx: discontinuous transmission for audio (silence is not sent).
        red: redundant audio encoding.
        stream: name of the stream this track belongs to.
        frame_metadata_features: which ``FrameMetadata`` fields each video
            frame carries end to end (a trailer on every encoded frame).
    """

    source: TrackSource | int | None = None
    simulcast: bool | None = None
    video_codec: VideoCodec | int | None = None
    video_max_bitrate: int | None = None
    video_max_framerate: float | None = None
    audio_max_bitrate: int | None = None
    dtx: bool | None = None
    red: bool | None = None
    stream: str | None = None
    frame_metadata_features: tuple[FrameMetadataFeature, ...] = ()

    def _fill(self, msg: Any) -> None:
        if self.source is not None:
            msg.source = int(self.source)
        if self.simulcast is not None:
            msg.simulcast = self.simulcast
        if self.video_codec is not None:
            msg.video_codec = int(self.video_codec)
        if self.video_max_bitrate is not None or self.video_max_framerate is not None:
            msg.video_encoding.max_bitrate = self.video_max_bitrate or 0
            msg.video_encoding.max_framerate = self.video_max_framerate or 0.0
        if self.audio_max_bitrate is not None:
            msg.audio_encoding.max_bitrate = self.audio_max_bitrate
        if self.dtx is not None:
            msg.dtx = self.dtx
        if self.red is not None:
            msg.red = self.red
        if self.stream is not None:
            msg.stream = self.stream
        for feature in self.frame_metadata_features:
            msg.frame_metadata_features.append(int(FrameMetadataFeature(feature)))


class Track:
    """A media track: its sid, name, kind, mute and stream state.

    Local tracks are yours to close (``close()``/``aclose()``/``async with``);
    remote tracks are owned by the room and released when unsubscribed.
    """

    __slots__ = ("__weakref__", "_handle", "_info", "_rt", "_streams")

    def __init__(self, rt: Runtime, handle: OwnedHandle, info: Any) -> None:
        self._rt = rt
        self._handle = handle
        self._info = info
        #: media streams reading this track (ended when it is released)
        self._streams: weakref.WeakSet[Any] = weakref.WeakSet()

    @property
    def sid(self) -> str:
        return str(self._info.sid)

    @property
    def name(self) -> str:
        return str(self._info.name)

    @property
    def kind(self) -> TrackKind:
        return TrackKind(self._info.kind)

    @property
    def muted(self) -> bool:
        return bool(self._info.muted)

    @property
    def stream_state(self) -> StreamState:
        return StreamState(self._info.stream_state)

    @property
    def closed(self) -> bool:
        return self._handle.closed

    async def get_stats(self) -> StatsReports:
        """WebRTC statistics of this track: typed reports
        (:class:`~lkrtc_trio.OutboundRtpStats` for a published local track,
        :class:`~lkrtc_trio.InboundRtpStats` for a remote one, plus their
        codec, media source, remote RTCP, transport and candidate reports),
        in a tuple: ``reports.of_type(OutboundRtpStats)`` picks a kind,
        ``reports.summary()`` sums up bytes, packets, loss, jitter and RTT.

        Raises:
            ResourceClosedError: the track is closed (or was released).
            NativeError: the native core could not collect them, e.g. for a
                local track that is not published.

        Cancellation: returns at once; the native collection cannot be
        stopped, its late answer is dropped and nothing stays pending.
        """
        if self._handle.closed:
            raise ResourceClosedError("the track is closed")
        req = ffi_pb2.FfiRequest()
        req.get_stats.track_handle = self._handle.id
        cb = await self._rt.request_async(req, "get_stats")
        if cb.HasField("error"):
            raise NativeError(f"get_stats failed: {cb.error}")
        return StatsReports(RtcStat._from_proto(s) for s in cb.stats)

    def _add_stream(self, stream: Any) -> None:
        """A media stream reads this track: it is ended when the track is released."""
        self._streams.add(stream)

    def _muted_by_event(self, muted: bool) -> None:
        """A TrackMuted / TrackUnmuted event (the room's state mirror)."""
        self._info.muted = muted

    def _release(self) -> None:
        """Ends its streams and releases the native handle (idempotent)."""
        for stream in list(self._streams):
            stream._end()
        self._handle.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.sid or '(unpublished)'} {self.name!r}>"


class LocalTrack(Track):
    """A track created from a local source."""

    __slots__ = ("_source",)

    def __init__(self, rt: Runtime, handle: OwnedHandle, info: Any, source: Any) -> None:
        super().__init__(rt, handle, info)
        self._source = source  # keeps the source referenced while the track lives

    def _published_as(self, sid: str) -> None:
        """publish_track completed: the track now has its sid."""
        self._info.sid = sid

    def mute(self) -> None:
        """Mutes the track (peers get TrackMuted). Raises ResourceClosedError if closed."""
        self._set_muted(True)

    def unmute(self) -> None:
        """Unmutes the track (peers get TrackUnmuted)."""
        self._set_muted(False)

    def _set_muted(self, muted: bool) -> None:
        if self._handle.closed:
            raise ResourceClosedError("the track is closed")
        req = ffi_pb2.FfiRequest()
        req.local_track_mute.track_handle = self._handle.id
        req.local_track_mute.mute = muted
        resp = self._rt.request(req)
        self._info.muted = resp.local_track_mute.muted

    def close(self) -> None:
        """Releases the track's native handle (unpublish it first to stop
        sending). Idempotent."""
        self._release()

    async def aclose(self) -> None:
        self.close()
        await anyio.lowlevel.checkpoint()

    async def __aenter__(self) -> LocalTrack:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def _create_track(field: str, name: str, source: Any) -> tuple[Runtime, Any]:
    if not isinstance(name, str):
        raise TypeError("name must be a str")
    if source._handle.closed:
        raise ResourceClosedError("the source is closed")
    rt = get_runtime()
    req = ffi_pb2.FfiRequest()
    msg = getattr(req, field)
    msg.name = name
    msg.source_handle = source._handle.id
    owned = getattr(rt.request(req), field).track
    return rt, owned


@final
class LocalAudioTrack(LocalTrack):
    """An audio track fed by an :class:`AudioSource`."""

    __slots__ = ()

    @staticmethod
    def create_audio_track(name: str, source: AudioSource) -> LocalAudioTrack:
        """Creates a track from ``source`` (publish it with ``publish_track``).

        Raises:
            TypeError: ``name`` is not a str.
            ResourceClosedError: the source is closed.
        """
        rt, owned = _create_track("create_audio_track", name, source)
        return LocalAudioTrack(rt, rt.own(owned.handle.id, "local_audio_track"), owned.info, source)


@final
class LocalVideoTrack(LocalTrack):
    """A video track fed by a :class:`VideoSource`."""

    __slots__ = ()

    @staticmethod
    def create_video_track(name: str, source: VideoSource) -> LocalVideoTrack:
        """Creates a track from ``source`` (publish it with ``publish_track``).

        Raises:
            TypeError: ``name`` is not a str.
            ResourceClosedError: the source is closed.
        """
        rt, owned = _create_track("create_video_track", name, source)
        return LocalVideoTrack(rt, rt.own(owned.handle.id, "local_video_track"), owned.info, source)


class RemoteTrack(Track):
    """A subscribed track of another participant (owned by the room)."""

    __slots__ = ()


@final
class RemoteAudioTrack(RemoteTrack):
    __slots__ = ()


@final
class RemoteVideoTrack(RemoteTrack):
    __slots__ = ()


def remote_track(rt: Runtime, owned: Any) -> RemoteTrack:
    """Wraps a subscribed track from a ``TrackSubscribed`` event."""
    cls = RemoteVideoTrack if owned.info.kind == TrackKind.KIND_VIDEO else RemoteAudioTrack
    info = type(owned.info)()
    info.CopyFrom(owned.info)
    return cls(rt, rt.own(owned.handle.id, "remote_track"), info)
