"""AVSynchronizer: audio and video pushed together, played out in step.

The official SDK's ``livekit.rtc.AVSynchronizer``, structured: the task that
paces the video runs in the synchronizer's own task group, which lives exactly
as long as ``async with AVSynchronizer(...)``.

How the video is paced
----------------------
Audio goes straight to the :class:`AudioSource`, whose queue plays it out in
real time. Each video frame waits in a bounded queue for its *due time*: the
moment the audio pushed with it starts to play out of the audio source.

* The due time of a video frame is taken when it is pushed: the end of the
  audio queued so far (``now + audio_source.queued_duration``), i.e. the frame
  belongs with the audio pushed right after it (push each video frame, then
  its audio, as the official example does). With timestamps on both kinds
  (``push(frame, timestamp)``; for audio, the *end* time of the frame) the due
  time is the playout time of the frame's own timestamp, whatever the order.
  A frame pushed while the audio source has nothing queued (no audio yet, or
  an underrun) has no due time and simply follows the frame-rate grid.
* Frames are captured on an absolute grid (``next = previous + 1/fps``, never
  ``sleep(1/fps)`` after the work), so timer and capture latencies do not add
  up to drift. The grid is locked to the audio clock: whenever a frame's due
  time is more than ``min(20 ms, 1/(2*fps))`` (the *lock slack*) off the grid,
  the grid jumps to the due time.
* Late frames (the loop was busy) are captured at once to catch up, but never
  more than ``_max_delay_tolerance_ms`` (default 300 ms) late: beyond that the
  grid restarts from now instead of bursting the backlog out.

Bound: a frame with a due time is handed to the encoder within the lock slack
of its due time (plus the event loop's wakeup latency), unless it reached the
head of the queue already late (see above). The audio source's playout
estimate is itself within one 10 ms native tick of the real playout, so the
video and the audio pushed with it leave the publisher within about
``slack + 10 ms`` of each other (26.7 ms at 30 fps), and this does not grow
with time. What a subscriber sees on top of that is its own receive-side
latency difference (jitter buffers, decoding), which the publisher cannot
control: on a loopback server, 160x120 video at 30 fps, the subscriber gets
each beep about 45 ms after its flash with the synchronizer, and about 36 ms
after it with audio sent straight to the encoder in the same 10 ms tick as
the video (tests/test_avsync.py).

The producer is held back by the bounded video queue (``video_queue_size_ms``
of frames): in steady state the audio source is about that much ahead of real
time, so make it larger if the producer is bursty.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from types import TracebackType
from typing import NamedTuple, final

import anyio
import anyio.abc
import anyio.lowlevel

from ._audio import AudioFrame, AudioSource
from ._errors import ResourceClosedError
from ._video import VideoFrame, VideoSource

__all__ = ["AVSynchronizer"]

logger = logging.getLogger(__name__)

#: Largest distance between a frame's due time and the frame-rate grid before
#: the grid is moved onto the audio clock (also capped at half a frame).
_LOCK_SLACK = 0.020


class _Queued(NamedTuple):
    frame: VideoFrame
    timestamp: float | None
    due: float | None  # loop time when the audio pushed with it plays out


@final
class AVSynchronizer:
    """Pushes audio and video to their sources so that they play out in step.

    Usage::

        async with AVSynchronizer(
            audio_source=audio, video_source=video, video_fps=30
        ) as av:
            async for video_frame, audio_frame in generate():
                await av.push(video_frame)
                await av.push(audio_frame)
            await av.wait_for_playout()

    Args:
        audio_source: receives every :class:`AudioFrame` pushed (its
            ``capture_frame``, which waits while its queue is full).
        video_source: receives every :class:`VideoFrame` pushed, from the
            pacing task, at ``video_fps`` and in step with the audio (see the
            module's documentation for the pacing and the drift bound).
        video_fps: the video frame rate (frames per second, > 0).
        video_queue_size_ms: how much video (``video_fps * ms / 1000`` frames,
            at least 1) may wait for its time; ``push`` of a video frame waits
            while the queue is full. Always bounded (the official SDK's 0 means
            unbounded; here it is refused).

    Raises:
        ValueError: ``video_fps`` is not a positive finite number,
            ``video_queue_size_ms`` is not positive, or the delay tolerance is
            negative.

    The pacing task needs a task group: use the synchronizer as ``async with
    AVSynchronizer(...) as av:`` (entering starts the task in a task group of
    its own; leaving it or ``aclose()`` stops it). Used without ``async
    with``, ``push`` raises RuntimeError. The sources are not closed by the
    synchronizer: they belong to the caller.
    """

    def __init__(
        self,
        *,
        audio_source: AudioSource,
        video_source: VideoSource,
        video_fps: float,
        video_queue_size_ms: float = 100,
        _max_delay_tolerance_ms: float = 300,
    ) -> None:
        if not (video_fps > 0 and math.isfinite(video_fps)):
            raise ValueError("video_fps must be a positive number")
        if not (video_queue_size_ms > 0 and math.isfinite(video_queue_size_ms)):
            raise ValueError("video_queue_size_ms must be a positive number (the queue is bounded)")
        if _max_delay_tolerance_ms < 0:
            raise ValueError("the delay tolerance must be >= 0")
        self._audio_source = audio_source
        self._video_source = video_source
        self._video_fps = float(video_fps)
        self._video_queue_size_ms = video_queue_size_ms
        self._interval = 1.0 / self._video_fps
        self._slack = min(_LOCK_SLACK, self._interval / 2)
        self._tolerance = _max_delay_tolerance_ms / 1000
        self._max_queued = max(1, int(self._video_fps * video_queue_size_ms / 1000))
        self._queue: deque[_Queued] = deque()
        # Woken when the queue changes: `_changed` for the pacing task (a frame
        # came, the queue was cleared, the grid was reset, close), `_room` for
        # pushers (a frame left the queue, close), `_drained` for playout waits.
        self._changed = anyio.Event()
        self._room = anyio.Event()
        self._drained = anyio.Event()
        self._next_slot: float | None = None  # the grid: when the next frame is due
        self._sent: deque[float] = deque(maxlen=max(2, int(self._video_fps)))
        self._last_video_time = 0.0
        self._last_audio_time = 0.0
        # (timestamp, playout end) of the last audio pushed with a timestamp
        self._audio_mark: tuple[float, float] | None = None
        self._tg: anyio.abc.TaskGroup | None = None
        self._pace_scope: anyio.CancelScope | None = None
        self._pace_done = anyio.Event()
        self._entered = False
        self._closed = False
        self._failure: Exception | None = None

    # -- lifetime -------------------------------------------------------------------
    async def __aenter__(self) -> AVSynchronizer:
        """Starts the pacing task in a task group of the synchronizer's own.

        Raises:
            RuntimeError: already entered, or closed (a synchronizer runs once).
        """
        if self._entered or self._closed:
            raise RuntimeError("an AVSynchronizer can be entered only once, and not once closed")
        self._entered = True
        tg = anyio.create_task_group()
        await tg.__aenter__()
        self._tg = tg
        self._pace_scope = anyio.CancelScope()
        tg.start_soon(self._pace, self._pace_scope)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stops the pacing task (frames still queued are dropped) and leaves
        the task group. What the block raised propagates as it is (never
        wrapped in an exception group). If the block ended normally and the
        pacing task had failed without anybody seeing it (no ``push`` since),
        that failure is raised here."""
        tg, self._tg = self._tg, None
        try:
            self._stop()
            with anyio.CancelScope(shield=True):
                await self._pace_done.wait()  # bounded: see aclose()
        finally:
            if tg is not None:
                # the pacing task has finished: this only leaves the task group
                await tg.__aexit__(None, None, None)
        failure = self._failure
        if exc is None and failure is not None:
            self._failure = None
            raise failure

    async def aclose(self) -> None:
        """Stops the pacing task and drops the video frames still queued (they
        are not captured; ``wait_for_playout()`` first to play them). Pushes
        waiting for room raise ResourceClosedError; later pushes too.
        Idempotent; also fine before entering.

        Bounded: the pacing task stops at its next checkpoint (it never blocks
        in a capture), and that wait is shielded, so a cancelled caller still
        leaves no task behind.
        """
        self._stop()
        if self._pace_scope is not None:
            with anyio.CancelScope(shield=True):
                await self._pace_done.wait()
        await anyio.lowlevel.checkpoint()

    def _stop(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._queue.clear()
        self._wake_all()
        if self._pace_scope is not None:
            self._pace_scope.cancel()

    # -- pushing --------------------------------------------------------------------
    async def push(self, frame: VideoFrame | AudioFrame, timestamp: float | None = None) -> None:
        """Pushes a frame.

        An :class:`AudioFrame` goes to the audio source's ``capture_frame``
        (which waits while its queue is full). A :class:`VideoFrame` joins the
        video queue (waiting while it is full) with its due time; the pacing
        task captures it when its audio plays out. The frame is lent, not
        copied: do not write to it until it was captured.

        Args:
            frame: the audio or video frame.
            timestamp: optional media time in seconds, for ``last_video_time``
                and ``last_audio_time`` and, given on both kinds, for the due
                time. For an audio frame, the time of its *end*; for a video
                frame, the time at which it is shown.

        Raises:
            RuntimeError: the synchronizer was not entered (``async with``).
            ResourceClosedError: the synchronizer is closed (also when it
                closes while this call waits for room).
            TypeError: ``frame`` is neither an AudioFrame nor a VideoFrame.
            Exception: whatever stopped the pacing task (e.g. the video
                source was closed: ResourceClosedError); and for audio
                whatever ``AudioSource.capture_frame`` raises (ValueError
                for a format mismatch, ResourceClosedError, NativeError).

        Cancellation: a video frame cancelled while waiting for room is not
        queued; once queued, the call completes without cancelling. An audio
        frame behaves like ``AudioSource.capture_frame`` (returns at once, the
        frame may still be played; ``last_audio_time`` is not updated).
        """
        if isinstance(frame, AudioFrame):
            self._check_usable()
            await self._audio_source.capture_frame(frame)
            if timestamp is not None:
                self._last_audio_time = timestamp
                end = anyio.current_time() + self._audio_source.queued_duration
                self._audio_mark = (timestamp, end)
            return
        if not isinstance(frame, VideoFrame):
            raise TypeError(f"push() takes an AudioFrame or a VideoFrame, not {type(frame)!r}")
        self._check_usable()
        await anyio.lowlevel.checkpoint_if_cancelled()
        while len(self._queue) >= self._max_queued:
            room = self._room
            await room.wait()
            self._check_usable()
        self._queue.append(_Queued(frame, timestamp, self._due_time(timestamp)))
        self._notify(changed=True)
        await anyio.lowlevel.cancel_shielded_checkpoint()

    def _due_time(self, timestamp: float | None) -> float | None:
        """When the audio belonging to a video frame pushed now plays out, or
        None when the audio source has nothing queued (the grid decides)."""
        queued = self._audio_source.queued_duration
        if queued <= 0:
            return None
        end = anyio.current_time() + queued
        mark = self._audio_mark
        if timestamp is None or mark is None:
            return end
        audio_ts, audio_end = mark
        # the playout time of `timestamp` on the audio clock
        return audio_end + (timestamp - audio_ts)

    def _check_usable(self) -> None:
        if self._failure is not None:
            raise self._failure
        if self._closed:
            raise ResourceClosedError("the AVSynchronizer is closed")
        if not self._entered:
            raise RuntimeError(
                "the AVSynchronizer is not running: use `async with AVSynchronizer(...) as av:`"
            )

    # -- queue control ---------------------------------------------------------------
    async def clear_queue(self) -> None:
        """Drops the video frames not yet captured and the audio queued in the
        audio source (``AudioSource.clear_queue``). Pushes waiting for room go
        on. Never raises for a closed synchronizer or source.

        Cancellation: the queues are cleared before the checkpoint, so a
        cancelled call has cleared them too.
        """
        self._queue.clear()
        self._notify(changed=True)
        self._audio_source.clear_queue()
        self._audio_mark = None
        await anyio.lowlevel.checkpoint()

    def reset(self) -> None:
        """Restarts the frame-rate grid (the next frame is captured at once, or
        at its due time) and the ``actual_fps`` window. Queued frames stay."""
        self._next_slot = None
        self._sent.clear()
        self._notify(changed=True)

    async def wait_for_playout(self) -> None:
        """Waits until every video frame pushed so far was captured and the
        audio source has played out its queue.

        Raises:
            Exception: whatever stopped the pacing task.

        Returns early, without raising, when the synchronizer is closed while
        it waits (the frames still queued were dropped). Cancellation: nothing
        changes; the frames stay queued.
        """
        if self._failure is not None:
            raise self._failure
        while self._queue and not self._closed:
            await self._drained.wait()
        if self._failure is not None:
            raise self._failure
        await self._audio_source.wait_for_playout()

    # -- state ----------------------------------------------------------------------
    @property
    def video_fps(self) -> float:
        return self._video_fps

    @property
    def video_queue_size_ms(self) -> float:
        return self._video_queue_size_ms

    @property
    def actual_fps(self) -> float:
        """Frames captured per second over the last second of captures (0.0
        before two captures)."""
        sent = self._sent
        if len(sent) < 2 or sent[-1] <= sent[0]:
            return 0.0
        return (len(sent) - 1) / (sent[-1] - sent[0])

    @property
    def last_video_time(self) -> float:
        """The timestamp of the last video frame captured (0.0 if none had one)."""
        return self._last_video_time

    @property
    def last_audio_time(self) -> float:
        """The timestamp of the audio playing out now (the last audio timestamp
        pushed minus what the audio source still has queued)."""
        return self._last_audio_time - self._audio_source.queued_duration

    # -- the pacing task ---------------------------------------------------------------
    def _notify(self, *, changed: bool = False) -> None:
        if changed:
            self._changed.set()
            self._changed = anyio.Event()
        self._room.set()
        self._room = anyio.Event()
        if not self._queue:
            self._drained.set()
            self._drained = anyio.Event()

    def _wake_all(self) -> None:
        for event in (self._changed, self._room, self._drained):
            event.set()

    def _slot_for(self, item: _Queued, now: float) -> float:
        """When to capture ``item`` (may be in the past: capture at once)."""
        slot = self._next_slot if self._next_slot is not None else now
        due = item.due
        if due is not None and due >= now - self._tolerance and abs(due - slot) > self._slack:
            slot = due  # lock the grid onto the audio clock
        return slot

    async def _pace(self, scope: anyio.CancelScope) -> None:
        try:
            with scope:
                await self._pace_loop()
        except Exception as exc:  # a capture failed: stop, and tell the pushers
            logger.error("AVSynchronizer: video capture failed: %r", exc)
            self._failure = exc
            self._closed = True
            self._queue.clear()
            self._wake_all()
        finally:
            self._pace_done.set()

    async def _pace_loop(self) -> None:
        while True:
            if not self._queue:
                await self._changed.wait()
                continue
            item = self._queue[0]
            now = anyio.current_time()
            slot = self._slot_for(item, now)
            if slot > now:
                changed = self._changed
                with anyio.CancelScope(deadline=slot):
                    await changed.wait()
                if not self._queue or self._queue[0] is not item:
                    continue  # cleared meanwhile
                now = anyio.current_time()
                if slot > now:
                    continue  # the grid was reset, or an early wakeup: plan again
            if now - slot > self._tolerance:
                logger.warning(
                    "AVSynchronizer: video %.0f ms behind schedule, resynchronizing",
                    (now - slot) * 1000,
                )
                slot = now
            self._queue.popleft()
            self._video_source.capture_frame(item.frame)
            if item.timestamp is not None:
                self._last_video_time = item.timestamp
            self._sent.append(anyio.current_time())
            self._next_slot = slot + self._interval
            self._notify()
            await anyio.lowlevel.checkpoint()
