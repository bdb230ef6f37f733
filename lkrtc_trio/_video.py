"""Video: frames in the native buffer types, conversion, sources."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING, Any, final

import anyio

from ._errors import NativeError, ResourceClosedError
from ._proto import ffi_pb2, video_frame_pb2
from ._runtime import get_runtime

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "FrameMetadata",
    "FrameMetadataFeature",
    "VideoBufferType",
    "VideoFrame",
    "VideoRotation",
    "VideoSource",
]


class VideoBufferType(IntEnum):
    RGBA = 0
    ABGR = 1
    ARGB = 2
    BGRA = 3
    RGB24 = 4
    I420 = 5
    I420A = 6
    I422 = 7
    I444 = 8
    I010 = 9
    NV12 = 10


class VideoRotation(IntEnum):
    VIDEO_ROTATION_0 = 0
    VIDEO_ROTATION_90 = 1
    VIDEO_ROTATION_180 = 2
    VIDEO_ROTATION_270 = 3


class FrameMetadataFeature(IntEnum):
    """What per-frame metadata a video track carries end to end (set in
    ``TrackPublishOptions.frame_metadata_features`` when publishing)."""

    FMF_USER_TIMESTAMP = 0
    FMF_FRAME_ID = 1
    FMF_USER_DATA = 2


@dataclass(frozen=True)
class FrameMetadata:
    """Per-frame metadata sent with a video frame, in a trailer the native
    core appends to each encoded frame (only the fields enabled by the
    track's ``frame_metadata_features`` travel).

    Attributes:
        user_timestamp: your own timestamp (e.g. capture time in µs), 0..2**64-1.
        frame_id: your own frame number, 0..2**32-1.
        user_data: a few bytes of your own.

    Raises:
        ValueError: a value out of its range.
    """

    user_timestamp: int | None = None
    frame_id: int | None = None
    user_data: bytes | None = None

    def __post_init__(self) -> None:
        if self.user_timestamp is not None and not 0 <= self.user_timestamp < 2**64:
            raise ValueError("user_timestamp must fit in 64 unsigned bits")
        if self.frame_id is not None and not 0 <= self.frame_id < 2**32:
            raise ValueError("frame_id must fit in 32 unsigned bits")
        if self.user_data is not None and not isinstance(self.user_data, bytes):
            raise TypeError("user_data must be bytes")

    def _fill(self, msg: Any) -> None:
        if self.user_timestamp is not None:
            msg.user_timestamp = self.user_timestamp
        if self.frame_id is not None:
            msg.frame_id = self.frame_id
        if self.user_data is not None:
            msg.user_data = self.user_data

    @classmethod
    def _from_proto(cls, msg: Any) -> FrameMetadata:
        return cls(
            user_timestamp=msg.user_timestamp if msg.HasField("user_timestamp") else None,
            frame_id=msg.frame_id if msg.HasField("frame_id") else None,
            user_data=bytes(msg.user_data) if msg.HasField("user_data") else None,
        )


_PACKED = {
    VideoBufferType.RGBA: 4,
    VideoBufferType.ABGR: 4,
    VideoBufferType.ARGB: 4,
    VideoBufferType.BGRA: 4,
    VideoBufferType.RGB24: 3,
}


def plane_layout(kind: VideoBufferType, width: int, height: int) -> list[tuple[int, int, int]]:
    """(offset, stride, size) of each plane of a tightly packed buffer."""
    if kind in _PACKED:
        stride = width * _PACKED[kind]
        return [(0, stride, stride * height)]
    cw, ch = (width + 1) // 2, (height + 1) // 2
    if kind == VideoBufferType.I420:
        planes = [(width, width * height), (cw, cw * ch), (cw, cw * ch)]
    elif kind == VideoBufferType.I420A:
        planes = [(width, width * height), (cw, cw * ch), (cw, cw * ch), (width, width * height)]
    elif kind == VideoBufferType.I422:
        planes = [(width, width * height), (cw, cw * height), (cw, cw * height)]
    elif kind == VideoBufferType.I444:
        planes = [(width, width * height)] * 3
    elif kind == VideoBufferType.I010:
        planes = [(width * 2, width * height * 2), (cw * 2, cw * ch * 2), (cw * 2, cw * ch * 2)]
    elif kind == VideoBufferType.NV12:
        planes = [(width, width * height), (cw * 2, cw * ch * 2)]
    else:  # pragma: no cover - exhaustive over VideoBufferType
        raise ValueError(f"unknown video buffer type {kind}")
    out, offset = [], 0
    for stride, size in planes:
        out.append((offset, stride, size))
        offset += size
    return out


@final
class VideoFrame:
    """A video frame: ``width`` x ``height`` pixels of ``type``, in ``data``.

    ``data`` is a memoryview over the frame's buffer (no copy); planes are
    tightly packed (``get_plane(i)`` views one plane, ``to_numpy()`` gives an
    array view for packed RGB types). ``convert(type)`` converts through the
    native core (libyuv).

    Frames received from a ``VideoStream`` also carry ``timestamp_us`` (the
    native core's timestamp of the frame, in µs), ``rotation`` (how the
    sender said to rotate it for display) and ``metadata`` (the sender's
    :class:`FrameMetadata`, or None when the track carries none); frames you
    build have 0, ``VIDEO_ROTATION_0`` and None.

    Raises:
        ValueError: the buffer is too small for the size and type.
    """

    __slots__ = ("_buf", "height", "metadata", "rotation", "timestamp_us", "type", "width")

    def __init__(
        self,
        width: int,
        height: int,
        type: VideoBufferType | int,
        data: bytes | bytearray | memoryview,
    ) -> None:
        if width <= 0 or height <= 0:
            raise ValueError("width and height must be > 0")
        kind = VideoBufferType(type)
        need = sum(size for _, _, size in plane_layout(kind, width, height))
        view = memoryview(data).cast("B")
        if view.nbytes < need:
            raise ValueError(f"{kind.name} {width}x{height} needs {need} bytes, got {view.nbytes}")
        self._buf = view[:need]
        self.width = width
        self.height = height
        self.type = kind
        self.timestamp_us = 0
        self.rotation = VideoRotation.VIDEO_ROTATION_0
        self.metadata: FrameMetadata | None = None

    @classmethod
    def create(cls, width: int, height: int, type: VideoBufferType | int) -> VideoFrame:
        """A zeroed, writable frame."""
        kind = VideoBufferType(type)
        size = sum(s for _, _, s in plane_layout(kind, width, height))
        return cls(width, height, kind, bytearray(size))

    @property
    def data(self) -> memoryview:
        """The frame's bytes (no copy)."""
        return self._buf

    def get_plane(self, index: int) -> memoryview | None:
        """A view of plane ``index`` (no copy), or None past the last plane."""
        planes = plane_layout(self.type, self.width, self.height)
        if not 0 <= index < len(planes):
            return None
        offset, _, size = planes[index]
        return self._buf[offset : offset + size]

    def to_numpy(self) -> np.ndarray[Any, Any]:
        """A numpy view (no copy): (height, width, channels) for packed RGB
        types, a flat uint8 array for planar ones.

        Raises:
            ImportError: numpy is not installed.
        """
        import numpy as np

        arr = np.frombuffer(self._buf, dtype=np.uint8)
        if self.type in _PACKED:
            return arr.reshape(self.height, self.width, _PACKED[self.type])
        return arr

    def _buffer_info(self, msg: Any, address: int) -> None:
        """Describes the frame at ``address`` (where its buffer is pinned)."""
        msg.type = int(self.type)
        msg.width = self.width
        msg.height = self.height
        msg.data_ptr = address
        planes = plane_layout(self.type, self.width, self.height)
        msg.stride = planes[0][1] if self.type in _PACKED else 0
        for offset, stride, size in planes:
            comp = msg.components.add()
            comp.data_ptr = address + offset
            comp.stride = stride
            comp.size = size

    def convert(self, type: VideoBufferType | int, *, flip_y: bool = False) -> VideoFrame:
        """A copy of the frame in another buffer type.

        Raises:
            NativeError: the native core cannot convert between these types.
        """
        rt = get_runtime()
        req = ffi_pb2.FfiRequest()
        msg = req.video_convert
        msg.flip_y = flip_y
        msg.dst_type = int(VideoBufferType(type))  # type: ignore[assignment]
        pin, address = rt.pin(self._buf)
        try:
            self._buffer_info(msg.buffer, address)
            resp = rt.request(req).video_convert
        finally:
            rt.unpin(pin)
        if resp.HasField("error") and resp.error:
            raise NativeError(f"video convert to {VideoBufferType(type).name}: {resp.error}")
        return VideoFrame._from_native(rt, resp.buffer)

    @classmethod
    def _from_native(cls, rt: Any, owned: Any) -> VideoFrame:
        """Copies a native buffer (once, plane by plane) and releases its handle.

        The buffer description is checked before any byte is read: a size,
        stride or plane count that does not fit raises, never reads out of
        bounds.

        Raises:
            NativeError: the native core described a malformed buffer.
        """
        info = owned.info
        try:
            kind, layout, tight = _checked_layout(info)
            total = sum(size for _, _, size in layout)
            if tight:
                data = rt.backend.read_into_bytearray(info.data_ptr, total)
            else:
                data = bytearray(total)
                for comp, (offset, stride, size) in zip(info.components, layout, strict=True):
                    rows = size // stride
                    if comp.stride == stride:
                        data[offset : offset + size] = rt.backend.read(comp.data_ptr, size)
                        continue
                    for row in range(rows):
                        start = offset + row * stride
                        data[start : start + stride] = rt.backend.read(
                            comp.data_ptr + row * comp.stride, stride
                        )
        finally:
            rt._release(owned.handle.id)
        return cls(info.width, info.height, kind, data)

    def __repr__(self) -> str:
        return f"<VideoFrame {self.type.name} {self.width}x{self.height}>"


#: Largest frame side accepted from the native core (libwebrtc's own limit is
#: far below this); a larger one is a malformed description.
MAX_DIMENSION = 16_384


def _checked_layout(info: Any) -> tuple[VideoBufferType, list[tuple[int, int, int]], bool]:
    """Validates a native ``VideoBufferInfo``: known type, sane size, and, if it
    lists its planes, one entry per plane whose stride and size cover every row
    that will be read. Returns (type, tight layout, whether the buffer is one
    tightly packed block at ``data_ptr``).

    Raises:
        NativeError: the description is malformed.
    """

    def bad(why: str) -> NativeError:
        return NativeError(f"malformed video buffer from the native core: {why}")

    try:
        kind = VideoBufferType(info.type)
    except ValueError:
        raise bad(f"unknown buffer type {info.type}") from None
    if not (0 < info.width <= MAX_DIMENSION and 0 < info.height <= MAX_DIMENSION):
        raise bad(f"size {info.width}x{info.height}")
    layout = plane_layout(kind, info.width, info.height)
    comps = list(info.components)
    if comps and len(comps) != len(layout):
        raise bad(f"{len(comps)} planes listed, {kind.name} has {len(layout)}")
    tight = not comps or all(
        c.stride == stride and c.data_ptr == info.data_ptr + offset
        for c, (offset, stride, _) in zip(comps, layout, strict=True)
    )
    if tight:  # one contiguous read at data_ptr (also when no planes are listed)
        if not info.data_ptr:
            raise bad("null data pointer")
        return kind, layout, True
    for i, (comp, (_, stride, size)) in enumerate(zip(comps, layout, strict=True)):
        rows = size // stride
        if not comp.data_ptr:
            raise bad(f"plane {i}: null data pointer")
        if comp.stride < stride:
            raise bad(f"plane {i}: stride {comp.stride} < row of {stride} bytes")
        if comp.size < (rows - 1) * comp.stride + stride:
            raise bad(f"plane {i}: {comp.size} bytes for {rows} rows of stride {comp.stride}")
    return kind, layout, False


@final
class VideoSource:
    """Video you produce, to publish through a :class:`LocalVideoTrack`.

    Args:
        width: the width the track announces (pixels).
        height: the height the track announces (pixels).
        is_screencast: tune the encoder for screen content.

    Raises:
        ValueError: non-positive size.
    """

    def __init__(self, width: int, height: int, *, is_screencast: bool = False) -> None:
        if width <= 0 or height <= 0:
            raise ValueError("width and height must be > 0")
        self._rt = rt = get_runtime()
        req = ffi_pb2.FfiRequest()
        msg = req.new_video_source
        msg.type = video_frame_pb2.VideoSourceType.VIDEO_SOURCE_NATIVE
        msg.resolution.width = width
        msg.resolution.height = height
        msg.is_screencast = is_screencast
        owned = rt.request(req).new_video_source.source
        self._handle = rt.own(owned.handle.id, "video_source")
        self.width = width
        self.height = height

    def capture_frame(
        self,
        frame: VideoFrame,
        *,
        timestamp_us: int = 0,
        rotation: VideoRotation | int = VideoRotation.VIDEO_ROTATION_0,
        metadata: FrameMetadata | None = None,
    ) -> None:
        """Hands ``frame`` to the encoder (copied by the native core during the
        call; returns at once).

        Args:
            timestamp_us: the capture time in µs (0: the native core stamps
                the frame with its own clock). The receiver's
                ``VideoFrame.timestamp_us`` is derived from the RTP timestamp,
                so it keeps the spacing of these values, not the values.
            rotation: how the receiver should rotate the frame for display
                (carried end to end).
            metadata: per-frame data carried end to end when the track was
                published with the matching ``frame_metadata_features``.

        Raises:
            ValueError: a negative ``timestamp_us``.
            ResourceClosedError: the source is closed.
            NativeError: the native core refused the frame.
        """
        if timestamp_us < 0:
            raise ValueError("timestamp_us must be >= 0")
        rotation = VideoRotation(rotation)
        if self._handle.closed:
            raise ResourceClosedError("the video source is closed")
        rt = self._rt
        req = ffi_pb2.FfiRequest()
        msg = req.capture_video_frame
        msg.source_handle = self._handle.id
        msg.timestamp_us = timestamp_us
        msg.rotation = int(rotation)  # type: ignore[assignment]
        if metadata is not None:
            metadata._fill(msg.metadata)
        pin, address = rt.pin(frame._buf)
        try:
            frame._buffer_info(msg.buffer, address)
            rt.request(req)
        finally:
            rt.unpin(pin)

    def close(self) -> None:
        """Releases the native source (idempotent)."""
        self._handle.close()

    async def aclose(self) -> None:
        self.close()
        await anyio.lowlevel.checkpoint()

    async def __aenter__(self) -> VideoSource:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
