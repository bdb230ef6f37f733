"""The lifecycle of one room connection: what participants hold, not the room.

A :class:`RoomSession` owns the runtime, the room's native handle, the room's
task group and its service task, the RPC invocation queue and accounting, and
the facts of the connection's life (closed by you, ended by the server, failed
with a panic). It knows nothing of participants, tracks or events: the room
(``_room.py``) wires it to the state mirror (``_state.py``) through a few
plain callables.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, final

import anyio
import anyio.abc
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ._dispatch import Reaper
from ._errors import NativePanicError, RoomClosedError, RoomDisconnectedError
from ._rpc import RpcError, RpcInvocationData
from ._runtime import OwnedHandle, Runtime

__all__ = ["RoomSession"]

log = logging.getLogger("lkrtc_trio.room")

Invocation = tuple[int, RpcInvocationData]


def _ignore(_: Any) -> None:
    pass


@final
class RoomSession:
    """See the module docstring. Created by the room; every method runs on the
    event loop."""

    def __init__(self, rt: Runtime, handle: OwnedHandle, rpc_max_concurrency: int) -> None:
        self.rt = rt
        self.handle = handle
        self._rpc_limit = rpc_max_concurrency
        #: you closed the room (disconnect() or the block ended)
        self.closed = False
        #: the native core panicked
        self.failure: BaseException | None = None
        #: the server's or the network's reason, once the room was disconnected
        self.disconnect_reason = 0
        self.ended = anyio.Event()  # eos, remote disconnect, panic, or close
        self.eos = anyio.Event()
        self._tg: anyio.abc.TaskGroup | None = None
        self._invocations: MemoryObjectSendStream[Invocation] | None = None
        self._queued: MemoryObjectReceiveStream[Invocation] | None = None
        self._active_rpcs = 0
        self._admitted = 0  # invocations queued or running
        self._rpcs_idle: anyio.Event | None = None
        #: cancel scopes of calls waiting in request(), ended with the room
        self._calls: set[anyio.CancelScope] = set()
        # wired by the local participant and the room
        self.serve_rpc: Callable[[int, RpcInvocationData], Awaitable[None]] | None = None
        self.refuse_rpc: Callable[[int], None] = _ignore
        self.on_local_published: Callable[[Any], None] = _ignore
        self.on_local_unpublished: Callable[[Any], None] = _ignore

    async def request(
        self, req: Any, field: str, *, reaper: Reaper | None = None, pin: Any = None
    ) -> Any:
        """``Runtime.request_async``, bound to the room's life: if the room is
        closed (by you) or ends (server, network, panic) while the call waits,
        the call raises that at once (``RoomClosedError``,
        ``RoomDisconnectedError``, ``NativePanicError``) instead of waiting for
        a native answer that may take seconds or never come. Its late
        completion then goes to ``reaper`` (or is dropped).

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
        scope = anyio.CancelScope()
        self._calls.add(scope)
        try:
            with scope:
                return await self.rt.request_async(req, field, reaper=reaper, pin=pin)
        finally:
            self._calls.discard(scope)
        # only reached when end_calls() cancelled the scope
        self.check_open()
        raise RoomClosedError("the room closed while the call was waiting")

    def end_calls(self) -> None:
        """The room is closing or has ended: calls waiting in :meth:`request`
        stop waiting (each raises the room's error)."""
        for scope in list(self._calls):
            scope.cancel()

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
        running = anyio.Semaphore(limit)
        async with anyio.create_task_group() as tg, recv:
            self._tg = tg
            self._invocations = send
            self._queued = recv
            task_status.started()
            async for invocation_id, data in recv:
                await running.acquire()
                self._active_rpcs += 1
                tg.start_soon(self._serve_rpc, running, invocation_id, data)

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
