"""The per-process runtime: native backend + bridge + dispatcher + handle ledger.

``get_runtime()`` returns the one that drives the real native core. Tests build
their own :class:`Runtime` over a fake backend to drive the dispatcher with
arbitrary event orders.
"""

from __future__ import annotations

import itertools
import logging
import threading
import warnings
import weakref
from typing import Any, final

from ._bridge import Bridge
from ._dispatch import Dispatcher, EventSink, Reaper, Waiter, native_debug_enabled
from ._errors import NativeError
from ._native import NativeBackend, load_native, set_event_sink
from ._proto import ffi_pb2

__all__ = ["OwnedHandle", "Runtime", "get_runtime", "live_native_handles", "pending_requests"]

log = logging.getLogger("lkrtc_trio.runtime")

FfiRequest = ffi_pb2.FfiRequest
FfiResponse = ffi_pb2.FfiResponse


@final
class OwnedHandle:
    """A native handle owned by exactly one Python object.

    ``close()`` releases it, once; ``detach()`` hands ownership to the native
    side (for requests that take the handle). ``__del__`` never releases, it
    only warns about a handle that was not closed.
    """

    __slots__ = ("__weakref__", "_runtime", "id", "label")

    def __init__(self, runtime: Runtime, handle_id: int, label: str) -> None:
        self._runtime = runtime
        self.id = handle_id
        self.label = label

    @property
    def closed(self) -> bool:
        return self.id == 0

    def close(self) -> None:
        """Releases the handle (idempotent)."""
        hid = self.id
        if hid:
            self.id = 0
            self._runtime._release(hid)

    def detach(self) -> int:
        """Gives the handle up without releasing it; returns its id."""
        hid = self.id
        if hid:
            self.id = 0
            self._runtime._forget(hid)
        return hid

    def __repr__(self) -> str:
        return f"<OwnedHandle {self.label} {self.id or 'closed'}>"

    def __del__(self) -> None:
        if self.id:
            warnings.warn(
                f"native handle {self.label} {self.id} was never closed",
                ResourceWarning,
                stacklevel=1,
            )


class Runtime:
    """See the module docstring."""

    def __init__(self, backend: NativeBackend) -> None:
        self.backend = backend
        self.dispatcher = Dispatcher(release=self._release, unpin=backend.unpin)
        self.bridge = Bridge(
            self.dispatcher.on_event,
            busy=self.dispatcher.busy,
            deliver_quiet=self.dispatcher.on_quiet_log,
            before_drain=self.sync_native_log_level,
        )
        self._quiet_logs_wanted: bool | None = None
        self.sync_native_log_level()
        self._ids = itertools.count(1)
        self._id_lock = threading.Lock()
        self._live: dict[int, str] = {}
        self._owners: weakref.WeakValueDictionary[int, OwnedHandle] = weakref.WeakValueDictionary()

    def sync_native_log_level(self) -> None:
        """Tells the native side whether debug/trace log batches are wanted
        (``lkrtc_trio.native`` enabled for DEBUG): if not, they are dropped on
        the native thread without taking the GIL. Checked at every drain, so a
        level change takes effect with the next native event."""
        wanted = native_debug_enabled()
        if wanted is not self._quiet_logs_wanted:
            self._quiet_logs_wanted = wanted
            self.backend.set_quiet_logs(wanted)

    # -- ids and handles ---------------------------------------------------------
    def next_async_id(self) -> int:
        with self._id_lock:
            return next(self._ids)

    def own(self, handle_id: int, label: str) -> OwnedHandle:
        """Takes ownership of a handle the native core gave us."""
        handle = OwnedHandle(self, handle_id, label)
        if handle_id:
            self._live[handle_id] = label
            self._owners[handle_id] = handle
        return handle

    def _release(self, handle_id: int) -> None:
        self._live.pop(handle_id, None)
        if not self.backend.drop_handle(handle_id):
            log.debug("native handle %d was already gone", handle_id)

    def _forget(self, handle_id: int) -> None:
        self._live.pop(handle_id, None)

    def release_all_handles(self) -> dict[int, str]:
        """Closes every handle still owned; returns what was open. For test
        isolation after a failed test (a leak must not fail the next tests)."""
        leaked = dict(self._live)
        for hid in list(leaked):
            owner = self._owners.get(hid)
            if owner is not None:
                owner.close()
            else:
                self._release(hid)
        return leaked

    def live_handles(self) -> dict[int, str]:
        """Handles owned now, id -> label (a copy)."""
        return dict(self._live)

    # -- requests ----------------------------------------------------------------
    def request(self, req: Any) -> Any:
        """Sends a synchronous request; returns the ``FfiResponse``.

        Raises:
            NativeError: the native core rejected it.
            ForkError: after ``fork()``.
        """
        resp = FfiResponse()
        resp.MergeFromString(self.backend.request(req.SerializeToString()))
        return resp

    def pin(self, data: Any) -> tuple[Any, int]:
        """Lends ``data`` to the native core without a copy: (pin, address).

        Give the pin to :meth:`request_async` (which holds it until the
        completion) or release it with :meth:`unpin` right after a synchronous
        request (``try``/``finally``). See docs/architecture.md, "Buffers lent
        to the native core".
        """
        return self.backend.pin(data)

    def unpin(self, pin: Any) -> None:
        self.backend.unpin(pin)

    async def request_async(
        self, req: Any, field: str, *, reaper: Reaper | None = None, pin: Any = None
    ) -> Any:
        """Sends an asynchronous request and waits for its own completion.

        ``req.<field>.request_async_id`` is set to a fresh id and its waiter is
        registered before the request is sent, so the completion cannot be
        missed and is routed to this call alone.

        Args:
            req: the ``FfiRequest``.
            field: the name of its set ``message`` field (e.g. ``"connect"``).
            reaper: if this call is cancelled after sending, runs on the late
                completion (to release what it owns).
            pin: a pin from :meth:`pin` that the request lends the native core.
                The dispatcher owns it from now on and releases it when the
                completion arrives (or now, if the request is never sent),
                whether or not this call is still waiting.

        Returns:
            The completion message (e.g. a ``ConnectCallback``).

        Raises:
            NativePanicError: the native core panicked before completing it.
            NativeError: the native core rejected the request.

        Cancellation: the waiter is removed at once; the native operation cannot
        be cancelled, so its late completion goes to ``reaper`` (or is dropped
        and its handles released).
        """
        async_id, waiter = self.submit(req, field, pin=pin)
        return await self.wait(async_id, waiter, reaper)

    def submit(
        self, req: Any, field: str, *, pin: Any = None, attach: bool = True
    ) -> tuple[int, Waiter]:
        """The synchronous half of :meth:`request_async`: registers a waiter
        and sends the request. ``attach=False`` (from the dispatcher, outside
        any task) requires the loop to be attached already. The caller must
        :meth:`wait` for the returned waiter (or abandon it).

        Raises:
            NativeError, NativePanicError: as :meth:`request_async`; nothing is
                left pending (and ``pin`` is released) when it raises.
        """
        bridge = self.bridge
        dispatcher = self.dispatcher
        try:
            if attach:
                bridge.attach()
            elif not bridge.attached:
                raise RuntimeError("submit(attach=False) before the loop was attached")
            async_id = self.next_async_id()
            getattr(req, field).request_async_id = async_id
            dispatcher.new_event = bridge.new_event
            waiter = dispatcher.add_waiter(async_id, pin)  # owns the pin from here
        except BaseException:
            if pin is not None:
                self.backend.unpin(pin)
            raise
        try:
            resp = self.request(req)
        except BaseException:
            dispatcher.discard_waiter(async_id)
            raise
        got = getattr(resp, field).async_id
        if got != async_id:
            dispatcher.abandon(async_id, waiter, None)
            raise NativeError(f"the native core answered {field} #{async_id} as #{got}")
        return async_id, waiter

    async def wait(self, async_id: int, waiter: Waiter, reaper: Reaper | None = None) -> Any:
        """The waiting half of :meth:`request_async`, for a :meth:`submit`.
        Cancellation: as :meth:`request_async`."""
        try:
            return await waiter.wait()
        except BaseException:
            self.dispatcher.abandon(async_id, waiter, reaper)
            raise

    def add_sink(self, handle: int, sink: EventSink) -> None:
        """Routes events keyed by ``handle`` to ``sink`` (attaches the loop)."""
        self.bridge.attach()
        self.dispatcher.add_sink(handle, sink)


_runtime: Runtime | None = None
_runtime_lock = threading.Lock()


def get_runtime() -> Runtime:
    """The runtime of the real native core (loaded on first use).

    Raises:
        NativeLoadError: the native library cannot be loaded.
        ForkError: after ``fork()`` in a child of a process that used it.
    """
    rt = _runtime
    if rt is not None:
        return rt
    return _create_runtime()


def _create_runtime() -> Runtime:
    global _runtime
    with _runtime_lock:
        if _runtime is None:
            native = load_native()
            rt = Runtime(native)
            set_event_sink(rt.bridge.push)
            _runtime = rt
        return _runtime


def live_native_handles() -> int:
    """How many native handles lkrtc_trio owns now (0 when nothing is open).

    Tests assert it returns to zero after rooms and streams are closed.
    """
    rt = _runtime
    return 0 if rt is None else len(rt._live)


def pending_requests() -> int:
    """Asynchronous requests whose completion has not arrived yet.

    A cancelled call stops counting at once, unless its late completion owns
    something to release (a cancelled connect's room): such a call counts until
    that completion arrives and is released."""
    rt = _runtime
    return 0 if rt is None else rt.dispatcher.pending()
