"""A fake native backend for dispatcher and timing tests.

It answers every asynchronous request at once with the ``async_id`` the client
chose (as the native core does) and records it; the test then delivers
completions, in any order, through ``runtime.bridge.push`` - exactly the path
native threads take.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lkrtc_trio._proto import ffi_pb2
from lkrtc_trio._runtime import Runtime


@dataclass
class FakeBackend:
    """Records requests; answers with the request's own async id."""

    sent: list[tuple[str, int]] = field(default_factory=list)
    requests: list[Any] = field(default_factory=list)  # every FfiRequest, parsed
    dropped: list[int] = field(default_factory=list)
    reject_next: bool = False
    live: set[int] = field(default_factory=set)
    pinned: list[Any] = field(default_factory=list)
    next_handle: int = 9000
    quiet_logs_wanted: bool | None = None

    def request(self, data: bytes) -> bytes:
        req = ffi_pb2.FfiRequest.FromString(data)
        which = req.WhichOneof("message")
        assert which is not None
        self.requests.append(req)
        if self.reject_next:
            self.reject_next = False
            from lkrtc_trio._errors import NativeError

            raise NativeError("rejected by the fake backend")
        msg = getattr(req, which)
        resp = ffi_pb2.FfiResponse()
        if "request_async_id" not in msg.DESCRIPTOR.fields_by_name:
            # a synchronous request: an empty answer, plus a handle where one is owned
            self.sent.append((which, 0))
            out = getattr(resp, which)
            out.SetInParent()
            if which == "new_audio_source":
                self.next_handle += 1
                out.source.handle.id = self.next_handle
            return resp.SerializePartialToString()
        async_id = msg.request_async_id
        self.sent.append((which, async_id))
        getattr(resp, which).async_id = async_id
        return resp.SerializeToString()

    def drop_handle(self, handle: int) -> bool:
        self.dropped.append(handle)
        return True

    def set_quiet_logs(self, wanted: bool) -> None:
        self.quiet_logs_wanted = wanted

    def pin(self, data: Any) -> tuple[Any, int]:
        self.pinned.append(data)
        return data, id(data)

    def unpin(self, pin: Any) -> None:
        self.pinned.remove(pin)

    def read(self, address: int, length: int) -> bytes:
        return bytes(length)

    def read_into_bytearray(self, address: int, length: int) -> bytearray:
        return bytearray(length)


def fake_runtime() -> tuple[Runtime, FakeBackend]:
    backend = FakeBackend()
    return Runtime(backend), backend


def publish_data_request() -> ffi_pb2.FfiRequest:
    req = ffi_pb2.FfiRequest()
    req.publish_data.local_participant_handle = 1
    req.publish_data.data_ptr = 0
    req.publish_data.data_len = 0
    req.publish_data.reliable = True
    return req


def completion(async_id: int, tag: str = "") -> bytes:
    """A ``publish_data`` completion for ``async_id``; ``tag`` rides in ``error``."""
    ev = ffi_pb2.FfiEvent()
    ev.publish_data.async_id = async_id
    if tag:
        ev.publish_data.error = tag
    return ev.SerializeToString()


def connect_completion(async_id: int, room: int, local: int, remotes: list[int]) -> bytes:
    """A successful ``connect`` completion that carries owned handles."""
    ev = ffi_pb2.FfiEvent()
    cb = ev.connect
    cb.async_id = async_id
    res = cb.result
    res.room.handle.id = room
    res.room.info.name = "r"
    res.local_participant.handle.id = local
    for h in remotes:
        pt = res.participants.add()
        pt.participant.handle.id = h
    return ev.SerializePartialToString()


def event_bytes(fill: Any) -> bytes:
    """An ``FfiEvent`` built by ``fill(event)``."""
    ev = ffi_pb2.FfiEvent()
    fill(ev)
    return ev.SerializePartialToString()


def deliver(rt: Runtime, *events: bytes) -> None:
    """Delivers events the way native threads do (push), then drains them now."""
    for data in events:
        rt.bridge.push(data)
    rt.bridge.drain_now()
