"""Rooms: ``async with open_room(url, token) as room:``.

A room owns a task group (its nursery) for the work it runs on your behalf, and
is the sink of every native event keyed by its room handle or its local
participant handle. Each event updates room state synchronously, on the loop,
and is then offered to every ``room.events()`` subscription's bounded buffer.
"""

from __future__ import annotations

import logging
import math
import sys
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any, final

import anyio
import anyio.abc
from anyio.streams.memory import (
    MemoryObjectReceiveStream,
    MemoryObjectSendStream,
    MemoryObjectStreamStatistics,
)

from . import _events as ev
from ._dispatch import owned_handle_ids
from ._errors import (
    ConnectError,
    EventOverflowError,
    LiveKitError,
    NativeError,
    NativePanicError,
    NoPublicConstructor,
    RoomClosedError,
    RoomDisconnectedError,
)
from ._participant import (
    LocalParticipant,
    LocalTrackPublication,
    Participant,
    RemoteParticipant,
    RemoteTrackPublication,
    TranscriptionSegment,
)
from ._proto import ffi_pb2, participant_pb2, room_pb2
from ._rpc import RpcError, RpcInvocationData
from ._runtime import OwnedHandle, Runtime, get_runtime
from ._track import RemoteTrack, remote_track
from ._types import (
    ChatMessage,
    ConnectionQuality,
    ConnectionState,
    DataPacketKind,
    DisconnectReason,
    EncryptionState,
    ParticipantPermission,
    RoomInfo,
    RtcStat,
    RtcStats,
    plain_fields,
)

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup

__all__ = ["EventSubscription", "Room", "RoomOptions", "open_room"]

log = logging.getLogger("lkrtc_trio.room")

CONN_DISCONNECTED = room_pb2.ConnectionState.CONN_DISCONNECTED
CONN_CONNECTED = room_pb2.ConnectionState.CONN_CONNECTED
CLIENT_INITIATED = participant_pb2.DisconnectReason.CLIENT_INITIATED

#: Extra time granted to the native connect beyond its own timeout.
_CONNECT_GRACE = 2.0


@dataclass(frozen=True, kw_only=True)
class RoomOptions:
    """How to connect. Every field is optional.

    Attributes:
        auto_subscribe: subscribe to every published track automatically.
        adaptive_stream: let the SDK pause or lower video nobody watches.
        dynacast: pause unused simulcast layers of published video.
        connect_timeout: seconds for the whole connect (signal + media), or
            None for the native default. ``ConnectError`` when it runs out.
        join_retries: how often the native core retries the initial join.
        single_peer_connection: use one peer connection for both directions.
        disconnect_timeout: seconds that closing the room (leaving the
            ``open_room`` block, or ``disconnect()``) may take in all: running
            RPC handlers get at most half of it (and 1 s) to answer, the native
            disconnect the rest; then everything is released anyway.
        events_max_buffer: default buffer size of ``room.events()``.
        rpc_max_concurrency: RPC handlers that run at once; as many more
            invocations wait in a queue. An invocation beyond both is answered
            at once with APPLICATION_ERROR (1500, "recipient overloaded")
            instead of letting its caller time out.
    """

    auto_subscribe: bool = True
    adaptive_stream: bool = False
    dynacast: bool = False
    connect_timeout: float | None = 10.0
    join_retries: int | None = None
    single_peer_connection: bool | None = None
    disconnect_timeout: float = 5.0
    events_max_buffer: int = 256
    rpc_max_concurrency: int = 64

    def __post_init__(self) -> None:
        if self.connect_timeout is not None and not (
            math.isfinite(self.connect_timeout) and self.connect_timeout > 0
        ):
            raise ValueError(f"connect_timeout must be positive, not {self.connect_timeout!r}")
        if self.join_retries is not None and self.join_retries < 0:
            raise ValueError("join_retries must be >= 0")
        if not (math.isfinite(self.disconnect_timeout) and self.disconnect_timeout >= 0):
            raise ValueError("disconnect_timeout must be >= 0")
        if self.events_max_buffer < 1:
            raise ValueError("events_max_buffer must be >= 1")
        if self.rpc_max_concurrency < 1:
            raise ValueError("rpc_max_concurrency must be >= 1")

    def _fill(self, msg: Any) -> None:
        msg.auto_subscribe = self.auto_subscribe
        msg.adaptive_stream = self.adaptive_stream
        msg.dynacast = self.dynacast
        if self.connect_timeout is not None:
            msg.connect_timeout_ms = int(self.connect_timeout * 1000)
        if self.join_retries is not None:
            msg.join_retries = self.join_retries
        if self.single_peer_connection is not None:
            msg.single_peer_connection = self.single_peer_connection


@final
class EventSubscription:
    """A subscription to room events from the moment it was made.

    Iterate it (``async for event in sub``) or call :meth:`receive`. Use it as
    a context manager (``with room.events() as sub:``) to unsubscribe on exit.
    It ends (iteration stops, ``receive`` raises ``anyio.EndOfStream``) after
    the room's last event.
    """

    def __init__(self, room: Room, max_buffer: int) -> None:
        self._room = room
        self._send, self._recv = anyio.create_memory_object_stream[ev.RoomEvent](max_buffer)
        self._max_buffer = max_buffer
        self._overflowed = False
        self._failure: BaseException | None = None

    # called by the room, on the loop
    def _offer(self, event: ev.RoomEvent) -> None:
        try:
            self._send.send_nowait(event)
        except anyio.WouldBlock:
            self._overflowed = True
            self._room._subs.discard(self)
            self._send.close()
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            self._room._subs.discard(self)

    def _finish(self, failure: BaseException | None = None) -> None:
        self._failure = failure
        self._send.close()

    async def receive(self) -> ev.RoomEvent:
        """The next event.

        Raises:
            EventOverflowError: this subscriber fell more than ``max_buffer``
                events behind (raised at once, by the next receive).
            NativePanicError: the native core panicked (after the events that
                came before the panic were received).
            anyio.EndOfStream: the room is closed and every event was received.
            anyio.ClosedResourceError: you closed this subscription.

        Cancellation: nothing is lost; the next receive returns the same event.
        """
        if self._overflowed:
            raise EventOverflowError(
                f"room event subscriber fell more than {self._max_buffer} events behind"
            )
        try:
            return await self._recv.receive()
        except anyio.EndOfStream:
            self._raise_failure()
            raise

    def receive_nowait(self) -> ev.RoomEvent:
        """Like :meth:`receive`, but raises ``anyio.WouldBlock`` when empty."""
        if self._overflowed:
            raise EventOverflowError(
                f"room event subscriber fell more than {self._max_buffer} events behind"
            )
        try:
            return self._recv.receive_nowait()
        except anyio.EndOfStream:
            self._raise_failure()
            raise

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise NativePanicError(str(self._failure)) from self._failure

    def __aiter__(self) -> EventSubscription:
        return self

    async def __anext__(self) -> ev.RoomEvent:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    def close(self) -> None:
        """Unsubscribes; buffered events are discarded."""
        self._room._subs.discard(self)
        self._send.close()
        self._recv.close()

    async def aclose(self) -> None:
        self.close()
        await anyio.lowlevel.checkpoint()

    def __enter__(self) -> EventSubscription:
        return self

    async def __aenter__(self) -> EventSubscription:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def statistics(self) -> MemoryObjectStreamStatistics:
        return self._recv.statistics()


@final
class Room(metaclass=NoPublicConstructor):
    """A connected room. Get one from :func:`open_room` (it has no public
    constructor)."""

    def __init__(self, runtime: Runtime, result: Any, options: RoomOptions) -> None:
        rt = runtime
        self._rt = rt
        self._options = options
        room = result.room
        self._handle: OwnedHandle = rt.own(room.handle.id, "room")
        self._info = room_pb2.RoomInfo()
        self._info.CopyFrom(room.info)
        lp = result.local_participant
        self._local = LocalParticipant(
            rt.own(lp.handle.id, "local_participant"), _copy(lp.info), self
        )
        self._remote: dict[str, RemoteParticipant] = {}
        for pt in result.participants:
            p = self._new_remote(pt.participant)
            for pub in pt.publications:
                p._publications[pub.info.sid] = self._new_publication(pub)
        self._state: int = CONN_CONNECTED
        self._disconnect_reason = 0
        self._subs: set[EventSubscription] = set()
        #: identity -> [its arrival event, how many wait_for_participant wait on it]
        self._arrivals: dict[str, list[Any]] = {}
        self._ended = anyio.Event()  # eos, remote disconnect, panic, or close
        self._eos = anyio.Event()
        self._failure: BaseException | None = None
        self._closed = False
        self._tg: anyio.abc.TaskGroup | None = None  # RPC handlers run here
        # invocations from the dispatcher to the service task (see _run_services)
        self._invocations: MemoryObjectSendStream[tuple[int, RpcInvocationData]] | None = None
        self._queued: MemoryObjectReceiveStream[tuple[int, RpcInvocationData]] | None = None
        self._early_local: set[str] = set()  # local_track_published before its callback
        self._unpublished_first: set[str] = set()  # unpublish completion before its event
        self._active_rpcs = 0
        self._rpcs_idle: anyio.Event | None = None
        self._sink_keys = (self._handle.id, self._local._handle.id)
        self._handlers: dict[str, Callable[[Any], ev.RoomEvent | None]] = {
            "participant_connected": self._on_participant_connected,
            "participant_disconnected": self._on_participant_disconnected,
            "track_published": self._on_track_published,
            "track_unpublished": self._on_track_unpublished,
            "track_muted": lambda m: self._on_track_muted(m, muted=True),
            "track_unmuted": lambda m: self._on_track_muted(m, muted=False),
            "connection_state_changed": self._on_connection_state,
            "reconnecting": lambda _m: ev.Reconnecting(),
            "reconnected": lambda _m: ev.Reconnected(),
            "disconnected": self._on_disconnected,
            "room_metadata_changed": self._on_room_metadata,
            "room_sid_changed": self._on_room_sid,
            "participant_metadata_changed": self._on_participant_metadata,
            "participant_name_changed": self._on_participant_name,
            "participant_attributes_changed": self._on_participant_attributes,
            "active_speakers_changed": self._on_active_speakers,
            "connection_quality_changed": self._on_connection_quality,
            "local_track_published": self._on_local_track_published,
            "local_track_unpublished": self._on_local_track_unpublished,
            "track_subscribed": self._on_track_subscribed,
            "track_unsubscribed": self._on_track_unsubscribed,
            "data_packet_received": self._on_data_packet,
            "transcription_received": self._on_transcription,
            "local_track_subscribed": lambda m: ev.LocalTrackSubscribed(track_sid=str(m.track_sid)),
            "e2ee_state_changed": lambda m: ev.E2eeStateChanged(
                participant=self._participant(m.participant_identity),
                state=EncryptionState(m.state),
            ),
            "chat_message": lambda m: ev.ChatMessageReceived(
                message=ChatMessage._from_proto(m.message),
                participant=self._participant(m.participant_identity),
            ),
            "data_channel_low_threshold_changed": lambda m: (
                ev.DataChannelBufferedAmountLowThresholdChanged(
                    kind=DataPacketKind(m.kind), threshold=int(m.threshold)
                )
            ),
            "stream_header_received": self._on_data_stream,
            "stream_chunk_received": self._on_data_stream,
            "stream_trailer_received": self._on_data_stream,
            "byte_stream_opened": self._on_data_stream,
            "text_stream_opened": self._on_data_stream,
            "room_updated": self._on_room_updated,
            "moved": self._on_room_moved,
            "participants_updated": self._on_participants_updated,
            "participant_encryption_status_changed": self._on_encryption_status,
            "participant_permission_changed": self._on_permission,
            "token_refreshed": lambda m: ev.TokenRefreshed(token=str(m.token)),
            "track_subscription_failed": self._on_subscription_failed,
            "participant_active": self._on_participant_active,
            "data_track_published": self._on_data_track_published,
            "data_track_unpublished": lambda m: ev.DataTrackUnpublished(sid=str(m.sid)),
            "local_track_republished": self._on_local_republished,
        }

    # -- construction helpers ----------------------------------------------------
    def _new_remote(self, owned: Any) -> RemoteParticipant:
        p = RemoteParticipant(self._rt.own(owned.handle.id, "participant"), _copy(owned.info))
        self._remote[p.identity] = p
        return p

    def _new_publication(self, owned: Any) -> RemoteTrackPublication:
        return RemoteTrackPublication(
            self._rt.own(owned.handle.id, "publication"), _copy(owned.info)
        )

    # -- public state ----------------------------------------------------------------
    @property
    def name(self) -> str:
        return str(self._info.name)

    @property
    def sid(self) -> str:
        """The room's sid ("" until the server assigned one; see RoomSidChanged)."""
        return str(self._info.sid)

    @property
    def metadata(self) -> str:
        return str(self._info.metadata)

    @property
    def connection_state(self) -> ConnectionState:
        return ConnectionState(self._state)

    @property
    def disconnect_reason(self) -> DisconnectReason:
        """Why the room was disconnected (``UNKNOWN_REASON`` while connected)."""
        return DisconnectReason(self._disconnect_reason)

    @property
    def num_participants(self) -> int:
        """Participants in the room, as the server last counted them."""
        return int(self._info.num_participants)

    @property
    def num_publishers(self) -> int:
        """Participants publishing tracks, as the server last counted them."""
        return int(self._info.num_publishers)

    @property
    def creation_time(self) -> int:
        """When the room was created, as the server reports it (0 if unknown)."""
        return int(self._info.creation_time)

    @property
    def is_recording(self) -> bool:
        """Whether the room is being recorded."""
        return bool(self._info.active_recording)

    @property
    def info(self) -> RoomInfo:
        """A snapshot of the room's info."""
        return RoomInfo._from_proto(self._info)

    @property
    def local_participant(self) -> LocalParticipant:
        return self._local

    @property
    def remote_participants(self) -> Mapping[str, RemoteParticipant]:
        """A copy of the other participants, by identity."""
        return dict(self._remote)

    def isconnected(self) -> bool:
        """True while connected or reconnecting; False for good once closed or
        disconnected."""
        return not self._closed and self._state != CONN_DISCONNECTED

    def events(self, *, max_buffer: int | None = None) -> EventSubscription:
        """Subscribes to every room event from now on.

        Args:
            max_buffer: events buffered for this subscriber before it counts as
                fallen behind (default ``RoomOptions.events_max_buffer``).

        Raises:
            RoomClosedError: the room is closed.
            ValueError: ``max_buffer`` < 1.
        """
        size = self._options.events_max_buffer if max_buffer is None else max_buffer
        if size < 1:
            raise ValueError("max_buffer must be >= 1")
        self._check_open()
        sub = EventSubscription(self, size)
        if self._ended.is_set():
            sub._finish()
        else:
            self._subs.add(sub)
        return sub

    async def wait_for_participant(self, identity: str) -> RemoteParticipant:
        """Waits until a remote participant with ``identity`` is in the room.

        Returns at once (after a checkpoint) if it already is.

        Raises:
            RoomClosedError: the room was closed first.
            RoomDisconnectedError: the room was disconnected first.

        Cancellation: nothing is left behind.
        """
        await anyio.lowlevel.checkpoint()
        while True:
            p = self._remote.get(identity)
            if p is not None:
                return p
            self._check_open()
            entry = self._arrivals.get(identity)
            if entry is None:
                entry = self._arrivals[identity] = [anyio.Event(), 0]
            arrival, _ = entry
            entry[1] += 1  # waiters sharing this event
            try:
                await arrival.wait()
            finally:
                entry[1] -= 1
                if not entry[1] and self._arrivals.get(identity) is entry:
                    del self._arrivals[identity]

    async def disconnect(self) -> None:
        """Leaves the room now; the ``open_room`` block continues, but room
        operations raise ``RoomClosedError``. Idempotent.

        Never raises for native failures (they are logged); waits at most
        ``RoomOptions.disconnect_timeout``.

        Cancellation: shielded up to ``disconnect_timeout``, then everything is
        released all the same.
        """
        with anyio.CancelScope(shield=True):
            await self._shutdown()

    async def get_rtc_stats(self) -> RtcStats:
        """WebRTC statistics of the room's peer connections.

        Raises:
            RoomClosedError / RoomDisconnectedError: the room is not connected.
            NativeError: the native core failed to collect them.

        Cancellation: returns at once; the late answer is dropped.
        """
        self._check_open()
        req = ffi_pb2.FfiRequest()
        req.get_session_stats.room_handle = self._handle.id
        cb = await self._rt.request_async(req, "get_session_stats")
        if cb.error:
            raise NativeError(f"get_rtc_stats failed: {cb.error}")
        return RtcStats(
            publisher_stats=tuple(RtcStat._from_proto(x) for x in cb.result.publisher_stats),
            subscriber_stats=tuple(RtcStat._from_proto(x) for x in cb.result.subscriber_stats),
        )

    async def simulate_scenario(self, scenario: int) -> None:
        """Triggers a reconnection scenario (``SimulateScenarioKind`` value), for tests.

        Raises:
            RoomClosedError / RoomDisconnectedError: the room is not connected.
            NativeError: the native core refused it.

        Cancellation: returns at once; the scenario may still run.
        """
        self._check_open()
        req = ffi_pb2.FfiRequest()
        req.simulate_scenario.room_handle = self._handle.id
        req.simulate_scenario.scenario = scenario  # type: ignore[assignment]
        cb = await self._rt.request_async(req, "simulate_scenario")
        if cb.HasField("error") and cb.error:
            raise NativeError(f"simulate_scenario failed: {cb.error}")

    def __repr__(self) -> str:
        return f"<Room {self.name!r} {self.sid} state={self._state}>"

    # -- lifecycle ---------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise RoomClosedError("the room is closed")
        if self._failure is not None:
            raise NativePanicError(str(self._failure)) from self._failure
        if self._ended.is_set():
            raise RoomDisconnectedError(
                f"the room was disconnected (reason {self._disconnect_reason})",
                self._disconnect_reason,
            )

    async def _shutdown(self) -> None:
        """Stops the room's tasks, disconnects and releases everything, all
        within one deadline of ``disconnect_timeout``: running RPC handlers get
        at most half of it (and 1 s) to answer their callers, the disconnect
        the rest."""
        if self._closed:
            return
        self._closed = True
        budget = self._options.disconnect_timeout
        deadline = anyio.current_time() + budget
        await self._stop_services(min(1.0, budget / 2))
        if not self._ended.is_set() and self._handle.id:
            req = ffi_pb2.FfiRequest()
            req.disconnect.room_handle = self._handle.id
            req.disconnect.reason = CLIENT_INITIATED
            with anyio.move_on_after(max(0.0, deadline - anyio.current_time())):
                try:
                    await self._rt.request_async(req, "disconnect")
                    await self._eos.wait()
                except LiveKitError as exc:
                    log.warning("disconnect failed: %s", exc)
            if self._state != CONN_DISCONNECTED:
                self._state = CONN_DISCONNECTED
                self._disconnect_reason = CLIENT_INITIATED
        self._release()

    async def _run_services(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        """The room's service task, inside the ``open_room`` nursery, so that
        closing the room cancels its work without touching the caller's block.

        Work that native events ask for (an RPC invocation) arrives through a
        bounded memory channel filled by the dispatcher, and is started from
        here: a task, so on every backend (the dispatcher runs in a loop
        callback, outside any task, where anyio cannot start tasks).
        """
        limit = self._options.rpc_max_concurrency
        send, recv = anyio.create_memory_object_stream[tuple[int, RpcInvocationData]](limit)
        running = anyio.Semaphore(limit)
        async with anyio.create_task_group() as tg, recv:
            self._tg = tg
            self._invocations = send
            self._queued = recv
            task_status.started()
            async for invocation_id, data in recv:
                await running.acquire()
                self._rpc_started()
                tg.start_soon(self._serve_rpc, running, invocation_id, data)

    async def _serve_rpc(
        self, running: anyio.Semaphore, invocation_id: int, data: RpcInvocationData
    ) -> None:
        try:
            await self._local._serve_one(invocation_id, data)
        finally:
            running.release()
            self._rpc_finished()

    def _queue_rpc(self, invocation_id: int, data: RpcInvocationData) -> RpcError | None:
        """From the dispatcher: hands an invocation to the service task.
        Returns the error to answer at once when it cannot be queued."""
        send = self._invocations
        if send is None or self._closed:
            return RpcError.built_in(RpcError.ErrorCode.RECIPIENT_DISCONNECTED)
        try:
            send.send_nowait((invocation_id, data))
        except anyio.WouldBlock:
            return RpcError(
                RpcError.ErrorCode.APPLICATION_ERROR,
                "recipient overloaded: too many RPC invocations in progress",
            )
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            return RpcError.built_in(RpcError.ErrorCode.RECIPIENT_DISCONNECTED)
        return None

    async def _stop_services(self, limit: float) -> None:
        """Cancels running RPC handlers and gives them up to ``limit`` seconds
        to answer their callers (RECIPIENT_DISCONNECTED), so a handler that
        ignores cancellation cannot delay the disconnect. Invocations still
        queued are answered RECIPIENT_DISCONNECTED at once."""
        tg, self._tg = self._tg, None
        if tg is None:
            return
        send, self._invocations = self._invocations, None
        if send is not None:
            send.close()
        tg.cancel_scope.cancel()
        queued, self._queued = self._queued, None
        if queued is not None:
            while True:
                try:
                    invocation_id, _ = queued.receive_nowait()
                except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
                    break
                self._local._respond(
                    invocation_id,
                    None,
                    RpcError.built_in(RpcError.ErrorCode.RECIPIENT_DISCONNECTED),
                )
        if self._active_rpcs:
            self._rpcs_idle = anyio.Event()
            with anyio.move_on_after(limit):
                await self._rpcs_idle.wait()
                # Their answers leave asynchronously (the native core has no
                # completion for an RPC response): a short grace before the
                # disconnect closes the data channel, within the same limit.
                await anyio.sleep(min(0.25, limit))

    def _rpc_started(self) -> None:
        self._active_rpcs += 1

    def _rpc_finished(self) -> None:
        self._active_rpcs -= 1
        if not self._active_rpcs and self._rpcs_idle is not None:
            self._rpcs_idle.set()

    def _release(self) -> None:
        """Unroutes and releases every native handle; ends subscriptions."""
        self._closed = True
        self._state = CONN_DISCONNECTED
        for key in self._sink_keys:
            self._rt.dispatcher.remove_sink(key, self)
        for p in self._remote.values():
            p._release()
        self._local._release()
        self._handle.close()
        self._end()

    def _end(self) -> None:
        self._ended.set()
        for sub in list(self._subs):
            sub._finish(self._failure)
        self._subs.clear()
        arrivals, self._arrivals = self._arrivals, {}
        for arrival, _ in arrivals.values():
            arrival.set()

    # -- native events (on the loop, via the dispatcher) ------------------------------
    def on_native_event(self, event: Any) -> None:
        which = event.WhichOneof("message")
        if which == "rpc_method_invocation":
            self._local._on_rpc_invocation(event.rpc_method_invocation)
            return
        if which != "room_event":
            self._release_unadopted(getattr(event, which))
            return
        re = event.room_event
        kind = re.WhichOneof("message")
        if kind == "eos":
            self._eos.set()
            self._end()
            return
        handler = self._handlers.get(kind)
        if handler is None:
            self._release_unadopted(re)
            out: ev.RoomEvent | None = ev.NativeRoomEvent(
                name=kind or "", fields=plain_fields(getattr(re, kind))
            )
        else:
            out = handler(getattr(re, kind))
        if out is not None:
            for sub in tuple(self._subs):
                sub._offer(out)

    def on_native_failure(self, exc: BaseException) -> None:
        self._failure = exc
        self._state = CONN_DISCONNECTED
        self._end()

    def _release_unadopted(self, msg: Any) -> None:
        for h in owned_handle_ids(msg):
            self._rt._release(h)

    def _participant(self, identity: str) -> Participant | None:
        if identity == self._local.identity:
            return self._local
        return self._remote.get(identity)

    def _on_participant_connected(self, m: Any) -> ev.RoomEvent | None:
        old = self._remote.get(m.info.info.identity)
        if old is not None:  # same identity joined again: replace
            old._release()
        p = self._new_remote(m.info)
        entry = self._arrivals.pop(p.identity, None)
        if entry is not None:
            entry[0].set()
        return ev.ParticipantConnected(participant=p)

    def _on_participant_disconnected(self, m: Any) -> ev.RoomEvent | None:
        p = self._remote.pop(m.participant_identity, None)
        if p is None:
            return None
        p._info.disconnect_reason = m.disconnect_reason
        p._release()
        return ev.ParticipantDisconnected(
            participant=p, reason=DisconnectReason(m.disconnect_reason)
        )

    def _on_track_published(self, m: Any) -> ev.RoomEvent | None:
        p = self._remote.get(m.participant_identity)
        if p is None:
            self._release_unadopted(m)
            return None
        pub = self._new_publication(m.publication)
        old = p._publications.pop(pub.sid, None)
        if old is not None:
            old._release()
        p._publications[pub.sid] = pub
        return ev.TrackPublished(publication=pub, participant=p)

    def _on_track_unpublished(self, m: Any) -> ev.RoomEvent | None:
        p = self._remote.get(m.participant_identity)
        pub = p._publications.pop(m.publication_sid, None) if p else None
        if p is None or pub is None:
            return None
        pub._release()
        return ev.TrackUnpublished(publication=pub, participant=p)

    def _on_track_muted(self, m: Any, *, muted: bool) -> ev.RoomEvent | None:
        p = self._participant(m.participant_identity)
        pub = p._publications.get(m.track_sid) if p else None
        if p is None or pub is None:
            return None
        pub._info.muted = muted
        if pub._track is not None:
            pub._track._info.muted = muted
        return (ev.TrackMuted if muted else ev.TrackUnmuted)(participant=p, publication=pub)

    def _on_connection_state(self, m: Any) -> ev.RoomEvent | None:
        self._state = int(m.state)
        return ev.ConnectionStateChanged(state=ConnectionState(m.state))

    def _on_disconnected(self, m: Any) -> ev.RoomEvent | None:
        self._state = CONN_DISCONNECTED
        self._disconnect_reason = int(m.reason)
        self._local._info.disconnect_reason = m.reason
        return ev.Disconnected(reason=DisconnectReason(m.reason))

    def _on_room_metadata(self, m: Any) -> ev.RoomEvent | None:
        old = self.metadata
        self._info.metadata = m.metadata
        return ev.RoomMetadataChanged(old_metadata=old, metadata=str(m.metadata))

    def _on_room_sid(self, m: Any) -> ev.RoomEvent | None:
        self._info.sid = m.sid
        return ev.RoomSidChanged(sid=str(m.sid))

    def _on_participant_metadata(self, m: Any) -> ev.RoomEvent | None:
        p = self._participant(m.participant_identity)
        if p is None:
            return None
        old = p.metadata
        p._info.metadata = m.metadata
        if p is self._local:
            self._local._server_updated("metadata")
        return ev.ParticipantMetadataChanged(participant=p, old_metadata=old, metadata=p.metadata)

    def _on_participant_name(self, m: Any) -> ev.RoomEvent | None:
        p = self._participant(m.participant_identity)
        if p is None:
            return None
        old = p.name
        p._info.name = m.name
        if p is self._local:
            self._local._server_updated("name")
        return ev.ParticipantNameChanged(participant=p, old_name=old, name=p.name)

    def _on_participant_attributes(self, m: Any) -> ev.RoomEvent | None:
        p = self._participant(m.participant_identity)
        if p is None:
            return None
        p._info.attributes.clear()
        for entry in m.attributes:
            p._info.attributes[entry.key] = entry.value
        changed = {entry.key: entry.value for entry in m.changed_attributes}
        if p is self._local:
            self._local._server_updated("attributes")
        return ev.ParticipantAttributesChanged(participant=p, changed_attributes=changed)

    def _on_active_speakers(self, m: Any) -> ev.RoomEvent | None:
        speakers = [p for i in m.participant_identities if (p := self._participant(i))]
        return ev.ActiveSpeakersChanged(speakers=speakers)

    def _on_connection_quality(self, m: Any) -> ev.RoomEvent | None:
        p = self._participant(m.participant_identity)
        if p is None:
            return None
        p._quality = ConnectionQuality(m.quality)
        return ev.ConnectionQualityChanged(participant=p, quality=p._quality)

    def _on_data_packet(self, m: Any) -> ev.RoomEvent | None:
        sender = self._remote.get(m.participant_identity)
        if m.HasField("user"):
            buf = m.user.data
            try:
                payload = self._rt.backend.read(buf.data.data_ptr, buf.data.data_len)
            finally:
                self._rt._release(buf.handle.id)
            return ev.DataReceived(
                payload=payload,
                participant=sender,
                topic=str(m.user.topic),
                kind=DataPacketKind(m.kind),
                participant_identity=str(m.participant_identity),
            )
        if m.HasField("sip_dtmf"):
            return ev.SipDTMFReceived(
                code=int(m.sip_dtmf.code),
                digit=str(m.sip_dtmf.digit),
                participant=sender,
                participant_identity=str(m.participant_identity),
            )
        return None

    def _on_transcription(self, m: Any) -> ev.RoomEvent | None:
        p = self._participant(m.participant_identity)
        pub = p._publications.get(m.track_sid) if p else None
        segments = tuple(
            TranscriptionSegment(
                id=str(s.id),
                text=str(s.text),
                start_time=int(s.start_time),
                end_time=int(s.end_time),
                final=bool(s.final),
                language=str(s.language),
            )
            for s in m.segments
        )
        return ev.TranscriptionReceived(
            segments=segments,
            participant=p,
            publication=pub,
            participant_identity=str(m.participant_identity),
        )

    def _on_local_track_published(self, m: Any) -> ev.RoomEvent | None:
        pub = self._local._publications.get(m.track_sid)
        if pub is None:  # publish_track has not seen its completion yet
            self._early_local.add(str(m.track_sid))
            return None
        return ev.LocalTrackPublished(publication=pub, participant=self._local)

    def _local_published(self, pub: LocalTrackPublication) -> None:
        """publish_track completed: deliver a LocalTrackPublished that came first."""
        if pub.sid in self._early_local:
            self._early_local.discard(pub.sid)
            event = ev.LocalTrackPublished(publication=pub, participant=self._local)
            for sub in tuple(self._subs):
                sub._offer(event)

    def _on_local_track_unpublished(self, m: Any) -> ev.RoomEvent | None:
        self._early_local.discard(m.publication_sid)  # a cancelled publish, undone
        if m.publication_sid in self._unpublished_first:
            # unpublish_track's completion came first and reported it already
            self._unpublished_first.discard(m.publication_sid)
            return None
        pub = self._local._publications.pop(m.publication_sid, None)
        if pub is None:
            return None
        pub._release()
        return ev.LocalTrackUnpublished(publication=pub, participant=self._local)

    def _local_unpublished(self, pub: LocalTrackPublication) -> None:
        """unpublish_track completed before the native LocalTrackUnpublished
        event: report it now (once: the native event is ignored when it comes)."""
        self._unpublished_first.add(pub.sid)
        event = ev.LocalTrackUnpublished(publication=pub, participant=self._local)
        for sub in tuple(self._subs):
            sub._offer(event)

    def _on_track_subscribed(self, m: Any) -> ev.RoomEvent | None:
        p = self._remote.get(m.participant_identity)
        pub = p._publications.get(m.track.info.sid) if p else None
        if p is None or pub is None:
            log.debug("track %s subscribed for an unknown publication", m.track.info.sid)
            self._release_unadopted(m)
            return None
        if pub._track is not None:
            pub._track._release()
        track = remote_track(self._rt, m.track, self)
        pub._track = track
        return ev.TrackSubscribed(track=track, publication=pub, participant=p)

    def _on_track_unsubscribed(self, m: Any) -> ev.RoomEvent | None:
        p = self._remote.get(m.participant_identity)
        pub = p._publications.get(m.track_sid) if p else None
        if p is None or pub is None or pub._track is None:
            return None
        track, pub._track = pub._track, None
        track._release()  # ends its streams
        assert isinstance(track, RemoteTrack)
        return ev.TrackUnsubscribed(track=track, publication=pub, participant=p)

    def _on_data_stream(self, m: Any) -> ev.RoomEvent | None:
        self._release_unadopted(m)  # stream readers: not supported yet
        return ev.DataStreamEvent(
            name=m.DESCRIPTOR.name,
            participant=self._participant(m.participant_identity),
            message=m,
        )

    def _on_room_updated(self, m: Any) -> ev.RoomEvent | None:
        self._info.CopyFrom(m)
        return ev.RoomUpdated(info=RoomInfo._from_proto(m))

    def _on_room_moved(self, m: Any) -> ev.RoomEvent | None:
        self._info.CopyFrom(m)
        return ev.RoomUpdated(info=RoomInfo._from_proto(m), moved=True)

    def _on_participants_updated(self, m: Any) -> ev.RoomEvent | None:
        updated: list[Participant] = []
        for info in m.participants:
            p = self._participant(info.identity)
            if p is not None:
                p._info.CopyFrom(info)
                updated.append(p)
        return ev.ParticipantsUpdated(participants=updated) if updated else None

    def _on_encryption_status(self, m: Any) -> ev.RoomEvent | None:
        p = self._participant(m.participant_identity)
        if p is None:
            return None
        return ev.ParticipantEncryptionStatusChanged(participant=p, is_encrypted=m.is_encrypted)

    def _on_permission(self, m: Any) -> ev.RoomEvent | None:
        p = self._participant(m.participant_identity)
        if p is None:
            return None
        p._info.permission.CopyFrom(m.permission)
        return ev.ParticipantPermissionChanged(
            participant=p, permission=ParticipantPermission._from_proto(m.permission)
        )

    def _on_subscription_failed(self, m: Any) -> ev.RoomEvent | None:
        p = self._remote.get(m.participant_identity)
        if p is None:
            return None
        return ev.TrackSubscriptionFailed(
            participant=p, track_sid=str(m.track_sid), error=str(m.error)
        )

    def _on_participant_active(self, m: Any) -> ev.RoomEvent | None:
        p = self._participant(m.participant_identity)
        return None if p is None else ev.ParticipantActive(participant=p)

    def _on_data_track_published(self, m: Any) -> ev.RoomEvent | None:
        self._release_unadopted(m)  # data tracks: not supported yet
        return ev.DataTrackPublished(info=plain_fields(m.track.info))

    def _on_local_republished(self, m: Any) -> ev.RoomEvent | None:
        self._release_unadopted(m)
        return ev.LocalTrackRepublished(previous_sid=str(m.previous_sid), sid=str(m.info.sid))


def _copy(info: Any) -> Any:
    out = type(info)()
    out.CopyFrom(info)
    return out


def _release_connect_result(rt: Runtime, cb: Any) -> None:
    """Reaper of a connect whose caller was cancelled: leave the room and drop
    every handle the late completion carries (nothing to do after a panic)."""
    if isinstance(cb, BaseException) or cb.HasField("error") or not cb.HasField("result"):
        return
    room_handle = cb.result.room.handle.id
    try:
        ready = ffi_pb2.FfiRequest()
        ready.ready_for_room_event.room_handle = room_handle
        rt.request(ready)
        bye = ffi_pb2.FfiRequest()
        bye.disconnect.room_handle = room_handle
        bye.disconnect.reason = CLIENT_INITIATED
        bye.disconnect.request_async_id = rt.next_async_id()
        rt.request(bye)
    except LiveKitError as exc:
        log.warning("could not disconnect a room whose connect was cancelled: %s", exc)
    for h in owned_handle_ids(cb):
        rt._release(h)


async def _connect(rt: Runtime, url: str, token: str, options: RoomOptions) -> Room:
    if not isinstance(url, str) or not isinstance(token, str):
        raise TypeError("url and token must be str")
    req = ffi_pb2.FfiRequest()
    req.connect.url = url
    req.connect.token = token
    options._fill(req.connect.options)
    limit = math.inf
    if options.connect_timeout is not None:
        limit = options.connect_timeout + _CONNECT_GRACE
    with anyio.move_on_after(limit):
        cb = await rt.request_async(
            req, "connect", reaper=lambda late: _release_connect_result(rt, late)
        )
        if cb.HasField("error") and cb.error:
            raise ConnectError(str(cb.error))
        room = Room._create(rt, cb.result, options)
        for key in room._sink_keys:
            rt.add_sink(key, room)
        ready = ffi_pb2.FfiRequest()
        ready.ready_for_room_event.room_handle = room._handle.id
        try:
            rt.request(ready)
        except BaseException:
            room._release()
            raise
        return room
    raise ConnectError(f"connect did not finish within {limit:.1f} s")


@asynccontextmanager
async def open_room(
    url: str, token: str, *, options: RoomOptions | None = None
) -> AsyncIterator[Room]:
    """Connects to a room and keeps it open for the ``async with`` block.

    The room runs inside its own task group; leaving the block (normally, by an
    exception, or by cancellation) disconnects within
    ``RoomOptions.disconnect_timeout`` and releases every native handle.

    Args:
        url: the server's WebSocket URL (``ws://`` or ``wss://``).
        token: an access token with a ``roomJoin`` grant.
        options: connection options (defaults: :class:`RoomOptions`).

    Raises:
        ConnectError: the server or the native core refused the connection
            (bad token, bad URL, unreachable server, timeout); ``reason``
            carries the native message.
        TypeError: ``url`` or ``token`` is not a str.
        NativeLoadError: the native library cannot be loaded.

    Cancellation: cancelling while connecting returns at once; the native
    connect goes on, and when it completes lkrtc_trio leaves that room and
    releases its handles (``pending_requests()`` and ``live_native_handles()``
    return to zero). Cancelling inside the block disconnects as above.
    """
    opts = options or RoomOptions()
    rt = get_runtime()
    room = await _connect(rt, url, token, opts)
    try:
        try:
            async with anyio.create_task_group() as tg:
                try:
                    await tg.start(room._run_services)
                    yield room
                finally:
                    # also when cancelled while the services start: leave the
                    # server, never just drop the handles
                    with anyio.CancelScope(shield=True):
                        await room._shutdown()
        except BaseExceptionGroup as group:
            exc = _one_exception(group)
            if exc is None:
                raise
            # Raise what the block raised as it was: with its own context (not
            # the group, which `raise` here would set as its context).
            context = exc.__context__
            try:
                raise exc
            finally:
                exc.__context__ = context
                del exc, context, group
    finally:
        room._release()


def _one_exception(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    """What to raise instead of the group that the room's task group wrapped
    around whatever left the block, following trio's rules: the group's own
    single exception (a group the caller raised stays as it is, unflattened);
    cancellations of the room's own tasks do not count; KeyboardInterrupt wins.
    None: more than one real exception, raise the group."""
    excs = group.exceptions
    for exc in excs:
        if isinstance(exc, KeyboardInterrupt):
            return exc
    cancelled = anyio.get_cancelled_exc_class()
    real = [exc for exc in excs if not isinstance(exc, cancelled)]
    if len(real) == 1:
        return real[0]
    if not real and excs:
        return excs[0]
    return None
