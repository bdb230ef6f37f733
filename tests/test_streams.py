"""Data streams between lkrtc-trio participants on a real livekit-server (both
backends): writers scoped by ``async with``, handlers and subscriptions,
failures that reach the reader, limits, destination filtering, and nothing
left behind (handles, pending requests, open readers and writers)."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import anyio
import pytest

import lkrtc_trio as lk
from lkrtc_trio.testing import ServerInfo
from lkrtc_trio.testing.pytest_plugin import TokenFactory

from .helpers import wait_released

pytestmark = pytest.mark.integration

STEP = 20  # seconds for any single exchange

TEXT = ("héllo wörld 你好世界 🎉🚀 ünïcödé " * 700)[:20_000]


async def see(a: lk.Room, b: lk.Room) -> None:
    with anyio.fail_after(STEP):
        await a.wait_for_participant(b.local_participant.identity)
        await b.wait_for_participant(a.local_participant.identity)


def streams_idle(*rooms: lk.Room) -> None:
    for room in rooms:
        streams = room._session.streams
        assert (streams.open_readers, streams.open_writers) == (0, 0)


async def test_text_and_bytes_round_trip_with_handlers_and_subscriptions(
    livekit_server: ServerInfo, livekit_token: TokenFactory, tmp_path: Path
) -> None:
    url = livekit_server.url
    got_text: list[tuple[str, lk.TextStreamInfo, str]] = []
    async with (
        lk.open_room(url, livekit_token("alice")) as alice,
        lk.open_room(url, livekit_token("bob")) as bob,
    ):
        await see(alice, bob)
        done = anyio.Event()

        async def on_text(reader: lk.TextStreamReader, identity: str) -> None:
            text = await reader.read_all()
            got_text.append((text, reader.info, identity))
            done.set()

        bob.register_text_stream_handler("chat", on_text)
        with pytest.raises(ValueError):
            bob.register_text_stream_handler("chat", on_text)
        with pytest.raises(ValueError):
            bob.text_streams("chat")

        sent = await alice.local_participant.send_text(
            TEXT, topic="chat", attributes={"lang": "mixed", "n": "1"}
        )
        with anyio.fail_after(STEP):
            await done.wait()
        text, info, identity = got_text[0]
        assert text == TEXT
        assert identity == "alice"
        assert info.stream_id == sent.stream_id and info.topic == "chat"
        assert dict(info.attributes) == {"lang": "mixed", "n": "1"}

        # several writes arrive as their concatenation
        done = anyio.Event()
        parts = ["first ", "ünïcödé ", "🎉" * 5000, " last"]
        async with alice.local_participant.stream_text(topic="chat") as writer:
            for part in parts:
                await writer.write(part)
        with anyio.fail_after(STEP):
            await done.wait()
        assert got_text[1][0] == "".join(parts)
        assert got_text[1][1].stream_id == writer.info.stream_id

        # bytes through a subscription: a buffer, a stream and a file
        blob = bytes(range(256)) * (3 * 4096)  # 3 MiB
        path = tmp_path / "notes.txt"
        path.write_bytes(b"file contents\n" * 5000)
        with bob.byte_streams("files") as sub:
            info_b = await alice.local_participant.send_bytes(
                memoryview(bytearray(blob)), name="blob.bin", topic="files", attributes={"k": "v"}
            )
            with anyio.fail_after(STEP):
                reader = await sub.receive()
                async with reader:
                    data = await reader.read_all()
            assert hashlib.sha256(data).digest() == hashlib.sha256(blob).digest()
            assert reader.info.name == "blob.bin" and reader.info.size == len(blob)
            assert reader.info.stream_id == info_b.stream_id
            assert dict(reader.info.attributes) == {"k": "v"}
            assert reader.participant_identity == "alice"

            info_f = await alice.local_participant.send_file(path, topic="files")
            assert info_f.name == "notes.txt" and info_f.mime_type == "text/plain"
            with anyio.fail_after(STEP):
                reader = await sub.receive()
                async with reader:
                    out = await reader.write_to_file(tmp_path)
            assert Path(out).name == "notes (1).txt"  # never replaces the original
            assert await anyio.Path(out).read_bytes() == await anyio.Path(path).read_bytes()

            chunks = [bytes([i]) * 40_000 for i in range(8)]
            async with alice.local_participant.stream_bytes(
                "gen.bin", total_size=sum(map(len, chunks)), topic="files"
            ) as bw:
                for c in chunks:
                    await bw.write(c)
            with anyio.fail_after(STEP):
                reader = await sub.receive()
                async with reader:
                    assert await reader.read_all() == b"".join(chunks)
        streams_idle(alice, bob)
    await wait_released()


async def test_an_exception_or_cancellation_in_the_block_aborts_the_stream(
    livekit_server: ServerInfo, livekit_token: TokenFactory
) -> None:
    url = livekit_server.url
    async with (
        lk.open_room(url, livekit_token("alice")) as alice,
        lk.open_room(url, livekit_token("bob")) as bob,
    ):
        await see(alice, bob)
        with bob.text_streams("t") as sub:
            with pytest.raises(KeyError, match="boom") as raised:
                async with alice.local_participant.stream_text(topic="t") as w:
                    await w.write("partial ")
                    raise KeyError("boom")
            assert type(raised.value) is KeyError  # propagates unchanged
            with anyio.fail_after(STEP):
                reader = await sub.receive()
                got: list[str] = []
                with pytest.raises(lk.StreamError, match="KeyError"):
                    async for chunk in reader:
                        got.append(chunk)
                reader.close()
            assert "".join(got) in ("", "partial ")

            with anyio.move_on_after(1.0) as scope:
                async with alice.local_participant.stream_text(topic="t") as w:
                    await w.write("then cancelled")
                    await anyio.sleep_forever()
            assert scope.cancelled_caught
            with anyio.fail_after(STEP):
                reader = await sub.receive()
                with pytest.raises(lk.StreamError, match="cancelled"):
                    await reader.read_all()
                reader.close()
        streams_idle(alice, bob)
    await wait_released()


async def test_handler_failure_and_buffer_limit_leave_the_room_running(
    livekit_server: ServerInfo,
    livekit_token: TokenFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = livekit_server.url
    opts = lk.RoomOptions(stream_buffer_limit=100_000)
    async with (
        lk.open_room(url, livekit_token("alice")) as alice,
        lk.open_room(url, livekit_token("bob"), options=opts) as bob,
    ):
        await see(alice, bob)
        failed = anyio.Event()

        async def broken(reader: lk.TextStreamReader, identity: str) -> None:
            failed.set()
            raise RuntimeError("handler bug")

        bob.register_text_stream_handler("bad", broken)
        with caplog.at_level(logging.ERROR, "lkrtc_trio.streams"):
            await alice.local_participant.send_text("x", topic="bad")
            with anyio.fail_after(STEP):
                await failed.wait()
            await anyio.sleep(0.1)
        assert any("handler bug" in (r.exc_text or "") for r in caplog.records)

        # a slow reader: nothing read until more than the limit arrived
        with bob.byte_streams("big") as sub:
            await alice.local_participant.send_bytes(b"z" * 300_000, topic="big")
            with anyio.fail_after(STEP):
                reader = await sub.receive()
                while reader._error is None:
                    await anyio.sleep(0.05)
                with pytest.raises(lk.StreamError, match="buffer limit"):
                    await reader.read_all()
            reader.close()

        # the room goes on: a text still arrives
        with bob.text_streams("after") as tsub:
            await alice.local_participant.send_text("still here", topic="after")
            with anyio.fail_after(STEP):
                reader2 = await tsub.receive()
                assert await reader2.read_all() == "still here"
            reader2.close()
        streams_idle(alice, bob)
    await wait_released()


async def test_a_sender_that_leaves_mid_stream_fails_the_reader(
    livekit_server: ServerInfo, livekit_token: TokenFactory
) -> None:
    """alice's room is closed while her writer is open: her block raises
    RoomClosedError (the stream did not complete), and bob's reader fails
    with StreamError once alice has left, after the chunks that came."""
    url = livekit_server.url
    async with lk.open_room(url, livekit_token("bob")) as bob:
        with bob.text_streams("t") as sub:
            async with lk.open_room(url, livekit_token("alice")) as alice:
                await see(alice, bob)
                with pytest.raises(lk.RoomClosedError):
                    async with alice.local_participant.stream_text(topic="t") as w:
                        await w.write("first|")
                        with anyio.fail_after(STEP):
                            reader = await sub.receive()
                            assert await reader.__anext__() == "first|"
                        await alice.disconnect()
                        await w.write("never sent")
                assert alice._session.streams.open_writers == 0
            with anyio.fail_after(STEP):
                with pytest.raises(lk.StreamError, match=r"left|disconnected"):
                    await reader.read_all()
            reader.close()
        streams_idle(bob)
    await wait_released()
