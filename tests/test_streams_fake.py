"""Incoming data streams over a fake native backend: routing by reader handle
under any interleaving (hypothesis), failures, limits, and the writer's close
and abort requests. The integration tests (tests/test_streams*.py) cover the
same paths against the real server."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import hypothesis.strategies as st
import pytest
import trio
from hypothesis import HealthCheck, given, settings

import lkrtc_trio as lk
from lkrtc_trio._datastream import StreamRouter

from .fakes import FakeBackend, event_bytes
from .test_room_events import make_room, push

EXAMPLES = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def opened(handle: int, sender: str, topic: str = "t", kind: str = "text") -> Any:
    def fill(e: Any) -> None:
        msg = getattr(e, f"{kind}_stream_opened")
        msg.participant_identity = sender
        msg.reader.handle.id = handle
        msg.reader.info.stream_id = f"S{handle}"
        msg.reader.info.topic = topic
        msg.reader.info.attributes["h"] = str(handle)

    return fill


def chunk(handle: int, content: str, kind: str = "text") -> bytes:
    def fill(e: Any) -> None:
        ev = getattr(e, f"{kind}_stream_reader_event")
        ev.reader_handle = handle
        ev.chunk_received.content = content if kind == "text" else content.encode()

    return event_bytes(fill)


def eos(handle: int, error: str = "", kind: str = "text", **attributes: str) -> bytes:
    def fill(e: Any) -> None:
        ev = getattr(e, f"{kind}_stream_reader_event")
        ev.reader_handle = handle
        ev.eos.SetInParent()
        if error:
            ev.eos.error.description = error
        for k, v in attributes.items():
            ev.eos.attributes[k] = v

    return event_bytes(fill)


def deliver(room: lk.Room, *events: bytes) -> None:
    rt = room._session.rt
    for data in events:
        rt.bridge.push(data)
    rt.bridge.drain_now()


def router(room: lk.Room) -> StreamRouter:
    return room._session.streams


@dataclass
class Stream:
    handle: int
    sender: str
    chunks: list[str]
    #: "ok" (eos), "abort" (eos with an error), "left" (sender leaves), "open"
    end: str


@st.composite
def scenarios(draw: Any) -> tuple[list[Stream], list[tuple[str, int]]]:
    """Streams and one interleaving of their events: each stream's events
    stay in order (as the native core sends them), streams interleave
    arbitrarily, and duplicate or late events follow."""
    n = draw(st.integers(1, 8))
    streams = [
        Stream(
            handle=500 + i,
            sender=draw(st.sampled_from(["r0", "r1"])),
            chunks=draw(st.lists(st.text(min_size=1, max_size=5), max_size=6)),
            end=draw(st.sampled_from(["ok", "ok", "abort", "left", "open"])),
        )
        for i in range(n)
    ]
    queues: list[list[tuple[str, int]]] = []
    for s in streams:
        q: list[tuple[str, int]] = [("open", s.handle)]
        q += [("chunk", s.handle)] * len(s.chunks)
        if s.end in ("ok", "abort"):
            q.append((s.end, s.handle))
        queues.append(q)
    order: list[tuple[str, int]] = []
    while any(queues):
        i = draw(st.sampled_from([k for k, q in enumerate(queues) if q]))
        order.append(queues[i].pop(0))
    # late duplicates and strays, after everything
    extra = draw(
        st.lists(
            st.sampled_from(
                [("late_chunk", s.handle) for s in streams if s.end in ("ok", "abort")]
                + [("stray", 9999)]
            )
        )
    )
    return streams, order + extra


@EXAMPLES
@given(scenarios())
def test_every_reader_gets_exactly_its_own_stream(
    scenario: tuple[list[Stream], list[tuple[str, int]]],
) -> None:
    streams, order = scenario

    async def main() -> None:
        room, rt, backend = make_room(remotes=[200, 201])
        sub = room.text_streams("t", max_buffer=16)
        sent = {s.handle: 0 for s in streams}
        by_handle = {s.handle: s for s in streams}
        for what, handle in order:
            s = by_handle.get(handle)
            if what == "open":
                assert s is not None
                push(rt, opened(handle, s.sender))
            elif what == "chunk":
                assert s is not None
                deliver(room, chunk(handle, s.chunks[sent[handle]]))
                sent[handle] += 1
            elif what == "ok":
                deliver(room, eos(handle, extra="1"))
            elif what == "abort":
                deliver(room, eos(handle, error="sender gave up"))
            else:  # a late chunk of an ended stream, or one for nobody
                deliver(room, chunk(handle, "LATE"))
        # the senders of "left" streams leave (r0 and r1 both, if any)
        for who in sorted({s.sender for s in streams if s.end == "left"}):

            def gone(e: Any, who: str = who) -> None:
                e.participant_disconnected.participant_identity = who

            push(rt, gone)
        readers: dict[int, lk.TextStreamReader] = {}
        for _ in streams:
            reader = await sub.receive()
            readers[int(reader.info.stream_id[1:])] = reader
        assert set(readers) == set(by_handle)
        left = {s.sender for s in streams if s.end == "left"}
        for handle, reader in readers.items():
            s = by_handle[handle]
            got: list[str] = []
            outcome = "ok"
            with anyio.fail_after(5):
                try:
                    if s.end == "open" and s.sender not in left:
                        # still open: what arrived so far, then it would wait
                        for _ in s.chunks:
                            got.append(await reader.__anext__())
                        outcome = "open"
                    else:
                        async for c in reader:
                            got.append(c)
                except lk.StreamError as exc:
                    outcome = "abort" if "gave up" in str(exc) else "left"
            assert "LATE" not in got
            assert got == s.chunks, (s, got)
            expected = s.end
            if s.end == "open" and s.sender in left:
                expected = "left"
            assert outcome == expected, (s, outcome)
            assert reader.participant_identity == s.sender
            if s.end == "ok":
                assert reader.info.attributes == {"h": str(handle), "extra": "1"}
            reader.close()
        # every reader closed: nothing left routed, nothing owned
        assert router(room).open_readers == 0
        assert rt.dispatcher.sinks() == 2  # the room's two keys
        sub.close()
        room._release()
        assert rt.live_handles() == {}
        # each reader asked for its chunks exactly once, with its own handle
        asked = [
            r.text_read_incremental.reader_handle
            for r in backend.requests
            if r.WhichOneof("message") == "text_read_incremental"
        ]
        assert sorted(asked) == sorted(by_handle)

    trio.run(main)


async def test_unhandled_topics_are_released_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    room, rt, backend = make_room(remotes=[200])
    with caplog.at_level(logging.WARNING, "lkrtc_trio.streams"):
        push(rt, opened(601, "r0", topic="nobody"))
        push(rt, opened(602, "r0", topic="nobody"))
        push(rt, opened(603, "r0", topic="nobody", kind="byte"))
    assert backend.dropped == [601, 602, 603]
    assert router(room).unhandled == 3
    warnings = [r for r in caplog.records if "no handler" in r.getMessage()]
    assert len(warnings) == 2  # once per (kind, topic)
    room._release()


async def test_buffer_limit_fails_the_reader_after_what_fit() -> None:
    room, rt, _ = make_room(remotes=[200])
    router(room)._limit = 10
    with room.byte_streams("t") as sub:
        push(rt, opened(700, "r0", kind="byte"))
        deliver(room, chunk(700, "12345", "byte"), chunk(700, "67890", "byte"))
        deliver(room, chunk(700, "X", "byte"), chunk(700, "more", "byte"), eos(700, kind="byte"))
        reader = await sub.receive()
        got = [await reader.__anext__(), await reader.__anext__()]
        assert got == [b"12345", b"67890"]
        with pytest.raises(lk.StreamError, match="buffer limit"):
            await reader.__anext__()
        assert router(room).open_readers == 0
        reader.close()
    room._release()


async def test_reconnecting_and_closing_fail_open_readers() -> None:
    room, rt, _ = make_room(remotes=[200])
    with room.text_streams("t") as sub:
        push(rt, opened(800, "r0"))
        deliver(room, chunk(800, "a"))

        def reconnecting(e: Any) -> None:
            e.reconnecting.SetInParent()

        push(rt, reconnecting)
        reader = await sub.receive()
        assert await reader.__anext__() == "a"
        with pytest.raises(lk.StreamError, match="reconnected"):
            await reader.__anext__()
        reader.close()
        push(rt, opened(801, "r0"))
        reader2 = await sub.receive()
        room._release()
        with pytest.raises(lk.StreamError, match="closed"):
            await reader2.read_all()
        # the subscription ends with the room
        with pytest.raises(anyio.EndOfStream):
            await sub.receive()
    with pytest.raises(lk.RoomClosedError):
        room.text_streams("u")


async def test_a_handler_reads_in_the_room_task_group_and_its_reader_closes() -> None:
    """Handlers need the room's service task: start it as open_room does."""
    room, rt, backend = make_room(remotes=[200])
    got: list[tuple[str, str]] = []
    ran = anyio.Event()

    async def handler(reader: lk.TextStreamReader, identity: str) -> None:
        got.append((await reader.read_all(), identity))
        ran.set()

    seen_sync: list[lk.TextStreamReader] = []

    def sync_handler(reader: lk.TextStreamReader, identity: str) -> None:
        seen_sync.append(reader)

    room.register_text_stream_handler("t", handler)
    room.register_text_stream_handler("s", sync_handler)
    async with anyio.create_task_group() as tg:
        await tg.start(room._session.run_services)
        push(rt, opened(900, "r0"))
        push(rt, opened(901, "r0", topic="s"))
        deliver(room, chunk(900, "hel"), chunk(900, "lo"), eos(900))
        with anyio.fail_after(5):
            await ran.wait()
        assert got == [("hello", "r0")]
        while not seen_sync:
            await anyio.sleep(0.01)
        with pytest.raises(lk.ResourceClosedError):  # closed when it returned
            await seen_sync[0].read_all()
        room.unregister_text_stream_handler("t")
        push(rt, opened(902, "r0"))  # no handler any more: released
        assert 902 in backend.dropped
        await room._session.stop_services(0.1)
    assert router(room).open_readers == 0
    room._release()


def _fake_writer_room() -> tuple[lk.Room, Any, FakeBackend]:
    room, rt, backend = make_room()
    room._session.streams  # noqa: B018
    return room, rt, backend


async def test_writer_close_and_abort_requests() -> None:
    """The writer hands its handle to the close request, or releases it when
    the close cannot be sent; an exception aborts with itself as the reason."""
    room, rt, backend = _fake_writer_room()
    lp = room.local_participant

    async def answer_all() -> None:
        # completes every async request as soon as it is made
        done: set[int] = set()
        while True:
            for which, async_id in list(backend.sent):
                if async_id and async_id not in done:
                    done.add(async_id)

                    def fill(e: Any, which: str = which, async_id: int = async_id) -> None:
                        field = {
                            "text_stream_open": "text_stream_open",
                            "text_stream_write": "text_stream_writer_write",
                            "text_stream_close": "text_stream_writer_close",
                        }[which]
                        getattr(e, field).async_id = async_id
                        if which == "text_stream_open":
                            e.text_stream_open.writer.handle.id = 4000 + async_id
                            e.text_stream_open.writer.info.stream_id = f"W{async_id}"

                    deliver(room, event_bytes(fill))
            await anyio.sleep(0.001)

    async with anyio.create_task_group() as tg:
        tg.start_soon(answer_all)
        async with lp.stream_text(topic="t") as w:
            await w.write("a")
            assert w._handle.id in rt.live_handles()
        closes = [r.text_stream_close for r in backend.requests if r.HasField("text_stream_close")]
        assert [c.reason for c in closes] == [""]
        with pytest.raises(ZeroDivisionError):
            async with lp.stream_text(topic="t") as w2:
                1 / 0  # noqa: B018
        closes = [r.text_stream_close for r in backend.requests if r.HasField("text_stream_close")]
        assert closes[-1].reason.startswith("ZeroDivisionError")
        assert closes[-1].writer_handle == int(w2.info.stream_id[1:]) + 4000
        with pytest.raises(lk.ResourceClosedError):
            await w2.write("after")
        tg.cancel_scope.cancel()
    assert rt.live_handles().keys() == {room._session.handle.id, room._sink_keys[1]}
    assert router(room).open_writers == 0
    room._release()
    assert rt.live_handles() == {}


async def test_write_to_file_keeps_inside_its_directory_and_removes_a_partial_file(
    tmp_path: Path,
) -> None:
    room, rt, _ = make_room(remotes=[200])

    def named(handle: int, name: str) -> Any:
        def fill(e: Any) -> None:
            opened(handle, "r0", kind="byte")(e)
            e.byte_stream_opened.reader.info.name = name

        return fill

    with room.byte_streams("t") as sub:
        push(rt, named(1000, "../../evil.txt"))
        deliver(room, chunk(1000, "safe", "byte"), eos(1000, kind="byte"))
        out = await (await sub.receive()).write_to_file(tmp_path)
        assert Path(out) == tmp_path / "evil.txt"
        assert (tmp_path / "evil.txt").read_bytes() == b"safe"

        push(rt, named(1001, "partial.bin"))
        deliver(room, chunk(1001, "half", "byte"), eos(1001, error="gave up", kind="byte"))
        with pytest.raises(lk.StreamError, match="gave up"):
            await (await sub.receive()).write_to_file(tmp_path)
        assert not (tmp_path / "partial.bin").exists()
    room._release()


async def test_a_full_subscription_refuses_and_closing_it_closes_unreceived_readers() -> None:
    room, rt, _ = make_room(remotes=[200])
    sub = room.text_streams("t", max_buffer=1)
    push(rt, opened(1100, "r0"))
    push(rt, opened(1101, "r0"))  # the buffer holds one reader: refused
    assert sub.refused == 1
    assert router(room).open_readers == 1
    sub.close()  # the unreceived reader is closed
    assert router(room).open_readers == 0
    room._release()


async def test_send_file_refuses_what_is_not_a_readable_file(tmp_path: Path) -> None:
    room, _, backend = make_room()
    lp = room.local_participant
    with pytest.raises(FileNotFoundError):
        await lp.send_file(tmp_path / "missing.txt")
    with pytest.raises(IsADirectoryError):
        await lp.send_file(tmp_path)
    assert not [r for r in backend.requests if r.HasField("send_file")]  # nothing sent
    room._release()


async def test_a_cancelled_read_loses_nothing() -> None:
    room, rt, _ = make_room(remotes=[200])
    with room.text_streams("t") as sub:
        push(rt, opened(1200, "r0"))
        deliver(room, chunk(1200, "kept"), eos(1200))
        reader = await sub.receive()
        with anyio.CancelScope() as scope:
            scope.cancel()
            await reader.__anext__()
        assert scope.cancelled_caught
        assert await reader.read_all() == "kept"
        reader.close()
    room._release()
