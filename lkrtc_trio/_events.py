"""Room events: frozen, slotted, keyword-only dataclasses (match them by keyword).

Room state is updated before an event is delivered, so a handler that reads
``room.remote_participants`` or ``participant.metadata`` sees the new values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

from ._types import (
    ChatMessage,
    ConnectionQuality,
    ConnectionState,
    DataPacketKind,
    DisconnectReason,
    EncryptionState,
    ParticipantPermission,
    RoomInfo,
)

if TYPE_CHECKING:
    from ._participant import (
        LocalParticipant,
        LocalTrackPublication,
        Participant,
        RemoteParticipant,
        RemoteTrackPublication,
        TrackPublication,
    )
    from ._track import RemoteTrack

__all__ = [
    "ActiveSpeakersChanged",
    "ChatMessageReceived",
    "ConnectionQualityChanged",
    "ConnectionStateChanged",
    "DataChannelBufferedAmountLowThresholdChanged",
    "DataReceived",
    "DataTrackPublished",
    "DataTrackUnpublished",
    "Disconnected",
    "E2eeStateChanged",
    "LocalTrackPublished",
    "LocalTrackRepublished",
    "LocalTrackSubscribed",
    "LocalTrackUnpublished",
    "NativeRoomEvent",
    "ParticipantActive",
    "ParticipantAttributesChanged",
    "ParticipantConnected",
    "ParticipantDisconnected",
    "ParticipantEncryptionStatusChanged",
    "ParticipantMetadataChanged",
    "ParticipantNameChanged",
    "ParticipantPermissionChanged",
    "ParticipantsUpdated",
    "Reconnected",
    "Reconnecting",
    "ReliableDataMayBeLost",
    "RoomEvent",
    "RoomMetadataChanged",
    "RoomSidChanged",
    "RoomUpdated",
    "SipDTMFReceived",
    "TokenRefreshed",
    "TrackMuted",
    "TrackPublished",
    "TrackSubscribed",
    "TrackSubscriptionFailed",
    "TrackUnmuted",
    "TrackUnpublished",
    "TrackUnsubscribed",
    "TranscriptionReceived",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class ParticipantConnected:
    participant: RemoteParticipant


@dataclass(frozen=True, slots=True, kw_only=True)
class ParticipantDisconnected:
    participant: RemoteParticipant
    reason: DisconnectReason = DisconnectReason.UNKNOWN_REASON


@dataclass(frozen=True, slots=True, kw_only=True)
class DataReceived:
    """A data packet.

    ``participant`` is None, and ``participant_identity`` is ``""``, when the
    native core has not yet learned who sent it: the server announces a new
    participant to the others in batches, up to about 3 s after it joined, and
    a packet it sends before that arrives without a known sender. Otherwise
    both are set."""

    payload: bytes
    participant: RemoteParticipant | None
    topic: str
    kind: DataPacketKind
    participant_identity: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class SipDTMFReceived:
    """A SIP DTMF tone event; see :class:`DataReceived` for ``participant`` and
    ``participant_identity``."""

    code: int
    digit: str
    participant: RemoteParticipant | None
    participant_identity: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class TranscriptionReceived:
    segments: Sequence[Any]
    participant: Participant | None
    publication: TrackPublication | None
    participant_identity: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ParticipantMetadataChanged:
    participant: Participant
    old_metadata: str
    metadata: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ParticipantNameChanged:
    participant: Participant
    old_name: str
    name: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ParticipantAttributesChanged:
    participant: Participant
    changed_attributes: Mapping[str, str]


@dataclass(frozen=True, slots=True, kw_only=True)
class TrackPublished:
    publication: RemoteTrackPublication
    participant: RemoteParticipant


@dataclass(frozen=True, slots=True, kw_only=True)
class TrackUnpublished:
    publication: RemoteTrackPublication
    participant: RemoteParticipant


@dataclass(frozen=True, slots=True, kw_only=True)
class TrackSubscribed:
    track: RemoteTrack
    publication: RemoteTrackPublication
    participant: RemoteParticipant


@dataclass(frozen=True, slots=True, kw_only=True)
class TrackUnsubscribed:
    track: RemoteTrack
    publication: RemoteTrackPublication
    participant: RemoteParticipant


@dataclass(frozen=True, slots=True, kw_only=True)
class TrackSubscriptionFailed:
    """A subscription to ``participant``'s track ``track_sid`` failed:
    reported by the native core, or by lkrtc_trio when a track asked for with
    ``set_subscribed(True)`` did not arrive within ``SUBSCRIBE_TIMEOUT``
    (the publisher's track subscription permissions do not allow it; the
    native core says nothing then). ``publication`` is the publication when
    it is known (None otherwise)."""

    participant: RemoteParticipant
    track_sid: str
    error: str
    publication: RemoteTrackPublication | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TrackMuted:
    participant: Participant
    publication: TrackPublication


@dataclass(frozen=True, slots=True, kw_only=True)
class TrackUnmuted:
    participant: Participant
    publication: TrackPublication


@dataclass(frozen=True, slots=True, kw_only=True)
class LocalTrackPublished:
    publication: LocalTrackPublication
    participant: LocalParticipant


@dataclass(frozen=True, slots=True, kw_only=True)
class LocalTrackUnpublished:
    publication: LocalTrackPublication
    participant: LocalParticipant


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionStateChanged:
    state: ConnectionState


@dataclass(frozen=True, slots=True, kw_only=True)
class Reconnecting:
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class Reconnected:
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class ReliableDataMayBeLost:
    """Reliable packets this participant sent may not have arrived, although
    their ``publish_data`` calls succeeded (the native core reports nothing).
    They are the reliable ``publish_data`` calls numbered ``first_sequence``
    to ``last_sequence`` (the numbers those calls returned; ``count`` of
    them), accepted by the native core between ``since`` and ``until``
    (``time.monotonic()`` values).

    Two cases:

    * ``participant_identities`` empty: **our own link** failed. Emitted once
      the reconnected room has settled: right after ``Reconnected``, or, when
      participants that were in the room before are still missing, as soon as
      they are all back (at most 10 s after ``Reconnected``); also right
      before ``Disconnected`` if the room ends while reconnecting. The window
      runs from 20 s before ``Reconnecting`` until then; the packets may have
      reached nobody.
    * ``participant_identities`` set: **a receiver's link** failed. Emitted
      when a participant that left comes back within 60 s (it reconnected):
      the window runs from 20 s before it left until it was back; the packets
      may not have reached it.

    The ranges are supersets of what was lost: the native core cannot say
    whether a reconnection resumed the old connection (the packets normally
    arrive) or rejoined afresh (those sent between the link's failure and its
    detection are lost). Resend what matters, with an id of your own so that
    receivers can drop duplicates."""

    first_sequence: int
    last_sequence: int
    count: int
    since: float
    until: float
    participant_identities: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Disconnected:
    reason: DisconnectReason


@dataclass(frozen=True, slots=True, kw_only=True)
class RoomMetadataChanged:
    old_metadata: str
    metadata: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RoomSidChanged:
    sid: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ActiveSpeakersChanged:
    speakers: Sequence[Participant]


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionQualityChanged:
    participant: Participant
    quality: ConnectionQuality


@dataclass(frozen=True, slots=True, kw_only=True)
class LocalTrackSubscribed:
    """A remote participant subscribed to one of our tracks."""

    track_sid: str


@dataclass(frozen=True, slots=True, kw_only=True)
class E2eeStateChanged:
    participant: Participant | None
    state: EncryptionState


@dataclass(frozen=True, slots=True, kw_only=True)
class ChatMessageReceived:
    message: ChatMessage
    participant: Participant | None


@dataclass(frozen=True, slots=True, kw_only=True)
class DataChannelBufferedAmountLowThresholdChanged:
    kind: DataPacketKind
    threshold: int


@dataclass(frozen=True, slots=True, kw_only=True)
class RoomUpdated:
    """The server changed the room's info (``room.sid``, ``room.metadata``,
    counts), already applied to the room. ``moved`` is True when the
    participant was moved to another room."""

    info: RoomInfo
    moved: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class ParticipantsUpdated:
    """The server sent fresh info for these participants (state updated first)."""

    participants: Sequence[Participant]


@dataclass(frozen=True, slots=True, kw_only=True)
class ParticipantEncryptionStatusChanged:
    participant: Participant
    is_encrypted: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class ParticipantPermissionChanged:
    participant: Participant
    permission: ParticipantPermission


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenRefreshed:
    token: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ParticipantActive:
    """The participant's connection is fully established."""

    participant: Participant


@dataclass(frozen=True, slots=True, kw_only=True)
class DataTrackPublished:
    """A remote data track was published (data tracks are not supported yet:
    its handle is released). ``info``: its native description, as plain values."""

    info: Mapping[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class DataTrackUnpublished:
    sid: str


@dataclass(frozen=True, slots=True, kw_only=True)
class LocalTrackRepublished:
    """A local track was published again after a full reconnect, under a new sid."""

    previous_sid: str
    sid: str


@dataclass(frozen=True, slots=True, kw_only=True)
class NativeRoomEvent:
    """A native room event lkrtc_trio has no dedicated class for (one that a
    newer native core added). ``name`` is its ``RoomEvent`` field name;
    ``fields`` its content, as plain values."""

    name: str
    fields: Mapping[str, Any]


RoomEvent: TypeAlias = (
    ParticipantConnected
    | ParticipantDisconnected
    | DataReceived
    | SipDTMFReceived
    | TranscriptionReceived
    | ParticipantMetadataChanged
    | ParticipantNameChanged
    | ParticipantAttributesChanged
    | TrackPublished
    | TrackUnpublished
    | TrackSubscribed
    | TrackUnsubscribed
    | TrackSubscriptionFailed
    | TrackMuted
    | TrackUnmuted
    | LocalTrackPublished
    | LocalTrackUnpublished
    | ConnectionStateChanged
    | Reconnecting
    | Reconnected
    | ReliableDataMayBeLost
    | Disconnected
    | RoomMetadataChanged
    | RoomSidChanged
    | ActiveSpeakersChanged
    | ConnectionQualityChanged
    | LocalTrackSubscribed
    | E2eeStateChanged
    | ChatMessageReceived
    | DataChannelBufferedAmountLowThresholdChanged
    | RoomUpdated
    | ParticipantsUpdated
    | ParticipantEncryptionStatusChanged
    | ParticipantPermissionChanged
    | TokenRefreshed
    | ParticipantActive
    | DataTrackPublished
    | DataTrackUnpublished
    | LocalTrackRepublished
    | NativeRoomEvent
)
