"""A chat over data streams, and a file sent along.

alice and bob join one room. Each serves the topic ``lk.chat`` (the topic of
LiveKit's chat components) with a text stream handler: an async function that
runs once per incoming stream, as soon as it opens, and reads it whole with
``await reader.read_all()``. Then:

1. alice asks for the meeting notes with ``send_text`` (one call: the whole
   message as one stream);
2. bob answers with ``send_text(..., reply_to_id=...)``, naming the stream of
   alice's question; alice sees it in the answer's ``info.reply_to_id``;
3. bob sends the file ``notes.txt`` with ``send_file`` on the topic
   ``files``; alice takes it from a subscription (``room.byte_streams``),
   saves it with ``reader.write_to_file(directory)`` and checks its SHA-256
   against the one bob computed;
4. alice answers with ``stream_text``, one write per word, as a language
   model streams its tokens; bob's handler starts when the stream opens, and
   ``read_all`` returns once alice's block closes it.

Every message must arrive exactly as sent, from the right sender, in order.
Prints what happened; exits 0 only if everything was as expected.

Run (starts a local ``livekit-server --dev``; as root, inside a private
network namespace)::

    python -m lkrtc_trio.testing.netns -- python examples/chat.py

or against a server of yours::

    python examples/chat.py --url wss://... --api-key KEY --api-secret SECRET
"""

from __future__ import annotations

import argparse
import hashlib
import secrets
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from functools import partial
from pathlib import Path

import trio

import lkrtc_trio as lk
from lkrtc_trio.testing import (
    DEFAULT_API_KEY,
    DEFAULT_API_SECRET,
    LocalServer,
    install_server,
    mint_token,
)

START = time.monotonic()
#: (sender, text, stream info) as a receiver got it
Message = tuple[str, str, lk.TextStreamInfo]
CHAT = "lk.chat"
FILES = "files"
STEP = 15  # seconds for any one message to arrive
#: delay between the words of the streamed answer
TOKEN_DELAY = 0.04


def say(who: str, what: str) -> None:
    print(f"[{time.monotonic() - START:6.2f}s] {who:>6}: {what}", flush=True)


def sid(info: lk.TextStreamInfo | lk.ByteStreamInfo) -> str:
    """A stream's id, shortened for printing."""
    return info.stream_id[:8] + "…"


def short(text: str, width: int = 60) -> str:
    return repr(text if len(text) <= width else text[: width - 1] + "…")


class Chatter:
    """One participant's side of the chat: its room, and the messages its
    ``lk.chat`` handler received, in the order they were complete."""

    def __init__(self, name: str, room: lk.Room) -> None:
        self.name = name
        self.room = room
        self._send, self._inbox = trio.open_memory_channel[Message](16)
        room.register_text_stream_handler(CHAT, self.on_message)

    @property
    def me(self) -> lk.LocalParticipant:
        return self.room.local_participant

    async def on_message(self, reader: lk.TextStreamReader, sender: str) -> None:
        """The handler: runs when a stream opens; the reader is closed when
        it returns. An exception here would be logged, and the room go on."""
        opened = time.monotonic()
        text = await reader.read_all()  # until the sender closes the stream
        took = time.monotonic() - opened
        say(self.name, f"got {short(text)} from {sender} ({took:.2f} s after it opened)")
        await self._send.send((sender, text, reader.info))

    async def expect(self, sender: str, text: str) -> lk.TextStreamInfo:
        """The next message; raises if it is not ``text`` from ``sender``."""
        try:
            with trio.fail_after(STEP):
                got_sender, got_text, info = await self._inbox.receive()
        except trio.TooSlowError:
            raise Mismatch(f"{self.name} got nothing in {STEP} s; wanted {text!r}") from None
        if (got_sender, got_text) != (sender, text):
            raise Mismatch(f"{self.name} got {got_text!r} from {got_sender}, wanted {text!r}")
        return info


class Mismatch(Exception):
    pass


async def write_notes(path: trio.Path) -> tuple[int, str]:
    """Writes a small notes file; returns its size and SHA-256."""
    lines = [f"{i:3}. action item {i}: {secrets.token_hex(16)}\n" for i in range(1, 1001)]
    data = ("# Meeting notes\n" + "".join(lines)).encode()
    await path.write_bytes(data)
    return len(data), hashlib.sha256(data).hexdigest()


async def chat(alice: Chatter, bob: Chatter, workdir: Path) -> None:
    """The conversation; raises :class:`Mismatch` on anything unexpected."""
    say("chat", "-- 1. alice asks (send_text)")
    question = "Hi bob! Do you have the notes of this morning's meeting? 📝"
    asked = await alice.me.send_text(question, topic=CHAT)
    say("alice", f"sent {short(question)} as stream {sid(asked)}")
    await bob.expect("alice", question)

    say("chat", "-- 2. bob replies (send_text with reply_to_id)")
    answer = "Sure, here they are."
    replied = await bob.me.send_text(answer, topic=CHAT, reply_to_id=asked.stream_id)
    say("bob", f"sent {short(answer)} as {sid(replied)}, a reply to {sid(asked)}")
    reply = await alice.expect("bob", answer)
    if reply.reply_to_id != asked.stream_id:
        raise Mismatch(f"alice got a reply to {reply.reply_to_id!r}, not to {asked.stream_id!r}")
    say("alice", f"it answers her stream {sid(asked)}")

    say("chat", "-- 3. bob sends a file (send_file)")
    downloads = trio.Path(workdir / "alice")
    await downloads.mkdir()
    notes = trio.Path(workdir / "bob" / "notes.txt")
    await notes.parent.mkdir()
    size, digest = await write_notes(notes)
    say("bob", f"wrote {notes.name}: {size} bytes, SHA-256 {digest[:16]}…")
    # Subscribe before the file is sent: a stream on a topic nobody serves is
    # dropped (and logged once).
    with alice.room.byte_streams(FILES) as files:
        sent = await bob.me.send_file(notes, topic=FILES)
        say("bob", f"sent {sent.name} ({sent.mime_type}, {sent.size} bytes) as {sid(sent)}")
        try:
            with trio.fail_after(STEP):
                reader = await files.receive()
                async with reader:  # closed when done, whatever happens
                    info = reader.info
                    sender = reader.participant_identity
                    say("alice", f"receiving {info.name!r} ({info.size} bytes) from {sender}")
                    saved = trio.Path(await reader.write_to_file(downloads))
        except trio.TooSlowError:
            raise Mismatch(f"alice did not get the whole file in {STEP} s") from None
    content = await saved.read_bytes()
    got_digest = hashlib.sha256(content).hexdigest()
    say("alice", f"saved {saved}: {len(content)} bytes, SHA-256 {got_digest[:16]}…")
    if (info.stream_id, info.name, info.size) != (sent.stream_id, "notes.txt", size):
        raise Mismatch(f"alice got the stream {info}, bob sent {sent}")
    if got_digest != digest:
        raise Mismatch(f"the saved file's SHA-256 is {got_digest}, bob's is {digest}")
    say("alice", "the SHA-256 matches")

    say("chat", "-- 4. alice streams her answer word by word (stream_text)")
    lines = content.count(b"\n")
    thanks = (
        f"Thanks bob! {saved.name} arrived whole: {lines} lines, {size} bytes, "
        f"SHA-256 {got_digest[:12]}. I'll go through the action items now."
    )
    words = thanks.split(" ")
    async with alice.me.stream_text(topic=CHAT) as writer:
        say("alice", f"opened stream {sid(writer.info)}")
        for i, word in enumerate(words):
            await writer.write(word if i == 0 else " " + word)
            await trio.sleep(TOKEN_DELAY)  # as a model producing tokens
    say("alice", f"closed it after {len(words)} writes")
    await bob.expect("alice", thanks)


async def run(url: str, token: Callable[..., str], workdir: Path) -> list[str]:
    """Connects the two, chats; returns what went wrong."""
    failures: list[str] = []
    async with AsyncExitStack() as stack:
        chatters: dict[str, Chatter] = {}
        for name in ("alice", "bob"):
            room = await stack.enter_async_context(lk.open_room(url, token(name)))
            chatters[name] = Chatter(name, room)  # serves lk.chat from now on
            say(name, "connected")
        alice, bob = chatters["alice"], chatters["bob"]
        # livekit-server announces participants that publish nothing in
        # batches, every 3 s: expect about 3 s here. A stream sent to someone
        # not yet announced would not reach them.
        say("all", "waiting until both see each other")
        with trio.fail_after(20):
            await alice.room.wait_for_participant("bob")
            await bob.room.wait_for_participant("alice")
        try:
            await chat(alice, bob, workdir)
        except (Mismatch, lk.StreamError) as exc:
            failures.append(f"{type(exc).__name__}: {exc}")
        say("all", "leaving")
    handles = lk.live_native_handles()
    say("all", f"left; native handles still owned: {handles}")
    if handles:
        failures.append(f"{handles} native handles leaked")
    return failures


def main() -> int:
    parser = argparse.ArgumentParser(description="lkrtc_trio chat example")
    parser.add_argument("--url", help="a LiveKit server (default: start a local one)")
    parser.add_argument("--api-key", default=DEFAULT_API_KEY)
    parser.add_argument("--api-secret", default=DEFAULT_API_SECRET)
    args = parser.parse_args()
    room = f"chat-{secrets.token_hex(3)}"
    token = partial(mint_token, room=room, api_key=args.api_key, api_secret=args.api_secret)

    with tempfile.TemporaryDirectory(prefix="lkrtc-chat-") as tmp:
        if args.url:
            failures = trio.run(run, args.url, token, Path(tmp))
        else:
            with LocalServer(binary=install_server()) as info:
                print(f"livekit-server {info.url}", flush=True)
                failures = trio.run(run, info.url, token, Path(tmp))
    for failure in failures:
        print(f"UNEXPECTED: {failure}", flush=True)
    print("chat example: " + ("failed" if failures else "everything as expected"), flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
