"""The one place where native threads meet the event loop.

The native callback (``_native.lk_on_event``) copies the event's bytes and calls
:meth:`Bridge.push`. ``push`` appends them to a list under a lock and, if no
drain is scheduled yet, schedules one on the attached loop with the loop's
thread-safe, non-blocking entry (``TrioToken.run_sync_soon`` on trio,
``loop.call_soon_threadsafe`` on asyncio). A burst of events therefore costs
one wake-up, not one per event. :meth:`Bridge._drain` runs on the loop and
hands each event, in arrival order, to the dispatcher; it never raises.

One event loop at a time is attached: the native core is per process. A loop
attaches on its first asynchronous call; another loop may take over once the
dispatcher holds nothing bound to the previous one.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Hashable
from functools import partial
from typing import Any

import anyio
import sniffio

from ._errors import LoopConflictError

__all__ = ["Bridge", "LoopConflictError", "current_loop"]

log = logging.getLogger("lkrtc_trio.bridge")

Schedule = Callable[[Callable[[], None]], Any]

#: Events kept while no loop is attached (native logs, late completions).
MAX_DETACHED_BACKLOG = 10_000
#: Debug/trace-only log batches queued without waking the loop before one
#: wake-up is forced anyway (they ride along with the next drain).
MAX_QUIET_BACKLOG = 256
#: Events waiting for an attached loop that has fallen this far behind: from
#: here on, incoming media frames and debug/trace log batches are dropped (and
#: counted, and reported as a warning by the next drain). Completions, room
#: events, stream ends and everything else are always kept: losing one would
#: hang a caller or corrupt room state.
MAX_ATTACHED_BACKLOG = 20_000

_LOGS_PREFIX = b"\x92\x01"  # FfiEvent field 18 (logs), length-delimited
_LOG_DEBUG = 3  # LogLevel.LOG_DEBUG; LOG_TRACE = 4


def _varint(data: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[i]
        i += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return i, value
        shift += 7


def is_quiet_log(data: bytes) -> bool:
    """True for a native log batch whose records are all DEBUG or TRACE.

    libwebrtc logs one DEBUG record per SCTP packet: about 80 % of all native
    events during data and RPC traffic (some 45 batches of 2 KB per 15 KiB
    data message). Unless ``lkrtc_trio.native`` is enabled for DEBUG, the C
    shim drops them on the native thread before they reach Python (its
    ``lk_is_quiet_log`` is this test in C; a property test keeps the two in
    step). When they are wanted, waking the loop for each would cost more
    than the request it accompanies, so such batches are queued without a
    wake-up (nothing is dropped: they are dispatched with the next drain). A
    scan of a few header bytes, no protobuf parsing, on the native thread.
    """
    if not data.startswith(_LOGS_PREFIX):
        return False
    try:
        i, size = _varint(data, 2)
        end = i + size
        while i < end:
            if data[i] != 0x0A:  # LogBatch.records
                return False
            i, size = _varint(data, i + 1)
            if data[i] != 0x08 or data[i + 1] < _LOG_DEBUG:  # LogRecord.level first
                return False
            i += size
        return i == end == len(data)
    except IndexError:
        return False


def _frame_tags() -> tuple[frozenset[int], int]:
    from ._proto import ffi_pb2, video_frame_pb2

    fields = ffi_pb2.FfiEvent.DESCRIPTOR.fields_by_name
    outer = frozenset(
        (fields[name].number << 3) | 2 for name in ("video_stream_event", "audio_stream_event")
    )
    inner = video_frame_pb2.VideoStreamEvent.DESCRIPTOR.fields_by_name["frame_received"].number
    return outer, (inner << 3) | 2


_STREAM_TAGS, _FRAME_RECEIVED_TAG = _frame_tags()


def is_media_frame(data: bytes) -> bool:
    """True for an audio or video stream's ``frame_received`` event (not its
    ``eos``): the only events that may be dropped when the loop falls behind.
    A scan of a few header bytes, no protobuf parsing."""
    if not data or data[0] not in _STREAM_TAGS:
        return False
    try:
        i, _ = _varint(data, 1)  # the stream event's length
        if data[i] != 0x08:  # stream_handle, field 1, varint
            return False
        i, _ = _varint(data, i + 1)
        return data[i] == _FRAME_RECEIVED_TAG
    except IndexError:
        return False


def current_loop() -> tuple[Hashable, Schedule, Callable[[], Any]]:
    """The running loop's identity, its thread-safe scheduling function, and
    the cheapest event class that works on it (a waiter's wake-up).

    Raises:
        RuntimeError: not called from trio or asyncio.
    """
    lib = sniffio.current_async_library()
    if lib == "trio":
        import trio

        token = trio.lowlevel.current_trio_token()
        return token, token.run_sync_soon, trio.Event
    if lib == "asyncio":
        import asyncio

        loop = asyncio.get_running_loop()
        return loop, loop.call_soon_threadsafe, asyncio.Event
    raise RuntimeError(f"lkrtc_trio runs on trio or asyncio, not on {lib}")


class Bridge:
    """Carries event bytes from native threads to the attached loop."""

    def __init__(
        self,
        deliver: Callable[[bytes], None],
        busy: Callable[[], bool],
        deliver_quiet: Callable[[bytes], None] | None = None,
        before_drain: Callable[[], None] | None = None,
    ) -> None:
        """Args:
        deliver: called on the loop with each event, in order; must not raise.
        busy: True while loop-bound state exists (waiters, sinks), which pins
            the attached loop.
        deliver_quiet: called for debug/trace-only log batches, after the
            other events of the same drain (default: ``deliver``).
        before_drain: called on the loop at the start of each drain (the
            runtime tells the native side there whether debug logs are
            wanted); must not raise.
        """
        self._before_drain = before_drain
        self._deliver = deliver
        self._deliver_quiet = deliver_quiet or deliver
        self._busy = busy
        self._lock = threading.Lock()
        self._pending: list[bytes] = []
        self._quiet: list[bytes] = []  # classified once, on the native thread
        self._scheduled = False
        self._schedule: Schedule | None = None
        self._loop: Hashable | None = None
        #: bumped by each attach: a drain scheduled for an earlier loop (one
        #: that closed before running it) is recognised and ignored
        self._generation = 0
        self._dropped = 0
        #: media frames / debug log batches dropped because the attached loop
        #: fell MAX_ATTACHED_BACKLOG events behind (since the last drain)
        self._overflow_frames = 0
        self._overflow_logs = 0
        #: the same, over the life of the bridge
        self.dropped_frames = 0
        self.dropped_logs = 0
        #: Event class of the attached loop (``trio.Event``: 0.25 us to create,
        #: against 1.2 us for ``anyio.Event``); used for request waiters.
        self.new_event: Callable[[], Any] = anyio.Event

    # -- any thread ------------------------------------------------------------
    def push(self, data: bytes) -> None:
        """Queues one event; wakes the loop if needed. Never blocks, never raises."""
        quiet = is_quiet_log(data)
        with self._lock:
            if quiet:
                if len(self._quiet) >= MAX_ATTACHED_BACKLOG and self._schedule is not None:
                    self._overflow_logs += 1  # the loop is stuck: reported by the drain
                    return
                self._quiet.append(data)
                if self._scheduled or len(self._quiet) < MAX_QUIET_BACKLOG:
                    return
            else:
                if (
                    len(self._pending) >= MAX_ATTACHED_BACKLOG
                    and self._schedule is not None
                    and is_media_frame(data)
                ):
                    self._overflow_frames += 1  # reported by the drain
                    return
                self._pending.append(data)
                if self._scheduled:
                    return
            schedule = self._schedule
            if schedule is None:
                if len(self._pending) + len(self._quiet) > MAX_DETACHED_BACKLOG:
                    del (self._quiet or self._pending)[0]
                    self._dropped += 1
                return
            self._scheduled = True
            generation = self._generation
        try:
            schedule(partial(self._scheduled_drain, generation))
        except BaseException:  # the loop has finished or closed
            with self._lock:
                self._scheduled = False
                if self._schedule is schedule:
                    self._schedule = None
                    self._loop = None

    # -- loop thread -------------------------------------------------------------
    def attach(self) -> None:
        """Binds the running loop (a no-op when it is already bound).

        Raises:
            LoopConflictError: another loop still has pending calls or open rooms.
        """
        key, schedule, new_event = current_loop()
        if key is self._loop:
            return
        with self._lock:
            if self._loop is not None and self._busy():
                raise LoopConflictError(
                    "lkrtc_trio is in use by another event loop; the native core "
                    "serves one event loop per process at a time"
                )
            self._loop = key
            self._schedule = schedule
            self.new_event = new_event
            # A drain scheduled on the previous loop may never run (that loop
            # closed first): forget it, or no drain would be scheduled again.
            self._generation += 1
            generation = self._generation
            kick = bool(self._pending or self._quiet)
            self._scheduled = kick
            dropped, self._dropped = self._dropped, 0
        if dropped:
            log.warning("%d native events arrived while no event loop was attached", dropped)
        if kick:
            schedule(partial(self._scheduled_drain, generation))

    @property
    def attached(self) -> bool:
        return self._schedule is not None

    def drain_now(self) -> None:
        """Delivers queued events immediately (tests, and the loop's drain)."""
        self._drain()

    def _scheduled_drain(self, generation: int) -> None:
        if generation == self._generation:  # else: scheduled for an old loop
            self._drain()

    def _drain(self) -> None:
        if self._before_drain is not None:
            self._before_drain()
        with self._lock:
            batch, self._pending = self._pending, []
            quiet, self._quiet = self._quiet, []
            self._scheduled = False
            frames, logs = self._overflow_frames, self._overflow_logs
            self._overflow_frames = self._overflow_logs = 0
        if frames or logs:
            self.dropped_frames += frames
            self.dropped_logs += logs
            log.warning(
                "the event loop fell %d native events behind: dropped %d media frames "
                "and %d debug log batches (completions and room events are never dropped)",
                MAX_ATTACHED_BACKLOG,
                frames,
                logs,
            )
        # The events someone waits for first; debug logs ride along after.
        for deliver, events in ((self._deliver, batch), (self._deliver_quiet, quiet)):
            for data in events:
                try:
                    deliver(data)
                except Exception:  # never raise into run_sync_soon: it would end the run
                    log.exception("lkrtc_trio internal error while dispatching a native event")
