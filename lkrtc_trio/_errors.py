"""The exception hierarchy: one base class, native errors mapped at the boundary."""

from __future__ import annotations

import re
from typing import TypeVar, final

T = TypeVar("T")

__all__ = [
    "ConnectError",
    "EventOverflowError",
    "ForkError",
    "LiveKitError",
    "LoopConflictError",
    "NativeError",
    "NativeLoadError",
    "NativePanicError",
    "ParticipantUpdateError",
    "PublishDTMFError",
    "PublishDataError",
    "PublishTrackError",
    "PublishTranscriptionError",
    "ResourceClosedError",
    "RoomClosedError",
    "RoomDisconnectedError",
    "StreamError",
    "UnpublishTrackError",
]


class LiveKitError(Exception):
    """Base class of every error raised by lkrtc_trio."""


#: An access token (a JWT: three base64url parts, the header's starting with
#: ``{"``), wherever it appears: a bare token or an ``access_token=`` parameter.
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
REDACTED = "<token redacted>"


def redact(text: str) -> str:
    """``text`` with every access token replaced by ``<token redacted>``.

    Applied to every message lkrtc_trio puts in an exception from native text
    and to every native log record it forwards, at every level: tokens are
    credentials and must not reach logs or error reports.
    """
    if "eyJ" not in text:
        return text
    return _JWT.sub(REDACTED, text)


@final
class ConnectError(LiveKitError):
    """Connecting to a room failed; ``reason`` is the native core's message
    (with any access token in it redacted).

    Raised for a rejected token, an unreachable or malformed URL, and a connect
    that did not finish within ``RoomOptions.connect_timeout``.
    """

    def __init__(self, reason: str) -> None:
        reason = redact(reason)
        super().__init__(reason)
        self.reason = reason


class NativeError(LiveKitError):
    """The native core refused a request or reported an internal failure.

    Also the base of lkrtc_trio's internal-error classes: seeing one that is not
    a subclass below means a bug in lkrtc_trio or in the native core.
    """


@final
class NativePanicError(NativeError):
    """The native core panicked. Every pending call and every open room fails
    with this error, and the native core is unusable for the rest of the process.
    (The official SDK kills its own process instead.)"""


@final
class NativeLoadError(NativeError):
    """The native library could not be found, opened or initialized, or it does
    not belong with the installed protobuf schema."""


@final
class ForkError(NativeError):
    """The native core was initialized in a parent process and used after
    ``fork()``; its threads do not survive a fork. Use it only in the child, or
    start children with the ``spawn`` method."""


class RoomClosedError(LiveKitError):
    """The room was closed by you (the ``open_room`` block ended, or
    ``disconnect()`` was called) and the operation needs an open room."""


@final
class ResourceClosedError(LiveKitError):
    """You closed this object (a track, an audio or video source, a resampler,
    a media stream), and the operation needs it open."""


@final
class LoopConflictError(LiveKitError, RuntimeError):
    """lkrtc_trio is in use by another running event loop in this process (the
    native core serves one event loop per process at a time: finish the rooms
    and calls of one loop before using another)."""


@final
class RoomDisconnectedError(RoomClosedError):
    """The room was disconnected by something outside your code: the server,
    the network, or a native failure (the cause is in ``__cause__`` when known).
    ``reason`` is the native ``DisconnectReason`` value."""

    def __init__(self, message: str, reason: int = 0) -> None:
        super().__init__(message)
        self.reason = reason


@final
class EventOverflowError(LiveKitError):
    """A ``room.events()`` subscriber fell more than ``max_buffer`` events behind.

    Raised by its next receive; the subscription is then finished. Events are
    never dropped silently: open a new subscription (and re-read room state) to
    continue.
    """


class PublishDataError(LiveKitError):
    """``publish_data`` failed: the payload is over the limit (raised before
    anything is sent) or the native core could not send it."""


class StreamError(LiveKitError):
    """A data stream failed: the sender aborted it (the reason is in the
    message), the sender left, the room reconnected while it was open (chunks
    may be lost), the room closed, the reader's buffer limit was exceeded, or
    the native core could not send it."""


class PublishDTMFError(LiveKitError):
    """``publish_dtmf`` failed: an invalid code/digit (raised before anything is
    sent) or the native core could not send it."""


class PublishTranscriptionError(LiveKitError):
    """``publish_transcription`` failed."""


class PublishTrackError(LiveKitError):
    """``publish_track`` failed."""


class UnpublishTrackError(LiveKitError):
    """``unpublish_track`` failed."""


class ParticipantUpdateError(LiveKitError):
    """``set_metadata``, ``set_name`` or ``set_attributes`` was refused (for
    example without the ``canUpdateOwnMetadata`` grant) or failed. The official
    SDK ignores these failures; lkrtc_trio raises."""


class NoPublicConstructor(type):
    """Metaclass of classes that only lkrtc_trio creates (trio's pattern):
    ``Cls(...)`` raises ``TypeError``; lkrtc_trio uses ``Cls._create(...)``."""

    def __call__(cls, *args: object, **kwargs: object) -> None:
        raise TypeError(f"{cls.__module__}.{cls.__qualname__} has no public constructor")

    def _create(cls: type[T], *args: object, **kwargs: object) -> T:
        return super().__call__(*args, **kwargs)  # type: ignore[misc, no-any-return]
