"""AudioMixer: mixes any number of async audio sources into one stream of frames.

Structured concurrency inside: ``async with AudioMixer(...)`` opens a task
group holding one reader task per source and the mixing loop; leaving the
block (or ``aclose()``) cancels all of them and waits until they are gone.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator
from types import TracebackType
from typing import TYPE_CHECKING, Any, cast

import anyio
from anyio.abc import TaskGroup

from ._audio import AudioFrame

if TYPE_CHECKING:
    import numpy as np

__all__ = ["AudioMixer"]

#: each source buffers at most this many blocks (its reader waits while full)
_BUFFER_BLOCKS = 2

_OPEN, _ENDING, _CLOSED = "open", "ending", "closed"


class _Source:
    """One source: its iterator, a bounded int16 ring buffer and its reader's scope."""

    __slots__ = (
        "agen",
        "count",
        "ended",
        "iterator",
        "last_frame",
        "ring",
        "scope",
        "space",
        "start",
        "stream",
    )

    def __init__(
        self,
        stream: AsyncIterable[AudioFrame],
        iterator: AsyncIterator[AudioFrame],
        ring_samples: int,
        num_channels: int,
    ) -> None:
        self.stream = stream  # kept so that id(stream) stays unique while it is mixed
        self.iterator = iterator
        # the mixer closes the async generators it iterates (see AudioMixer)
        self.agen: AsyncGenerator[AudioFrame, Any] | None = (
            cast("AsyncGenerator[AudioFrame, Any]", iterator)
            if inspect.isasyncgen(iterator)
            else None
        )
        import numpy as np  # imported when first needed: `import lkrtc_trio` stays light

        self.ring = np.zeros((ring_samples, num_channels), dtype=np.int16)
        self.start = 0  # index of the oldest buffered sample
        self.count = 0  # buffered samples (per channel)
        self.ended = False  # the source finished (its buffered audio is still mixed)
        self.last_frame = 0.0  # clock time of its last frame (or of its start)
        self.scope: anyio.CancelScope | None = None  # made when its reader is started
        self.space: anyio.Event | None = None  # set by the mixer when it frees space

    def write(self, samples: np.ndarray[Any, Any]) -> int:
        """Copies as many of ``samples`` as fit; returns how many."""
        cap = self.ring.shape[0]
        n = min(cap - self.count, int(samples.shape[0]))
        pos = (self.start + self.count) % cap
        first = min(n, cap - pos)
        self.ring[pos : pos + first] = samples[:first]
        if n > first:
            self.ring[: n - first] = samples[first:n]
        self.count += n
        return n

    def take_into(self, acc: np.ndarray[Any, Any]) -> None:
        """Adds up to one block (``len(acc)`` samples) to ``acc`` and drops it."""
        cap = self.ring.shape[0]
        n = min(self.count, acc.shape[0])
        first = min(n, cap - self.start)
        acc[:first] += self.ring[self.start : self.start + first]
        if n > first:
            acc[first:n] += self.ring[: n - first]
        self.start = (self.start + n) % cap
        self.count -= n
        if self.space is not None:
            self.space.set()
            self.space = None


class AudioMixer:
    """Mixes async audio sources into one async iterator of :class:`AudioFrame`.

    A source is any ``AsyncIterable[AudioFrame]`` (an :class:`AudioStream`,
    an async generator, a memory object receive stream, ...). Sources can be
    added and removed while the mixer runs; a source that ends is mixed until
    its buffered audio is used up, then dropped.

    Usage (the ``async with`` is required: it holds the mixer's tasks)::

        async with AudioMixer(48000, 1) as mixer:
            mixer.add_stream(stream_a)
            mixer.add_stream(stream_b)
            async for frame in mixer:  # frames of ``blocksize`` samples
                ...

    Keeping sources in step (a block policy, not a clock): every source has
    a reader task that copies its frames into a ring buffer of at most
    ``2 * blocksize`` samples per channel; a reader waits while its buffer is
    full (back-pressure on that source). A block of ``blocksize`` samples is
    mixed as soon as every source has a full block buffered (or has ended),
    or else once every source that lacks one has *stalled*: delivered no
    frame for ``stream_timeout_ms`` (a new source gets that long to deliver
    its first frame). A stalled source contributes what it has, zero-padded,
    so it never stops the mix; as in the official SDK, no block is mixed
    while no source has any audio buffered. By default blocks are mixed as
    fast as the sources deliver (like the official SDK); with
    ``realtime=True`` they are also paced by the clock, at most one block per
    block duration (for live playback; a late block does not cause a burst:
    the schedule slips instead).

    Mixed blocks go into an output buffer of ``capacity`` frames; the mixer
    waits while it is full (back-pressure on the sources through their full
    buffers). Memory is bounded: ``capacity`` frames, plus one block being
    mixed, plus ``2 * blocksize`` samples per source. Samples are summed in
    int32 and clipped to the int16 range (never wrapped).

    Args:
        sample_rate: Hz of the sources and of the output.
        num_channels: channels of the sources and of the output.
        blocksize: samples per channel of each output frame; 0 (default):
            ``sample_rate // 10`` (100 ms), as the official SDK.
        stream_timeout_ms: how long a source may deliver no frame before the
            mixer stops waiting for it (default 100).
        capacity: mixed frames buffered for the consumer (default 100). 0: no
            buffer, each frame is handed straight to the consumer (unlike the
            official SDK, where 0 means unbounded).
        realtime: pace the output by the clock (see above); default False.

    Raises:
        ValueError: a non-positive rate, channel count or blocksize (after the
            default), or a negative ``stream_timeout_ms`` or ``capacity``.

    End: after ``end_input()``, the mixer mixes what remains (zero-padding
    the last block) and the iteration ends once every source has ended or
    been removed. A source that stalls for ever keeps the mixer open (the
    official SDK drops it after about 10 timeouts): remove it or close the
    mixer. Without ``end_input()`` the iteration waits for new sources when
    none is left.

    Errors: a source that raises, or delivers a frame whose rate or channel
    count differs from the mixer's (``ValueError``), stops the whole mixer:
    every reader is cancelled, the frames mixed before are still delivered,
    then the exception itself is raised from the iteration (``async for``).
    If the iteration did not raise it, leaving ``async with`` raises it
    (unless the block is already leaving with an exception of its own).

    Closing: leaving ``async with`` or ``aclose()`` cancels every reader
    task and the mixing loop and waits for them: when it returns, no task of
    the mixer is left. Unconsumed mixed frames are dropped and the iteration
    ends. Closing is bounded as long as the sources let cancellation through.
    Sources the mixer iterates that are async generators (passed directly, or
    returned by a source's ``__aiter__``) are closed with ``aclose()`` when
    the mixer is closed and when their source is removed, ends or fails, so
    their ``finally`` blocks run before the mixer's tasks finish (a generator
    the mixer never started needs no closing); any other
    source (an :class:`AudioStream`, a memory stream) is left open: its
    owner closes it.

    Without ``async with`` only ``add_stream``, ``remove_stream``,
    ``end_input`` and ``aclose`` work; iterating raises ``RuntimeError``
    (the official SDK starts a background asyncio task instead).
    """

    def __init__(
        self,
        sample_rate: int,
        num_channels: int,
        *,
        blocksize: int = 0,
        stream_timeout_ms: int = 100,
        capacity: int = 100,
        realtime: bool = False,
    ) -> None:
        if sample_rate <= 0 or num_channels <= 0:
            raise ValueError("sample_rate and num_channels must be > 0")
        if blocksize < 0 or stream_timeout_ms < 0 or capacity < 0:
            raise ValueError("blocksize, stream_timeout_ms and capacity must be >= 0")
        self.sample_rate = sample_rate
        self.num_channels = num_channels
        self.blocksize = blocksize if blocksize > 0 else sample_rate // 10
        if self.blocksize <= 0:
            raise ValueError("blocksize must be > 0 (sample_rate // 10 is 0)")
        self.stream_timeout_ms = stream_timeout_ms
        self.capacity = capacity
        self.realtime = realtime
        self._sources: dict[int, _Source] = {}
        self._state = _OPEN
        self._send, self._receive = anyio.create_memory_object_stream[AudioFrame](capacity)
        # made on entering (so that a mixer can be made outside an event loop):
        self._wake: anyio.Event | None = None  # set when the mixing loop should look again
        self._scope: anyio.CancelScope | None = None  # around every task of the mixer
        self._done: anyio.Event | None = None  # the mixer's tasks have all finished
        self._task_group: TaskGroup | None = None  # the readers' (while running)
        self._outer: TaskGroup | None = None  # opened by __aenter__
        self._entered = False
        self._error: BaseException | None = None
        self._error_reported = False

    # -- sources -----------------------------------------------------------

    def add_stream(self, stream: AsyncIterable[AudioFrame]) -> None:
        """Adds a source (also before ``async with`` and while mixing).

        Adding a source that is already mixed does nothing.

        Raises:
            RuntimeError: after ``end_input()``, or the mixer is closed (or
                stopped by a source's error).
            TypeError: ``stream`` is not async iterable.
        """
        if self._state != _OPEN:
            raise RuntimeError("cannot add a stream after end_input() or once the mixer is closed")
        key = id(stream)
        if key in self._sources:
            return
        src = _Source(stream, stream.__aiter__(), 2 * self.blocksize, self.num_channels)
        self._sources[key] = src
        if self._task_group is not None:
            self._start(self._task_group, src, anyio.current_time())
        self._notify()

    def remove_stream(self, stream: AsyncIterable[AudioFrame]) -> None:
        """Removes a source: its buffered audio is dropped at once (frames
        already mixed still hold it), its reader task is cancelled (an async
        generator source is then closed). Removing an unknown source does
        nothing. Never raises."""
        src = self._sources.pop(id(stream), None)
        if src is not None:
            if src.scope is not None:
                src.scope.cancel()
            self._notify()

    def end_input(self) -> None:
        """No more sources will be added: the mixer mixes what the sources
        still deliver and the iteration ends once every source has ended (or
        been removed). Does nothing once closed; never raises."""
        if self._state == _OPEN:
            self._state = _ENDING
            self._notify()

    # -- output ------------------------------------------------------------

    def __aiter__(self) -> AudioMixer:
        return self

    async def __anext__(self) -> AudioFrame:
        """The next mixed frame.

        Raises:
            StopAsyncIteration: the mixer ended (after ``end_input()``) or is
                closed.
            RuntimeError: the mixer was not entered with ``async with``.
            Exception: the exception a source raised (``ValueError`` for a
                frame of the wrong format), once, after the frames mixed
                before it.

        Cancellation: safe, no frame is lost (the next call gets it).
        """
        if not self._entered:
            raise RuntimeError("iterate an AudioMixer inside `async with AudioMixer(...) as mixer`")
        try:
            return await self._receive.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            pass
        if self._error is not None and not self._error_reported:
            self._error_reported = True
            raise self._error
        raise StopAsyncIteration

    # -- lifetime ----------------------------------------------------------

    async def __aenter__(self) -> AudioMixer:
        """Starts the mixer's tasks (in a task group of the calling task).

        Raises:
            RuntimeError: the mixer was already entered or closed.

        Cancellation: nothing is started if it raises; otherwise leaving the
        block cleans up as usual.
        """
        if self._entered or self._state == _CLOSED:
            raise RuntimeError("an AudioMixer can be entered only once, and not once closed")
        self._wake, self._scope, self._done = anyio.Event(), anyio.CancelScope(), anyio.Event()
        outer = anyio.create_task_group()
        await outer.__aenter__()
        self._outer = outer
        self._entered = True
        outer.start_soon(self._run)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Closes the mixer (see ``aclose``) and waits for its tasks, even
        when cancelled (this is bounded as long as the sources let
        cancellation through).

        Raises:
            Exception: a source's exception that the iteration did not raise,
                when the block itself ended without an exception.
        """
        self._close()
        outer, self._outer = self._outer, None
        if outer is not None:
            assert self._done is not None
            with anyio.CancelScope(shield=True):
                await self._done.wait()
            # the body's own exception goes on unchanged, not into a group
            await outer.__aexit__(None, None, None)
        self._receive.close()
        if exc_type is None and self._error is not None and not self._error_reported:
            self._error_reported = True
            raise self._error

    async def aclose(self) -> None:
        """Closes the mixer: cancels every reader and the mixing loop, waits
        until they are done (async generator sources closed, see the class
        docstring), drops the unconsumed frames and ends the iteration.
        Idempotent. Does not raise a source's error (leaving ``async with``
        does).

        Cancellation: returns at once; the mixer is closed all the same and
        its tasks finish on their own (leaving ``async with`` waits for them).
        """
        self._close()
        if self._done is not None:
            await self._done.wait()
        self._receive.close()

    def _close(self) -> None:
        self._state = _CLOSED
        if self._scope is not None:
            self._scope.cancel()
        else:  # never entered: there is no task to stop
            self._send.close()

    def _notify(self) -> None:
        if self._wake is not None:
            self._wake.set()

    def _start(self, tg: TaskGroup, src: _Source, now: float) -> None:
        src.last_frame = now  # a new source gets stream_timeout_ms to deliver
        src.scope = anyio.CancelScope()
        tg.start_soon(self._read, src)

    # -- tasks -------------------------------------------------------------

    def _fail(self, exc: BaseException) -> None:
        """A source failed: record its error (the first one) and stop."""
        if self._error is None:
            self._error = exc
        self._state = _CLOSED
        if self._scope is not None:
            self._scope.cancel()

    async def _run(self) -> None:
        assert self._scope is not None and self._done is not None
        try:
            with self._scope:
                async with anyio.create_task_group() as tg:
                    self._task_group = tg
                    now = anyio.current_time()
                    for src in list(self._sources.values()):
                        self._start(tg, src, now)
                    await self._mix()
                    tg.cancel_scope.cancel()  # every source ended or was removed
        finally:
            self._task_group = None
            self._send.close()
            self._done.set()

    async def _read(self, src: _Source) -> None:
        """Reads one source into its ring buffer, waiting while it is full."""
        rate, channels, block = self.sample_rate, self.num_channels, self.blocksize
        iterator = src.iterator
        assert src.scope is not None
        import numpy as np

        try:
            with src.scope:
                try:
                    while True:
                        try:
                            frame = await iterator.__anext__()
                        except StopAsyncIteration:
                            break
                        if frame.sample_rate != rate or frame.num_channels != channels:
                            raise ValueError(
                                f"AudioMixer: a source's frame is {frame.sample_rate} Hz x "
                                f"{frame.num_channels} ch, the mixer is {rate} Hz x "
                                f"{channels} ch"
                            )
                        n = frame.samples_per_channel
                        samples = np.frombuffer(frame.data, dtype=np.int16, count=n * channels)
                        samples = samples.reshape(n, channels)
                        src.last_frame = anyio.current_time()
                        while samples.shape[0]:
                            before = src.count
                            written = src.write(samples)
                            samples = samples[written:]
                            if before == 0 or before < block <= src.count:
                                self._notify()
                            if samples.shape[0]:
                                src.space = space = anyio.Event()
                                await space.wait()
                except Exception as exc:
                    self._fail(exc)
                    return
                finally:
                    src.ended = True
                    self._notify()
                    if src.agen is not None:
                        await src.agen.aclose()
        except Exception as exc:  # raised while closing the generator
            self._fail(exc)

    async def _mix(self) -> None:
        import numpy as np

        block, channels = self.blocksize, self.num_channels
        timeout = self.stream_timeout_ms / 1000
        period = block / self.sample_rate
        due = -math.inf  # realtime: when the next block may go out
        sources = self._sources
        while True:
            self._wake = wake = anyio.Event()
            for key, src in list(sources.items()):
                if src.ended and src.count == 0:
                    del sources[key]
            if not sources and self._state != _OPEN:
                return
            now = anyio.current_time()
            ready_at = due if self.realtime else now
            any_audio = False
            for src in sources.values():
                if src.count:
                    any_audio = True
                if src.count < block and not src.ended:
                    ready_at = max(ready_at, src.last_frame + timeout)
            if not any_audio:
                await wake.wait()
                continue
            if ready_at > now:
                with anyio.move_on_at(ready_at):
                    await wake.wait()
                continue
            acc = np.zeros((block, channels), dtype=np.int32)
            for src in sources.values():
                if src.count:
                    src.take_into(acc)
            np.clip(acc, -32768, 32767, out=acc)
            out = acc.astype(np.int16).reshape(-1)
            await self._send.send(AudioFrame(out.data, self.sample_rate, channels, block))
            if self.realtime:
                due = max(due, now) + period
