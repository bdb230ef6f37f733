"""Participants and track publications: read-only views over native state.

Each object owns its native handle (released when the participant leaves or
the room closes). Properties return copies, so callers cannot change room
state by accident.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import math
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar, final, overload

import anyio

from . import _datastream as ds
from ._datastream import ByteStreamInfo, ByteStreamWriter, TextStreamInfo, TextStreamWriter
from ._e2ee import EncryptionType
from ._errors import (
    ParticipantUpdateError,
    PublishDataError,
    PublishDTMFError,
    PublishTrackError,
    PublishTranscriptionError,
    ResourceClosedError,
    StreamError,
    UnpublishTrackError,
)
from ._proto import ffi_pb2
from ._records import ParticipantRecord, PublicationRecord, release_publication
from ._rpc import MAX_PAYLOAD_BYTES, RpcError, RpcInvocationData
from ._track import LocalTrack, Track, TrackKind, TrackPublishOptions, TrackSource
from ._types import (
    ConnectionQuality,
    DisconnectReason,
    ParticipantKind,
    ParticipantKindDetail,
    ParticipantPermission,
    ParticipantState,
    ParticipantTrackPermission,
    SubscriptionStatus,
    VideoQuality,
)

if TYPE_CHECKING:
    from ._session import RoomSession

__all__ = [
    "DATA_PACKET_OVERHEAD",
    "MAX_DATA_BYTES",
    "SUBSCRIBE_TIMEOUT",
    "LocalParticipant",
    "LocalTrackPublication",
    "Participant",
    "RemoteParticipant",
    "RemoteTrackPublication",
    "RpcHandler",
    "TrackPublication",
    "Transcription",
    "TranscriptionSegment",
]

log = logging.getLogger("lkrtc_trio.participant")

#: The data channel's negotiated maximum message size (bytes), reliable or lossy.
#: A packet is the payload plus the topic, the destination identities and
#: framing (``DATA_PACKET_OVERHEAD``); larger packets are refused before
#: anything is sent (oversized packets once broke the data channel for good,
#: rust-sdks #554). With no topic and no destinations the largest payload is
#: ``MAX_DATA_BYTES - DATA_PACKET_OVERHEAD`` = 63936 bytes.
MAX_DATA_BYTES = 64_000
#: Framing bytes reserved per packet (measured: 40 with a 1-byte topic).
DATA_PACKET_OVERHEAD = 64
#: Seconds ``publish_dtmf`` waits, right after joining, for the server to have
#: announced this participant to the others.
DTMF_JOIN_WAIT = 10.0
#: Extra time given to the native RPC timeout before lkrtc_trio gives up itself.
_RPC_GRACE = 5.0
_DEFAULT_RPC_TIMEOUT = 15.0
_MAX_ROUND_TRIP_MS = 7_000
_DTMF = "0123456789*#ABCD"
#: Seconds a wanted remote track may take to arrive (from ``set_subscribed(True)``)
#: before lkrtc_trio reports that the subscription is not allowed: the native
#: core says nothing when the publisher's track subscription permissions
#: refuse it (measured: no event at all, while allowed subscriptions arrive
#: within about 50 ms here). Read at each ``set_subscribed(True)``.
SUBSCRIBE_TIMEOUT = 10.0
#: Largest width or height ``set_video_dimensions`` accepts (pixels).
MAX_VIDEO_DIMENSION = 65535

RpcHandler = Callable[[RpcInvocationData], "str | Awaitable[str]"]
H = TypeVar("H", bound=RpcHandler)


class TrackPublication:
    """A published track (local or remote): its sid, name, kind, source, mute
    state and codec; ``track`` once available."""

    __slots__ = ("_rec",)

    def __init__(self, rec: PublicationRecord) -> None:
        self._rec = rec
        rec.view = self

    @property
    def sid(self) -> str:
        return str(self._rec.info.sid)

    @property
    def name(self) -> str:
        return str(self._rec.info.name)

    @property
    def kind(self) -> TrackKind:
        """``TrackKind`` (1 audio, 2 video)."""
        return TrackKind(self._rec.info.kind)

    @property
    def source(self) -> TrackSource:
        return TrackSource(self._rec.info.source)

    @property
    def muted(self) -> bool:
        return bool(self._rec.info.muted)

    @property
    def mime_type(self) -> str:
        return str(self._rec.info.mime_type)

    @property
    def simulcasted(self) -> bool:
        return bool(self._rec.info.simulcasted)

    @property
    def width(self) -> int:
        return int(self._rec.info.width)

    @property
    def height(self) -> int:
        return int(self._rec.info.height)

    @property
    def encryption_type(self) -> EncryptionType:
        """How the publisher encrypts the track end to end (``NONE`` without
        end-to-end encryption)."""
        return EncryptionType(self._rec.info.encryption_type)

    @property
    def track(self) -> Track | None:
        """The track (a local publication's own track; a remote one's once
        subscribed, None before and after unsubscribing)."""
        track: Track | None = self._rec.track
        return track

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.sid} {self.name!r}>"


@final
class LocalTrackPublication(TrackPublication):
    """One of your published tracks (returned by ``publish_track``)."""

    __slots__ = ()

    async def wait_for_subscription(self) -> None:
        """Waits until a remote participant has subscribed to this track (the
        native ``LocalTrackSubscribed`` event, sent for the first subscriber);
        returns at once (after a checkpoint) if one already did.

        Raises:
            ResourceClosedError: the track was unpublished before anyone
                subscribed (also while waiting).
            RoomClosedError: the room was closed first (also while waiting);
                ``RoomDisconnectedError`` / ``NativePanicError`` when
                something else ended it.

        Cancellation: returns at once and leaves nothing behind (the shared
        event of this publication's waiters is dropped with its last waiter).
        """
        rec = self._rec
        await anyio.lowlevel.checkpoint()
        if rec.subscribed_once:
            return
        session: RoomSession = rec.session
        session.check_open()
        if rec.handle.closed:
            raise ResourceClosedError(f"track {self.sid} is unpublished")
        if rec.first_subscription is None:
            rec.first_subscription = anyio.Event()
        event = rec.first_subscription
        rec.waiters += 1
        try:
            await session.wait_for(event)
        finally:
            rec.waiters -= 1
            if not rec.waiters:
                rec.first_subscription = None
        if rec.subscribed_once:
            return
        session.check_open()
        raise ResourceClosedError(f"track {self.sid} was unpublished before anyone subscribed")


@final
class RemoteTrackPublication(TrackPublication):
    """Another participant's published track, and your subscription to it.

    With ``RoomOptions(auto_subscribe=False)`` nothing is subscribed until
    :meth:`set_subscribed` asks for it. The control calls are synchronous
    native requests (no waiting). Each raises ``RoomClosedError`` once the
    room is closed (``RoomDisconnectedError`` / ``NativePanicError`` when
    something else ended it), ``ResourceClosedError`` once the publication
    is gone (the track was unpublished or its participant left), and
    ``NativeError`` if the native core refuses the request.
    """

    __slots__ = ()

    @property
    def subscribed(self) -> bool:
        """Whether the track is here (``track`` is set)."""
        return self._rec.track is not None

    @property
    def subscription_status(self) -> SubscriptionStatus:
        """``SUBSCRIBED`` (the track is here), ``DESIRED`` (asked for, not
        here yet), ``NOT_ALLOWED`` (asked for, and not delivered within
        ``SUBSCRIBE_TIMEOUT``: see :attr:`subscription_allowed`) or
        ``UNSUBSCRIBED`` (not asked for).

        In a room with auto-subscription every publication counts as asked
        for (until ``set_subscribed(False)``).
        """
        rec = self._rec
        if rec.track is not None:
            return SubscriptionStatus.SUBSCRIBED
        if not rec.desired:
            return SubscriptionStatus.UNSUBSCRIBED
        if not rec.allowed:
            return SubscriptionStatus.NOT_ALLOWED
        return SubscriptionStatus.DESIRED

    @property
    def subscription_allowed(self) -> bool:
        """False when a subscription asked for with ``set_subscribed(True)``
        did not arrive within ``SUBSCRIBE_TIMEOUT`` seconds (lkrtc_trio then
        emitted ``TrackSubscriptionFailed``): the publisher's track
        subscription permissions do not allow it. The native core reports
        nothing about permissions, so this is lkrtc_trio's inference: it
        becomes True again when the track arrives (the publisher allowed
        it) and when ``set_subscribed(True)`` asks again. A permission
        withdrawn after the track arrived is not reported at all (the
        track stays, without media)."""
        return self._rec.allowed

    @property
    def enabled(self) -> bool:
        """Whether the subscribed track is enabled (False while not
        subscribed); see :meth:`set_enabled`."""
        rec = self._rec
        return rec.track is not None and rec.enabled

    def set_subscribed(self, subscribed: bool) -> None:
        """Subscribes to the track (True) or unsubscribes (False).

        Subscribing: ``TrackSubscribed`` follows when the track arrives; if
        it has not arrived within ``SUBSCRIBE_TIMEOUT`` seconds (not counting
        a reconnection), lkrtc_trio emits ``TrackSubscriptionFailed`` (with
        this publication) and :attr:`subscription_status` becomes
        ``NOT_ALLOWED``: the publisher does not allow it. It still arrives
        if the publisher allows it later. Unsubscribing: ``TrackUnsubscribed``
        follows, and the track is released then (its streams end; until
        then :attr:`subscribed` stays True). Either is a no-op when already
        so.

        Raises:
            TypeError: ``subscribed`` is not a bool.
            ResourceClosedError: the publication is gone.
            RoomClosedError: the room is closed.
            NativeError: the native core refused it.
        """
        if not isinstance(subscribed, bool):
            raise TypeError(f"subscribed must be a bool, not {type(subscribed).__name__}")
        rec = self._usable()
        req = ffi_pb2.FfiRequest()
        req.set_subscribed.subscribe = subscribed
        req.set_subscribed.publication_handle = rec.handle.id
        rec.session.rt.request(req)
        rec.desired = subscribed
        if not subscribed:
            rec.deadline = None
        elif rec.track is None and not (rec.watching and rec.allowed and rec.deadline):
            # (a subscription already watched keeps its deadline)
            rec.allowed = True
            expect_subscription(rec)

    def set_enabled(self, enabled: bool) -> None:
        """Enables or disables the subscribed track: disabled, the server
        stops forwarding its media (the subscription and the track stay;
        streams reading it get no frames) until it is enabled again. A track
        that arrives is enabled.

        Raises:
            TypeError: ``enabled`` is not a bool.
            RuntimeError: the track is not subscribed (the native core would
                ignore the request: subscribe first and wait for
                ``TrackSubscribed``).
            ResourceClosedError, RoomClosedError, NativeError: see the class.
        """
        if not isinstance(enabled, bool):
            raise TypeError(f"enabled must be a bool, not {type(enabled).__name__}")
        rec = self._subscribed_rec("set_enabled")
        req = ffi_pb2.FfiRequest()
        req.enable_remote_track_publication.track_publication_handle = rec.handle.id
        req.enable_remote_track_publication.enabled = enabled
        rec.session.rt.request(req)
        rec.enabled = enabled

    def set_video_quality(self, quality: VideoQuality) -> None:
        """Asks the server for one simulcast layer of this video track (the
        highest it may send; it sends lower ones when bandwidth is short).
        May be called before subscribing.

        Raises:
            TypeError: ``quality`` is not an int / ``VideoQuality``.
            ValueError: an unknown quality, or the publication is not a
                simulcast video track (as the official SDK).
            ResourceClosedError, RoomClosedError, NativeError: see the class.
        """
        if isinstance(quality, bool) or not isinstance(quality, int):
            raise TypeError(f"quality must be a VideoQuality, not {type(quality).__name__}")
        if quality not in VideoQuality._value2member_map_:
            raise ValueError(f"unknown video quality {quality!r}; use VideoQuality")
        self._check_video("set_video_quality")
        if not self.simulcasted:
            raise ValueError(
                f"set_video_quality needs a simulcast publication ({self.sid} is not simulcast)"
            )
        rec = self._usable()
        req = ffi_pb2.FfiRequest()
        msg = req.set_remote_track_publication_quality
        msg.track_publication_handle = rec.handle.id
        msg.quality = int(quality)  # type: ignore[assignment]
        rec.session.rt.request(req)

    def set_video_dimensions(self, width: int, height: int) -> None:
        """Tells the server the size this video track is shown at, so that
        it sends the simulcast layer that fits. The publication's ``width``
        and ``height`` stay the published ones.

        Raises:
            TypeError: ``width`` or ``height`` is not an int.
            ValueError: not from 1 to ``MAX_VIDEO_DIMENSION``, or the
                publication is not a video track.
            RuntimeError: the track is not subscribed (the native core would
                ignore the request).
            ResourceClosedError, RoomClosedError, NativeError: see the class.
        """
        for name, value in (("width", width), ("height", height)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be an int, not {type(value).__name__}")
            if not 1 <= value <= MAX_VIDEO_DIMENSION:
                raise ValueError(f"{name} must be from 1 to {MAX_VIDEO_DIMENSION}, not {value}")
        self._check_video("set_video_dimensions")
        rec = self._subscribed_rec("set_video_dimensions")
        req = ffi_pb2.FfiRequest()
        msg = req.update_remote_track_publication_dimension
        msg.track_publication_handle = rec.handle.id
        msg.width = width
        msg.height = height
        rec.session.rt.request(req)

    def _check_video(self, call: str) -> None:
        if self._rec.info.kind != TrackKind.KIND_VIDEO:
            raise ValueError(
                f"{call} applies to video publications; {self.sid} is {self.kind.name}"
            )

    def _usable(self) -> PublicationRecord:
        """The record, if its room is open and its handle alive."""
        rec = self._rec
        session: RoomSession = rec.session
        session.check_open()
        if rec.handle.closed:
            raise ResourceClosedError(
                f"publication {self.sid} is gone (unpublished, or its participant left)"
            )
        return rec

    def _subscribed_rec(self, call: str) -> PublicationRecord:
        rec = self._usable()
        if rec.track is None:
            raise RuntimeError(
                f"{call}: track {self.sid} is not subscribed "
                "(set_subscribed(True), then wait for TrackSubscribed)"
            )
        return rec


def expect_subscription(rec: PublicationRecord) -> None:
    """A remote track was asked for: if it does not arrive within
    ``SUBSCRIBE_TIMEOUT`` seconds, report the subscription as not allowed
    (see :func:`_watch_subscription`). Needs the room's service task; does
    nothing while the room is closing."""
    rec.deadline = time.monotonic() + SUBSCRIBE_TIMEOUT
    session = rec.session
    if rec.watching or session is None or not hasattr(session, "spawn"):
        return
    rec.watching = session.spawn(_watch_subscription, rec)


#: How often a subscription's watcher wakes up, at most (seconds): a
#: reconnection postpones the deadline by this granularity.
_WATCH_STEP = 1.0


async def _watch_subscription(rec: PublicationRecord) -> None:
    """Waits for ``rec.deadline``; if the track asked for has not arrived by
    then (and the publication still exists), marks it not allowed and emits
    ``TrackSubscriptionFailed`` through the room's event path (as a native
    event would be). While the room reconnects or settles, the deadline
    moves on: no subscription completes then."""
    session: RoomSession = rec.session
    try:
        while True:
            deadline = rec.deadline
            if deadline is None or rec.track is not None or rec.handle.closed or not rec.desired:
                return
            now = time.monotonic()
            if session.reconnecting_since is not None or session.settle_deadline is not None:
                rec.deadline = deadline = max(deadline, now + SUBSCRIBE_TIMEOUT)
            if deadline <= now:
                break
            await anyio.sleep(min(deadline - now, _WATCH_STEP))
    finally:
        rec.watching = False
    rec.deadline = None
    if session.closed or not session.handle.id or not rec.owner:
        return
    rec.allowed = False
    event = ffi_pb2.FfiEvent()
    event.room_event.room_handle = session.handle.id
    failed = event.room_event.track_subscription_failed
    failed.participant_identity = rec.owner
    failed.track_sid = rec.info.sid
    failed.error = (
        f"not allowed: the track did not arrive within {SUBSCRIBE_TIMEOUT:g} s, so the "
        "publisher's track subscription permissions refuse it (lkrtc_trio's inference: "
        "the native core reports nothing)"
    )
    session.rt.dispatcher.on_event(event.SerializeToString())


class Participant:
    """What local and remote participants share. Not instantiated by users."""

    __slots__ = ("_rec",)

    def __init__(self, rec: ParticipantRecord) -> None:
        self._rec = rec
        rec.view = self

    @property
    def sid(self) -> str:
        return str(self._rec.info.sid)

    @property
    def identity(self) -> str:
        return str(self._rec.info.identity)

    @property
    def name(self) -> str:
        return str(self._rec.info.name)

    @property
    def metadata(self) -> str:
        return str(self._rec.info.metadata)

    @property
    def attributes(self) -> dict[str, str]:
        """A copy of the participant's attributes."""
        return dict(self._rec.info.attributes)

    @property
    def kind(self) -> ParticipantKind:
        """Standard, ingress, egress, SIP, agent..."""
        return ParticipantKind(self._rec.info.kind)

    @property
    def kind_details(self) -> tuple[ParticipantKindDetail, ...]:
        return tuple(ParticipantKindDetail(k) for k in self._rec.info.kind_details)

    @property
    def state(self) -> ParticipantState:
        """Joining, joined, active or disconnected (as the server last said)."""
        return ParticipantState(self._rec.info.state)

    @property
    def connection_quality(self) -> ConnectionQuality:
        """As the last ``ConnectionQualityChanged`` said (excellent until then)."""
        return self._rec.quality

    @property
    def permissions(self) -> ParticipantPermission:
        return ParticipantPermission._from_proto(self._rec.info.permission)

    @property
    def joined_at(self) -> int:
        """When the participant joined, as the server reports it (0 if unknown)."""
        return int(self._rec.info.joined_at)

    @property
    def disconnect_reason(self) -> DisconnectReason:
        """Why the participant left (``UNKNOWN_REASON`` while it is here)."""
        return DisconnectReason(self._rec.info.disconnect_reason)

    @property
    def track_publications(self) -> Mapping[str, TrackPublication]:
        """A copy of the participant's publications, by track sid."""
        return {sid: rec.view for sid, rec in self._rec.publications.items()}

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.identity!r} {self.sid}>"


@final
class RemoteParticipant(Participant):
    """Another participant of the room."""

    __slots__ = ()

    @property
    def track_publications(self) -> Mapping[str, RemoteTrackPublication]:
        """A copy of the participant's publications, by track sid."""
        return {sid: rec.view for sid, rec in self._rec.publications.items()}


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class TranscriptionSegment:
    """One segment of a transcription; times in milliseconds.

    Raises:
        TypeError: a field of the wrong type.
        ValueError: a negative time.
    """

    id: str
    text: str
    start_time: int = 0
    end_time: int = 0
    final: bool = False
    language: str = ""

    def __post_init__(self) -> None:
        for name in ("id", "text", "language"):
            value = getattr(self, name)
            if not isinstance(value, str):
                raise TypeError(f"segment {name} must be a str, not {type(value).__name__}")
        for name in ("start_time", "end_time"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"segment {name} must be an int, not {type(value).__name__}")
            if value < 0:
                raise ValueError(f"segment {name} must be >= 0, not {value}")
        if not isinstance(self.final, bool):
            raise TypeError(f"segment final must be a bool, not {type(self.final).__name__}")


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class Transcription:
    """A transcription of one participant's track."""

    participant_identity: str
    track_sid: str
    segments: Sequence[TranscriptionSegment]


@final
class LocalParticipant(Participant):
    """This client's participant: publish data, DTMF and transcriptions, call
    and serve RPC methods, update metadata, name and attributes.

    Every call raises ``RoomClosedError`` once the room is closed (and
    ``RoomDisconnectedError`` / ``NativePanicError`` when something else ended
    it); a call still waiting for the native core when that happens raises it
    at once. Cancelling a call returns at once and leaves nothing pending.
    """

    __slots__ = (
        "_early_published",
        "_early_subscribed",
        "_rpc_handlers",
        "_session",
        "_unpublished_first",
        "_updates_seen",
    )

    def __init__(self, rec: ParticipantRecord, session: RoomSession) -> None:
        super().__init__(rec)
        self._session = session
        self._rpc_handlers: dict[str, RpcHandler] = {}
        #: server events seen that changed our metadata / name / attributes
        self._updates_seen = {"metadata": 0, "name": 0, "attributes": 0}
        #: LocalTrackPublished events that came before publish_track's completion
        self._early_published: set[str] = set()
        #: unpublish_track completions that came before their native event
        self._unpublished_first: set[str] = set()
        #: LocalTrackSubscribed events that came before publish_track's completion
        self._early_subscribed: set[str] = set()
        session.serve_rpc = self._serve_one
        session.refuse_rpc = self._refuse

    def _server_updated(self, kind: str) -> None:
        self._updates_seen[kind] += 1

    # -- data ----------------------------------------------------------------------
    async def publish_data(
        self,
        payload: bytes | bytearray | memoryview | str,
        *,
        reliable: bool = True,
        destination_identities: Iterable[str] | None = (),
        topic: str = "",
    ) -> int | None:
        """Sends a data packet to every participant, or only to
        ``destination_identities`` (empty or None: everyone).

        The payload is handed to the native core without a Python-side copy
        (a ``str`` is encoded to UTF-8 once). Reliable packets are delivered
        in order, without duplicates. A reconnection can lose some of them
        although their calls succeeded (the native core reports nothing);
        lkrtc_trio then emits ``ReliableDataMayBeLost`` right after
        ``Reconnected``, with the range of sequence numbers concerned.

        Returns:
            For a reliable packet, its sequence number in this room (1, 2,
            ...; what ``ReliableDataMayBeLost`` refers to); None for a lossy
            one.

        Raises:
            PublishDataError: the packet would exceed ``MAX_DATA_BYTES`` (see
                there; nothing is sent and the data channel stays usable), or
                sending failed. A send that fails because the link went down
                under it (the room starts reconnecting then, or within
                ``RECONNECT_GRACE``, 1 s) is not an error when no later call
                went out meanwhile: the packet is sent again once the room is
                back, in its place among the calls held while it reconnects.
            TypeError: a payload, topic or identity of the wrong type.
            RoomClosedError: the room is closed.
            RoomDisconnectedError: the room ended while the call waited (for
                instance it was still reconnecting after
                ``RoomOptions.reconnect_timeout``).

        Cancellation: returns at once; the packet is still sent, with the
        bytes the buffer held when the call was made (the native core copies
        them while the request is made, before the call can be cancelled, so
        writing to the buffer afterwards never reaches the wire). The buffer
        stays lent until the native core completes the send: until then a
        ``bytearray`` cannot be resized nor a ``memoryview`` released
        (``BufferError``).
        """
        data = payload.encode() if isinstance(payload, str) else payload
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"payload must be bytes or str, not {type(payload).__name__}")
        if isinstance(data, memoryview):
            if not data.c_contiguous:
                raise TypeError("a memoryview payload must be C-contiguous")
            size = data.nbytes
        else:
            size = len(data)
        if not isinstance(topic, str):
            raise TypeError("topic must be a str")
        if not isinstance(reliable, bool):
            raise TypeError(f"reliable must be a bool, not {type(reliable).__name__}")
        identities = _identities(destination_identities)
        packet = (
            size
            + len(topic.encode())
            + sum(len(i.encode()) + 2 for i in identities)
            + DATA_PACKET_OVERHEAD
        )
        if packet > MAX_DATA_BYTES:
            raise PublishDataError(
                f"data packet of {packet} bytes (payload {size}) is over the limit of "
                f"{MAX_DATA_BYTES} bytes; nothing was sent"
            )
        session = self._session
        rt = session.rt
        req = ffi_pb2.FfiRequest()
        msg = req.publish_data
        msg.local_participant_handle = self._rec.handle.id
        msg.data_len = size
        msg.reliable = reliable
        if topic:
            msg.topic = topic
        if identities:
            msg.destination_identities.extend(identities)
        seq = session.ledger.begin() if reliable else None
        order = session.next_order()  # a packet sent again keeps its place
        try:
            for attempt in (1, 2):
                # Lent without a copy; the dispatcher holds the pin until the
                # completion arrives, even if this call is cancelled.
                pin, msg.data_ptr = rt.pin(data) if size else (None, 0)
                episode = session.episodes
                cb = await session.request(req, "publish_data", pin=pin, order=order)
                if not cb.error:
                    return seq
                # The link failed under the packet (the native core may
                # report it before its Reconnecting event): send it again,
                # held until the room is back, instead of failing a call that
                # the reconnection would have held; but only if no later
                # packet went out meanwhile (reliable packets stay in order).
                if (
                    attempt == 1
                    and await session.failed_by_reconnect(episode)
                    and not session.sent_after(order)  # (in order, or not at all)
                ):
                    log.info(
                        "publish_data failed as the room began reconnecting (%s); "
                        "it is sent again once the room is back",
                        cb.error,
                    )
                    continue
                raise PublishDataError(str(cb.error))
            raise AssertionError("unreachable")
        finally:
            if seq is not None:
                session.ledger.accepted(seq, time.monotonic())

    # -- data streams ------------------------------------------------------------------
    async def send_text(
        self,
        text: str,
        *,
        topic: str = "",
        destination_identities: Iterable[str] | None = None,
        attributes: Mapping[str, str] | None = None,
        reply_to_id: str | None = None,
        compress: bool = True,
    ) -> TextStreamInfo:
        """Sends ``text`` as one whole text stream, to everyone or to
        ``destination_identities``; returns its info once it was sent.

        The native core splits it into chunks (never splitting a character)
        and, with ``compress`` (the default, as in the official SDK),
        compresses it when every recipient supports that; the receiver reads
        it with a text stream handler or subscription on ``topic``.

        Raises:
            TypeError: an argument of the wrong type.
            StreamError: the native core could not send it.
            RoomClosedError, RoomDisconnectedError: the room is gone (also
                when it ends while the call waits).

        Cancellation: returns at once; the stream may still be sent whole.
        """
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, not {type(text).__name__}")
        req, msg = self._stream_request(
            "send_text", topic, destination_identities, attributes, reply_to_id, compress
        )
        msg.text = text
        cb = await self._stream_call(req, "send_text", "send_text failed")
        return ds.text_info(cb.info)

    async def send_bytes(
        self,
        data: bytes | bytearray | memoryview,
        *,
        name: str | None = None,
        mime_type: str | None = None,
        topic: str = "",
        destination_identities: Iterable[str] | None = None,
        attributes: Mapping[str, str] | None = None,
        compress: bool = True,
    ) -> ByteStreamInfo:
        """Sends ``data`` (any C-contiguous buffer) as one whole byte stream;
        returns its info once it was sent. The native request carries the
        bytes inline: they are copied once into it (bytes are not copied
        before that), and later changes to the buffer are not sent.

        Args:
            name: the stream's name (default "unknown", as the official SDKs).
            mime_type: default "application/octet-stream".
            compress: let the native core compress it when every recipient
                supports that (default, as in the official SDK).

        Raises:
            TypeError: an argument of the wrong type.
            StreamError: the native core could not send it.
            RoomClosedError, RoomDisconnectedError: the room is gone.

        Cancellation: returns at once; the stream may still be sent whole.
        """
        payload = ds.as_bytes(data)
        for label, value in (("name", name), ("mime_type", mime_type)):
            if value is not None and not isinstance(value, str):
                raise TypeError(f"{label} must be a str or None")
        req, msg = self._stream_request(
            "send_bytes", topic, destination_identities, attributes, None, compress
        )
        msg.bytes = payload
        msg.options.name = "unknown" if name is None else name
        msg.options.mime_type = mime_type or "application/octet-stream"
        cb = await self._stream_call(req, "send_bytes", "send_bytes failed")
        return ds.byte_info(cb.info)

    async def send_file(
        self,
        path: str | os.PathLike[str],
        *,
        topic: str = "",
        destination_identities: Iterable[str] | None = None,
        attributes: Mapping[str, str] | None = None,
        mime_type: str | None = None,
        compress: bool = True,
    ) -> ByteStreamInfo:
        """Sends the file at ``path`` as one byte stream (the native core
        reads it); its name is the file's base name, its MIME type
        ``mime_type`` or guessed from the name; ``compress`` as in
        :meth:`send_bytes`.

        Raises:
            FileNotFoundError, IsADirectoryError, PermissionError: ``path``
                is not a readable file (checked before anything is sent).
            TypeError: an argument of the wrong type.
            StreamError: the native core could not send it.
            RoomClosedError, RoomDisconnectedError: the room is gone.

        Cancellation: returns at once; the file may still be sent whole.
        """
        file_path, size = ds.check_file(path)
        if mime_type is not None and not isinstance(mime_type, str):
            raise TypeError("mime_type must be a str or None")
        req, msg = self._stream_request(
            "send_file", topic, destination_identities, attributes, None, compress
        )
        msg.file_path = file_path
        msg.options.name = os.path.basename(file_path)
        msg.options.mime_type = mime_type or ds.guess_mime_type(file_path)
        msg.options.total_length = size
        cb = await self._stream_call(req, "send_file", "send_file failed")
        return ds.byte_info(cb.info)

    @asynccontextmanager
    async def stream_text(
        self,
        *,
        topic: str = "",
        destination_identities: Iterable[str] | None = None,
        attributes: Mapping[str, str] | None = None,
        reply_to_id: str | None = None,
        total_size: int | None = None,
    ) -> AsyncIterator[TextStreamWriter]:
        """Opens a text stream: ``async with lp.stream_text(topic=...) as w:
        await w.write(...)``.

        Leaving the block normally closes the stream (readers end normally).
        Leaving it by an exception, cancellation included, aborts the stream
        with that exception as the reason (readers get ``StreamError``):
        shielded from the cancellation, bounded by 5 s, and the native writer
        released whatever happens; the exception then propagates unchanged.
        If the room reconnects while the stream is open, chunks may have been
        lost: the stream is aborted then too, ``write`` raises
        ``StreamError``, and so does the end of the block.

        Args:
            total_size: the announced size in bytes (kept in ``info.size``;
                the native core does not transmit it for text).

        Raises:
            TypeError: an argument of the wrong type.
            StreamError: opening or closing failed, or the stream was aborted
                by a reconnection.
            RoomClosedError, RoomDisconnectedError: the room is gone.

        Cancellation: while opening, returns at once (a stream opened late is
        released); inside the block, as above.
        """
        ds.check_size(total_size)
        req, _ = self._stream_request(
            "text_stream_open", topic, destination_identities, attributes, reply_to_id
        )
        cb = await self._stream_call(req, "text_stream_open", "opening the text stream failed")
        info = ds.text_info(cb.writer.info)
        if info.size is None and total_size is not None:
            info = dataclasses.replace(info, size=total_size)
        handle = self._session.rt.own(cb.writer.handle.id, "text_stream_writer")
        async with ds.writing(TextStreamWriter(self._session.streams, handle, info)) as writer:
            yield writer

    @asynccontextmanager
    async def stream_bytes(
        self,
        name: str,
        *,
        total_size: int | None = None,
        mime_type: str = "application/octet-stream",
        topic: str = "",
        destination_identities: Iterable[str] | None = None,
        attributes: Mapping[str, str] | None = None,
    ) -> AsyncIterator[ByteStreamWriter]:
        """Opens a byte stream named ``name``: ``async with
        lp.stream_bytes("photo.jpg", total_size=n) as w: await w.write(...)``.
        Closing and aborting as :meth:`stream_text`.

        Args:
            total_size: the announced size in bytes; receivers fail the
                stream if more arrives, or less by the close.

        Raises:
            TypeError, StreamError, RoomClosedError, RoomDisconnectedError: as
                :meth:`stream_text`.

        Cancellation: as :meth:`stream_text`.
        """
        if not isinstance(name, str):
            raise TypeError("name must be a str")
        if not isinstance(mime_type, str):
            raise TypeError("mime_type must be a str")
        ds.check_size(total_size)
        req, msg = self._stream_request(
            "byte_stream_open", topic, destination_identities, attributes
        )
        msg.options.name = name
        msg.options.mime_type = mime_type
        if total_size is not None:
            msg.options.total_length = total_size
        cb = await self._stream_call(req, "byte_stream_open", "opening the byte stream failed")
        info = ds.byte_info(cb.writer.info)
        handle = self._session.rt.own(cb.writer.handle.id, "byte_stream_writer")
        async with ds.writing(ByteStreamWriter(self._session.streams, handle, info)) as writer:
            yield writer

    def _stream_request(
        self,
        field: str,
        topic: str,
        destination_identities: Iterable[str] | None,
        attributes: Mapping[str, str] | None,
        reply_to_id: str | None = None,
        compress: bool | None = None,
    ) -> tuple[Any, Any]:
        """A data-stream request (``FfiRequest``, and its ``field`` message)
        with the options every kind shares, checked and filled.

        Raises:
            TypeError: an argument of the wrong type.
        """
        attrs = ds.check_text_args(topic, attributes, reply_to_id)
        if compress is not None and not isinstance(compress, bool):
            raise TypeError("compress must be a bool")
        identities = _identities(destination_identities)
        req = ffi_pb2.FfiRequest()
        msg = getattr(req, field)
        msg.local_participant_handle = self._rec.handle.id
        options = msg.options
        options.topic = topic
        if attrs:
            options.attributes.update(attrs)
        if identities:
            options.destination_identities.extend(identities)
        options.sender_identity = self.identity
        if reply_to_id:
            options.reply_to_stream_id = reply_to_id
        if compress is not None:
            options.compress = compress
        return req, msg

    async def _stream_call(self, req: Any, field: str, failed: str) -> Any:
        """Sends a data-stream request through the session; its completion,
        or ``StreamError(failed: ...)`` when the native core reports one."""
        cb = await self._session.request(req, field)
        if cb.HasField("error"):
            raise StreamError(f"{failed}: {cb.error.description}")
        return cb

    async def publish_dtmf(self, *, code: int, digit: str) -> None:
        """Sends a SIP DTMF tone event (RFC 4733: codes 0-9 are the digits,
        10 ``*``, 11 ``#``, 12-15 ``A``-``D``).

        Right after joining, the tone is held until the server has announced
        this participant to the others (its state is JOINED or ACTIVE; at most
        10 seconds): a receiving native core silently drops
        DTMF from a sender it does not know yet (measured: 0 of 20 tones sent
        in the first seconds after joining arrived, while data sent alongside
        arrived without a sender identity).

        Raises:
            PublishDTMFError: ``code`` and ``digit`` are invalid or do not
                match (nothing is sent), or sending failed.
            RoomClosedError: the room is closed.

        Cancellation: returns at once; once the request was made the event
        may still be sent.
        """
        if isinstance(code, bool) or not isinstance(code, int) or not 0 <= code < len(_DTMF):
            raise PublishDTMFError(f"DTMF code must be an int from 0 to 15, not {code!r}")
        if not isinstance(digit, str) or len(digit) != 1 or digit.upper() != _DTMF[code]:
            raise PublishDTMFError(f"DTMF digit {digit!r} does not match code {code}")
        req = ffi_pb2.FfiRequest()
        req.publish_sip_dtmf.local_participant_handle = self._rec.handle.id
        req.publish_sip_dtmf.code = code
        req.publish_sip_dtmf.digit = digit.upper()
        session = self._session
        if not session.announced.is_set():
            with anyio.move_on_after(DTMF_JOIN_WAIT):
                await session.announced.wait()
        cb = await session.request(req, "publish_sip_dtmf")
        if cb.error:
            raise PublishDTMFError(str(cb.error))

    async def publish_transcription(self, transcription: Transcription) -> None:
        """Publishes a transcription of a participant's track.

        livekit-server forwards transcriptions only from agent participants.

        Raises:
            PublishTranscriptionError: ``track_sid`` is not a track sid
                (``TR_...``; nothing is sent: a transcription with a malformed
                track sid makes every receiving native core abort its process,
                official SDK peers included), or the native core refused it.
            TypeError: not a :class:`Transcription`, or a segment that is not a
                :class:`TranscriptionSegment`.
            RoomClosedError: the room is closed.

        Cancellation: returns at once; it may still be published.
        """
        if not isinstance(transcription, Transcription):
            raise TypeError("publish_transcription takes a Transcription")
        sid = transcription.track_sid
        if not isinstance(sid, str) or not sid.startswith("TR_") or len(sid) <= 3:
            raise PublishTranscriptionError(
                f"track_sid must be a track sid like 'TR_...', not {sid!r} "
                "(receivers' native cores abort on a malformed one)"
            )
        for seg in transcription.segments:
            if not isinstance(seg, TranscriptionSegment):
                raise TypeError("segments must be TranscriptionSegment objects")
        req = ffi_pb2.FfiRequest()
        msg = req.publish_transcription
        msg.local_participant_handle = self._rec.handle.id
        msg.participant_identity = transcription.participant_identity
        msg.track_id = transcription.track_sid
        for seg in transcription.segments:
            out = msg.segments.add()
            out.id = seg.id
            out.text = seg.text
            out.start_time = seg.start_time
            out.end_time = seg.end_time
            out.final = seg.final
            out.language = seg.language
        cb = await self._session.request(req, "publish_transcription")
        if cb.error:
            raise PublishTranscriptionError(str(cb.error))

    # -- tracks ----------------------------------------------------------------------
    @property
    def track_publications(self) -> Mapping[str, LocalTrackPublication]:
        """A copy of your publications, by track sid."""
        return {sid: rec.view for sid, rec in self._rec.publications.items()}

    async def publish_track(
        self, track: LocalTrack, options: TrackPublishOptions | None = None
    ) -> LocalTrackPublication:
        """Publishes a local audio or video track.

        Returns:
            The publication (also in ``track_publications``); the track's
            ``sid`` is set. Peers get ``TrackPublished``, you get
            ``LocalTrackPublished``.

        Raises:
            PublishTrackError: the native core or the server refused it
                (e.g. no ``canPublish`` grant).
            TypeError: not a local track, or options of the wrong type.
            RoomClosedError: the room is closed.
            ResourceClosedError: the track is closed.

        Cancellation: returns at once. If the native publish completes
        afterwards, lkrtc_trio unpublishes the track again and releases the
        publication: no half-published track stays behind.
        """
        if not isinstance(track, LocalTrack):
            raise TypeError("publish_track takes a LocalAudioTrack or LocalVideoTrack")
        if options is not None and not isinstance(options, TrackPublishOptions):
            raise TypeError("options must be TrackPublishOptions")
        if track.closed:
            raise ResourceClosedError("the track is closed")
        session = self._session
        session.check_open()
        rt = session.rt
        req = ffi_pb2.FfiRequest()
        msg = req.publish_track
        msg.local_participant_handle = self._rec.handle.id
        msg.track_handle = track._handle.id
        msg.options.SetInParent()
        if options is not None:
            options._fill(msg.options)
        me = self._rec.handle.id

        def unpublish_late(late: Any) -> None:
            if isinstance(late, BaseException) or late.error or not late.HasField("publication"):
                return
            bye = ffi_pb2.FfiRequest()
            bye.unpublish_track.local_participant_handle = me
            bye.unpublish_track.track_sid = late.publication.info.sid
            bye.unpublish_track.stop_on_unpublish = True
            bye.unpublish_track.request_async_id = rt.next_async_id()
            try:
                rt.request(bye)
            finally:
                rt._release(late.publication.handle.id)

        cb = await session.request(req, "publish_track", reaper=unpublish_late)
        if cb.error:
            raise PublishTrackError(str(cb.error))
        info = type(cb.publication.info)()
        info.CopyFrom(cb.publication.info)
        rec = PublicationRecord(
            rt.own(cb.publication.handle.id, "local_publication"), info, track, session=session
        )
        if info.sid in self._early_subscribed:  # someone subscribed already
            self._early_subscribed.discard(info.sid)
            rec.subscribed_once = True
        pub = LocalTrackPublication(rec)
        self._rec.publications[pub.sid] = rec
        track._published_as(pub.sid)
        if pub.sid in self._early_published:  # its native event came first
            self._early_published.discard(pub.sid)
            session.on_local_published(pub)
        return pub

    async def unpublish_track(self, track_sid: str) -> None:
        """Stops publishing a track (peers get ``TrackUnpublished``, you get
        ``LocalTrackUnpublished``); the track itself stays yours to close.

        Raises:
            UnpublishTrackError: no track of yours has that sid, or the native
                core failed.
            RoomClosedError: the room is closed.

        Cancellation: returns at once; the unpublish still completes and the
        publication is released when its event arrives.
        """
        if not isinstance(track_sid, str):
            raise TypeError("track_sid must be a str")
        session = self._session
        session.check_open()
        if track_sid not in self._rec.publications:
            raise UnpublishTrackError(f"no published track with sid {track_sid!r}")
        req = ffi_pb2.FfiRequest()
        msg = req.unpublish_track
        msg.local_participant_handle = self._rec.handle.id
        msg.track_sid = track_sid
        msg.stop_on_unpublish = True
        cb = await session.request(req, "unpublish_track")
        if cb.error:
            raise UnpublishTrackError(str(cb.error))
        rec = self._rec.publications.pop(track_sid, None)
        if rec is not None:  # the native LocalTrackUnpublished event is still to come:
            release_publication(rec, remote=False)  # report it now, once
            self._unpublished_first.add(track_sid)  # (see _track_unpublished)
            session.on_local_unpublished(rec.view)

    # -- the state mirror's calls (native events about our own tracks) -----------
    def _track_published(self, sid: str) -> LocalTrackPublication | None:
        """The native LocalTrackPublished event: the publication to report, or
        None while publish_track has not seen its completion (it reports the
        event then)."""
        rec = self._rec.publications.get(sid)
        if rec is None:
            self._early_published.add(sid)
            return None
        pub: LocalTrackPublication = rec.view
        return pub

    def _track_subscribed(self, sid: str) -> None:
        """The native LocalTrackSubscribed event: wakes the publication's
        ``wait_for_subscription`` calls (or, before publish_track has seen its
        completion, lets it know)."""
        rec = self._rec.publications.get(sid)
        if rec is None:
            self._early_subscribed.add(sid)
            return
        rec.subscribed_once = True
        if rec.first_subscription is not None:
            rec.first_subscription.set()

    def _track_unpublished(self, sid: str) -> LocalTrackPublication | None:
        """The native LocalTrackUnpublished event: the publication to report
        (released), or None when unpublish_track's completion came first and
        reported it already."""
        self._early_published.discard(sid)  # a cancelled publish, undone
        self._early_subscribed.discard(sid)
        if sid in self._unpublished_first:
            self._unpublished_first.discard(sid)
            return None
        rec = self._rec.publications.pop(sid, None)
        if rec is None:
            return None
        release_publication(rec, remote=False)
        pub: LocalTrackPublication = rec.view
        return pub

    async def set_track_subscription_permissions(
        self,
        *,
        allow_all_participants: bool = True,
        participant_permissions: Sequence[ParticipantTrackPermission] | None = None,
    ) -> None:
        """Sets who may subscribe to your tracks: everyone
        (``allow_all_participants``, the default and the server's initial
        rule; ``participant_permissions`` is then ignored), or only the
        participants in ``participant_permissions``, each to all your tracks
        or to the tracks it names (None: nobody else). The rule replaces the previous one and
        applies to tracks published later too; the native core keeps it and
        sends it again after a reconnection.

        A participant that is not allowed still sees your publications
        (``TrackPublished``), but its subscriptions do not arrive (an
        lkrtc_trio subscriber reports ``TrackSubscriptionFailed`` after
        ``SUBSCRIBE_TIMEOUT``); they arrive once you allow it. Withdrawing a
        permission from a participant already subscribed stops its media
        (its native core reports nothing).

        Raises:
            TypeError: ``allow_all_participants`` is not a bool, or
                ``participant_permissions`` is not a sequence of
                :class:`ParticipantTrackPermission`.
            ValueError: the same identity twice.
            RoomClosedError: the room is closed (``RoomDisconnectedError`` /
                ``NativePanicError`` when something else ended it).
            NativeError: the native core refused it.

        Cancellation: the rule is sent after the call's only checkpoint, all
        at once: a cancelled call sent nothing.
        """
        if not isinstance(allow_all_participants, bool):
            raise TypeError(
                "allow_all_participants must be a bool, not "
                f"{type(allow_all_participants).__name__}"
            )
        if participant_permissions is None:
            participant_permissions = ()
        if isinstance(participant_permissions, (str, bytes)) or not isinstance(
            participant_permissions, Sequence
        ):
            raise TypeError(
                "participant_permissions must be a sequence of ParticipantTrackPermission"
            )
        seen: set[str] = set()
        for perm in participant_permissions:
            if not isinstance(perm, ParticipantTrackPermission):
                raise TypeError(
                    "participant_permissions must hold ParticipantTrackPermission, not "
                    f"{type(perm).__name__}"
                )
            if perm.participant_identity in seen:
                raise ValueError(f"{perm.participant_identity!r} is given twice")
            seen.add(perm.participant_identity)
        await anyio.lowlevel.checkpoint()
        session = self._session
        session.check_open()
        req = ffi_pb2.FfiRequest()
        msg = req.set_track_subscription_permissions
        msg.local_participant_handle = self._rec.handle.id
        msg.all_participants_allowed = allow_all_participants
        for perm in participant_permissions:
            out = msg.permissions.add()
            out.participant_identity = perm.participant_identity
            out.allow_all = perm.allow_all
            out.allowed_track_sids.extend(perm.allowed_track_sids)
        session.rt.request(req)

    # -- metadata, name, attributes -----------------------------------------------
    async def set_metadata(self, metadata: str) -> None:
        """Sets this participant's metadata and waits for the server to apply it.

        Raises:
            ParticipantUpdateError: refused (no ``canUpdateOwnMetadata`` grant)
                or failed; the local value is unchanged. (An answer the native
                core loses is recovered: see ``_update``.)
            TypeError: ``metadata`` is not a str.
            RoomClosedError: the room is closed.

        Cancellation: returns at once; the update may still be applied (the
        local value then follows the server's event).
        """
        if not isinstance(metadata, str):
            raise TypeError("metadata must be a str")
        req = self._update_request("set_local_metadata")
        req.set_local_metadata.metadata = metadata
        await self._update(req, "set_local_metadata", lambda: self._rec.info.metadata == metadata)
        self._rec.info.metadata = metadata

    async def set_name(self, name: str) -> None:
        """Sets this participant's display name; see :meth:`set_metadata`."""
        if not isinstance(name, str):
            raise TypeError("name must be a str")
        req = self._update_request("set_local_name")
        req.set_local_name.name = name
        await self._update(req, "set_local_name", lambda: self._rec.info.name == name)
        self._rec.info.name = name

    async def set_attributes(self, attributes: Mapping[str, str]) -> None:
        """Merges ``attributes`` into this participant's attributes (a key set
        to ``""`` is removed by the server) and waits for the server.

        Raises:
            ParticipantUpdateError: refused or failed; local values unchanged.
            TypeError: a key or value is not a str.
            RoomClosedError: the room is closed.

        Cancellation: see :meth:`set_metadata`.
        """
        if not isinstance(attributes, Mapping):
            raise TypeError("attributes must be a mapping of str to str")
        for k, v in attributes.items():
            if not isinstance(k, str) or not isinstance(v, str) or not k:
                raise TypeError("attribute keys must be non-empty str and values str")
        merged = {**self._rec.info.attributes, **attributes}
        req = self._update_request("set_local_attributes")
        for k, v in merged.items():
            entry = req.set_local_attributes.attributes.add()
            entry.key = k
            entry.value = v

        def applied() -> bool:
            now = self._rec.info.attributes
            return all(now.get(k) == v if v else k not in now for k, v in attributes.items())

        await self._update(req, "set_local_attributes", applied)
        current = self._rec.info.attributes
        for k, v in attributes.items():
            if v:
                current[k] = v
            elif k in current:
                del current[k]

    def _update_request(self, field: str) -> Any:
        self._session.check_open()
        req = ffi_pb2.FfiRequest()
        getattr(req, field).local_participant_handle = self._rec.handle.id
        return req

    async def _update(self, req: Any, field: str, applied: Callable[[], bool]) -> None:
        """Sends an update and waits for the server's answer. The rule:

        * no error: done;
        * an error naming a timeout (the native core waited for the server's
          answer and did not get it; about 1.5 % of updates here, although
          the server applied them): done only if a participant event *after*
          this request changed our state to the requested value; otherwise
          the (idempotent) update is sent once more, and a second timeout
          raises;
        * any other error (a refusal): raised at once, never retried.

        A value that was already in place does not count as applied: the
        server sends no event for it, so such an update succeeds only by the
        server's own answer.
        """
        kind = field.removeprefix("set_local_")
        for attempt in range(2):
            seen = self._updates_seen[kind]
            cb = await self._session.request(req, field)
            if not cb.error:
                return
            if "timeout" not in cb.error.lower():
                break
            if self._updates_seen[kind] > seen and applied():
                log.debug("%s: answer lost, but the server applied it", field)
                return
            log.info("%s timed out; sending it again (attempt %d)", field, attempt + 2)
        raise ParticipantUpdateError(f"{kind}: {cb.error}")

    # -- RPC ------------------------------------------------------------------------------
    async def perform_rpc(
        self,
        *,
        destination_identity: str,
        method: str,
        payload: str,
        response_timeout: float | None = None,
    ) -> str:
        """Calls ``method`` on another participant and returns its response.

        Args:
            destination_identity: the participant to call.
            method: the method name it registered.
            payload: the request (at most 15360 UTF-8 bytes).
            response_timeout: seconds to wait for the response (default 15).

        Raises:
            RpcError: the call failed; ``code`` says why (1400 unknown method,
                1401 recipient not found, 1402 payload too large (raised before
                sending), 1500 the handler failed, 1501/1502 timeouts, or the
                handler's own code).
            TypeError, ValueError: invalid arguments.
            RoomClosedError: the room is closed.

        Cancellation: returns at once and leaves nothing pending; a late
        response is dropped, and later calls work as usual.
        """
        for name, value in (
            ("destination_identity", destination_identity),
            ("method", method),
            ("payload", payload),
        ):
            if not isinstance(value, str):
                raise TypeError(f"{name} must be a str")
        if len(payload.encode()) > MAX_PAYLOAD_BYTES:
            raise RpcError.built_in(RpcError.ErrorCode.REQUEST_PAYLOAD_TOO_LARGE)
        timeout = _DEFAULT_RPC_TIMEOUT if response_timeout is None else response_timeout
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
            raise TypeError(
                f"response_timeout must be a number of seconds, not {type(timeout).__name__}"
            )
        if not (math.isfinite(timeout) and timeout > 0):
            raise ValueError(f"response_timeout must be a positive number, not {timeout!r}")
        req = ffi_pb2.FfiRequest()
        msg = req.perform_rpc
        msg.local_participant_handle = self._rec.handle.id
        msg.destination_identity = destination_identity
        msg.method = method
        msg.payload = payload
        timeout_ms = max(1, round(timeout * 1000))
        msg.response_timeout_ms = timeout_ms
        # The ack wait never exceeds the whole timeout (short timeouts once
        # panicked the native core: python-sdks #522).
        msg.max_round_trip_latency_ms = min(_MAX_ROUND_TRIP_MS, timeout_ms)
        # The native core waits up to min(7 s, timeout) for the ack, then up to
        # `timeout` for the answer; this limit only guards against a lost one.
        with anyio.move_on_after(2 * timeout + _RPC_GRACE):
            cb = await self._session.request(req, "perform_rpc")
            if cb.HasField("error"):
                raise RpcError._from_proto(cb.error)
            return str(cb.payload)
        raise RpcError.built_in(RpcError.ErrorCode.RESPONSE_TIMEOUT)

    @overload
    def register_rpc_method(self, method_name: str) -> Callable[[H], H]: ...

    @overload
    def register_rpc_method(self, method_name: str, handler: H) -> H: ...

    def register_rpc_method(
        self, method_name: str, handler: H | None = None
    ) -> H | Callable[[H], H]:
        """Serves RPC ``method_name`` with ``handler`` (decorator or direct call).

        The handler (sync or async) gets an :class:`RpcInvocationData` and
        returns the response string. Each invocation runs in the room's
        nursery inside a cancel scope of its ``response_timeout``: overrunning
        cancels it and the caller gets RESPONSE_TIMEOUT (1502); an
        :class:`RpcError` it raises reaches the caller unchanged; any other
        exception is logged and reaches the caller as APPLICATION_ERROR (1500).
        Registering a method again replaces its handler. Sync handlers run on
        the event loop: keep them short.

        Raises:
            TypeError: ``handler`` is not callable.
            NativeError: the native core refused the registration.
            RoomClosedError: the room is closed.
        """
        if not isinstance(method_name, str) or not method_name:
            raise TypeError("method_name must be a non-empty str")

        def register(fn: H) -> H:
            if not callable(fn):
                raise TypeError("an RPC handler must be callable")
            self._session.check_open()
            if method_name not in self._rpc_handlers:
                req = ffi_pb2.FfiRequest()
                req.register_rpc_method.local_participant_handle = self._rec.handle.id
                req.register_rpc_method.method = method_name
                self._session.rt.request(req)
            self._rpc_handlers[method_name] = fn
            return fn

        if handler is None:
            return register
        return register(handler)

    def unregister_rpc_method(self, method: str) -> None:
        """Stops serving ``method`` (callers then get UNSUPPORTED_METHOD).
        Unknown methods are ignored.

        Raises:
            RoomClosedError: the room is closed.
        """
        self._session.check_open()
        if self._rpc_handlers.pop(method, None) is None:
            return
        req = ffi_pb2.FfiRequest()
        req.unregister_rpc_method.local_participant_handle = self._rec.handle.id
        req.unregister_rpc_method.method = method
        self._session.rt.request(req)

    def _on_rpc_invocation(self, inv: Any) -> None:
        """Room sink: an incoming call, handed to the room's service task (which
        runs its handler in the room's nursery), or answered at once when the
        room is closing or overloaded."""
        data = RpcInvocationData(
            request_id=str(inv.request_id),
            caller_identity=str(inv.caller_identity),
            payload=str(inv.payload),
            response_timeout=inv.response_timeout_ms / 1000.0,
            method=str(inv.method),
        )
        refused = self._session.queue_rpc(int(inv.invocation_id), data)
        if refused is not None:
            self._respond(int(inv.invocation_id), None, refused)

    def _refuse(self, invocation_id: int) -> None:
        """Answers an invocation that will not run: the room is closing."""
        self._respond(
            invocation_id, None, RpcError.built_in(RpcError.ErrorCode.RECIPIENT_DISCONNECTED)
        )

    async def _serve_one(self, invocation_id: int, data: RpcInvocationData) -> None:
        handler = self._rpc_handlers.get(data.method)
        payload: str | None = None
        error: RpcError | None = None
        if handler is None:
            error = RpcError.built_in(RpcError.ErrorCode.UNSUPPORTED_METHOD)
        else:
            try:
                with anyio.move_on_after(data.response_timeout) as scope:
                    result = handler(data)
                    if inspect.isawaitable(result):
                        result = await result
                    if not isinstance(result, str):
                        raise TypeError(
                            f"RPC handler for {data.method!r} returned "
                            f"{type(result).__name__}, not str"
                        )
                    payload = result
                if scope.cancelled_caught:
                    error = RpcError.built_in(RpcError.ErrorCode.RESPONSE_TIMEOUT)
            except RpcError as exc:
                error = exc
            except anyio.get_cancelled_exc_class():
                # The room is closing: tell the caller at once, then unwind.
                self._respond(
                    invocation_id,
                    None,
                    RpcError.built_in(RpcError.ErrorCode.RECIPIENT_DISCONNECTED),
                )
                raise
            except Exception:
                log.exception("RPC handler for %r failed; answering APPLICATION_ERROR", data.method)
                error = RpcError.built_in(RpcError.ErrorCode.APPLICATION_ERROR)
        if payload is not None and len(payload.encode()) > MAX_PAYLOAD_BYTES:
            payload = None
            error = RpcError.built_in(RpcError.ErrorCode.RESPONSE_PAYLOAD_TOO_LARGE)
        self._respond(invocation_id, payload, error)

    def _respond(self, invocation_id: int, payload: str | None, error: RpcError | None) -> None:
        if self._rec.handle.closed:
            return
        req = ffi_pb2.FfiRequest()
        msg = req.rpc_method_invocation_response
        msg.local_participant_handle = self._rec.handle.id
        msg.invocation_id = invocation_id
        if error is not None:
            error._to_proto(msg.error)
        else:
            msg.payload = payload or ""
        try:
            resp = self._session.rt.request(req)
        except Exception:
            log.exception("could not send the RPC response for invocation %d", invocation_id)
            return
        if resp.rpc_method_invocation_response.error:
            log.warning(
                "RPC response for invocation %d was refused: %s",
                invocation_id,
                resp.rpc_method_invocation_response.error,
            )


def _identities(value: Iterable[str] | None) -> list[str]:
    """``destination_identities`` as a list (None or empty: everyone)."""
    if value is None:
        return []
    if isinstance(value, (str, bytes)):
        raise TypeError("destination_identities must be a sequence of identities, not a str")
    out = list(value)
    for ident in out:
        if not isinstance(ident, str):
            raise TypeError("destination identities must be str")
    return out
