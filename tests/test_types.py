"""The typed public API: IntEnums that match the installed schema, frozen
dataclasses, and no protobuf object or bare int in any event."""

from __future__ import annotations

import dataclasses
from enum import IntEnum
from typing import Any

import pytest
from google.protobuf.message import Message
from livekit.rtc._proto import e2ee_pb2, track_publication_pb2

import lkrtc_trio as lk
from lkrtc_trio._proto import participant_pb2, room_pb2, track_pb2

from .test_room_events import drain, make_room, push, push_every_kind

SCHEMA: list[tuple[type[IntEnum], Any]] = [
    (lk.ConnectionState, room_pb2.ConnectionState),
    (lk.ConnectionQuality, room_pb2.ConnectionQuality),
    (lk.DataPacketKind, room_pb2.DataPacketKind),
    (lk.DisconnectReason, participant_pb2.DisconnectReason),
    (lk.SimulateScenario, room_pb2.SimulateScenarioKind),
    (lk.ParticipantKind, participant_pb2.ParticipantKind),
    (lk.ParticipantKindDetail, participant_pb2.ParticipantKindDetail),
    (lk.ParticipantState, participant_pb2.ParticipantState),
    (lk.EncryptionState, e2ee_pb2.EncryptionState),
    (lk.StreamState, track_pb2.StreamState),
    (lk.TrackKind, track_pb2.TrackKind),
    (lk.TrackSource, track_pb2.TrackSource),
    (lk.VideoQuality, track_publication_pb2.VideoQuality),
    (lk.EncryptionType, e2ee_pb2.EncryptionType),
    (lk.KeyDerivationFunction, e2ee_pb2.KeyDerivationFunction),
    (lk.IceTransportType, room_pb2.IceTransportType),
    (lk.ContinualGatheringPolicy, room_pb2.ContinualGatheringPolicy),
]


@pytest.mark.parametrize(("ours", "native"), SCHEMA, ids=[c.__name__ for c, _ in SCHEMA])
def test_enums_match_the_installed_schema(ours: type[IntEnum], native: Any) -> None:
    assert {m.name: m.value for m in ours} == {v.name: v.number for v in native.DESCRIPTOR.values}


def test_an_unknown_native_value_is_kept_not_an_error() -> None:
    reason = lk.DisconnectReason(99)
    assert reason == 99 and reason.name == "UNKNOWN_99"
    assert isinstance(reason, lk.DisconnectReason)
    with pytest.raises(ValueError):
        lk.DisconnectReason("nope")  # type: ignore[arg-type]


def _no_raw_values(value: Any, where: str) -> None:
    assert not isinstance(value, Message), f"{where} is a protobuf {type(value).__name__}"
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        assert value.__dataclass_params__.frozen, f"{where} is not frozen"  # type: ignore[attr-defined]
        for f in dataclasses.fields(value):
            _no_raw_values(getattr(value, f.name), f"{where}.{f.name}")
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _no_raw_values(item, f"{where}[{i}]")
    elif isinstance(value, dict):
        for k, item in value.items():
            _no_raw_values(item, f"{where}[{k!r}]")


async def test_every_event_carries_typed_values_only() -> None:
    room, rt, _ = make_room(remotes=[200])
    sub = room.events(max_buffer=200)
    push_every_kind(rt)
    events = drain(sub)
    assert len(events) >= 20
    enum_fields = 0
    for event in events:
        _no_raw_values(event, type(event).__name__)
        for f in dataclasses.fields(event):
            value = getattr(event, f.name)
            if isinstance(value, IntEnum):
                enum_fields += 1
            # an int field is a count, a code or a threshold, never an enum value
            if type(value) is int:
                assert f.name in {"threshold", "code"}, f"{type(event).__name__}.{f.name}"
    assert enum_fields >= 5
    room._release()


async def test_room_and_participant_state_is_typed_and_kept_current() -> None:
    room, rt, _ = make_room(remotes=[200])
    assert room.connection_state is lk.ConnectionState.CONN_CONNECTED
    assert room.disconnect_reason is lk.DisconnectReason.UNKNOWN_REASON

    def updated(e: Any) -> None:
        info = e.room_updated
        info.sid = "RM_x"
        info.num_participants = 3
        info.num_publishers = 1
        info.creation_time = 1_700_000_000
        info.active_recording = True

    push(rt, updated)
    assert (room.num_participants, room.num_publishers) == (3, 1)
    assert room.creation_time == 1_700_000_000 and room.is_recording
    assert room.info == lk.RoomInfo(
        sid="RM_x",
        name=room.name,
        num_participants=3,
        num_publishers=1,
        creation_time=1_700_000_000,
        active_recording=True,
    )
    r0 = room.remote_participants["r0"]
    assert r0.kind is lk.ParticipantKind.PARTICIPANT_KIND_STANDARD
    before = r0.connection_quality
    assert before is lk.ConnectionQuality.QUALITY_EXCELLENT

    def quality(e: Any) -> None:
        e.connection_quality_changed.participant_identity = "r0"
        e.connection_quality_changed.quality = room_pb2.ConnectionQuality.QUALITY_POOR

    def permission(e: Any) -> None:
        e.participant_permission_changed.participant_identity = "r0"
        e.participant_permission_changed.permission.can_publish = True
        e.participant_permission_changed.permission.can_publish_sources.append(2)

    push(rt, quality)
    push(rt, permission)
    assert r0.connection_quality is lk.ConnectionQuality.QUALITY_POOR
    assert r0.permissions == lk.ParticipantPermission(can_publish=True, can_publish_sources=(2,))
    with pytest.raises(dataclasses.FrozenInstanceError):
        r0.permissions.can_publish = False  # type: ignore[misc]
    room._release()


def test_room_has_no_public_constructor() -> None:
    with pytest.raises(TypeError, match="no public constructor"):
        lk.Room()  # type: ignore[call-arg]
    assert issubclass(lk.LoopConflictError, lk.LiveKitError)


def test_encryption_and_ice_options_fill_the_connect_request() -> None:
    options = lk.RoomOptions(
        encryption=lk.E2EEOptions(
            key_provider_options=lk.KeyProviderOptions(
                shared_key=b"k", ratchet_window_size=4, failure_tolerance=0, key_ring_size=8
            )
        ),
        rtc_config=lk.RtcConfiguration(
            ice_transport_type=lk.IceTransportType.TRANSPORT_RELAY,
            continual_gathering_policy=lk.ContinualGatheringPolicy.GATHER_ONCE,
            ice_servers=[lk.IceServer(urls="turn:h:3478", username="u", password="p")],
        ),
    )
    msg = room_pb2.RoomOptions()
    options._fill(msg)
    kp = msg.encryption.key_provider_options
    assert msg.encryption.encryption_type == e2ee_pb2.EncryptionType.GCM
    assert (kp.shared_key, kp.ratchet_window_size, kp.failure_tolerance, kp.key_ring_size) == (
        b"k",
        4,
        0,
        8,
    )
    assert kp.ratchet_salt == b"LKFrameEncryptionKey"
    assert not msg.HasField("e2ee")  # the deprecated field stays unset
    rtc = msg.rtc_config
    assert rtc.ice_transport_type == room_pb2.IceTransportType.TRANSPORT_RELAY
    assert rtc.continual_gathering_policy == room_pb2.ContinualGatheringPolicy.GATHER_ONCE
    [server] = rtc.ice_servers
    assert (list(server.urls), server.username, server.password) == (["turn:h:3478"], "u", "p")
    plain = room_pb2.RoomOptions()
    lk.RoomOptions()._fill(plain)
    assert not plain.HasField("encryption") and not plain.HasField("rtc_config")


@pytest.mark.parametrize(
    ("make", "error"),
    [
        (lambda: lk.KeyProviderOptions(shared_key=""), TypeError),  # type: ignore[arg-type]
        (lambda: lk.KeyProviderOptions(shared_key=b""), ValueError),
        (lambda: lk.KeyProviderOptions(ratchet_salt=b""), ValueError),
        (lambda: lk.KeyProviderOptions(key_ring_size=0), ValueError),
        (lambda: lk.KeyProviderOptions(key_ring_size=257), ValueError),
        (lambda: lk.KeyProviderOptions(failure_tolerance=-2), ValueError),
        (lambda: lk.KeyProviderOptions(key_derivation_function=7), ValueError),  # type: ignore[arg-type]
        (lambda: lk.E2EEOptions(key_provider_options=None), TypeError),  # type: ignore[arg-type]
        (lambda: lk.E2EEOptions(encryption_type=9), ValueError),  # type: ignore[arg-type]
        (lambda: lk.RtcConfiguration(ice_transport_type=5), ValueError),  # type: ignore[arg-type]
        (lambda: lk.RoomOptions(encryption=b"key"), TypeError),  # type: ignore[arg-type]
        (lambda: lk.RoomOptions(rtc_config={"ice_servers": []}), TypeError),  # type: ignore[arg-type]
    ],
)
def test_bad_encryption_and_ice_options_are_refused(make: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        make()
