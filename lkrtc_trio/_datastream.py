"""Data streams: text and byte streams, sent and received.

Sending. ``send_text``/``send_bytes``/``send_file`` are one request each; the
native core chunks, and the call returns the stream's info once the whole
stream left. ``stream_text``/``stream_bytes`` are async context managers over a
writer: leaving the block closes the stream; leaving it by an exception
(cancellation included) aborts it with that exception as the reason, shielded
and bounded, and the exception propagates unchanged.

Receiving. The native core announces each incoming stream with a room event
(``text_stream_opened`` / ``byte_stream_opened``) that carries a reader handle.
The room's :class:`StreamRouter` finds the topic's one consumer (a registered
handler or a subscription) and starts the reader at once (a
``read_incremental`` request, which hands the handle back to the native core);
its chunks are then events keyed by that handle, routed by the dispatcher to
the reader alone, into a buffer bounded by ``RoomOptions.stream_buffer_limit``.
A reader ends at the sender's close, or fails with :class:`StreamError`: the
sender aborted, the sender left, this room reconnected (chunks may have been
lost), the room closed, or the buffer limit was exceeded. It never hangs and
never reports an incomplete stream as complete.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import mimetypes
import os
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Generic, Protocol, TypeVar, final

import anyio
import anyio.lowlevel
import anyio.to_thread
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ._errors import ResourceClosedError, StreamError
from ._proto import ffi_pb2
from ._runtime import OwnedHandle, Runtime

__all__ = [
    "DEFAULT_STREAM_BUFFER_LIMIT",
    "ByteStreamHandler",
    "ByteStreamInfo",
    "ByteStreamReader",
    "ByteStreamWriter",
    "StreamRouter",
    "StreamSubscription",
    "TextStreamHandler",
    "TextStreamInfo",
    "TextStreamReader",
    "TextStreamWriter",
]

log = logging.getLogger("lkrtc_trio.streams")

#: Default of ``RoomOptions.stream_buffer_limit``: bytes one incoming stream
#: may hold unread before its reader fails with :class:`StreamError`.
DEFAULT_STREAM_BUFFER_LIMIT = 16 * 1024 * 1024
#: Seconds an aborting writer waits for the native core to send the abort.
ABORT_LIMIT = 5.0
#: Incoming readers a subscription holds before new streams are refused.
SUBSCRIPTION_BUFFER = 64
#: Longest abort reason sent to the readers (characters).
_REASON_MAX = 200


# -- info ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class TextStreamInfo:
    """What a text stream's header says. ``size`` is the announced total in
    bytes, None when the sender did not announce one; ``attributes`` includes
    those the sender added when it closed the stream (once it ended);
    ``reply_to_id`` is the stream this one answers (``send_text(...,
    reply_to_id=...)``), None if none."""

    stream_id: str
    mime_type: str
    topic: str
    timestamp: int
    size: int | None
    attributes: Mapping[str, str] = field(default_factory=dict)
    attachments: tuple[str, ...] = ()
    reply_to_id: str | None = None


@dataclass(frozen=True, slots=True)
class ByteStreamInfo:
    """What a byte stream's header says (see :class:`TextStreamInfo`);
    ``name`` is the sender's name for it (a file's base name)."""

    stream_id: str
    mime_type: str
    topic: str
    timestamp: int
    size: int | None
    attributes: Mapping[str, str] = field(default_factory=dict)
    name: str = ""


def _header(msg: Any) -> tuple[str, str, str, int, int | None, dict[str, str]]:
    """The fields both kinds of stream info share, from the native header."""
    size = int(msg.total_length) if msg.HasField("total_length") else None
    return (
        str(msg.stream_id),
        str(msg.mime_type),
        str(msg.topic),
        int(msg.timestamp),
        size,
        dict(msg.attributes),
    )


def text_info(msg: Any) -> TextStreamInfo:
    return TextStreamInfo(
        *_header(msg),
        attachments=tuple(msg.attached_stream_ids),
        reply_to_id=str(msg.reply_to_stream_id) or None,
    )


def byte_info(msg: Any) -> ByteStreamInfo:
    return ByteStreamInfo(*_header(msg), name=str(msg.name))


# -- readers ---------------------------------------------------------------------------
C = TypeVar("C", str, bytes)
I = TypeVar("I", TextStreamInfo, ByteStreamInfo)  # noqa: E741
R = TypeVar("R", bound="_Reader[Any, Any]")
W = TypeVar("W", bound="_Writer[Any]")


class _Reader(Generic[C, I]):
    """An incoming stream: a bounded buffer of chunks, filled by the
    dispatcher (loop thread) and drained by ``async for``."""

    _event_field = ""
    _kind = ""

    def __init__(
        self, router: StreamRouter, handle_id: int, info: I, identity: str, limit: int
    ) -> None:
        self._router = router
        self._handle_id = handle_id
        self._info: I = info
        self._identity = identity
        self._limit = limit
        self._chunks: deque[C] = deque()
        self._sizes: deque[int] = deque()
        self._buffered = 0
        self._done = False  # no chunk will be added any more
        self._closed = False  # closed by its consumer (or its handler returned)
        self._error: StreamError | None = None
        self._wakeup: anyio.Event | None = None

    @property
    def info(self) -> I:
        """The stream's info (attributes from the sender's close are merged
        in once the stream ended)."""
        return self._info

    @property
    def participant_identity(self) -> str:
        """The sender's identity."""
        return self._identity

    # -- dispatcher sink (loop thread) -----------------------------------------------------
    def on_native_event(self, event: Any) -> None:
        msg = getattr(event, self._event_field)
        detail = msg.WhichOneof("detail")
        if detail == "chunk_received":
            if self._done:
                return
            content = msg.chunk_received.content
            if not content:
                return
            # UTF-8 bytes; an ASCII str (the common case) needs no encoding
            size = (
                len(content)
                if isinstance(content, bytes) or content.isascii()
                else len(content.encode())
            )
            if self._buffered + size > self._limit:
                self._fail(
                    f"reader buffer limit exceeded: {self._buffered + size} bytes unread "
                    f"(RoomOptions.stream_buffer_limit = {self._limit}); the rest of the "
                    "stream was dropped"
                )
                return
            self._chunks.append(content)
            self._sizes.append(size)
            self._buffered += size
            self._wake()
        elif detail == "eos":
            eos = msg.eos
            if eos.attributes:
                merged = {**self._info.attributes, **dict(eos.attributes)}
                self._info = dataclasses.replace(self._info, attributes=merged)
            if eos.HasField("error"):
                self._fail(f"the stream failed: {eos.error.description}")
            else:
                self._finish()

    def on_native_failure(self, exc: BaseException) -> None:
        self._fail(f"the native core failed: {exc}")

    def _finish(self) -> None:
        if self._done:
            return
        self._done = True
        self._router._reader_done(self)
        self._wake()

    def _fail(self, reason: str) -> None:
        """The stream will not complete: readers raise ``StreamError(reason)``
        after the chunks already buffered."""
        if self._done:
            return
        self._error = StreamError(reason)
        self._finish()

    def _wake(self) -> None:
        wakeup, self._wakeup = self._wakeup, None
        if wakeup is not None:
            wakeup.set()

    # -- consumer ------------------------------------------------------------------------------
    async def _next(self) -> C:
        await anyio.lowlevel.checkpoint_if_cancelled()
        while True:
            if self._closed:
                raise ResourceClosedError("the stream reader is closed")
            if self._chunks:
                chunk = self._chunks.popleft()
                self._buffered -= self._sizes.popleft()
                await anyio.lowlevel.cancel_shielded_checkpoint()
                return chunk
            if self._done:
                if self._error is not None:
                    raise self._error
                raise StopAsyncIteration
            if self._wakeup is None:
                self._wakeup = anyio.Event()
            await self._wakeup.wait()

    def __aiter__(self) -> _Reader[C, I]:
        return self

    async def __anext__(self) -> C:
        """The next chunk.

        Raises:
            StopAsyncIteration: the sender closed the stream and every chunk
                was read.
            StreamError: the stream failed (after the chunks that arrived
                before the failure were read).
            ResourceClosedError: the reader is closed.

        Cancellation: nothing is lost; the next read returns the same chunk.
        """
        return await self._next()

    def close(self) -> None:
        """Stops reading (idempotent): buffered chunks are dropped and the rest
        of the stream is ignored."""
        if self._closed:
            return
        self._closed = True
        self._chunks.clear()
        self._sizes.clear()
        self._buffered = 0
        if not self._done:
            self._done = True
            self._router._reader_done(self)
        self._wake()

    async def aclose(self) -> None:
        self.close()
        await anyio.lowlevel.checkpoint()

    async def __aenter__(self: R) -> R:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        state = "failed" if self._error else "ended" if self._done else "open"
        return (
            f"<{type(self).__name__} {self._info.stream_id} topic={self._info.topic!r} "
            f"from {self._identity!r} {state}>"
        )


@final
class TextStreamReader(_Reader[str, TextStreamInfo]):
    """An incoming text stream: ``async for chunk in reader`` (``str`` chunks,
    never splitting a character), or ``await reader.read_all()``.

    Ends normally at the sender's close. Raises :class:`StreamError` when the
    sender aborted, the sender left, this room reconnected while the stream
    was open, the room closed, or more than ``RoomOptions.stream_buffer_limit``
    bytes were left unread; chunks that arrived before are read first.
    """

    _event_field = "text_stream_reader_event"
    _kind = "text"

    async def read_all(self) -> str:
        """Reads the rest of the stream and returns it.

        Raises:
            StreamError, ResourceClosedError: as iteration does.

        Cancellation: the chunks read so far are lost to the caller; the
        reader stays usable.
        """
        return "".join([chunk async for chunk in self])


@final
class ByteStreamReader(_Reader[bytes, ByteStreamInfo]):
    """An incoming byte stream: ``async for chunk in reader`` (``bytes``),
    ``await reader.read_all()`` or ``await reader.write_to_file(directory)``.
    Ends and fails as :class:`TextStreamReader` does."""

    _event_field = "byte_stream_reader_event"
    _kind = "byte"

    async def read_all(self) -> bytes:
        """Reads the rest of the stream and returns it.

        Raises:
            StreamError, ResourceClosedError: as iteration does.

        Cancellation: the chunks read so far are lost to the caller.
        """
        return b"".join([chunk async for chunk in self])

    async def write_to_file(
        self, directory: str | os.PathLike[str], name: str | None = None
    ) -> str:
        """Writes the rest of the stream to a new file in ``directory`` and
        returns its path. The file is named ``name``, or the stream's name
        (only its base name is used: a sender cannot write outside
        ``directory``); an existing file is never replaced (`` (1)``, `` (2)``
        ... are added before the extension).

        Raises:
            StreamError: the stream failed; the partial file is removed.
            OSError: the file could not be written.
            ValueError: no usable file name.

        Cancellation: the partial file is removed; the reader stays usable.
        """
        base = os.path.basename(name if name is not None else self._info.name)
        if base in ("", ".", ".."):
            base = self._info.stream_id or "stream"
        if base in ("", ".", ".."):
            raise ValueError("no usable file name for the stream")
        path = await anyio.to_thread.run_sync(_unused_path, Path(directory), base)
        done = False
        try:
            async with await anyio.open_file(path, "wb") as f:
                async for chunk in self:
                    await f.write(chunk)
            done = True
        finally:
            if not done:
                with anyio.CancelScope(shield=True):
                    await anyio.Path(path).unlink(missing_ok=True)
        return str(path)


def _unused_path(directory: Path, base: str) -> Path:
    stem, dot, ext = base.rpartition(".")
    if not stem:
        stem, dot, ext = base, "", ""
    candidate = directory / base
    n = 1
    while True:
        try:
            candidate.touch(exist_ok=False)  # reserve the name
            return candidate
        except FileExistsError:
            candidate = directory / f"{stem} ({n}){dot}{ext}"
            n += 1


#: ``handler(reader, participant_identity)``, sync or async
TextStreamHandler = Callable[[TextStreamReader, str], Awaitable[None] | None]
ByteStreamHandler = Callable[[ByteStreamReader, str], Awaitable[None] | None]
_AnyReader = TextStreamReader | ByteStreamReader


# -- subscriptions ---------------------------------------------------------------------------
@final
class StreamSubscription(Generic[R]):
    """Incoming streams of one topic, for code that prefers a loop to a
    callback: ``with room.text_streams("chat") as sub: async for reader in
    sub: ...`` (also ``async with``). Each reader is yours: read it, then
    close it (``async with reader:``); those not yet received when the
    subscription closes are closed. Iteration ends when the room closes.
    """

    def __init__(self, router: StreamRouter, kind: str, topic: str, max_buffer: int) -> None:
        self._router = router
        self._key = (kind, topic)
        send, recv = anyio.create_memory_object_stream[R](max_buffer)
        self._send: MemoryObjectSendStream[R] = send
        self._recv: MemoryObjectReceiveStream[R] = recv
        self.refused = 0  # streams refused because the buffer was full

    @property
    def topic(self) -> str:
        return self._key[1]

    def _offer(self, reader: R) -> bool:
        try:
            self._send.send_nowait(reader)
        except (anyio.WouldBlock, anyio.BrokenResourceError, anyio.ClosedResourceError):
            self.refused += 1
            return False
        return True

    def _finish(self) -> None:
        self._send.close()

    async def receive(self) -> R:
        """The next incoming stream's reader.

        Raises:
            anyio.EndOfStream: the room closed (readers already received stay
                readable until then).
            anyio.ClosedResourceError: you closed this subscription.

        Cancellation: nothing is lost.
        """
        return await self._recv.receive()

    def __aiter__(self) -> StreamSubscription[R]:
        return self

    async def __anext__(self) -> R:
        try:
            return await self._recv.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    def close(self) -> None:
        """Unsubscribes the topic; readers not yet received are closed."""
        self._router._unsubscribe(self)
        self._send.close()
        while True:
            try:
                self._recv.receive_nowait().close()
            except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
                break
        self._recv.close()

    def __enter__(self) -> StreamSubscription[R]:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> StreamSubscription[R]:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()
        await anyio.lowlevel.checkpoint()


# -- the room's router --------------------------------------------------------------------
class StreamHost(Protocol):
    """What the router needs of the room's session (``RoomSession``)."""

    rt: Runtime

    def check_open(self) -> None: ...

    def spawn(self, fn: Callable[..., Coroutine[Any, Any, None]], *args: Any) -> bool: ...

    async def request(self, req: Any, field: str) -> Any: ...


@final
class StreamRouter:
    """Per room: topic -> consumer, and every open incoming reader (to fail
    them when their sender leaves, the room reconnects or closes). Every
    method runs on the loop."""

    def __init__(self, session: StreamHost, buffer_limit: int) -> None:
        self._session = session
        self._limit = buffer_limit
        self._handlers: dict[tuple[str, str], Callable[[Any, str], Any]] = {}
        self._subs: dict[tuple[str, str], StreamSubscription[Any]] = {}
        self._readers: dict[int, _Reader[Any, Any]] = {}
        self._unhandled_logged: set[tuple[str, str]] = set()
        self._writers: set[_Writer[Any]] = set()
        self._closed = False
        #: incoming streams no consumer took (for tests)
        self.unhandled = 0

    # -- registration --------------------------------------------------------------------------
    def register(self, kind: str, topic: str, handler: Callable[[Any, str], Any]) -> None:
        if not isinstance(topic, str):
            raise TypeError("topic must be a str")
        if not callable(handler):
            raise TypeError("a stream handler must be callable")
        self._session.check_open()
        key = (kind, topic)
        if key in self._handlers:
            raise ValueError(f"a {kind} stream handler for topic {topic!r} is already registered")
        if key in self._subs:
            raise ValueError(f"{kind} streams on topic {topic!r} are served by a subscription")
        self._handlers[key] = handler

    def unregister(self, kind: str, topic: str) -> None:
        self._handlers.pop((kind, topic), None)

    def subscribe(self, kind: str, topic: str, max_buffer: int) -> StreamSubscription[Any]:
        if not isinstance(topic, str):
            raise TypeError("topic must be a str")
        if max_buffer < 1:
            raise ValueError("max_buffer must be >= 1")
        self._session.check_open()
        key = (kind, topic)
        if key in self._handlers:
            raise ValueError(f"{kind} streams on topic {topic!r} are served by a handler")
        if key in self._subs:
            raise ValueError(f"{kind} streams on topic {topic!r} already have a subscription")
        sub: StreamSubscription[Any] = StreamSubscription(self, kind, topic, max_buffer)
        self._subs[key] = sub
        return sub

    def _unsubscribe(self, sub: StreamSubscription[Any]) -> None:
        if self._subs.get(sub._key) is sub:
            del self._subs[sub._key]

    # -- incoming (from the room's dispatcher sink) ------------------------------------------
    def on_opened(self, kind: str, msg: Any) -> None:
        """A ``text_stream_opened`` / ``byte_stream_opened`` room event."""
        rt = self._session.rt
        owned = msg.reader
        handle_id = int(owned.handle.id)
        identity = str(msg.participant_identity)
        key = (kind, str(owned.info.topic))
        handler = self._handlers.get(key)
        sub = self._subs.get(key)
        if self._closed or (handler is None and sub is None):
            if handle_id:
                rt._release(handle_id)
            self.unhandled += 1
            if key not in self._unhandled_logged and not self._closed:
                self._unhandled_logged.add(key)
                log.warning(
                    "ignoring %s streams on topic %r: no handler or subscription "
                    "(logged once per topic)",
                    kind,
                    key[1],
                )
            return
        reader: _AnyReader
        limit = self._limit
        if kind == "text":
            reader = TextStreamReader(self, handle_id, text_info(owned.info), identity, limit)
        else:
            reader = ByteStreamReader(self, handle_id, byte_info(owned.info), identity, limit)
        # Route its chunks to it before asking for them; the request hands the
        # handle to the native core (nothing left to release here).
        self._readers[handle_id] = reader
        try:
            rt.dispatcher.add_sink(handle_id, reader)
            req = ffi_pb2.FfiRequest()
            getattr(req, f"{kind}_read_incremental").reader_handle = handle_id
            rt.request(req)
        except Exception as exc:
            rt._release(handle_id)
            reader._fail(f"could not start reading the stream: {exc}")
        if handler is not None:
            if not self._session.spawn(self._run_handler, handler, reader):
                reader._fail("the room is closing or too busy to run the stream handler")
                reader.close()
                log.warning(
                    "%s stream %s on %r refused: no room for its handler",
                    kind,
                    reader.info.stream_id,
                    key[1],
                )
        elif sub is not None and not sub._offer(reader):
            reader.close()
            log.warning(
                "%s stream %s on %r refused: its subscription's buffer is full",
                kind,
                reader.info.stream_id,
                key[1],
            )

    async def _run_handler(self, handler: Callable[[Any, str], Any], reader: _AnyReader) -> None:
        try:
            result = handler(reader, reader.participant_identity)
            if inspect.isawaitable(result):
                await result
        except Exception:
            log.exception(
                "%s stream handler for topic %r failed (stream %s); the room goes on",
                reader._kind,
                reader.info.topic,
                reader.info.stream_id,
            )
        finally:
            reader.close()

    def _reader_done(self, reader: _Reader[Any, Any]) -> None:
        if self._readers.get(reader._handle_id) is reader:
            del self._readers[reader._handle_id]
        self._session.rt.dispatcher.remove_sink(reader._handle_id, reader)

    def fail_from(self, identity: str, reason: str) -> None:
        """The sender ``identity`` left: its open streams fail."""
        for reader in [r for r in self._readers.values() if r._identity == identity]:
            reader._fail(reason)

    def on_reconnecting(self) -> None:
        """This room lost its connection: chunks of the streams open now may
        be lost, so they fail (readers and writers)."""
        for reader in list(self._readers.values()):
            reader._fail("the room reconnected while the stream was open; chunks may be lost")
        for writer in self._writers:
            writer._broken = (
                "the room reconnected while the stream was open; chunks may have been lost"
            )

    def close(self, reason: str) -> None:
        """The room closed or ended: open readers fail, subscriptions end,
        writers' native handles are released."""
        self._closed = True
        for reader in list(self._readers.values()):
            reader._fail(reason)
        for sub in list(self._subs.values()):
            sub._finish()
        for writer in list(self._writers):
            writer._release()

    @property
    def open_readers(self) -> int:
        return len(self._readers)

    @property
    def open_writers(self) -> int:
        return len(self._writers)


# -- writers ----------------------------------------------------------------------------------
class _Writer(Generic[I]):
    _prefix = ""

    def __init__(self, router: StreamRouter, handle: OwnedHandle, info: I) -> None:
        self._info: I = info
        self._router = router
        self._session = router._session
        self._handle = handle
        self._closed = False
        self._broken: str | None = None
        self._lock: anyio.Lock | None = None
        router._writers.add(self)

    @property
    def info(self) -> I:
        return self._info

    def _release(self) -> None:
        self._closed = True
        self._router._writers.discard(self)
        self._handle.close()

    async def _write_request(self, req: Any, field: str) -> None:
        self._session.check_open()  # a room that is gone says so
        if self._closed:
            raise ResourceClosedError("the stream is closed")
        if self._broken is not None:
            raise StreamError(self._broken)
        if self._lock is None:
            self._lock = anyio.Lock()
        async with self._lock:  # writes go out in call order
            if self._closed:
                raise ResourceClosedError("the stream is closed")
            getattr(req, field).writer_handle = self._handle.id
            cb = await self._session.request(req, field)
        if cb.HasField("error"):
            raise StreamError(f"write failed: {cb.error.description}")

    async def _close(self, reason: str) -> None:
        """Closes the stream (``reason`` empty) or aborts it. The close hands
        the handle to the native core; if it cannot be sent, the handle is
        released here."""
        if self._closed:
            # already aborted, or released because the room is gone (then
            # this raises: the stream did not complete)
            self._session.check_open()
            return
        self._closed = True
        field = f"{self._prefix}_stream_close"
        req = ffi_pb2.FfiRequest()
        msg = getattr(req, field)
        msg.writer_handle = self._handle.id
        msg.reason = reason[:_REASON_MAX]
        try:
            cb = await self._session.request(req, field)
            self._handle.detach()  # consumed by the close
        finally:
            self._router._writers.discard(self)
            self._handle.close()  # not sent (or cancelled): release it here
        if cb.HasField("error"):
            raise StreamError(f"closing the stream failed: {cb.error.description}")


@final
class TextStreamWriter(_Writer[TextStreamInfo]):
    """An outgoing text stream, from :meth:`LocalParticipant.stream_text`."""

    _prefix = "text"

    async def write(self, text: str) -> None:
        """Sends ``text`` as the next part of the stream (the native core
        splits it into chunks without splitting a character).

        Raises:
            TypeError: ``text`` is not a str.
            StreamError: the native core could not send it, or the room
                reconnected while the stream was open (the stream is then
                aborted when the block ends).
            ResourceClosedError: the stream is closed.
            RoomClosedError, RoomDisconnectedError: the room is gone.

        Cancellation: returns at once; the text may still be sent. The block
        then ends by the cancellation, which aborts the stream.
        """
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, not {type(text).__name__}")
        req = ffi_pb2.FfiRequest()
        req.text_stream_write.text = text
        await self._write_request(req, "text_stream_write")


@final
class ByteStreamWriter(_Writer[ByteStreamInfo]):
    """An outgoing byte stream, from :meth:`LocalParticipant.stream_bytes`."""

    _prefix = "byte"

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        """Sends ``data`` (any buffer; copied once into the native request)
        as the next part of the stream.

        Raises:
            TypeError: ``data`` is not a buffer.
            StreamError, ResourceClosedError, RoomClosedError: as
                :meth:`TextStreamWriter.write`.

        Cancellation: as :meth:`TextStreamWriter.write`.
        """
        req = ffi_pb2.FfiRequest()
        req.byte_stream_write.bytes = as_bytes(data)
        await self._write_request(req, "byte_stream_write")


def as_bytes(data: Any) -> bytes:
    """``data`` (any C-contiguous buffer) as bytes, copied only if it is not
    bytes already."""
    if isinstance(data, bytes):
        return data
    try:
        view = memoryview(data)
    except TypeError:
        raise TypeError(
            f"data must be bytes-like (bytes, bytearray, memoryview...), not {type(data).__name__}"
        ) from None
    if not view.c_contiguous:
        raise TypeError("a memoryview must be C-contiguous")
    return view.tobytes()


def abort_reason(exc: BaseException) -> str:
    """The reason sent to readers when a writer's block raised ``exc``."""
    if isinstance(exc, anyio.get_cancelled_exc_class()):
        return "cancelled"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def _abort(writer: _Writer[Any], reason: str) -> None:
    """Aborts the stream with ``reason``: shielded, bounded by
    ``ABORT_LIMIT``, and the handle released whatever happens. A failure to
    abort is only logged (the caller raises its own error)."""
    with anyio.CancelScope(shield=True):
        with anyio.move_on_after(ABORT_LIMIT):
            try:
                await writer._close(reason)
            except Exception as close_exc:
                log.debug("aborting a stream failed: %s", close_exc)
        writer._release()


@asynccontextmanager
async def writing(writer: W) -> AsyncIterator[W]:
    """The body of ``stream_text``/``stream_bytes`` once the writer is open:
    leaving normally closes the stream; leaving by an exception, or after a
    reconnection broke the stream, aborts it."""
    try:
        yield writer
    except BaseException as exc:
        await _abort(writer, abort_reason(exc))
        raise  # unchanged
    if writer._broken is not None:
        await _abort(writer, writer._broken)
        raise StreamError(writer._broken)
    try:
        await writer._close("")
    finally:
        writer._release()


# -- helpers for the participant ---------------------------------------------------------------
def check_text_args(
    topic: object,
    attributes: Mapping[str, str] | None,
    reply_to_id: object = None,
) -> dict[str, str]:
    if not isinstance(topic, str):
        raise TypeError("topic must be a str")
    if reply_to_id is not None and not isinstance(reply_to_id, str):
        raise TypeError("reply_to_id must be a str or None")
    return check_attributes(attributes)


def check_attributes(attributes: Mapping[str, str] | None) -> dict[str, str]:
    if attributes is None:
        return {}
    if not isinstance(attributes, Mapping):
        raise TypeError("attributes must be a mapping of str to str")
    out = dict(attributes)
    for k, v in out.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise TypeError("attributes must be a mapping of str to str")
    return out


def check_size(total_size: object) -> None:
    """Raises TypeError unless ``total_size`` is None or an int >= 0."""
    if total_size is not None and (
        isinstance(total_size, bool) or not isinstance(total_size, int) or total_size < 0
    ):
        raise TypeError("total_size must be a non-negative int or None")


def check_file(path: str | os.PathLike[str]) -> tuple[str, int]:
    """(absolute path, size) of a readable regular file.

    Raises:
        FileNotFoundError, IsADirectoryError, PermissionError: it is not.
    """
    file_path = os.path.abspath(os.fspath(path))
    if os.path.isdir(file_path):
        raise IsADirectoryError(f"{file_path} is a directory")
    size = os.stat(file_path).st_size  # FileNotFoundError
    if not os.access(file_path, os.R_OK):
        raise PermissionError(f"{file_path} is not readable")
    return file_path, size


def guess_mime_type(path: str) -> str:
    mime, _ = mimetypes.guess_type(path)
    return mime or "application/octet-stream"
