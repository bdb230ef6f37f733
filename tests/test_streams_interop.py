"""Data streams between lkrtc-trio and the official asyncio SDK (``livekit.rtc``), both
directions, on a real livekit-server (both anyio backends).

The official participant runs in its own process (``tests/peers/official_peer.py``): its
stream handlers read each stream whole and report what arrived (the text, or the SHA-256 of
the bytes), or the StreamError that ended it. Every exchange checks the content exactly, the
attributes and the sender's identity, and every test ends with nothing left open: no native
handle, no pending request, no open reader or writer on either side. Each wait is bounded.
"""

from __future__ import annotations

import hashlib
import itertools
import random
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest

import lkrtc_trio as lk
from lkrtc_trio.testing import ServerInfo
from lkrtc_trio.testing.pytest_plugin import TokenFactory

from .helpers import see_each_other, wait_released
from .peers._official import OfficialPeer, open_official_peer

pytestmark = pytest.mark.integration

SEE = 20  # seconds to see each other (the server batches updates every ~3 s)
STEP = 15  # seconds for any single exchange
BIG = 40  # seconds for a transfer of megabytes (measured: 1 to 5 s)
ABORT_SEEN = 10  # seconds within which a reader must learn that its stream was aborted

#: 20,000 characters of 1 to 4 UTF-8 bytes each (accents, CJK, emoji)
TEXT_OUT = ("héllo wörld 你好世界 🎉🚀 ünïcödé " * 800)[:20_000]
TEXT_IN = ("Grüße aus Köln - 東京タワー 🗼✨ naïve café, ça va? " * 600)[:20_000]

MiB = 1024 * 1024

assert len(TEXT_OUT) == len(TEXT_IN) == 20_000


# -- helpers -----------------------------------------------------------------------------


def sha256(data: bytes | str) -> str:
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


def ok(reply: dict[str, Any]) -> Any:
    """The result of an official peer's successful reply."""
    assert reply["ok"], reply
    return reply["result"]


def random_bytes(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


def part(key: str, index: int, chars: int) -> str:
    """Part ``index`` of the lkrtc-side stream ``key``: a marker naming both, then
    characters of mixed UTF-8 widths."""
    alphabet = "aé你🎉 "
    rng = random.Random(f"{key}#{index}")
    return f"<{key}#{index}>" + "".join(rng.choice(alphabet) for _ in range(chars))


def streams_idle(*rooms: lk.Room) -> None:
    for room in rooms:
        streams = room._session.streams
        assert (streams.open_readers, streams.open_writers) == (0, 0)


async def peer_idle(peer: OfficialPeer) -> None:
    """Waits until the official peer has no stream reader or writer open."""
    with anyio.fail_after(STEP):
        while (state := ok(await peer.call("open_streams"))) != {"readers": 0, "writers": 0}:
            await anyio.sleep(0.05)
    assert state == {"readers": 0, "writers": 0}


async def see(a: lk.Room, b: lk.Room) -> None:
    with anyio.fail_after(SEE):
        await a.wait_for_participant(b.local_participant.identity)
        await b.wait_for_participant(a.local_participant.identity)


@dataclass
class Received:
    """One stream an lkrtc-trio handler read to its end (or to its failure)."""

    identity: str
    info: lk.TextStreamInfo | lk.ByteStreamInfo
    text: str  # the text of a text stream ("" for bytes)
    length: int  # characters of a text stream, bytes of a byte stream
    sha256: str  # of the text's UTF-8 encoding, or of the bytes
    chunks: int
    error: lk.StreamError | None


class Inbox:
    """lkrtc-trio stream handlers that read each stream whole and record it by stream
    id, with how many streams (and senders) were open at once."""

    def __init__(self) -> None:
        self.done: dict[str, Received] = {}
        self.opened: list[tuple[str, str]] = []  # (identity, stream_id), in order
        self.open_now: dict[str, str] = {}  # stream_id -> sender identity
        self.max_open = 0
        self.max_senders_open = 0
        self.chunk_log: list[str] = []  # the stream id of each chunk, in arrival order
        self._changed = anyio.Event()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    def _open(self, identity: str, stream_id: str) -> None:
        self.opened.append((identity, stream_id))
        self.open_now[stream_id] = identity
        self.max_open = max(self.max_open, len(self.open_now))
        self.max_senders_open = max(self.max_senders_open, len(set(self.open_now.values())))
        self._notify()

    async def on_text(self, reader: lk.TextStreamReader, identity: str) -> None:
        sid = reader.info.stream_id
        self._open(identity, sid)
        parts: list[str] = []
        error: lk.StreamError | None = None
        try:
            async for chunk in reader:
                parts.append(chunk)
                self.chunk_log.append(sid)
        except lk.StreamError as e:
            error = e
        finally:
            del self.open_now[sid]
        text = "".join(parts)
        self.done[sid] = Received(
            identity, reader.info, text, len(text), sha256(text), len(parts), error
        )
        self._notify()

    async def on_bytes(self, reader: lk.ByteStreamReader, identity: str) -> None:
        sid = reader.info.stream_id
        self._open(identity, sid)
        digest = hashlib.sha256()
        length = chunks = 0
        error: lk.StreamError | None = None
        try:
            async for chunk in reader:
                digest.update(chunk)
                length += len(chunk)
                chunks += 1
        except lk.StreamError as e:
            error = e
        finally:
            del self.open_now[sid]
        self.done[sid] = Received(
            identity, reader.info, "", length, digest.hexdigest(), chunks, error
        )
        self._notify()

    async def wait(self, stream_id: str, limit: float = STEP) -> Received:
        with anyio.fail_after(limit):
            while stream_id not in self.done:
                await self._changed.wait()
        return self.done[stream_id]

    async def wait_opened(self, count: int, limit: float = STEP) -> None:
        with anyio.fail_after(limit):
            while len(self.opened) < count:
                await self._changed.wait()

    async def wait_done(self, count: int, limit: float = STEP) -> None:
        with anyio.fail_after(limit):
            while len(self.done) < count:
                await self._changed.wait()


# -- 1. whole texts ----------------------------------------------------------------------


async def test_send_text_both_ways(livekit_server: ServerInfo, livekit_token: TokenFactory) -> None:
    url = livekit_server.url
    me, other = "trio-text", "peer-text"
    inbox = Inbox()
    async with lk.open_room(url, livekit_token(me)) as room:
        lp = room.local_participant
        room.register_text_stream_handler("chat", inbox.on_text)
        async with open_official_peer(url, livekit_token(other)) as peer:
            ok(await peer.call("register_text_stream", topic="chat"))
            await see_each_other(room, peer)

            # lkrtc-trio -> official: every character, the attributes, the sender
            attrs = {"lang": "mixed ✓", "n": "1"}
            with anyio.fail_after(STEP):
                sent = await lp.send_text(TEXT_OUT, topic="chat", attributes=attrs)
            assert sent.topic == "chat" and dict(sent.attributes) == attrs
            ev = await peer.wait_for("text_stream_received", STEP, stream_id=sent.stream_id)
            assert ev["text"] == TEXT_OUT
            assert (ev["length"], ev["bytes"]) == (len(TEXT_OUT), len(TEXT_OUT.encode()))
            assert ev["sha256"] == sha256(TEXT_OUT)
            assert (ev["identity"], ev["topic"], ev["attributes"]) == (me, "chat", attrs)
            assert (ev["mime_type"], ev["size"]) == ("text/plain", len(TEXT_OUT.encode()))

            # official -> lkrtc-trio
            attrs_in = {"from": "official", "émoji": "🎉"}
            reply = ok(
                await peer.call("send_text", text=TEXT_IN, topic="chat", attributes=attrs_in)
            )
            got = await inbox.wait(reply["stream_id"])
            assert got.error is None
            assert got.text == TEXT_IN
            assert got.identity == other
            assert isinstance(got.info, lk.TextStreamInfo)
            assert (got.info.topic, dict(got.info.attributes)) == ("chat", attrs_in)
            assert (got.info.mime_type, got.info.size) == ("text/plain", len(TEXT_IN.encode()))
            assert reply["size"] == len(TEXT_IN.encode())

            # short texts, one character and empty, both ways, in order
            for text in ["x", "ü", "🎉", ""]:
                with anyio.fail_after(STEP):
                    sent = await lp.send_text(text, topic="chat")
                ev = await peer.wait_for("text_stream_received", STEP, stream_id=sent.stream_id)
                assert (ev["text"], ev["identity"], ev["attributes"]) == (text, me, {})
                reply = ok(await peer.call("send_text", text=text, topic="chat"))
                got = await inbox.wait(reply["stream_id"])
                assert (got.text, got.identity, got.error) == (text, other, None)
                assert dict(got.info.attributes) == {}

            await peer_idle(peer)
        streams_idle(room)
        assert lk.pending_requests() == 0
    await wait_released()


# -- 2. texts in several writes ------------------------------------------------------------


async def test_stream_text_in_several_writes_both_ways(
    livekit_server: ServerInfo, livekit_token: TokenFactory
) -> None:
    url = livekit_server.url
    me, other = "trio-writes", "peer-writes"
    inbox = Inbox()
    # parts of every width; one of 20,000 bytes (more than one 15,000-byte chunk)
    parts = ["first ", "ünïcödé ", "你好 ", "🎉" * 5000, " middle ", "x" * 16_000, " last"]
    async with lk.open_room(url, livekit_token(me)) as room:
        lp = room.local_participant
        room.register_text_stream_handler("parts", inbox.on_text)
        async with open_official_peer(url, livekit_token(other)) as peer:
            ok(await peer.call("register_text_stream", topic="parts"))
            await see_each_other(room, peer)

            # lkrtc-trio -> official: the concatenation, in order
            attrs = {"kind": "parts"}
            with anyio.fail_after(STEP):
                async with lp.stream_text(topic="parts", attributes=attrs) as writer:
                    for p in parts:
                        await writer.write(p)
                        await anyio.sleep(0.01)
            ev = await peer.wait_for("text_stream_received", STEP, stream_id=writer.info.stream_id)
            assert ev["text"] == "".join(parts)
            assert (ev["identity"], ev["topic"], ev["attributes"]) == (me, "parts", attrs)
            assert ev["chunks"] >= len(parts)

            # an empty stream (opened and closed without a write)
            with anyio.fail_after(STEP):
                async with lp.stream_text(topic="parts") as empty:
                    pass
            ev = await peer.wait_for("text_stream_received", STEP, stream_id=empty.info.stream_id)
            assert (ev["text"], ev["identity"]) == ("", me)

            # official -> lkrtc-trio, with attributes added by the close
            reply = ok(
                await peer.call(
                    "stream_text",
                    STEP,
                    parts=parts,
                    topic="parts",
                    attributes={"kind": "official"},
                    close_attributes={"done": "yes ✓"},
                    delay=0.01,
                )
            )
            got = await inbox.wait(reply["stream_id"])
            assert got.error is None
            assert got.text == "".join(parts)
            assert reply["sha256"] == sha256(got.text)
            assert got.identity == other
            assert got.chunks >= len(parts)
            assert dict(got.info.attributes) == {"kind": "official", "done": "yes ✓"}

            await peer_idle(peer)
        streams_idle(room)
        assert lk.pending_requests() == 0
    await wait_released()


# -- 3. bytes and files --------------------------------------------------------------------


async def test_bytes_and_files_both_ways(
    livekit_server: ServerInfo, livekit_token: TokenFactory, tmp_path: Path
) -> None:
    url = livekit_server.url
    me, other = "trio-bytes", "peer-bytes"
    blob = random_bytes(1, 3 * MiB)
    out_file = tmp_path / "report ✓.csv"
    out_file.write_bytes(b"a,b,c\n" + random_bytes(2, 700_000).hex().encode())
    in_file = tmp_path / "from-peer.json"
    in_file.write_bytes(random_bytes(3, 300_000))
    (tmp_path / "in").mkdir()
    async with lk.open_room(url, livekit_token(me)) as room:
        lp = room.local_participant
        async with open_official_peer(url, livekit_token(other)) as peer:
            ok(await peer.call("register_byte_stream", topic="files"))
            await see_each_other(room, peer)

            # lkrtc-trio send_bytes (3 MiB) -> official
            attrs = {"k": "v", "size": "3 MiB"}
            with anyio.fail_after(BIG):
                info = await lp.send_bytes(
                    memoryview(bytearray(blob)),
                    name="blob.bin",
                    mime_type="application/x-test",
                    topic="files",
                    attributes=attrs,
                )
            ev = await peer.wait_for("byte_stream_received", BIG, stream_id=info.stream_id)
            assert (ev["sha256"], ev["length"]) == (sha256(blob), len(blob))
            assert (ev["name"], ev["mime_type"], ev["size"]) == (
                "blob.bin",
                "application/x-test",
                len(blob),
            )
            assert (ev["identity"], ev["topic"], ev["attributes"]) == (me, "files", attrs)

            # lkrtc-trio send_file -> official: named after the file, type guessed
            with anyio.fail_after(STEP):
                info = await lp.send_file(out_file, topic="files", attributes={"f": "1"})
            ev = await peer.wait_for("byte_stream_received", STEP, stream_id=info.stream_id)
            content = out_file.read_bytes()
            assert (ev["sha256"], ev["length"], ev["size"]) == (
                sha256(content),
                len(content),
                len(content),
            )
            assert (ev["name"], ev["mime_type"]) == ("report ✓.csv", "text/csv")
            assert (ev["identity"], ev["attributes"]) == (me, {"f": "1"})

            with room.byte_streams("files-in") as sub:

                async def receive_all() -> tuple[lk.ByteStreamReader, bytes]:
                    with anyio.fail_after(BIG):
                        reader = await sub.receive()
                        async with reader:
                            return reader, await reader.read_all()

                # official stream_bytes (2 MiB in 64 KiB writes) -> lkrtc-trio
                reply = ok(
                    await peer.call(
                        "stream_bytes",
                        BIG,
                        name="gen.bin",
                        size=2 * MiB,
                        seed=11,
                        chunk_size=64 * 1024,
                        mime_type="application/x-gen",
                        topic="files-in",
                        attributes={"seed": "11"},
                    )
                )
                reader, data = await receive_all()
                assert reader.info.stream_id == reply["stream_id"]
                assert (sha256(data), len(data)) == (reply["sha256"], 2 * MiB)
                assert (reader.info.name, reader.info.mime_type, reader.info.size) == (
                    "gen.bin",
                    "application/x-gen",
                    2 * MiB,
                )
                assert dict(reader.info.attributes) == {"seed": "11"}
                assert reader.participant_identity == other

                # official send_bytes -> lkrtc-trio
                reply = ok(
                    await peer.call(
                        "send_bytes",
                        BIG,
                        name="peer.bin",
                        size=MiB + 7,
                        seed=12,
                        topic="files-in",
                        attributes={"via": "send_bytes"},
                    )
                )
                reader, data = await receive_all()
                assert reader.info.stream_id == reply["stream_id"]
                assert (sha256(data), len(data)) == (reply["sha256"], MiB + 7)
                assert (reader.info.name, reader.info.size) == ("peer.bin", MiB + 7)
                assert reader.info.mime_type == "application/octet-stream"
                assert dict(reader.info.attributes) == {"via": "send_bytes"}
                assert reader.participant_identity == other

                # official send_file -> lkrtc-trio, written to a file
                reply = ok(
                    await peer.call(
                        "send_file",
                        STEP,
                        path=str(in_file),
                        topic="files-in",
                        attributes={"x": "y"},
                    )
                )
                with anyio.fail_after(STEP):
                    reader = await sub.receive()
                    async with reader:
                        written = Path(await reader.write_to_file(tmp_path / "in"))
                assert written.parent == tmp_path / "in"
                assert written.name == "from-peer.json"
                assert await anyio.Path(written).read_bytes() == in_file.read_bytes()
                assert reply["sha256"] == sha256(in_file.read_bytes())
                assert (reader.info.name, reader.info.mime_type, reader.info.size) == (
                    "from-peer.json",
                    "application/json",
                    in_file.stat().st_size,
                )
                assert dict(reader.info.attributes) == {"x": "y"}
                assert reader.participant_identity == other

            await peer_idle(peer)
        streams_idle(room)
        assert lk.pending_requests() == 0
    await wait_released()


# -- 4. aborted streams --------------------------------------------------------------------


async def test_aborted_streams_fail_on_the_other_side(
    livekit_server: ServerInfo, livekit_token: TokenFactory
) -> None:
    url = livekit_server.url
    me, other = "trio-abort", "peer-abort"
    async with lk.open_room(url, livekit_token(me)) as room, AsyncExitStack() as stack:
        lp = room.local_participant
        sub = stack.enter_context(room.text_streams("abort-in"))
        peer = await stack.enter_async_context(open_official_peer(url, livekit_token(other)))
        ok(await peer.call("register_text_stream", topic="abort"))
        ok(await peer.call("register_byte_stream", topic="abort"))
        await see_each_other(room, peer)

        # an exception in the block: the official reader fails with it
        with anyio.fail_after(STEP), pytest.raises(KeyError, match="boom"):
            async with lp.stream_text(topic="abort", attributes={"a": "1"}) as w:
                await w.write("partial ")
                raise KeyError("boom")
        ev = await peer.wait_for("stream_failed", STEP, stream_id=w.info.stream_id)
        assert (ev["kind"], ev["error_type"], ev["identity"]) == ("text", "StreamError", me)
        assert "KeyError" in ev["description"] and "boom" in ev["description"]
        assert ev["partial"] in ("", "partial ")
        assert ev["attributes"] == {"a": "1"}
        assert peer.find("text_stream_received", stream_id=w.info.stream_id) is None

        # the same from a byte stream
        with anyio.fail_after(STEP), pytest.raises(RuntimeError, match="disk on fire"):
            async with lp.stream_bytes("x.bin", topic="abort", attributes={"b": "2"}) as bw:
                await bw.write(b"x" * 1000)
                raise RuntimeError("disk on fire")
        ev = await peer.wait_for("stream_failed", STEP, stream_id=bw.info.stream_id)
        assert (ev["kind"], ev["identity"], ev["name"]) == ("byte", me, "x.bin")
        assert "RuntimeError: disk on fire" in ev["description"]
        assert ev["attributes"] == {"b": "2"}
        assert ev["read"] in (0, 1000)
        # ... but with a total size announced, the native core reports the shortfall
        # instead of the reason (so does it when the official SDK aborts such a stream)
        with anyio.fail_after(STEP), pytest.raises(RuntimeError, match="disk on fire"):
            async with lp.stream_bytes("y.bin", total_size=10_000, topic="abort") as bw:
                await bw.write(b"y" * 1000)
                raise RuntimeError("disk on fire")
        ev = await peer.wait_for("stream_failed", STEP, stream_id=bw.info.stream_id)
        assert (ev["kind"], ev["identity"], ev["size"]) == ("byte", me, 10_000)
        assert ev["description"] == "stream data is incomplete"
        assert peer.find("byte_stream_received", identity=me) is None

        # cancellation of the block: the official reader fails within a bound
        with anyio.move_on_after(1.0) as scope:
            async with lp.stream_text(topic="abort") as w:
                await w.write("then cancelled")
                await anyio.sleep_forever()
        assert scope.cancelled_caught
        cancelled_at = anyio.current_time()
        ev = await peer.wait_for("stream_failed", ABORT_SEEN, stream_id=w.info.stream_id)
        assert ev["_received_at"] - cancelled_at < ABORT_SEEN
        assert "cancelled" in ev["description"]
        assert ev["partial"] in ("", "then cancelled")
        assert peer.find("text_stream_received", stream_id=w.info.stream_id) is None

        # official -> lkrtc-trio: the peer aborts with a reason
        reply = ok(
            await peer.call(
                "stream_text",
                parts=["partial ", "more "],
                topic="abort-in",
                abort_reason="gave up ✗",
            )
        )
        got: list[str] = []
        with anyio.fail_after(STEP):
            reader = await sub.receive()
            async with reader:
                with pytest.raises(lk.StreamError, match="gave up ✗"):
                    async for chunk in reader:
                        got.append(chunk)
        assert reader.info.stream_id == reply["stream_id"]
        assert reader.participant_identity == other
        assert "partial more ".startswith("".join(got))

        # official -> lkrtc-trio: the peer leaves with its stream open
        reply = ok(await peer.call("stream_text", parts=["held "], topic="abort-in", hold=True))
        with anyio.fail_after(STEP):
            held = await sub.receive()
            assert held.info.stream_id == reply["stream_id"]
            assert await held.__anext__() == "held "
        await stack.aclose()  # the peer disconnects and exits
        left_at = anyio.current_time()
        # whichever comes first: the native core's "Participant ... unexpectedly
        # disconnected in the middle of sending data", or lkrtc-trio's own "the sender
        # left the room while the stream was open"
        left = r"unexpectedly disconnected|the sender left"
        with anyio.fail_after(ABORT_SEEN), pytest.raises(lk.StreamError, match=left):
            await held.read_all()
        assert anyio.current_time() - left_at < ABORT_SEEN
        held.close()

        streams_idle(room)
        assert lk.pending_requests() == 0
    await wait_released()


# -- 5. many streams at once -----------------------------------------------------------------


async def test_twenty_interleaved_streams_from_two_senders(
    livekit_server: ServerInfo, livekit_token: TokenFactory
) -> None:
    url = livekit_server.url
    receiver_id, sender_id, other = "trio-receiver", "trio-sender", "peer-sender"
    n, n_parts, chars = 10, 6, 800
    inbox = Inbox()
    async with (
        lk.open_room(url, livekit_token(receiver_id)) as receiver,
        lk.open_room(url, livekit_token(sender_id)) as sender,
    ):
        receiver.register_text_stream_handler("many", inbox.on_text)
        async with open_official_peer(url, livekit_token(other)) as peer:
            await see_each_other(receiver, peer)
            await see(receiver, sender)

            expected = {
                f"trio-{i}": "".join(part(f"trio-{i}", j, chars) for j in range(n_parts))
                for i in range(n)
            }
            trio_ids: dict[str, str] = {}
            peer_stream_opened = anyio.Event()

            async def watch_peer_streams() -> None:
                while not any(identity == other for identity, _ in inbox.opened):
                    await anyio.sleep(0.01)
                peer_stream_opened.set()

            async def write_one(i: int) -> None:
                key = f"trio-{i}"
                lp = sender.local_participant
                async with lp.stream_text(topic="many", attributes={"stream": key}) as w:
                    trio_ids[key] = w.info.stream_id
                    for j in range(n_parts):
                        await anyio.sleep(0.03 * (1 + (i + j) % 3))
                        await w.write(part(key, j, chars))
                        if j == 0:
                            # keep this stream open until the peer's are open too
                            await peer_stream_opened.wait()

            since = peer.mark()
            cmd_id = await peer.send(
                "send_many_text_streams",
                count=n,
                parts=n_parts,
                part_chars=chars,
                delay=0.03,
                topic="many",
                key_prefix="peer-",
            )
            with anyio.fail_after(STEP):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(watch_peer_streams)
                    for i in range(n):
                        tg.start_soon(write_one, i)
            peer_streams = ok(await peer.wait_for("reply", STEP, since=since, id=cmd_id))
            peer_ids = {s["key"]: s["stream_id"] for s in peer_streams}
            for s in peer_streams:
                expected[s["key"]] = s["text"]
                assert s["sha256"] == sha256(s["text"])
            await inbox.wait_done(2 * n)

            assert len(inbox.done) == 2 * n
            by_key = {r.info.attributes["stream"]: r for r in inbox.done.values()}
            assert set(by_key) == set(expected)
            for key, got in by_key.items():
                assert got.error is None, (key, got.error)
                assert got.text == expected[key], key
                want_sender, want_id = (
                    (sender_id, trio_ids[key])
                    if key.startswith("trio-")
                    else (other, peer_ids[key])
                )
                assert (got.identity, got.info.stream_id) == (want_sender, want_id)
                assert got.info.topic == "many"
                assert got.chunks >= n_parts
            # the streams really were open at once, from both senders, their chunks mixed
            assert inbox.max_senders_open == 2
            assert inbox.max_open >= 10, inbox.max_open
            switches = sum(a != b for a, b in itertools.pairwise(inbox.chunk_log))
            assert switches >= 2 * n * n_parts // 2, switches

            await peer_idle(peer)
        streams_idle(receiver, sender)
        assert lk.pending_requests() == 0
    await wait_released()


# -- 6. destinations -------------------------------------------------------------------------


async def test_destination_identities_reach_only_their_participants(
    livekit_server: ServerInfo, livekit_token: TokenFactory
) -> None:
    url = livekit_server.url
    a_id, c_id, b_id = "trio-a", "trio-c", "peer-b"
    inbox_a, inbox_c = Inbox(), Inbox()
    async with (
        lk.open_room(url, livekit_token(a_id)) as a,
        lk.open_room(url, livekit_token(c_id)) as c,
    ):
        for room, inbox in ((a, inbox_a), (c, inbox_c)):
            room.register_text_stream_handler("dm", inbox.on_text)
            room.register_byte_stream_handler("dm", inbox.on_bytes)
        async with open_official_peer(url, livekit_token(b_id)) as b:
            ok(await b.call("register_text_stream", topic="dm"))
            ok(await b.call("register_byte_stream", topic="dm"))
            await see_each_other(a, b)
            await see_each_other(c, b)
            await see(a, c)

            # Streams of one sender reach a receiver in order, so once a broadcast sent
            # after them arrived, a stream that was going to arrive would have.

            # lkrtc-trio A -> official B only: lkrtc-trio C gets none of it
            since = b.mark()
            to_b = [b_id]
            with anyio.fail_after(STEP):
                t1 = await a.local_participant.send_text(
                    "for b ✓", topic="dm", destination_identities=to_b, attributes={"n": "1"}
                )
                async with a.local_participant.stream_text(
                    topic="dm", destination_identities=to_b
                ) as w:
                    await w.write("streamed ")
                    await w.write("for b")
                t2 = w.info
                t3 = await a.local_participant.send_bytes(
                    b"\x00\x01bytes for b", name="b.bin", topic="dm", destination_identities=to_b
                )
                marker = await a.local_participant.send_text("marker a", topic="dm")
            ev = await b.wait_for("text_stream_received", STEP, since=since, stream_id=t1.stream_id)
            assert (ev["text"], ev["identity"], ev["attributes"]) == ("for b ✓", a_id, {"n": "1"})
            ev = await b.wait_for("text_stream_received", STEP, since=since, stream_id=t2.stream_id)
            assert (ev["text"], ev["identity"]) == ("streamed for b", a_id)
            ev = await b.wait_for("byte_stream_received", STEP, since=since, stream_id=t3.stream_id)
            assert (ev["sha256"], ev["name"]) == (sha256(b"\x00\x01bytes for b"), "b.bin")
            await b.wait_for("text_stream_received", STEP, since=since, stream_id=marker.stream_id)
            got = await inbox_c.wait(marker.stream_id)
            assert (got.text, got.identity) == ("marker a", a_id)
            await anyio.sleep(0.5)
            assert [sid for _, sid in inbox_c.opened] == [marker.stream_id]

            # official B -> lkrtc-trio A only: lkrtc-trio C gets none of it
            to_a = [a_id]
            r1 = ok(
                await b.call("send_text", text="for a ✓", topic="dm", destination_identities=to_a)
            )
            r2 = ok(
                await b.call(
                    "stream_text",
                    parts=["streamed ", "for a"],
                    topic="dm",
                    destination_identities=to_a,
                )
            )
            r3 = ok(
                await b.call(
                    "send_bytes",
                    name="a.bin",
                    size=5000,
                    seed=5,
                    topic="dm",
                    destination_identities=to_a,
                )
            )
            r4 = ok(await b.call("send_text", text="marker b", topic="dm"))
            for r, text in ((r1, "for a ✓"), (r2, "streamed for a"), (r4, "marker b")):
                got = await inbox_a.wait(r["stream_id"])
                assert (got.text, got.identity, got.error) == (text, b_id, None)
            got = await inbox_a.wait(r3["stream_id"])
            assert (got.sha256, got.length, got.identity) == (r3["sha256"], 5000, b_id)
            got = await inbox_c.wait(r4["stream_id"])
            assert (got.text, got.identity) == ("marker b", b_id)
            await anyio.sleep(0.5)
            assert [sid for _, sid in inbox_c.opened] == [marker.stream_id, r4["stream_id"]]

            # lkrtc-trio C -> lkrtc-trio A only: official B gets none of it
            since = b.mark()
            with anyio.fail_after(STEP):
                t4 = await c.local_participant.send_text(
                    "for a from c", topic="dm", destination_identities=to_a
                )
                marker = await c.local_participant.send_text("marker c", topic="dm")
            got = await inbox_a.wait(t4.stream_id)
            assert (got.text, got.identity) == ("for a from c", c_id)
            await inbox_a.wait(marker.stream_id)
            await b.wait_for("text_stream_received", STEP, since=since, stream_id=marker.stream_id)
            await anyio.sleep(0.5)
            opened = [
                e["stream_id"] for e in b.events[since:] if e["event"] == "text_stream_opened"
            ]
            assert opened == [marker.stream_id]

            await peer_idle(b)
        streams_idle(a, c)
        assert lk.pending_requests() == 0
    await wait_released()
