"""Room event translation and state, driven with protobuf bytes over a fake
native backend (no server): state is updated before each event is delivered,
every native handle an event carries is adopted or released, subscribers are
bounded."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import anyio
import pytest

import lkrtc_trio as lk
from lkrtc_trio._proto import ffi_pb2
from lkrtc_trio._room import Room, RoomOptions
from lkrtc_trio._runtime import Runtime

from .fakes import FakeBackend, connect_completion

ROOM, LOCAL = 100, 101


def make_room(remotes: list[int] | None = None) -> tuple[Room, Runtime, FakeBackend]:
    backend = FakeBackend()
    rt = Runtime(backend)
    cb = ffi_pb2.FfiEvent.FromString(connect_completion(1, ROOM, LOCAL, remotes or []))
    res = cb.connect.result
    res.local_participant.info.identity = "me"
    for i, pt in enumerate(res.participants):
        pt.participant.info.identity = f"r{i}"
    room = Room._create(rt, res, RoomOptions())
    for key in room._sink_keys:
        rt.add_sink(key, room)
    return room, rt, backend


def push(rt: Runtime, fill: Callable[[Any], None]) -> None:
    ev = ffi_pb2.FfiEvent()
    ev.room_event.room_handle = ROOM
    fill(ev.room_event)
    rt.bridge.push(ev.SerializePartialToString())
    rt.bridge.drain_now()


def push_every_kind(rt: Runtime) -> None:
    """Pushes one (empty) event of every native RoomEvent kind but ``eos``."""
    room_event = ffi_pb2.FfiEvent.DESCRIPTOR.fields_by_name["room_event"].message_type
    assert room_event is not None
    for field in room_event.fields:
        if field.name in ("room_handle", "eos"):
            continue

        def fill(e: Any, name: str = field.name) -> None:
            getattr(e, name).SetInParent()

        push(rt, fill)


def drain(sub: lk.EventSubscription) -> list[Any]:
    out = []
    while True:
        try:
            out.append(sub.receive_nowait())
        except (anyio.WouldBlock, anyio.EndOfStream):
            return out


async def test_participants_join_update_and_leave_with_state_first() -> None:
    room, rt, backend = make_room(remotes=[200])
    assert set(room.remote_participants) == {"r0"}
    sub = room.events()

    def join(e: Any) -> None:
        info = e.participant_connected.info
        info.handle.id = 201
        info.info.identity = "bob"
        info.info.name = "Bob"

    push(rt, join)
    assert set(rt.live_handles()) == {ROOM, LOCAL, 200, 201}

    def meta(e: Any) -> None:
        e.participant_metadata_changed.participant_identity = "bob"
        e.participant_metadata_changed.metadata = "m"

    push(rt, meta)

    def attrs(e: Any) -> None:
        m = e.participant_attributes_changed
        m.participant_identity = "bob"
        m.attributes.add(key="a", value="1")
        m.attributes.add(key="b", value="2")
        m.changed_attributes.add(key="b", value="2")

    push(rt, attrs)

    def leave(e: Any) -> None:
        e.participant_disconnected.participant_identity = "bob"
        e.participant_disconnected.disconnect_reason = 4

    push(rt, leave)
    joined, changed, attr, left = drain(sub)
    assert isinstance(joined, lk.ParticipantConnected) and joined.participant.name == "Bob"
    assert isinstance(changed, lk.ParticipantMetadataChanged)
    assert (changed.old_metadata, changed.metadata) == ("", "m")
    assert isinstance(attr, lk.ParticipantAttributesChanged)
    assert attr.changed_attributes == {"b": "2"}
    assert attr.participant.attributes == {"a": "1", "b": "2"}
    assert isinstance(left, lk.ParticipantDisconnected) and left.reason == 4
    assert left.participant.disconnect_reason == 4
    assert "bob" not in room.remote_participants
    assert backend.dropped == [201]  # the leaver's handle, released at once
    room._release()
    assert rt.live_handles() == {}
    assert sorted(backend.dropped) == [ROOM, LOCAL, 200, 201]


async def test_data_and_dtmf_packets_release_their_buffers() -> None:
    room, rt, backend = make_room(remotes=[200])
    sub = room.events()

    def data(e: Any) -> None:
        m = e.data_packet_received
        m.kind = 1
        m.participant_identity = "r0"
        m.user.data.handle.id = 555
        m.user.data.data.data_ptr = 1234
        m.user.data.data.data_len = 3
        m.user.topic = "t"

    push(rt, data)

    def dtmf(e: Any) -> None:
        m = e.data_packet_received
        m.kind = 1
        m.participant_identity = "r0"
        m.sip_dtmf.code = 10
        m.sip_dtmf.digit = "*"

    push(rt, dtmf)
    got, tone = drain(sub)
    assert isinstance(got, lk.DataReceived)
    assert (got.payload, got.topic, got.kind, got.participant) == (
        b"\x00\x00\x00",  # the fake backend's memory
        "t",
        1,
        room.remote_participants["r0"],
    )
    assert isinstance(tone, lk.SipDTMFReceived) and (tone.code, tone.digit) == (10, "*")
    assert backend.dropped == [555]
    room._release()


async def test_publications_are_adopted_and_released() -> None:
    room, rt, backend = make_room(remotes=[200])
    sub = room.events()

    def published(e: Any) -> None:
        m = e.track_published
        m.participant_identity = "r0"
        m.publication.handle.id = 300
        m.publication.info.sid = "TR_1"
        m.publication.info.name = "mic"

    push(rt, published)

    def muted(e: Any) -> None:
        e.track_muted.participant_identity = "r0"
        e.track_muted.track_sid = "TR_1"

    push(rt, muted)

    def unpublished(e: Any) -> None:
        e.track_unpublished.participant_identity = "r0"
        e.track_unpublished.publication_sid = "TR_1"

    pub_event, mute_event = drain(sub)
    assert isinstance(pub_event, lk.TrackPublished) and pub_event.publication.name == "mic"
    assert isinstance(mute_event, lk.TrackMuted) and mute_event.publication.muted
    assert 300 in rt.live_handles()
    push(rt, unpublished)
    (gone,) = drain(sub)
    assert isinstance(gone, lk.TrackUnpublished)
    assert room.remote_participants["r0"].track_publications == {}
    assert backend.dropped == [300]
    room._release()


async def test_unsupported_events_release_handles_and_still_arrive() -> None:
    room, rt, backend = make_room()
    sub = room.events()

    def opened(e: Any) -> None:
        e.byte_stream_opened.participant_identity = "x"
        e.byte_stream_opened.reader.handle.id = 777

    push(rt, opened)

    def subscribed(e: Any) -> None:  # for an unknown publication: the track is released
        e.track_subscribed.participant_identity = "x"
        e.track_subscribed.track.handle.id = 778

    push(rt, subscribed)

    def room_info(e: Any) -> None:
        e.room_updated.sid = "RM_1"
        e.room_updated.metadata = "rm"

    push(rt, room_info)
    # a stream nobody serves is released, counted and logged, not an event
    (updated,) = drain(sub)
    assert room._session.streams.unhandled == 1
    assert isinstance(updated, lk.RoomUpdated)
    assert (room.sid, room.metadata) == ("RM_1", "rm")
    assert backend.dropped == [777, 778]
    room._release()


async def test_overflow_then_error_and_eos_ends_subscriptions() -> None:
    room, rt, _ = make_room()
    small = room.events(max_buffer=2)
    big = room.events(max_buffer=10)

    def speakers(e: Any) -> None:
        e.active_speakers_changed.participant_identities.append("me")

    for _ in range(3):
        push(rt, speakers)
    with pytest.raises(lk.EventOverflowError):
        small.receive_nowait()
    with pytest.raises(lk.EventOverflowError):
        await small.receive()
    assert len(drain(big)) == 3

    def eos(e: Any) -> None:
        e.eos.SetInParent()

    push(rt, eos)
    with anyio.fail_after(1):
        assert [e async for e in big] == []
    with pytest.raises(lk.RoomDisconnectedError):
        room.events()
    room._release()
    with pytest.raises(lk.RoomClosedError):
        room.events()


async def test_every_native_room_event_kind_is_translated(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """No RoomEvent field ends up as NativeRoomEvent, and none raises (the
    drain would catch and log it: so no error may be logged)."""
    caplog.set_level(logging.ERROR)
    room, rt, _ = make_room()
    sub = room.events(max_buffer=100)
    push_every_kind(rt)
    natives = {e.name for e in drain(sub) if isinstance(e, lk.NativeRoomEvent)}
    assert natives == set()
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    room._release()
