"""Room events: frozen, slotted, keyword-only dataclasses (match them by keyword).

Room state is updated before an event is delivered, so a handler that reads
``room.remote_participants`` or ``participant.metadata`` sees the new values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

if TYPE_CHECKING:
    from ._participant import (
        LocalParticipant,
        Participant,
        RemoteParticipant,
        TrackPublication,
    )

__all__ = [
    "ActiveSpeakersChanged",
    "ConnectionQualityChanged",
    "ConnectionStateChanged",
    "DataReceived",
    "Disconnected",
    "LocalTrackPublished",
    "LocalTrackUnpublished",
    "NativeRoomEvent",
    "ParticipantAttributesChanged",
    "ParticipantConnected",
    "ParticipantDisconnected",
    "ParticipantMetadataChanged",
    "ParticipantNameChanged",
    "Reconnected",
    "Reconnecting",
    "RoomEvent",
    "RoomMetadataChanged",
    "RoomSidChanged",
    "SipDTMFReceived",
    "TrackMuted",
    "TrackPublished",
    "TrackSubscribed",
    "TrackSubscriptionFailed",
    "TrackUnmuted",
    "TrackUnpublished",
    "TrackUnsubscribed",
    "TranscriptionReceived",
]

_event = dataclass(frozen=True, slots=True, kw_only=True)


@_event
class ParticipantConnected:
    participant: RemoteParticipant


@_event
class ParticipantDisconnected:
    participant: RemoteParticipant
    #: ``DisconnectReason`` value.
    reason: int = 0


@_event
class DataReceived:
    payload: bytes
    participant: RemoteParticipant | None
    topic: str
    #: ``DataPacketKind`` value (0 lossy, 1 reliable).
    kind: int


@_event
class SipDTMFReceived:
    code: int
    digit: str
    participant: RemoteParticipant | None


@_event
class TranscriptionReceived:
    segments: Sequence[Any]
    participant: Participant | None
    publication: TrackPublication | None


@_event
class ParticipantMetadataChanged:
    participant: Participant
    old_metadata: str
    metadata: str


@_event
class ParticipantNameChanged:
    participant: Participant
    old_name: str
    name: str


@_event
class ParticipantAttributesChanged:
    participant: Participant
    changed_attributes: Mapping[str, str]


@_event
class TrackPublished:
    publication: TrackPublication
    participant: RemoteParticipant


@_event
class TrackUnpublished:
    publication: TrackPublication
    participant: RemoteParticipant


@_event
class TrackSubscribed:
    track: Any
    publication: TrackPublication
    participant: RemoteParticipant


@_event
class TrackUnsubscribed:
    track: Any
    publication: TrackPublication
    participant: RemoteParticipant


@_event
class TrackSubscriptionFailed:
    participant: RemoteParticipant
    track_sid: str
    error: str


@_event
class TrackMuted:
    participant: Participant
    publication: TrackPublication


@_event
class TrackUnmuted:
    participant: Participant
    publication: TrackPublication


@_event
class LocalTrackPublished:
    publication: TrackPublication
    participant: LocalParticipant


@_event
class LocalTrackUnpublished:
    publication: TrackPublication
    participant: LocalParticipant


@_event
class ConnectionStateChanged:
    #: ``ConnectionState`` value: 0 disconnected, 1 connected, 2 reconnecting.
    state: int


@_event
class Reconnecting:
    pass


@_event
class Reconnected:
    pass


@_event
class Disconnected:
    #: ``DisconnectReason`` value.
    reason: int


@_event
class RoomMetadataChanged:
    old_metadata: str
    metadata: str


@_event
class RoomSidChanged:
    sid: str


@_event
class ActiveSpeakersChanged:
    speakers: Sequence[Participant]


@_event
class ConnectionQualityChanged:
    participant: Participant
    #: ``ConnectionQuality`` value.
    quality: int


@_event
class NativeRoomEvent:
    """A native room event lkrtc_trio has no dedicated class for yet.

    ``name`` is the ``RoomEvent`` field name; ``message`` the protobuf message.
    """

    name: str
    message: Any


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
    | Disconnected
    | RoomMetadataChanged
    | RoomSidChanged
    | ActiveSpeakersChanged
    | ConnectionQualityChanged
    | NativeRoomEvent
)
