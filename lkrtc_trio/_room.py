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
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any, final

import anyio
import anyio.abc
from anyio.streams.memory import (
    MemoryObjectStreamStatistics,
)

from . import _events as ev
from ._datastream import (
    DEFAULT_STREAM_BUFFER_LIMIT,
    SUBSCRIPTION_BUFFER,
    ByteStreamHandler,
    ByteStreamReader,
    StreamSubscription,
    TextStreamHandler,
    TextStreamReader,
)
from ._dispatch import owned_handle_ids
from ._e2ee import E2EEManager, E2EEOptions
from ._errors import (
    ConnectError,
    EventOverflowError,
    LiveKitError,
    NativeError,
    NativePanicError,
    NoPublicConstructor,
)
from ._ice import RtcConfiguration
from ._ledger import AtRisk
from ._participant import (
    LocalParticipant,
    RemoteParticipant,
)
from ._proto import ffi_pb2, participant_pb2, room_pb2
from ._records import ParticipantRecord, copy_message
from ._runtime import Runtime, get_runtime
from ._session import RoomSession
from ._state import RoomState
from ._stats import RtcStat, RtcStats, StatsReports
from ._types import (
    ConnectionState,
    DisconnectReason,
    RoomInfo,
    SimulateScenario,
)

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup

__all__ = ["EventSubscription", "Room", "RoomOptions", "open_room"]

log = logging.getLogger("lkrtc_trio.room")

CONN_DISCONNECTED = room_pb2.ConnectionState.CONN_DISCONNECTED
CONN_CONNECTED = room_pb2.ConnectionState.CONN_CONNECTED
CLIENT_INITIATED = participant_pb2.DisconnectReason.CLIENT_INITIATED
# states in which the server has announced a participant to the others
_ANNOUNCED = frozenset(
    (
        participant_pb2.ParticipantState.PARTICIPANT_STATE_JOINED,
        participant_pb2.ParticipantState.PARTICIPANT_STATE_ACTIVE,
    )
)

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
        reconnect_timeout: seconds the room may stay reconnecting (from the
            ``Reconnecting`` event, default 30) before lkrtc_trio gives up: it
            then emits ``ConnectionStateChanged(CONN_DISCONNECTED)`` and
            ``Disconnected(CONNECTION_TIMEOUT)``, ends the room and tells the
            native core to stop. Calls made while the room reconnects
            (``publish_data``, updates, ``perform_rpc``...) wait in lkrtc_trio,
            not in the native core: they are sent, in call order, once the
            room is back and settled (everyone who was there before has
            rejoined, at most 10 s after ``Reconnected``), or raise
            ``RoomDisconnectedError`` when the room gives up. None: leave it
            to the native core (measured: ``Disconnected`` 24-26 s after a
            server crash; a partition is retried for minutes).
        stream_buffer_limit: bytes an incoming data stream's reader may hold
            unread (default 16 MiB); beyond it the reader fails with
            ``StreamError`` and the rest of that stream is dropped.
        encryption: end-to-end encryption (:class:`E2EEOptions`), or None.
            The room's ``e2ee_manager`` then gives its key provider.
        rtc_config: ICE settings (:class:`RtcConfiguration`): TURN servers,
            relay-only transport, candidate gathering; None for the defaults.
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
    reconnect_timeout: float | None = 30.0
    stream_buffer_limit: int = DEFAULT_STREAM_BUFFER_LIMIT
    encryption: E2EEOptions | None = None
    rtc_config: RtcConfiguration | None = None

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
        if self.reconnect_timeout is not None and not (
            math.isfinite(self.reconnect_timeout) and self.reconnect_timeout > 0
        ):
            raise ValueError(f"reconnect_timeout must be positive, not {self.reconnect_timeout!r}")
        if isinstance(self.stream_buffer_limit, bool) or not (
            isinstance(self.stream_buffer_limit, int) and self.stream_buffer_limit >= 1
        ):
            raise ValueError("stream_buffer_limit must be a positive int (bytes)")
        if self.encryption is not None and not isinstance(self.encryption, E2EEOptions):
            raise TypeError("encryption must be an E2EEOptions or None")
        if self.rtc_config is not None and not isinstance(self.rtc_config, RtcConfiguration):
            raise TypeError("rtc_config must be an RtcConfiguration or None")

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
        if self.encryption is not None:
            self.encryption._fill(msg.encryption)
        if self.rtc_config is not None:
            self.rtc_config._fill(msg.rtc_config)


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
    constructor).

    A thin facade over two parts: the ``RoomSession``
    (lifecycle, handles, task group, RPC queue) and the sans-I/O
    ``RoomState`` (room and participant state). As the
    dispatcher's sink for the room's handles it hands each native event to the
    state mirror and offers the event it returns to every subscription.
    """

    def __init__(self, runtime: Runtime, result: Any, options: RoomOptions) -> None:
        rt = runtime
        self._options = options
        session = self._session = RoomSession(
            rt,
            rt.own(result.room.handle.id, "room"),
            options.rpc_max_concurrency,
            options.reconnect_timeout,
            options.stream_buffer_limit,
        )
        session.give_up = self._give_up
        session.on_settled = self._settle
        self._peers_before: set[str] = set()
        self._departed: dict[str, float] = {}  # identity -> when it left
        lp = result.local_participant
        local_handle = rt.own(lp.handle.id, "local_participant")
        local_rec = ParticipantRecord(local_handle, copy_message(lp.info))
        local = LocalParticipant(local_rec, session)
        self._state = RoomState(rt, result, local, auto_subscribe=options.auto_subscribe)
        self._check_announced()
        session.on_local_published = lambda pub: self._emit(
            ev.LocalTrackPublished(publication=pub, participant=local)
        )
        session.on_local_unpublished = lambda pub: self._emit(
            ev.LocalTrackUnpublished(publication=pub, participant=local)
        )
        self._subs: set[EventSubscription] = set()
        #: identity -> [its arrival event, how many wait_for_participant wait on it]
        self._arrivals: dict[str, list[Any]] = {}
        self._sink_keys = (session.handle.id, local_rec.handle.id)
        self._e2ee_manager = E2EEManager._create(session, options.encryption)

    # -- public state ----------------------------------------------------------------
    @property
    def name(self) -> str:
        return str(self._state.info.name)

    @property
    def sid(self) -> str:
        """The room's sid ("" until the server assigned one; see RoomSidChanged)."""
        return str(self._state.info.sid)

    @property
    def metadata(self) -> str:
        return str(self._state.info.metadata)

    @property
    def connection_state(self) -> ConnectionState:
        return self._state.connection_state

    @property
    def disconnect_reason(self) -> DisconnectReason:
        """Why the room was disconnected (``UNKNOWN_REASON`` while connected)."""
        return DisconnectReason(self._session.disconnect_reason)

    @property
    def num_participants(self) -> int:
        """Participants in the room, as the server last counted them."""
        return int(self._state.info.num_participants)

    @property
    def num_publishers(self) -> int:
        """Participants publishing tracks, as the server last counted them."""
        return int(self._state.info.num_publishers)

    @property
    def creation_time(self) -> int:
        """When the room was created, as the server reports it (0 if unknown)."""
        return int(self._state.info.creation_time)

    @property
    def is_recording(self) -> bool:
        """Whether the room is being recorded."""
        return bool(self._state.info.active_recording)

    @property
    def info(self) -> RoomInfo:
        """A snapshot of the room's info."""
        return RoomInfo._from_proto(self._state.info)

    @property
    def local_participant(self) -> LocalParticipant:
        return self._state.local

    @property
    def remote_participants(self) -> Mapping[str, RemoteParticipant]:
        """A copy of the other participants, by identity."""
        return self._state.remote_participants()

    @property
    def e2ee_manager(self) -> E2EEManager:
        """End-to-end encryption (the key provider and the frame cryptors;
        ``key_provider`` None and ``enabled`` False without
        ``RoomOptions.encryption``)."""
        return self._e2ee_manager

    def isconnected(self) -> bool:
        """True while connected or reconnecting; False for good once closed or
        disconnected."""
        return (
            not self._session.closed
            and self._state.connection_state != ConnectionState.CONN_DISCONNECTED
        )

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
        self._session.check_open()
        sub = EventSubscription(self, size)
        if self._session.ended.is_set():
            sub._finish()
        else:
            self._subs.add(sub)
        return sub

    # -- data streams -------------------------------------------------------------------
    def register_text_stream_handler(self, topic: str, handler: TextStreamHandler) -> None:
        """Serves incoming text streams on ``topic`` with ``handler(reader,
        participant_identity)``.

        The handler may be sync or async; it runs as a task in the room's task
        group, one per stream, and the reader is closed when it returns (so a
        sync handler sees only ``reader.info``; read in an async one). An
        exception it raises is logged and the room goes on. Streams on a topic
        with neither a handler nor a subscription are released and logged
        once per topic.

        Raises:
            ValueError: ``topic`` already has a handler or a subscription.
            TypeError: ``topic`` is not a str or ``handler`` not callable.
            RoomClosedError: the room is closed.
        """
        self._session.streams.register("text", topic, handler)

    def unregister_text_stream_handler(self, topic: str) -> None:
        """Stops serving text streams on ``topic`` (streams already handed to
        the handler go on). Unknown topics are ignored."""
        self._session.streams.unregister("text", topic)

    def register_byte_stream_handler(self, topic: str, handler: ByteStreamHandler) -> None:
        """As :meth:`register_text_stream_handler`, for byte streams."""
        self._session.streams.register("byte", topic, handler)

    def unregister_byte_stream_handler(self, topic: str) -> None:
        """As :meth:`unregister_text_stream_handler`, for byte streams."""
        self._session.streams.unregister("byte", topic)

    def text_streams(
        self, topic: str, *, max_buffer: int = SUBSCRIPTION_BUFFER
    ) -> StreamSubscription[TextStreamReader]:
        """Subscribes to incoming text streams on ``topic``: ``with
        room.text_streams(topic) as sub: async for reader in sub:``. A topic
        is served by a handler or by one subscription, not both. A stream
        that arrives while ``max_buffer`` readers wait unreceived is refused
        (logged; its sender's stream is dropped here).

        Raises:
            ValueError: ``topic`` already has a handler or a subscription, or
                ``max_buffer`` < 1.
            RoomClosedError: the room is closed.
        """
        return self._session.streams.subscribe("text", topic, max_buffer)

    def byte_streams(
        self, topic: str, *, max_buffer: int = SUBSCRIPTION_BUFFER
    ) -> StreamSubscription[ByteStreamReader]:
        """As :meth:`text_streams`, for byte streams."""
        return self._session.streams.subscribe("byte", topic, max_buffer)

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
            p = self._state.remote_participant(identity)
            if p is not None:
                return p
            self._session.check_open()
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
        """WebRTC statistics of the room's peer connections: typed reports
        (:class:`~lkrtc_trio.OutboundRtpStats`, :class:`~lkrtc_trio.CandidatePairStats`...)
        of the publisher and of the subscriber; ``stats.of_type(cls)`` picks
        one kind, ``stats.all_stats.summary()`` sums them up. With a single
        peer connection (the default) every report is in ``publisher_stats``.

        Raises:
            RoomClosedError, RoomDisconnectedError: the room is not connected.
            NativeError: the native core failed to collect them.

        Cancellation: returns at once; the late answer is dropped.
        """
        req = ffi_pb2.FfiRequest()
        req.get_session_stats.room_handle = self._session.handle.id
        cb = await self._session.request(req, "get_session_stats")
        if cb.error:
            raise NativeError(f"get_rtc_stats failed: {cb.error}")
        return RtcStats(
            publisher_stats=StatsReports(RtcStat._from_proto(x) for x in cb.result.publisher_stats),
            subscriber_stats=StatsReports(
                RtcStat._from_proto(x) for x in cb.result.subscriber_stats
            ),
        )

    async def simulate_scenario(self, scenario: SimulateScenario) -> None:
        """Triggers a fault, for tests: the events that follow are those of
        the real fault (``Reconnecting``/``Reconnected``, ``Disconnected``...).

        Raises:
            ValueError: ``scenario`` is not a :class:`SimulateScenario`.
            RoomClosedError, RoomDisconnectedError: the room is not connected.
            NativeError: the native core refused it.

        Cancellation: returns at once; the scenario may still run.
        """
        req = ffi_pb2.FfiRequest()
        req.simulate_scenario.room_handle = self._session.handle.id
        if isinstance(scenario, bool) or scenario not in SimulateScenario._value2member_map_:
            raise ValueError(f"unknown scenario {scenario!r}; use SimulateScenario")
        req.simulate_scenario.scenario = int(scenario)  # type: ignore[assignment]
        cb = await self._session.request(req, "simulate_scenario")
        if cb.HasField("error") and cb.error:
            raise NativeError(f"simulate_scenario failed: {cb.error}")

    def __repr__(self) -> str:
        return f"<Room {self.name!r} {self.sid} state={self.connection_state.name}>"

    # -- lifecycle ---------------------------------------------------------------------
    async def _shutdown(self) -> None:
        """Stops the room's tasks, disconnects and releases everything, all
        within one deadline of ``disconnect_timeout``: running RPC handlers get
        at most half of it (and 1 s) to answer their callers, the disconnect
        the rest."""
        session = self._session
        if session.closed:
            return
        session.closed = True
        session.end_calls()  # waiting calls raise RoomClosedError now
        budget = self._options.disconnect_timeout
        deadline = anyio.current_time() + budget
        await session.stop_services(min(1.0, budget / 2))
        if not session.ended.is_set() and session.handle.id:
            await self._native_disconnect(max(0.0, deadline - anyio.current_time()))
            if self._state.connection_state != ConnectionState.CONN_DISCONNECTED:
                session.disconnect_reason = CLIENT_INITIATED
        self._release()

    async def _give_up(self) -> None:
        """Reconnecting lasted ``reconnect_timeout``: the room ends now, as if
        the server had disconnected it, and the native core is told to stop
        (bounded by ``disconnect_timeout``; the handles are released when the
        ``open_room`` block ends, as always)."""
        session = self._session
        log.warning(
            "room %r: still reconnecting after %.1f s, disconnecting",
            self.name,
            self._options.reconnect_timeout,
        )
        session.disconnect_reason = int(DisconnectReason.CONNECTION_TIMEOUT)
        self._state.connection_state = ConnectionState.CONN_DISCONNECTED
        self._report(session.ledger.settled(time.monotonic()))
        self._emit(ev.ConnectionStateChanged(state=ConnectionState.CONN_DISCONNECTED))
        self._emit(ev.Disconnected(reason=DisconnectReason.CONNECTION_TIMEOUT))
        self._end()
        await self._native_disconnect(self._options.disconnect_timeout)

    async def _native_disconnect(self, limit: float) -> None:
        """Asks the native core to leave the room and waits, at most ``limit``
        seconds, for it to confirm (its end of stream)."""
        session = self._session
        req = ffi_pb2.FfiRequest()
        req.disconnect.room_handle = session.handle.id
        req.disconnect.reason = CLIENT_INITIATED
        with anyio.move_on_after(limit):
            try:
                await session.rt.request_async(req, "disconnect")
                await session.eos.wait()
            except LiveKitError as exc:
                log.warning("disconnect failed: %s", exc)

    def _release(self) -> None:
        """Unroutes and releases every native handle; ends subscriptions."""
        session = self._session
        session.closed = True
        for key in self._sink_keys:
            session.rt.dispatcher.remove_sink(key, self)
        self._state.release_all()
        session.handle.close()
        self._end()
        retired = session.retire_abandoned()
        if retired:
            log.warning(
                "room %r closed with %d abandoned requests unanswered; their buffers "
                "stay lent until (if ever) the native core answers",
                self.name,
                retired,
            )

    def _end(self) -> None:
        session = self._session
        session.streams.close(
            "the room was closed"
            if session.closed
            else f"the native core failed: {session.failure}"
            if session.failure is not None
            else "the room was disconnected"
        )
        self._session.ended.set()
        self._session.announced.set()
        self._session.end_calls()
        for sub in list(self._subs):
            sub._finish(self._session.failure)
        self._subs.clear()
        arrivals, self._arrivals = self._arrivals, {}
        for arrival, _ in arrivals.values():
            arrival.set()

    def _emit(self, event: ev.RoomEvent) -> None:
        for sub in tuple(self._subs):
            sub._offer(event)

    # -- native events (on the loop, via the dispatcher) ------------------------------
    def on_native_event(self, event: Any) -> None:
        which = event.WhichOneof("message")
        if which == "rpc_method_invocation":
            self._state.local._on_rpc_invocation(event.rpc_method_invocation)
            return
        if which != "room_event":
            self._state.release_unadopted(getattr(event, which))
            return
        re = event.room_event
        kind = re.WhichOneof("message")
        if kind == "text_stream_opened" or kind == "byte_stream_opened":
            self._session.streams.on_opened(kind[:4], getattr(re, kind))
            return
        if kind == "eos":
            self._session.eos.set()
            self._end()
            return
        out = self._state.apply(kind or "", getattr(re, kind) if kind else re)
        if not self._session.announced.is_set():
            self._check_announced()
        if out is None:
            return
        if isinstance(out, ev.ParticipantConnected):
            entry = self._arrivals.pop(out.participant.identity, None)
            if entry is not None:
                entry[0].set()
        elif isinstance(out, ev.Disconnected):
            self._session.disconnect_reason = int(out.reason)
            if not self._session.closed:
                # ended by the server or the network: what the last moments
                # (or the reconnection under way) may have lost
                now = time.monotonic()
                self._session.ledger.reconnecting(now)
                self._report(self._session.ledger.settled(now))
        elif isinstance(out, ev.ParticipantDisconnected):
            now = time.monotonic()
            if len(self._departed) > 64:
                self._departed = {w: t for w, t in self._departed.items() if t > now - 5.0}
            self._departed[out.participant.identity] = now
            self._session.streams.fail_from(
                out.participant.identity, "the sender left the room while the stream was open"
            )
            self._session.ledger.participant_left(out.participant.identity, now)
        elif isinstance(out, ev.Reconnecting):
            if not self._session.ledger.in_episode:
                # who should be back before the room counts as settled: those
                # here now, and those the native core just removed (a full
                # reconnect removes everyone right before Reconnecting)
                recent = time.monotonic() - 5.0
                self._peers_before = set(self._state.remote) | {
                    who for who, at in self._departed.items() if at >= recent
                }
            self._session.set_reconnecting(True)
            self._session.streams.on_reconnecting()
        elif isinstance(out, ev.Reconnected):
            self._session.set_reconnecting(False)
            self._emit(out)
            self._settle_if_back()
            return
        self._emit(out)
        if isinstance(out, ev.ParticipantConnected):
            who = out.participant.identity
            self._report(self._session.ledger.participant_back(who, time.monotonic()))
            self._settle_if_back()

    def _check_announced(self) -> None:
        if self._state.local._rec.info.state in _ANNOUNCED:
            self._session.announced.set()

    def _settle_if_back(self) -> None:
        session = self._session
        if session.settle_deadline is not None and self._peers_before <= set(self._state.remote):
            self._settle()

    def _settle(self) -> None:
        """The reconnected room has settled: report what may have been lost."""
        missing = self._peers_before - set(self._state.remote)
        self._peers_before = set()
        self._departed.clear()
        self._report(self._session.settle(missing))

    def _report(self, at_risk: AtRisk | None) -> None:
        if at_risk is None:
            return
        log.warning(
            "room %r: reliable packets %d-%d (%d) may not have reached %s",
            self.name,
            at_risk.first_sequence,
            at_risk.last_sequence,
            at_risk.count,
            ", ".join(at_risk.identities) or "anyone",
        )
        self._emit(
            ev.ReliableDataMayBeLost(
                first_sequence=at_risk.first_sequence,
                last_sequence=at_risk.last_sequence,
                count=at_risk.count,
                since=at_risk.since,
                until=at_risk.until,
                participant_identities=at_risk.identities,
            )
        )

    def on_native_failure(self, exc: BaseException) -> None:
        self._session.failure = exc
        self._state.connection_state = ConnectionState.CONN_DISCONNECTED
        self._end()


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
        ready.ready_for_room_event.room_handle = room._session.handle.id
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
                    await tg.start(room._session.run_services)
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
