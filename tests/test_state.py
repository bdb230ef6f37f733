"""The room's state mirror, sans I/O: protobuf messages in, plain state and
public events out. No native library, no server, no event loop (these are
plain functions): handles go to a runtime over the fake backend."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import lkrtc_trio as lk
from lkrtc_trio._participant import LocalParticipant
from lkrtc_trio._proto import ffi_pb2, room_pb2
from lkrtc_trio._records import ParticipantRecord
from lkrtc_trio._runtime import Runtime
from lkrtc_trio._state import RoomState

from .fakes import FakeBackend


def mirror(remotes: int = 1) -> tuple[RoomState, Runtime, FakeBackend]:
    backend = FakeBackend()
    rt = Runtime(backend)
    result = ffi_pb2.FfiEvent().connect.result
    result.room.handle.id = 1
    result.room.info.name = "r"
    for i in range(remotes):
        pt = result.participants.add()
        pt.participant.handle.id = 100 + i
        pt.participant.info.identity = f"p{i}"
        pub = pt.publications.add()
        pub.handle.id = 200 + i
        pub.info.sid = f"TR_{i}"
    info = result.local_participant.info
    info.identity = "me"
    local = LocalParticipant(ParticipantRecord(rt.own(2, "local"), info), SimpleNamespace())  # type: ignore[arg-type]
    return RoomState(rt, result, local), rt, backend


def event(kind: str, fill: Any) -> Any:
    msg = getattr(ffi_pb2.FfiEvent().room_event, kind)
    fill(msg)
    return msg


def test_join_update_leave() -> None:
    state, rt, backend = mirror()
    assert set(state.remote_participants()) == {"p0"}
    p0 = state.remote_participants()["p0"]
    assert set(p0.track_publications) == {"TR_0"}

    def joined(m: Any) -> None:
        m.info.handle.id = 300
        m.info.info.identity = "p1"
        m.info.info.metadata = "hello"

    out = state.apply("participant_connected", event("participant_connected", joined))
    assert isinstance(out, lk.ParticipantConnected)
    p1 = out.participant
    assert p1.metadata == "hello" and state.remote_participants()["p1"] is p1

    def meta(m: Any) -> None:
        m.participant_identity = "p1"
        m.metadata = "changed"

    out = state.apply("participant_metadata_changed", event("participant_metadata_changed", meta))
    assert out == lk.ParticipantMetadataChanged(
        participant=p1, old_metadata="hello", metadata="changed"
    )
    assert p1.metadata == "changed"  # the view reads the updated record

    def left(m: Any) -> None:
        m.participant_identity = "p0"
        m.disconnect_reason = 4

    out = state.apply("participant_disconnected", event("participant_disconnected", left))
    assert out == lk.ParticipantDisconnected(
        participant=p0, reason=lk.DisconnectReason.PARTICIPANT_REMOVED
    )
    assert "p0" not in state.remote_participants()
    assert sorted(backend.dropped) == [100, 200]  # its handle and its publication's
    assert p0.disconnect_reason is lk.DisconnectReason.PARTICIPANT_REMOVED
    state.release_all()
    assert rt.live_handles() == {}


def test_unknown_participants_and_handles_are_released() -> None:
    state, _rt, backend = mirror(remotes=0)

    def published(m: Any) -> None:
        m.participant_identity = "ghost"
        m.publication.handle.id = 555

    assert state.apply("track_published", event("track_published", published)) is None
    assert backend.dropped == [555]  # an event nobody keeps: its handle released
    out = state.apply("some_future_event", room_pb2.RoomSidChanged(sid="RM_1"))
    assert out == lk.NativeRoomEvent(name="some_future_event", fields={"sid": "RM_1"})
    state.release_all()


def test_connection_state_and_release_all() -> None:
    state, rt, backend = mirror()

    def reconnecting(m: Any) -> None:
        m.state = room_pb2.ConnectionState.CONN_RECONNECTING

    out = state.apply("connection_state_changed", event("connection_state_changed", reconnecting))
    assert out == lk.ConnectionStateChanged(state=lk.ConnectionState.CONN_RECONNECTING)
    assert state.connection_state is lk.ConnectionState.CONN_RECONNECTING
    state.release_all()
    after: lk.ConnectionState = state.connection_state
    assert after is lk.ConnectionState.CONN_DISCONNECTED
    assert sorted(backend.dropped) == [2, 100, 200]
    assert rt.live_handles() == {}
