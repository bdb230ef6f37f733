"""The lifecycle of one room connection: what participants hold, not the room.

A :class:`RoomSession` owns the runtime, the room's native handle, the room's
task group and its service task, the RPC invocation queue and accounting, and
the facts of the connection's life (closed by you, ended by the server, failed
with a panic). It knows nothing of participants, tracks or events: the room
(``_room.py``) wires it to the state mirror (``_state.py``) through a few
plain callables.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import Any, final

import anyio
import anyio.abc
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ._datastream import DEFAULT_STREAM_BUFFER_LIMIT, StreamRouter
from ._dispatch import Reaper, Waiter
from ._errors import NativePanicError, RoomClosedError, RoomDisconnectedError
from ._ledger import AtRisk, SendLedger
from ._rpc import RpcError, RpcInvocationData
from ._runtime import OwnedHandle, Runtime

__all__ = ["RoomSession"]

log = logging.getLogger("lkrtc_trio.room")

#: seconds after ``Reconnected`` that the room waits for the participants that
#: were there before to rejoin, before it reports what may have been lost
SETTLE_LIMIT = 10.0
#: seconds a failed call waits for a ``Reconnecting`` event that would
#: explain its failure (and have it sent again once the room is back)
RECONNECT_GRACE = 1.0

Invocation = tuple[int, RpcInvocationData]
Job = tuple[Callable[..., Coroutine[Any, Any, None]], tuple[Any, ...]]
#: jobs waiting for the service task to start them (beyond: refused)
JOB_QUEUE = 1024


def _ignore(_: Any) -> None:
    pass


@final
class _Deferred:
    """A call held while the room reconnects."""

    __slots__ = ("error", "field", "order", "pin", "ready", "req", "submitted", "waiting")

    def __init__(self, req: Any, field: str, pin: Any, ready: Any, order: int) -> None:
        self.req = req
        self.order = order
        self.field = field
        self.pin = pin
        self.ready = ready
        self.waiting = True
        self.submitted: tuple[int, Waiter] | None = None
        self.error: BaseException | None = None


@final
class RoomSession:
    """See the module docstring. Created by the room; every method runs on the
    event loop."""

    def __init__(
        self,
        rt: Runtime,
        handle: OwnedHandle,
        rpc_max_concurrency: int,
        reconnect_timeout: float | None = None,
        stream_buffer_limit: int = DEFAULT_STREAM_BUFFER_LIMIT,
    ) -> None:
        self.rt = rt
        self.handle = handle
        self._rpc_limit = rpc_max_concurrency
        self._reconnect_timeout = reconnect_timeout
        #: ``time.monotonic()`` of the ``Reconnecting`` event, None while connected
        self.reconnecting_since: float | None = None
        #: ``time.monotonic()`` by which a reconnected room counts as settled
        self.settle_deadline: float | None = None
        #: how many times the room started reconnecting
        self.episodes = 0
        # replaced from the dispatcher (outside any task): the loop's own
        # event class, which works there on asyncio too (anyio's does not)
        self._reconnect_changed: Any = rt.dispatcher.new_event()
        #: reliable data sends, for what a reconnection may have lost
        self.ledger = SendLedger()
        #: you closed the room (disconnect() or the block ended)
        self.closed = False
        #: the native core panicked
        self.failure: BaseException | None = None
        #: the server's or the network's reason, once the room was disconnected
        self.disconnect_reason = 0
        self.ended = anyio.Event()  # eos, remote disconnect, panic, or close
        #: the server has announced this participant to the others (its state
        #: reached JOINED); also set when the room ends, to wake waiters
        self.announced = anyio.Event()
        self.eos = anyio.Event()
        self._tg: anyio.abc.TaskGroup | None = None
        self._invocations: MemoryObjectSendStream[Invocation] | None = None
        self._queued: MemoryObjectReceiveStream[Invocation] | None = None
        self._active_rpcs = 0
        self._admitted = 0  # invocations queued or running
        self._rpcs_idle: anyio.Event | None = None
        #: work the dispatcher asks the service task to start (stream handlers)
        self._jobs: MemoryObjectSendStream[Job] | None = None
        #: incoming stream readers and outgoing writers of this room
        self.streams = StreamRouter(self, stream_buffer_limit)
        #: calls held while reconnecting, in call order
        self._deferred: deque[_Deferred] = deque()
        self._orders = itertools.count()
        #: the latest place in call order handed to the native core
        self._last_sent = -1
        #: async ids of this room's calls whose callers gave up before the answer
        self._abandoned: set[int] = set()
        #: cancel scopes of calls waiting in request(), ended with the room
        self._calls: set[anyio.CancelScope] = set()
        # wired by the local participant and the room
        self.serve_rpc: Callable[[int, RpcInvocationData], Awaitable[None]] | None = None
        self.refuse_rpc: Callable[[int], None] = _ignore
        self.on_local_published: Callable[[Any], None] = _ignore
        self.on_local_unpublished: Callable[[Any], None] = _ignore
        #: the room's reaction when reconnecting lasted reconnect_timeout
        self.give_up: Callable[[], Awaitable[None]] | None = None
        #: the room's reaction when a reconnected room's settle deadline passed
        self.on_settled: Callable[[], None] | None = None

    def next_order(self) -> int:
        """A new call's place in call order (see :meth:`request`)."""
        return next(self._orders)

    def sent_after(self, order: int) -> bool:
        """Whether a call made after the one at ``order`` was handed to the
        native core already (sending that one again would reorder them)."""
        return self._last_sent > order

    async def request(
        self,
        req: Any,
        field: str,
        *,
        reaper: Reaper | None = None,
        pin: Any = None,
        order: int | None = None,
    ) -> Any:
        """``Runtime.request_async``, bound to the room's life: if the room is
        closed (by you) or ends (server, network, panic) while the call waits,
        the call raises that at once (``RoomClosedError``,
        ``RoomDisconnectedError``, ``NativePanicError``) instead of waiting for
        a native answer that may take seconds or never come. Its late
        completion then goes to ``reaper`` (or is dropped).

        While the room is reconnecting or settling the request is held here,
        not sent: it goes out, in call order, when the room has settled, or
        never (the room ended; ``pin`` is released then). ``order``: the
        call's place in that order, from :meth:`next_order` (a call sent
        again keeps its first place); None: a new call, last.

        Raises:
            RoomClosedError, RoomDisconnectedError, NativePanicError: as above,
                also when the room is not open to begin with (``pin`` is then
                released at once).
        """
        try:
            self.check_open()
        except BaseException:
            if pin is not None:
                self.rt.unpin(pin)
            raise
        if order is None:
            order = self.next_order()
        scope = anyio.CancelScope()
        self._calls.add(scope)
        deferred: _Deferred | None = None
        submitted: tuple[int, Waiter] | None = None
        handed = False  # rt.wait owns the waiter (and abandons it if cancelled)
        try:
            with scope:
                if self.reconnecting_since is None and self.settle_deadline is None:
                    submitted = self.rt.submit(req, field, pin=pin)
                    self._last_sent = max(self._last_sent, order)
                else:
                    # Held here, not in the native core, until the room is
                    # back and settled (sent then, in call order) or ends.
                    deferred = _Deferred(req, field, pin, self.rt.dispatcher.new_event(), order)
                    held = self._deferred
                    if held and held[-1].order > order:
                        # sent again: before the calls made after it
                        held.insert(
                            next(i for i, e in enumerate(held) if e.order > order), deferred
                        )
                    else:
                        held.append(deferred)
                    await deferred.ready.wait()
                    if deferred.error is not None:
                        raise deferred.error
                    submitted = deferred.submitted
                assert submitted is not None
                async_id, waiter = submitted
                handed = True
                try:
                    return await self.rt.wait(async_id, waiter, reaper)
                except BaseException:
                    self._note_abandoned(async_id)
                    raise
        finally:
            self._calls.discard(scope)
            if deferred is not None and deferred.waiting:
                # never sent: forget it and release its buffer
                deferred.waiting = False
                self._deferred.remove(deferred)
                if pin is not None:
                    self.rt.unpin(pin)
            if deferred is not None:
                submitted = deferred.submitted
            if submitted is not None and not handed:
                # sent, but this call was cancelled before it could wait
                self.rt.dispatcher.abandon(submitted[0], submitted[1], reaper)
                self._note_abandoned(submitted[0])
        # only reached when end_calls() cancelled the scope
        self.check_open()
        raise RoomClosedError("the room closed while the call was waiting")

    def _note_abandoned(self, async_id: int) -> None:
        abandoned = self._abandoned
        abandoned.add(async_id)
        if len(abandoned) > 1024:  # forget those completed since
            pending = self.rt.dispatcher.is_pending
            self._abandoned = {i for i in abandoned if pending(i)}

    def send_deferred(self) -> None:
        """When the reconnected room has settled (from the dispatcher or the
        watcher task): sends the calls held meanwhile, in call order, each
        with a synchronous ``submit`` so that no scheduling can reorder them
        (each caller then waits for its answer)."""
        deferred, self._deferred = self._deferred, deque()
        for entry in deferred:
            entry.waiting = False
            try:
                entry.submitted = self.rt.submit(
                    entry.req, entry.field, pin=entry.pin, attach=False
                )
                self._last_sent = max(self._last_sent, entry.order)
            except BaseException as exc:  # the caller raises it
                entry.error = exc
            entry.ready.set()

    def retire_abandoned(self) -> int:
        """At release: requests of this room that were abandoned and that the
        native core will never answer now are forgotten (see
        ``Dispatcher.retire``)."""
        abandoned, self._abandoned = self._abandoned, set()
        return self.rt.dispatcher.retire(abandoned)

    def end_calls(self) -> None:
        """The room is closing or has ended: calls waiting in :meth:`request`
        stop waiting (each raises the room's error)."""
        for scope in list(self._calls):
            scope.cancel()

    async def wait_for(self, event: Any) -> None:
        """Waits for ``event`` (an ``anyio.Event``), bound to the room's life
        as :meth:`request` is: if the room is closed or ends first, raises
        that at once.

        Raises:
            RoomClosedError, RoomDisconnectedError, NativePanicError: as
                :meth:`check_open`, also when the room is not open to begin
                with.

        Cancellation: returns at once; nothing stays registered.
        """
        self.check_open()
        scope = anyio.CancelScope()
        self._calls.add(scope)
        try:
            with scope:
                await event.wait()
                return
        finally:
            self._calls.discard(scope)
        # only reached when end_calls() cancelled the scope
        self.check_open()
        raise RoomClosedError("the room closed while the call was waiting")

    def check_open(self) -> None:
        """Raises:
        RoomClosedError: you closed the room.
        NativePanicError: the native core panicked.
        RoomDisconnectedError: the room was disconnected by something else.
        """
        if self.closed:
            raise RoomClosedError("the room is closed")
        if self.failure is not None:
            raise NativePanicError(str(self.failure)) from self.failure
        if self.ended.is_set():
            raise RoomDisconnectedError(
                f"the room was disconnected (reason {self.disconnect_reason})",
                self.disconnect_reason,
            )

    # -- the service task -------------------------------------------------------------
    async def run_services(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        """The room's service task, inside the ``open_room`` nursery, so that
        closing the room cancels its work without touching the caller's block.

        Work that native events ask for (an RPC invocation) arrives through a
        bounded memory channel filled by the dispatcher, and is started from
        here: a task, so on every backend (the dispatcher runs in a loop
        callback, outside any task, where anyio cannot start tasks).
        """
        limit = self._rpc_limit
        # Admission is counted here (``_admitted``), not left to the channel's
        # buffer: a burst that arrives before this task runs would otherwise
        # get limit + 1 slots instead of limit running + limit waiting.
        send, recv = anyio.create_memory_object_stream[Invocation](2 * limit)
        jobs_send, jobs_recv = anyio.create_memory_object_stream[Job](JOB_QUEUE)
        running = anyio.Semaphore(limit)
        async with anyio.create_task_group() as tg, recv:
            self._tg = tg
            self._invocations = send
            self._queued = recv
            self._jobs = jobs_send
            tg.start_soon(self._watch_reconnect, self._reconnect_timeout)
            tg.start_soon(self._start_jobs, tg, jobs_recv)
            task_status.started()
            async for invocation_id, data in recv:
                await running.acquire()
                self._active_rpcs += 1
                tg.start_soon(self._serve_rpc, running, invocation_id, data)

    @staticmethod
    async def _start_jobs(tg: anyio.abc.TaskGroup, jobs: MemoryObjectReceiveStream[Job]) -> None:
        with jobs:
            async for fn, args in jobs:
                tg.start_soon(fn, *args)

    def spawn(self, fn: Callable[..., Coroutine[Any, Any, None]], *args: Any) -> bool:
        """From the dispatcher (or any code on the loop): runs ``fn(*args)``
        as a task in the room's task group, soon. False, and nothing runs,
        when the room is closing or ``JOB_QUEUE`` jobs already wait."""
        send = self._jobs
        if send is None or self.closed:
            return False
        try:
            send.send_nowait((fn, args))
        except (anyio.WouldBlock, anyio.ClosedResourceError, anyio.BrokenResourceError):
            return False
        return True

    def set_reconnecting(self, reconnecting: bool) -> None:
        """From the dispatcher: the native core reported ``Reconnecting``
        (True) or ``Reconnected`` (False). After ``Reconnected`` the room has
        ``SETTLE_LIMIT`` seconds to settle (see :meth:`settle`); calls wait
        until then."""
        now = time.monotonic()
        if reconnecting:
            if self.reconnecting_since is None:
                self.episodes += 1
            self.reconnecting_since = self.reconnecting_since or now
            self.settle_deadline = None
            self.ledger.reconnecting(now)
        else:
            self.reconnecting_since = None
            self.settle_deadline = now + SETTLE_LIMIT
        self._wake_watcher()

    def settle(self, missing: Iterable[str] = ()) -> AtRisk | None:
        """The room is back and every participant that was there before has
        rejoined (or ``SETTLE_LIMIT`` passed): the calls held meanwhile are
        sent; returns the reliable packets the episode may have lost, if
        any."""
        self.settle_deadline = None
        self._wake_watcher()
        at_risk = self.ledger.settled(time.monotonic(), missing)
        self.send_deferred()
        return at_risk

    async def failed_by_reconnect(self, episode: int) -> bool:
        """A call sent when ``episodes`` was ``episode`` failed: True if the
        room has started reconnecting since, waiting up to
        ``RECONNECT_GRACE`` seconds for the ``Reconnecting`` event (the native
        core can fail a call, its link already gone, before it reports the
        reconnection). False, without waiting, once the room has ended."""
        with anyio.move_on_after(RECONNECT_GRACE):
            while self.episodes == episode and not self.ended.is_set():
                await self._reconnect_changed.wait()
        return self.episodes != episode and not self.ended.is_set()

    def _wake_watcher(self) -> None:
        changed, self._reconnect_changed = self._reconnect_changed, self.rt.dispatcher.new_event()
        changed.set()

    async def _watch_reconnect(self, limit: float | None) -> None:
        """Gives up on a reconnect that lasts ``limit`` seconds (None: never),
        and settles a reconnected room at its deadline."""
        while True:
            changed = self._reconnect_changed
            since, settle_at = self.reconnecting_since, self.settle_deadline
            give_up_at = None if since is None or limit is None else since + limit
            due = min((t for t in (give_up_at, settle_at) if t is not None), default=None)
            if due is None:
                await changed.wait()
                continue
            with anyio.move_on_after(due - time.monotonic()):
                await changed.wait()
                continue
            if due == settle_at:
                if self.on_settled is not None:
                    self.on_settled()
                continue
            if self.give_up is not None and not self.ended.is_set():
                await self.give_up()
            return

    async def _serve_rpc(
        self, running: anyio.Semaphore, invocation_id: int, data: RpcInvocationData
    ) -> None:
        try:
            if self.serve_rpc is not None:
                await self.serve_rpc(invocation_id, data)
        finally:
            running.release()
            self._active_rpcs -= 1
            self._admitted -= 1
            if not self._active_rpcs and self._rpcs_idle is not None:
                self._rpcs_idle.set()

    def queue_rpc(self, invocation_id: int, data: RpcInvocationData) -> RpcError | None:
        """From the dispatcher: hands an invocation to the service task.
        Returns the error to answer at once when it cannot be queued."""
        send = self._invocations
        if send is None or self.closed:
            return RpcError.built_in(RpcError.ErrorCode.RECIPIENT_DISCONNECTED)
        if self._admitted >= 2 * self._rpc_limit:
            return RpcError(
                RpcError.ErrorCode.APPLICATION_ERROR,
                "recipient overloaded: too many RPC invocations in progress",
            )
        try:
            send.send_nowait((invocation_id, data))
        except (anyio.WouldBlock, anyio.ClosedResourceError, anyio.BrokenResourceError):
            return RpcError.built_in(RpcError.ErrorCode.RECIPIENT_DISCONNECTED)
        self._admitted += 1
        return None

    async def stop_services(self, limit: float) -> None:
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
        jobs, self._jobs = self._jobs, None
        if jobs is not None:
            jobs.close()
        tg.cancel_scope.cancel()
        queued, self._queued = self._queued, None
        if queued is not None:
            while True:
                try:
                    invocation_id, _ = queued.receive_nowait()
                except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
                    break
                self._admitted -= 1
                self.refuse_rpc(invocation_id)
        if self._active_rpcs:
            self._rpcs_idle = anyio.Event()
            with anyio.move_on_after(limit):
                await self._rpcs_idle.wait()
                # Their answers leave asynchronously (the native core has no
                # completion for an RPC response): a short grace before the
                # disconnect closes the data channel, within the same limit.
                await anyio.sleep(min(0.25, limit))
