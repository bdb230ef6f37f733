"""Typed values of the public API: IntEnums and frozen dataclasses, never
protobuf objects or bare ints. Names follow the official SDK's (its protobuf
enum and message names); the values are the native core's, checked against
the installed schema by the tests.

An enum value the native core sends that this release does not know (a newer
server, say) becomes a member named ``UNKNOWN_<value>`` instead of an error.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, final

__all__ = [
    "ChatMessage",
    "ConnectionQuality",
    "ConnectionState",
    "DataPacketKind",
    "DisconnectReason",
    "EncryptionState",
    "ParticipantKind",
    "ParticipantKindDetail",
    "ParticipantPermission",
    "ParticipantState",
    "ParticipantTrackPermission",
    "RoomInfo",
    "SimulateScenario",
    "SubscriptionStatus",
    "VideoQuality",
]


class _Open(IntEnum):
    """An IntEnum that keeps values it does not know, as ``UNKNOWN_<n>``."""

    @classmethod
    def _missing_(cls, value: object) -> Any:
        if not isinstance(value, int):
            return None
        member = int.__new__(cls, value)
        member._name_ = f"UNKNOWN_{value}"
        member._value_ = value
        return member


class ConnectionState(_Open):
    CONN_DISCONNECTED = 0
    CONN_CONNECTED = 1
    CONN_RECONNECTING = 2


class ConnectionQuality(_Open):
    QUALITY_POOR = 0
    QUALITY_GOOD = 1
    QUALITY_EXCELLENT = 2
    QUALITY_LOST = 3


class DataPacketKind(_Open):
    KIND_LOSSY = 0
    KIND_RELIABLE = 1


class DisconnectReason(_Open):
    UNKNOWN_REASON = 0
    CLIENT_INITIATED = 1
    DUPLICATE_IDENTITY = 2
    SERVER_SHUTDOWN = 3
    PARTICIPANT_REMOVED = 4
    ROOM_DELETED = 5
    STATE_MISMATCH = 6
    JOIN_FAILURE = 7
    MIGRATION = 8
    SIGNAL_CLOSE = 9
    ROOM_CLOSED = 10
    USER_UNAVAILABLE = 11
    USER_REJECTED = 12
    SIP_TRUNK_FAILURE = 13
    CONNECTION_TIMEOUT = 14
    MEDIA_FAILURE = 15
    AGENT_ERROR = 16


class SimulateScenario(_Open):
    """What :meth:`Room.simulate_scenario` makes the native core or the server do."""

    SIMULATE_SIGNAL_RECONNECT = 0  # close the signal connection: a resume
    SIMULATE_SPEAKER = 1
    SIMULATE_NODE_FAILURE = 2
    SIMULATE_SERVER_LEAVE = 3
    SIMULATE_MIGRATION = 4
    SIMULATE_FORCE_TCP = 5
    SIMULATE_FORCE_TLS = 6
    SIMULATE_FULL_RECONNECT = 7  # the server asks for a full reconnect
    SIMULATE_DISCONNECT_SIGNAL_ON_RESUME = 8  # a resume that fails: then a full one


class ParticipantKind(_Open):
    PARTICIPANT_KIND_STANDARD = 0
    PARTICIPANT_KIND_INGRESS = 1
    PARTICIPANT_KIND_EGRESS = 2
    PARTICIPANT_KIND_SIP = 3
    PARTICIPANT_KIND_AGENT = 4
    PARTICIPANT_KIND_CONNECTOR = 5
    PARTICIPANT_KIND_BRIDGE = 6


class ParticipantKindDetail(_Open):
    PARTICIPANT_KIND_DETAIL_CLOUD_AGENT = 0
    PARTICIPANT_KIND_DETAIL_FORWARDED = 1
    PARTICIPANT_KIND_DETAIL_CONNECTOR_WHATSAPP = 2
    PARTICIPANT_KIND_DETAIL_CONNECTOR_TWILIO = 3
    PARTICIPANT_KIND_DETAIL_BRIDGE_RTSP = 4
    PARTICIPANT_KIND_DETAIL_SIMULATION = 5


class EncryptionState(_Open):
    NEW = 0
    OK = 1
    ENCRYPTION_FAILED = 2
    DECRYPTION_FAILED = 3
    MISSING_KEY = 4
    KEY_RATCHETED = 5
    INTERNAL_ERROR = 6


class ParticipantState(_Open):
    PARTICIPANT_STATE_JOINING = 0
    PARTICIPANT_STATE_JOINED = 1
    PARTICIPANT_STATE_ACTIVE = 2
    PARTICIPANT_STATE_DISCONNECTED = 3


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class ParticipantPermission:
    """What a participant may do in the room (from its token, or as updated
    by the server). ``can_publish_sources`` holds ``TrackSource`` values."""

    can_subscribe: bool = False
    can_publish: bool = False
    can_publish_data: bool = False
    can_publish_sources: tuple[int, ...] = ()
    hidden: bool = False
    can_update_metadata: bool = False
    can_subscribe_metrics: bool = False

    @classmethod
    def _from_proto(cls, msg: Any) -> ParticipantPermission:
        return cls(
            can_subscribe=bool(msg.can_subscribe),
            can_publish=bool(msg.can_publish),
            can_publish_data=bool(msg.can_publish_data),
            can_publish_sources=tuple(int(s) for s in msg.can_publish_sources),
            hidden=bool(msg.hidden),
            can_update_metadata=bool(msg.can_update_metadata),
            can_subscribe_metrics=bool(msg.can_subscribe_metrics),
        )


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class RoomInfo:
    """A snapshot of the room as the server describes it."""

    sid: str = ""
    name: str = ""
    metadata: str = ""
    num_participants: int = 0
    num_publishers: int = 0
    creation_time: int = 0
    """Seconds since the epoch (0 until the server said)."""
    active_recording: bool = False
    max_participants: int = 0
    empty_timeout: int = 0
    departure_timeout: int = 0

    @classmethod
    def _from_proto(cls, msg: Any) -> RoomInfo:
        return cls(
            sid=str(msg.sid),
            name=str(msg.name),
            metadata=str(msg.metadata),
            num_participants=int(msg.num_participants),
            num_publishers=int(msg.num_publishers),
            creation_time=int(msg.creation_time),
            active_recording=bool(msg.active_recording),
            max_participants=int(msg.max_participants),
            empty_timeout=int(msg.empty_timeout),
            departure_timeout=int(msg.departure_timeout),
        )


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class ChatMessage:
    """A chat message (the LiveKit chat protocol)."""

    id: str
    timestamp: int
    message: str
    edit_timestamp: int | None = None
    deleted: bool = False
    generated: bool = False

    @classmethod
    def _from_proto(cls, msg: Any) -> ChatMessage:
        return cls(
            id=str(msg.id),
            timestamp=int(msg.timestamp),
            message=str(msg.message),
            edit_timestamp=int(msg.edit_timestamp) if msg.HasField("edit_timestamp") else None,
            deleted=bool(msg.deleted) if msg.HasField("deleted") else False,
            generated=bool(msg.generated) if msg.HasField("generated") else False,
        )


def _flatten(msg: Any, prefix: str, out: dict[str, Any]) -> None:
    for desc, value in msg.ListFields():
        key = prefix + desc.name
        if desc.message_type is not None:
            if desc.message_type.GetOptions().map_entry:  # before is_repeated: maps are both
                out[key] = {k: _plain(v) for k, v in value.items()}
            elif desc.is_repeated:
                out[key] = tuple(plain_fields(v) for v in value)
            else:
                _flatten(value, key + ".", out)
        elif desc.is_repeated:
            out[key] = tuple(value)
        else:
            out[key] = value


def _plain(value: Any) -> Any:
    """A map value: a message as its plain fields, a scalar as is."""
    return plain_fields(value) if hasattr(value, "ListFields") else value


def plain_fields(msg: Any) -> dict[str, Any]:
    """A protobuf message's set fields as plain Python values (nested messages
    flattened to dotted keys)."""
    out: dict[str, Any] = {}
    _flatten(msg, "", out)
    return out


# -- subscriptions and track permissions ---------------------------------------


class VideoQuality(IntEnum):
    """The simulcast layer to receive of a remote video track (the native
    values, the official SDK's names); see
    ``RemoteTrackPublication.set_video_quality``."""

    VIDEO_QUALITY_LOW = 0
    VIDEO_QUALITY_MEDIUM = 1
    VIDEO_QUALITY_HIGH = 2


class SubscriptionStatus(IntEnum):
    """Where a remote publication's subscription stands (lkrtc_trio's own
    values: the JS SDK's ``SubscriptionStatus`` plus ``NOT_ALLOWED``); see
    ``RemoteTrackPublication.subscription_status``.

    Attributes:
        UNSUBSCRIBED: not wanted (``set_subscribed(False)``, or never asked
            for in a room without auto-subscription).
        DESIRED: wanted; the track has not arrived yet.
        SUBSCRIBED: the track is here (``publication.track``).
        NOT_ALLOWED: wanted, but the server did not deliver it within
            ``SUBSCRIBE_TIMEOUT`` seconds: the publisher's track subscription
            permissions do not allow it (``TrackSubscriptionFailed`` was
            emitted). Becomes ``SUBSCRIBED`` if the publisher allows it later.
    """

    UNSUBSCRIBED = 0
    DESIRED = 1
    SUBSCRIBED = 2
    NOT_ALLOWED = 3


@final
@dataclass(frozen=True, slots=True)
class ParticipantTrackPermission:
    """Which of your tracks one participant may subscribe to (see
    ``LocalParticipant.set_track_subscription_permissions``).

    Attributes:
        participant_identity: the participant it applies to.
        allow_all: every track of yours, present and future (takes
            precedence over ``allowed_track_sids``).
        allowed_track_sids: these tracks only (``TR_...`` sids; kept as a
            tuple).

    Raises:
        TypeError: a field of the wrong type (``allowed_track_sids`` given as
            a bare str included).
        ValueError: an empty identity, or a track sid that is not ``TR_...``.
    """

    participant_identity: str
    allow_all: bool = False
    allowed_track_sids: Sequence[str] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.participant_identity, str):
            raise TypeError(
                "participant_identity must be a str, not "
                f"{type(self.participant_identity).__name__}"
            )
        if not self.participant_identity:
            raise ValueError("participant_identity must not be empty")
        if not isinstance(self.allow_all, bool):
            raise TypeError(f"allow_all must be a bool, not {type(self.allow_all).__name__}")
        sids = self.allowed_track_sids
        if isinstance(sids, (str, bytes)) or not isinstance(sids, Sequence):
            raise TypeError("allowed_track_sids must be a sequence of track sids, not a str")
        for sid in sids:
            if not isinstance(sid, str):
                raise TypeError(f"track sids must be str, not {type(sid).__name__}")
            if not sid.startswith("TR_") or len(sid) <= 3:
                raise ValueError(f"{sid!r} is not a track sid ('TR_...')")
        object.__setattr__(self, "allowed_track_sids", tuple(sids))
