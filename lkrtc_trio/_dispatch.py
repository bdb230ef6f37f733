"""Routes each native event to exactly one consumer. Runs on the loop thread.

* A completion (any ``FfiEvent`` field whose message starts with ``async_id``)
  goes to the waiter registered under that id before the request was sent, in
  O(1); a completion for an id whose caller gave up goes to the reaper the
  caller left behind (it releases what the completion owns); any other is a
  stray: dropped with a debug log, its owned handles released.
* A request that lent the native core a Python buffer (a *pin*, see
  ``NativeBackend.pin``) keeps that pin here, in a table reachable from the
  runtime, until its completion arrives - whether or not its caller is still
  waiting - and then releases it explicitly. After a panic the pins are kept
  for the life of the process: native threads may still read them.
* A keyed event (a message that starts with a ``*_handle`` field: room events,
  RPC invocations, media and data-stream events) goes to the one sink
  registered for that handle.
* ``logs`` go to :mod:`logging`; ``panic`` fails every waiter and sink.

Nothing is broadcast, nothing is delivered to a consumer it does not belong to.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

import anyio

from ._errors import NativePanicError, redact
from ._proto import ffi_pb2, handle_pb2

__all__ = ["Dispatcher", "EventSink", "Waiter", "owned_handle_ids"]

log = logging.getLogger("lkrtc_trio.dispatch")
native_log = logging.getLogger("lkrtc_trio.native")

FfiEvent = ffi_pb2.FfiEvent

_COMPLETION = 1
_KEYED = 2


def _route_table() -> dict[str, tuple[int, str]]:
    table: dict[str, tuple[int, str]] = {}
    for field in FfiEvent.DESCRIPTOR.fields:
        msg = field.message_type
        if msg is None or not msg.fields:
            continue
        first = msg.fields[0].name
        if first == "async_id":
            table[field.name] = (_COMPLETION, first)
        elif first.endswith("_handle"):
            table[field.name] = (_KEYED, first)
    return table


#: FfiEvent field name -> (kind, name of the routing field in its message)
ROUTES = _route_table()


def _handle_fields() -> Callable[[Any], list[int]]:
    """Builds a walker that lists the FfiOwnedHandle ids inside a message,
    visiting only the fields that can (transitively) contain one."""
    owned = handle_pb2.FfiOwnedHandle.DESCRIPTOR
    plan: dict[str, list[tuple[str, bool, bool]]] = {}

    def contains(desc: Any, seen: set[str]) -> bool:
        if desc is owned:
            return True
        if desc.full_name in plan:
            return bool(plan[desc.full_name])
        if desc.full_name in seen:
            return False
        seen.add(desc.full_name)
        fields: list[tuple[str, bool, bool]] = []
        for f in desc.fields:
            sub = f.message_type
            if sub is not None and contains(sub, seen):
                repeated = bool(f.is_repeated)
                fields.append((f.name, repeated, sub is owned))
        plan[desc.full_name] = fields
        return bool(fields)

    contains(FfiEvent.DESCRIPTOR, set())

    def walk(msg: Any, out: list[int]) -> None:
        for name, repeated, is_handle in plan.get(msg.DESCRIPTOR.full_name, ()):
            if repeated:
                items = getattr(msg, name)
            elif msg.HasField(name):
                items = (getattr(msg, name),)
            else:
                continue
            for item in items:
                if is_handle:
                    if item.id:
                        out.append(item.id)
                else:
                    walk(item, out)

    def owned_ids(msg: Any) -> list[int]:
        out: list[int] = []
        walk(msg, out)
        return out

    return owned_ids


owned_handle_ids = _handle_fields()


class EventSink(Protocol):
    """The consumer of every event keyed by one handle (a room, a stream)."""

    def on_native_event(self, event: Any) -> None:
        """Called on the loop, in order; must not block or raise."""
        ...

    def on_native_failure(self, exc: BaseException) -> None:
        """The native core failed (panic): no more events will come."""
        ...


class Waiter:
    """One pending asynchronous request: set once by its own completion."""

    __slots__ = ("_event", "error", "value")

    def __init__(self, event: Any) -> None:
        self._event = event
        self.value: Any = None
        self.error: BaseException | None = None

    @property
    def done(self) -> bool:
        return bool(self._event.is_set())

    def set(self, value: Any) -> None:
        self.value = value
        self._event.set()

    def fail(self, exc: BaseException) -> None:
        self.error = exc
        self._event.set()

    async def wait(self) -> Any:
        await self._event.wait()
        if self.error is not None:
            raise self.error
        return self.value


#: Runs on the late completion of a request whose caller gave up; after a
#: native panic, runs once with the NativePanicError instead.
Reaper = Callable[[Any], None]

_LOG_LEVELS = {
    ffi_pb2.LogLevel.LOG_ERROR: logging.ERROR,
    ffi_pb2.LogLevel.LOG_WARN: logging.WARNING,
    ffi_pb2.LogLevel.LOG_INFO: logging.INFO,
    ffi_pb2.LogLevel.LOG_DEBUG: logging.DEBUG,
    ffi_pb2.LogLevel.LOG_TRACE: 5,
}


_DOUBLE_DROP = "Attempted to drop unknown FFI handle"


def native_debug_enabled() -> bool:
    """Native DEBUG/TRACE records are forwarded and parsed only when
    ``lkrtc_trio.native`` is enabled for DEBUG (set the level there, not on a
    child logger)."""
    return native_log.isEnabledFor(logging.DEBUG)


_NATIVE_DEBUG = native_debug_enabled


class Dispatcher:
    """The routing tables and the event entry point (see the module doc)."""

    def __init__(
        self, release: Callable[[int], None], unpin: Callable[[Any], None] = lambda _: None
    ) -> None:
        """Args:
        release: drops a native handle that no consumer took.
        unpin: releases a pin (a buffer lent to the native core) at once.
        """
        self._release = release
        self._unpin = unpin
        self._waiters: dict[int, Waiter] = {}
        self._reapers: dict[int, Reaper | None] = {}
        self._pins: dict[int, Any] = {}
        #: pins of requests that never completed because the native core
        #: panicked: never released (a native thread may still read them)
        self._pins_after_panic: list[Any] = []
        self.retired_count = 0
        self._sinks: dict[int, EventSink] = {}
        self.panic: NativePanicError | None = None
        self.stray_count = 0
        #: Event class for waiters; the runtime sets the attached loop's own.
        self.new_event: Callable[[], Any] = anyio.Event

    # -- registration (loop thread) ------------------------------------------------
    def add_waiter(self, async_id: int, pin: Any = None) -> Waiter:
        """Registers the waiter for ``async_id``; call before sending the request.

        ``pin``, if given, is held until the completion of ``async_id`` arrives
        (even if the caller gives up first), then released.

        Raises:
            NativePanicError: the native core has panicked.
        """
        if self.panic is not None:
            raise self._panic_error()
        if async_id in self._waiters or async_id in self._reapers:
            raise RuntimeError(f"request_async_id {async_id} is already pending")
        waiter = Waiter(self.new_event())
        self._waiters[async_id] = waiter
        if pin is not None:
            self._pins[async_id] = pin
        return waiter

    def abandon(self, async_id: int, waiter: Waiter, reaper: Reaper | None) -> None:
        """The caller of ``async_id`` gave up (it was cancelled or failed).

        If the completion already arrived, ``reaper`` runs on it now; otherwise it
        runs when it arrives. Without a reaper a late completion is a stray.
        """
        if waiter.done:
            if reaper is not None and waiter.error is None:
                try:
                    reaper(waiter.value)
                except Exception:  # never replace the caller's own exception
                    log.exception("releasing the abandoned completion %d failed", async_id)
            return
        self._waiters.pop(async_id, None)
        if reaper is not None or async_id in self._pins:
            self._reapers[async_id] = reaper

    def is_pending(self, async_id: int) -> bool:
        return async_id in self._waiters or async_id in self._reapers

    def retire(self, async_ids: Iterable[int]) -> int:
        """Stops counting abandoned requests that the native core may never
        complete (their room is gone) as pending. A late completion is then a
        stray (its handles are released); a lent buffer stays lent until that
        completion, or for good: the native core may still hold the pointer.
        Returns how many were retired."""
        n = 0
        for async_id in async_ids:
            if async_id in self._reapers:
                del self._reapers[async_id]
                n += 1
        self.retired_count += n
        return n

    def discard_waiter(self, async_id: int) -> None:
        """Forgets ``async_id`` (the request was never sent): its pin, if any,
        is released now."""
        self._waiters.pop(async_id, None)
        pin = self._pins.pop(async_id, None)
        if pin is not None:
            self._unpin(pin)

    def add_sink(self, handle: int, sink: EventSink) -> None:
        """Routes every event keyed by ``handle`` to ``sink``.

        Raises:
            NativePanicError: the native core has panicked.
        """
        if self.panic is not None:
            raise self._panic_error()
        self._sinks[handle] = sink

    def remove_sink(self, handle: int, sink: EventSink | None = None) -> None:
        if sink is None or self._sinks.get(handle) is sink:
            self._sinks.pop(handle, None)

    def busy(self) -> bool:
        """True while anything here is bound to the attached event loop."""
        return bool(self._waiters or self._sinks)

    def pending(self) -> int:
        """Requests still waiting for their completion (callers and reapers)."""
        return len(self._waiters) + len(self._reapers)

    def sinks(self) -> int:
        return len(self._sinks)

    def pinned(self) -> int:
        """Buffers lent to the native core and not yet released."""
        return len(self._pins) + len(self._pins_after_panic)

    # -- delivery (loop thread) ----------------------------------------------------
    def on_event(self, data: bytes) -> None:
        """Parses and routes one serialized ``FfiEvent``."""
        event = FfiEvent()
        event.MergeFromString(data)
        which = event.WhichOneof("message")
        route = ROUTES.get(which) if which is not None else None
        if route is not None:
            kind, key_field = route
            msg = getattr(event, which)  # type: ignore[arg-type]
            key = getattr(msg, key_field)
            if kind == _COMPLETION:
                self._complete(key, which, msg)  # type: ignore[arg-type]
            else:
                sink = self._sinks.get(key)
                if sink is not None:
                    sink.on_native_event(event)
                else:
                    self._stray(which, key, event)  # type: ignore[arg-type]
        elif which == "logs":
            self._logs(event.logs)
        elif which == "panic":
            message = redact(event.panic.message)
            self.fail_all(NativePanicError(f"the native core panicked: {message}"))
        else:
            self._stray(which or "<empty>", 0, event)

    def on_quiet_log(self, data: bytes) -> None:
        """A debug/trace-only log batch: parsed only if someone logs it."""
        if _NATIVE_DEBUG():
            self.on_event(data)

    def _complete(self, async_id: int, which: str, msg: Any) -> None:
        if self._pins:
            pin = self._pins.pop(async_id, None)
            if pin is not None:
                self._unpin(pin)  # the native core is done with the buffer
        waiter = self._waiters.pop(async_id, None)
        if waiter is not None:
            waiter.set(msg)
            return
        if async_id in self._reapers:
            reaper = self._reapers.pop(async_id)
            if reaper is not None:
                try:
                    reaper(msg)
                except Exception:
                    log.exception("releasing the late %s completion %d failed", which, async_id)
            return
        self._stray(which, async_id, msg)

    def _stray(self, which: str, key: int, msg: Any) -> None:
        self.stray_count += 1
        handles = owned_handle_ids(msg)
        log.debug(
            "dropped %s event for unknown id %d (releasing %d handles)", which, key, len(handles)
        )
        for h in handles:
            self._release(h)

    def _logs(self, batch: Any) -> None:
        for record in batch.records:
            level = _LOG_LEVELS.get(record.level, logging.DEBUG)
            target = record.target
            if level == logging.WARNING and record.message.startswith(_DOUBLE_DROP):
                # The native core drops a room's remote track handles again when
                # the room closes; lkrtc_trio released them on unsubscribe already.
                level = logging.DEBUG
            logger = logging.getLogger("lkrtc_trio.native." + target.replace("::", "."))
            if logger.isEnabledFor(level):
                logger.log(
                    level,
                    "%s",
                    redact(record.message),
                    extra={
                        "native_target": target,
                        "native_module": record.module_path,
                        "native_file": record.file,
                        "native_line": record.line,
                    },
                )

    def fail_all(self, exc: NativePanicError) -> None:
        """Fails every waiter and every sink with ``exc``; later registrations
        raise it."""
        log.critical("%s", exc)
        self.panic = exc
        waiters, self._waiters = self._waiters, {}
        for waiter in waiters.values():
            if not waiter.done:
                waiter.fail(self._panic_error())
        # Abandoned requests will never complete: their reapers learn it now
        # (so that whatever waits on them is released).
        reapers, self._reapers = self._reapers, {}
        for async_id, reaper in reapers.items():
            if reaper is not None:
                try:
                    reaper(self._panic_error())
                except Exception:
                    log.exception("reaper of %d failed after a native panic", async_id)
        self._pins_after_panic.extend(self._pins.values())
        self._pins.clear()
        sinks, self._sinks = self._sinks, {}
        for sink in list(dict.fromkeys(sinks.values())):
            try:
                sink.on_native_failure(exc)
            except Exception:
                log.exception("failing a sink after a native panic")

    def _panic_error(self) -> NativePanicError:
        """A new error for each caller (a shared instance would collect every
        caller's traceback), chained to the panic."""
        assert self.panic is not None
        err = NativePanicError(str(self.panic))
        err.__cause__ = self.panic
        return err

    def iter_waiting_ids(self) -> Iterator[int]:
        yield from self._waiters
