"""The guides' code examples run, and the documentation builds without a warning.

Rules:

* Every ```` ```python ```` block of README.md and docs/*.md gets a verdict, or
  this test fails: it runs in its guide's *session* (below), runs as a *program*,
  or is marked skipped in the Markdown, visibly, with a reason, by an HTML
  comment on the line before it: ``<!-- docs-test: skip REASON -->``.
  ``test_every_block_has_a_verdict`` counts them (``-s`` prints the table).
* A session runs one guide's blocks in order, in one namespace, against the
  session's livekit-server, like a reader pasting them into an async REPL
  (top-level ``await`` allowed). ``SPECS`` says what each block assumes: the
  names a guide takes for granted (``url``, ``token``, ``room``, ``lp``, a
  second participant ``other``, a track...) are made by this harness, real
  ones; the other participants a block talks to (``"bob"``, ``"agent"``...)
  are real rooms of this process; a block that serves events "until the room
  ends" runs until the harness, once the block has handled what a peer sent,
  ends the room. Then the harness checks what the block claims (the RPC reply,
  what a handler printed, the frames a stream received...).
* Sessions run on trio and on asyncio; a block that uses trio itself
  (``trio.``) runs on trio only. Every block runs under a deadline, and a
  session fails if one of lkrtc_trio's loggers reported an error (a handler
  of a block that raised, say; the native core's own log, ``lkrtc_trio.native``,
  is not checked) or if it left a native handle or request behind.
* A program (``trio.run(main, "ws://127.0.0.1:7880", "<token>")``) runs as
  a script, in a subprocess, with those two placeholders replaced by the test
  server's URL and a token, while a participant of this process plays its
  part. A placeholder path of the reader's own (``/path/to/...``) is replaced
  by a real one (``Spec.replace``).
* The API reference documents each public name exactly once, and the Sphinx
  build (``make docs``: warnings and unresolved references are errors) runs
  here too, unless ``make docs`` has just built the same sources (it leaves a
  digest of them in ``docs/_build/html``).
"""

from __future__ import annotations

import ast
import contextlib
import importlib
import importlib.util
import inspect
import json
import logging
import math
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel
import numpy as np
import pytest

import lkrtc_trio as lk
from lkrtc_trio.testing import LocalServer, ServerInfo, install_server, mint_token

from . import tones
from .helpers import wait_released

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
GUIDES = ["README.md", *sorted(p.relative_to(ROOT).as_posix() for p in DOCS.glob("*.md"))]
SKIP = re.compile(r"<!--\s*docs-test:\s*skip\s+(?P<reason>.+?)\s*-->")
#: the placeholders of a program's ``trio.run(main, URL, TOKEN)``
URL_PLACEHOLDER = '"ws://127.0.0.1:7880"'
TOKEN_PLACEHOLDER = '"<token>"'
TRIO_ONLY = re.compile(r"\btrio\.")


# --- the blocks --------------------------------------------------------------------------


@dataclass(frozen=True)
class Block:
    guide: str
    line: int  # of the block's first code line
    code: str
    skip: str | None  # the reason, when the Markdown marks it skipped

    @property
    def first_line(self) -> str:
        return self.code.strip().splitlines()[0]

    def __str__(self) -> str:
        return f"{self.guide}:{self.line} ({self.first_line!r})"


def extract_blocks(guide: str, text: str | None = None) -> list[Block]:
    """The ```` ```python ```` blocks of ``guide`` (a path relative to the root)."""
    lines = (ROOT / guide).read_text().splitlines() if text is None else text.splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        if lines[i].strip() == "```python":
            start = i + 1
            end = start
            while lines[end].strip() != "```":
                end += 1
            previous = next((ln for ln in reversed(lines[:i]) if ln.strip()), "")
            marked = SKIP.search(previous)
            code = "\n".join(lines[start:end]) + "\n"
            blocks.append(Block(guide, start + 1, code, marked.group("reason") if marked else None))
            i = end
        i += 1
    return blocks


# --- the harness -------------------------------------------------------------------------

Namespace = dict[str, Any]
Step = Callable[["Harness", Namespace], Coroutine[Any, Any, None]]


class Harness:
    """One guide's session: the namespace's real objects, the peers, and what
    the blocks printed. Rooms and background work (tones) live in tasks of the
    session's task group, so that blocks and rooms can come and go in any order."""

    def __init__(
        self,
        server: ServerInfo,
        room_name: str,
        tg: anyio.abc.TaskGroup,
        me: str,
        workdir: Path,
    ) -> None:
        self.server = server
        self.room_name = room_name
        self.tg = tg
        self.me = me
        self.workdir = workdir
        self.printed: list[str] = []
        self.peers: dict[str, lk.Room] = {}
        self.current: lk.Room | None = None
        self._closers: list[anyio.Event] = []
        self._block = 0
        self._owned: list[Any] = []  # sources and tracks made for the blocks
        self._deferred: list[Callable[[], Awaitable[object]]] = []
        self.room_before: Any = None  # the namespace's ``room`` before the running block

    # names --------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return self.server.url

    def token(self, identity: str, **grants: Any) -> str:
        return mint_token(
            identity,
            self.room_name,
            api_key=self.server.api_key,
            api_secret=self.server.api_secret,
            **grants,
        )

    def token_factory(self, identity: str, room: str | None = None, **grants: Any) -> str:
        """What the ``livekit_token`` fixture is (for a block that is a test)."""
        return mint_token(
            identity,
            room or self.room_name,
            api_key=self.server.api_key,
            api_secret=self.server.api_secret,
            **grants,
        )

    def print(self, *args: Any, sep: str = " ", **kwargs: Any) -> None:
        """The blocks' ``print``: recorded, and shown with ``pytest -s``."""
        line = sep.join(str(a) for a in args)
        self.printed.append(line)
        print(f"    | {line}")

    async def wait_printed(self, text: str, limit: float = 15) -> str:
        with anyio.fail_after(limit):
            while True:
                for line in self.printed:
                    if text in line:
                        return line
                await anyio.sleep(0.02)

    # rooms --------------------------------------------------------------------------
    async def open(self, identity: str, options: lk.RoomOptions | None = None) -> lk.Room:
        """A room held open by a task of the session until it ends or the session does."""
        closed = anyio.Event()
        self._closers.append(closed)

        async def hold(*, task_status: anyio.abc.TaskStatus[lk.Room]) -> None:
            async with lk.open_room(self.url, self.token(identity), options=options) as room:
                task_status.started(room)
                await closed.wait()

        room: lk.Room = await self.tg.start(hold)
        return room

    async def room(self, options: lk.RoomOptions | None = None, fresh: bool = False) -> lk.Room:
        """The room a block calls ``room``: this session's own participant."""
        if self.current is not None and (fresh or not self.current.isconnected()):
            await self.current.disconnect()
            self.current = None
        if self.current is None:
            self.current = await self.open(self.me, options)
        return self.current

    async def peer(self, identity: str, options: lk.RoomOptions | None = None) -> lk.Room:
        """Another participant (``"bob"``), a room of this process."""
        room = self.peers.get(identity)
        if room is None or not room.isconnected():
            room = self.peers[identity] = await self.open(identity, options)
        return room

    async def leave(self, identity: str) -> None:
        room = self.peers.pop(identity, None)
        if room is not None:
            await room.disconnect()

    async def close(self) -> None:
        for closed in self._closers:
            closed.set()
        for obj in reversed(self._owned):
            await obj.aclose()
        for later in reversed(self._deferred):
            await later()

    def defer(self, later: Callable[[], Awaitable[object]]) -> None:
        """Runs ``later`` when the session ends."""
        self._deferred.append(later)

    # media --------------------------------------------------------------------------
    def own(self, obj: Any) -> Any:
        self._owned.append(obj)
        return obj

    def audio_track(self, name: str = "mic") -> tuple[lk.AudioSource, lk.LocalAudioTrack]:
        source = self.own(lk.AudioSource(tones.RATE, 1))
        return source, self.own(lk.LocalAudioTrack.create_audio_track(name, source))

    async def play(self, source: lk.AudioSource) -> anyio.CancelScope:
        """Plays a 440 Hz tone into ``source`` until the returned scope is cancelled."""

        async def run(*, task_status: anyio.abc.TaskStatus[anyio.CancelScope]) -> None:
            with anyio.CancelScope() as scope:
                task_status.started(scope)
                with contextlib.suppress(lk.ResourceClosedError):
                    await tones.play(source, [(440, math.inf)])

        scope: anyio.CancelScope = await self.tg.start(run)
        return scope

    async def publish_tone(
        self, room: lk.Room
    ) -> tuple[lk.LocalTrackPublication, Callable[[], Awaitable[None]]]:
        """``room`` publishes a microphone tone; returns the publication and a
        coroutine function that stops and unpublishes it."""
        source, track = self.audio_track("tone")
        scope = await self.play(source)
        pub = await room.local_participant.publish_track(
            track, lk.TrackPublishOptions(source=lk.TrackSource.SOURCE_MICROPHONE)
        )

        async def stop() -> None:
            scope.cancel()
            if room.isconnected():
                await room.local_participant.unpublish_track(pub.sid)

        return pub, stop

    async def remote_audio(
        self, room: lk.Room, sender: str, sid: str | None = None
    ) -> lk.RemoteAudioTrack:
        """``sender``'s audio track (``sid``, or any) as ``room`` receives it
        (auto-subscription)."""
        with anyio.fail_after(15):
            while True:
                p = room.remote_participants.get(sender)
                for pub in p.track_publications.values() if p else ():
                    track = pub.track
                    if isinstance(track, lk.RemoteAudioTrack) and sid in (None, pub.sid):
                        return track
                await anyio.sleep(0.02)

    # running a block -----------------------------------------------------------------
    async def run(self, block: Block, spec: Spec, ns: Namespace) -> None:
        self._block += 1
        if "url" in spec.needs:
            ns["url"] = self.url
        if "token" in spec.needs:  # a participant of its own: the block opens a room
            ns["token"] = self.token(f"{self.me}-{self._block}")
        if "room" in spec.needs or "lp" in spec.needs or "events" in spec.needs:
            room = await self.room(spec.options, spec.fresh or spec.options is not None)
            ns["room"], ns["lp"] = room, room.local_participant
        if "other" in spec.needs:
            ns["other"] = await self.peer("bob")
        subscription = ns["room"].events() if "events" in spec.needs else None
        if subscription is not None:
            ns["events"] = subscription
        if spec.before is not None:
            await spec.before(self, ns)
        code = compile(
            block.code,
            f"{block.guide}:{block.line}",
            "exec",
            flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT,
            dont_inherit=True,
        )
        print(f"  {block}")
        self.room_before = ns.get("room")
        with anyio.fail_after(spec.timeout):
            async with anyio.create_task_group() as tg:
                if spec.during is not None:
                    tg.start_soon(spec.during, self, ns)
                result = eval(code, ns)
                if inspect.iscoroutine(result):
                    await result
                tg.cancel_scope.cancel()
            if subscription is not None:
                subscription.close()
            if spec.after is not None:
                await spec.after(self, ns)


@dataclass(frozen=True)
class Spec:
    """What one block needs and claims (matched to the guide's blocks in order)."""

    starts: str  #: the block's first line, to catch a spec out of step with its guide
    needs: tuple[str, ...] = ()  #: url, token, room, lp, events, other (made by the harness)
    before: Step | None = None  #: more names or state before the block runs
    during: Step | None = None  #: a peer's part, alongside the block (cancelled when it ends)
    after: Step | None = None  #: checks of what the block claims
    options: lk.RoomOptions | None = None  #: for the harness's ``room``
    fresh: bool = False  #: a new ``room`` for this block
    timeout: float = 20
    program: bool = False  #: a whole program: run as a script
    #: placeholders of the block (a path of your own) -> what the harness runs it with
    replace: Callable[[], dict[str, str]] | None = None


def names(**values: Any) -> Step:
    """A ``before`` that puts these names into the namespace."""

    async def step(h: Harness, ns: Namespace) -> None:
        ns.update(values)

    return step


def steps(*parts: Step) -> Step:
    async def step(h: Harness, ns: Namespace) -> None:
        for part in parts:
            await part(h, ns)

    return step


def printed(*texts: str) -> Step:
    async def step(h: Harness, ns: Namespace) -> None:
        for text in texts:
            await h.wait_printed(text)

    return step


def then_end_room(
    action: Step, *, seen: tuple[Callable[[Any], bool], ...] = (), own_room: bool = False
) -> Step:
    """A ``during`` for a block that serves events until its room ends: run
    ``action`` (a peer's part), wait until the room has received the events
    ``seen`` describes (the block's own subscription has them too, and a
    subscription delivers what it holds before it ends), then end the room:
    the harness's ``room``, or with ``own_room`` the one the block opened
    itself (``async with lk.open_room(...) as room``)."""

    async def step(h: Harness, ns: Namespace) -> None:
        if own_room:
            with anyio.fail_after(15):
                while not (
                    isinstance(ns.get("room"), lk.Room)
                    and ns["room"] is not h.room_before
                    and ns["room"].isconnected()
                ):
                    await anyio.sleep(0.01)
        room: lk.Room = ns["room"]
        with room.events() as events:
            await action(h, ns)
            pending = list(seen)
            with anyio.fail_after(15):
                while pending:
                    event = await events.receive()
                    pending = [p for p in pending if not p(event)]
        await room.disconnect()

    return step


def chat_from_bob(event: Any) -> bool:
    return isinstance(event, lk.DataReceived) and event.topic == "chat"


def bob_changed(event: Any) -> bool:
    return (
        isinstance(event, lk.ParticipantAttributesChanged) and event.participant.identity == "bob"
    )


# --- the peers' parts and the checks, guide by guide --------------------------------------


async def mode_printed(h: Harness, ns: Namespace) -> None:
    line = await h.wait_printed(" - ")
    assert line.split(" - ")[0] in ("API", "ABI"), line


async def bob_joins(h: Harness, ns: Namespace) -> None:
    await h.peer("bob")


async def bob_sends_chat(h: Harness, ns: Namespace) -> None:
    bob = await h.peer("bob")
    await bob.local_participant.publish_data(b"hello from bob", topic="chat")


async def bob_sees_his_packets(h: Harness, ns: Namespace) -> None:
    events: lk.EventSubscription = ns["_bob_events"]
    got: set[tuple[bytes, str]] = set()
    with anyio.fail_after(10):
        async for event in events:
            if isinstance(event, lk.DataReceived):
                got.add((event.payload, event.topic))
            if got == {(b"hi bob", "chat"), (b"to everyone", "news")}:
                break
    events.close()


async def bob_listens(h: Harness, ns: Namespace) -> None:
    ns["_bob_events"] = (await h.peer("bob")).events()


async def bob_updates_himself(h: Harness, ns: Namespace) -> None:
    bob = await h.peer("bob")
    await bob.local_participant.set_metadata("bob's metadata")
    await bob.local_participant.set_attributes({"mood": "happy"})


async def two_tokens(h: Harness, ns: Namespace) -> None:
    ns["tokens"] = [h.token("first"), h.token("second")]


async def two_rooms_were_open(h: Harness, ns: Namespace) -> None:
    rooms: list[lk.Room] = ns["rooms"]
    assert [r.local_participant.identity for r in rooms] == ["first", "second"]
    assert not any(r.isconnected() for r in rooms)  # closed with the stack


async def report_pdf(h: Harness, ns: Namespace) -> None:
    (h.workdir / "report.pdf").write_bytes(b"%PDF-1.4 not much of a report\n")


async def write_notes(h: Harness, ns: Namespace) -> None:
    (h.workdir / "notes.txt").write_text("some notes\n")


async def reply_is(h: Harness, ns: Namespace, expected: str) -> None:
    assert ns["reply"] == expected


async def add_replied(h: Harness, ns: Namespace) -> None:
    await reply_is(h, ns, "3")


async def do_the_work(payload: str) -> str:
    await anyio.sleep(0.01)
    return payload.upper()


async def chat_bot(events: lk.EventSubscription) -> None:
    with events:
        async for event in events:
            if isinstance(event, lk.DataReceived):
                print("chat_bot got", event.payload)


async def work_is_served(h: Harness, ns: Namespace) -> None:
    bob = await h.peer("bob")
    reply = await bob.local_participant.perform_rpc(
        destination_identity=h.me, method="work", payload="job", response_timeout=10
    )
    assert reply == "JOB"


async def consumers_saw_chat(h: Harness, ns: Namespace) -> None:
    await bob_sends_chat(h, ns)
    await h.wait_printed("payload=b'hello from bob'")


async def hello_test_passes(h: Harness, ns: Namespace) -> None:
    await ns["test_hello"](h.server, h.token_factory)


async def bob_serves_greet(h: Harness, ns: Namespace) -> None:
    bob = await h.peer("bob")
    bob.local_participant.register_rpc_method("greet", ns["greet"])  # rpc.md's own handler


async def greet_replied(h: Harness, ns: Namespace) -> None:
    await reply_is(h, ns, f"hello {h.me}")


async def divide_answers(h: Harness, ns: Namespace) -> None:
    bob = (await h.peer("bob")).local_participant
    assert await bob.perform_rpc(destination_identity=h.me, method="divide", payload="[6, 3]") == (
        "2.0"
    )
    with pytest.raises(lk.RpcError) as caught:
        await bob.perform_rpc(destination_identity=h.me, method="divide", payload="[1, 0]")
    assert (caught.value.code, caught.value.message, caught.value.data) == (
        2001,
        "division by zero",
        "[1, 0]",
    )


async def bob_serves_slow(h: Harness, ns: Namespace) -> None:
    async def slow(data: lk.RpcInvocationData) -> str:
        await anyio.sleep(1)
        return "late"

    (await h.peer("bob")).local_participant.register_rpc_method("slow", slow)


async def nothing_pending(h: Harness, ns: Namespace) -> None:
    assert "reply" not in ns or ns["reply"] != "late"
    assert lk.pending_requests() == 0


async def llm_tokens() -> AsyncIterator[str]:
    for word in ["The ", "answer ", "is ", "42."]:
        await anyio.sleep(0.01)
        yield word


def bob_reads(topic: str) -> Step:
    """bob reads the text streams of ``topic`` (each outcome: the text, or the
    ``StreamError``)."""

    async def step(h: Harness, ns: Namespace) -> None:
        outcome: list[BaseException | str] = []

        async def on_text(reader: lk.TextStreamReader, identity: str) -> None:
            try:
                outcome.append(await reader.read_all())
            except lk.StreamError as exc:
                outcome.append(exc)

        (await h.peer("bob")).register_text_stream_handler(topic, on_text)
        ns["_bob_outcome"] = outcome, topic

    return step


def bob_read(check: Callable[[BaseException | str], bool]) -> Step:
    async def step(h: Harness, ns: Namespace) -> None:
        outcome, topic = ns.pop("_bob_outcome")
        with anyio.fail_after(10):
            while not outcome:
                await anyio.sleep(0.02)
        assert check(outcome[0]), outcome
        (await h.peer("bob")).unregister_text_stream_handler(topic)

    return step


def aborted_by_cancellation(outcome: BaseException | str) -> bool:
    return isinstance(outcome, lk.StreamError) and "cancelled" in str(outcome)


async def make_downloads(h: Harness, ns: Namespace) -> None:
    (h.workdir / "downloads").mkdir(exist_ok=True)


async def bob_sends_text_and_file(h: Harness, ns: Namespace) -> None:
    bob = (await h.peer("bob")).local_participant
    await bob.send_text("hi there", topic="lk.chat", destination_identities=[h.me])
    await bob.send_bytes(b"x" * 1000, name="data.bin", topic="files", destination_identities=[h.me])


async def bob_sends_text(h: Harness, ns: Namespace) -> None:
    bob = (await h.peer("bob")).local_participant
    await bob.send_text("hello again", topic="lk.chat", destination_identities=[h.me])
    await h.wait_printed("bob hello again")


# room-control.md


async def alice_publishes_tone(h: Harness, ns: Namespace) -> None:
    alice = await h.peer("alice")
    ns["_alice_tone"] = await h.publish_tone(alice)


async def alice_stops_tone(h: Harness, ns: Namespace) -> None:
    _pub, stop = ns.pop("_alice_tone")
    await stop()


async def subscribed_to_alice(h: Harness, ns: Namespace) -> None:
    with anyio.fail_after(15):
        while "stream" not in ns:
            await anyio.sleep(0.02)


async def stream_was_made(h: Harness, ns: Namespace) -> None:
    assert isinstance(ns["stream"], lk.AudioStream)


async def mic_and_agent(h: Harness, ns: Namespace) -> None:
    _source, ns["mic"] = h.audio_track("mic")
    await h.peer("agent")


async def publication_subscribed(h: Harness, ns: Namespace) -> None:
    assert ns["publication"].track is ns["mic"]
    await ns["me"].unpublish_track(ns["publication"].sid)
    await h.leave("agent")


async def turn_server(h: Harness, ns: Namespace) -> None:
    """A second server, with TURN (for the relay-only block)."""
    server = LocalServer(binary=install_server(), turn=True)
    info = await anyio.to_thread.run_sync(server.start)
    h.defer(lambda: anyio.to_thread.run_sync(server.stop))
    ns["url"] = info.url
    ns["token"] = mint_token(
        "relayed", h.room_name, api_key=info.api_key, api_secret=info.api_secret
    )


KEY = b"a key shared out of band"


async def track_with_tone(h: Harness, ns: Namespace) -> None:
    source, ns["track"] = h.audio_track("encrypted")
    await h.play(source)


def e2ee(shared_key: bytes | None = KEY) -> lk.RoomOptions:
    return lk.RoomOptions(
        encryption=lk.E2EEOptions(
            key_provider_options=lk.KeyProviderOptions(shared_key=shared_key, failure_tolerance=0)
        )
    )


async def frames_encrypted(h: Harness, ns: Namespace) -> None:
    await h.wait_printed("'s frames are encrypted / decrypted")


async def publish_encrypted(h: Harness, ns: Namespace) -> None:
    room: lk.Room = ns["room"]
    kp = room.e2ee_manager.key_provider
    assert kp is not None
    kp.set_shared_key(b"the next key", 1)
    source, track = h.audio_track("encrypted")
    await h.play(source)
    ns["_pub"] = await room.local_participant.publish_track(track)


async def cryptors_switched(h: Harness, ns: Namespace) -> None:
    room: lk.Room = ns["room"]
    mine = [
        c
        for c in room.e2ee_manager.frame_cryptors()
        if c.participant_identity == room.local_participant.identity
    ]
    assert mine, "no cryptor for the published track"
    assert all(c.key_index == 1 and not c.enabled for c in mine), mine
    await room.local_participant.unpublish_track(ns["_pub"].sid)


async def published_tone_heard_by_bob(h: Harness, ns: Namespace) -> None:
    room = await h.room()
    await h.peer("bob")
    source, ns["track"] = h.audio_track("measured")
    await h.play(source)
    ns["_pub"] = await room.local_participant.publish_track(ns["track"])
    await h.remote_audio(h.peers["bob"], h.me)


async def bitrate_measured(h: Harness, ns: Namespace) -> None:
    assert ns["sent_bps"], ns["sent_bps"]
    await ns["room"].local_participant.unpublish_track(ns["_pub"].sid)


# media.md


async def tone_recorded(h: Harness, ns: Namespace) -> None:
    room = await h.room()
    bob = await h.peer("bob")
    recorded: list[bytes] = []

    async def listen() -> None:
        recorded.append(await ns["record"](await h.remote_audio(bob, h.me)))

    async with anyio.create_task_group() as tg:
        tg.start_soon(listen)
        await ns["send_tone"](room, 0.5)
    samples = np.frombuffer(recorded[0], np.int16)
    assert len(samples) > tones.RATE // 4, len(samples)
    assert abs(tones.dominant(samples[-tones.RATE // 4 :]) - 440) < 20


async def close_source(h: Harness, ns: Namespace) -> None:
    await ns.pop("source").aclose()


async def a_local_track(h: Harness, ns: Namespace) -> None:
    _source, ns["track"] = h.audio_track("published")


async def alice_track(h: Harness, ns: Namespace) -> None:
    await alice_publishes_tone(h, ns)
    ns["track"] = await h.remote_audio(await h.room(), "alice", ns["_alice_tone"][0].sid)


async def stop_tone_soon(h: Harness, ns: Namespace) -> None:
    await anyio.sleep(0.5)
    await alice_stops_tone(h, ns)


async def frames_received(h: Harness, ns: Namespace) -> None:
    stream: lk.AudioStream = ns["stream"]
    assert stream.received_frames > 10, stream.received_frames


async def gain_applied(h: Harness, ns: Namespace) -> None:
    stream: lk.AudioStream = ns["stream"]
    with anyio.fail_after(10):
        frame = await stream.receive()
    assert frame.samples_per_channel > 0
    assert stream.processing_errors == 0
    await stream.aclose()


def nc_plugin() -> tuple[Path, Path]:
    """LiveKit's noise-cancellation plugin and its model (found without importing
    the package, whose ``__init__`` starts the official SDK's FFI client)."""
    spec = importlib.util.find_spec("livekit.plugins.noise_cancellation")
    assert spec is not None and spec.origin is not None
    resources = Path(spec.origin).parent / "resources"
    return resources / "liblivekit_nc_plugin.so", resources / "c8.f.s.026300-1.0.0_3.1.kef"


async def plugin_stream_delivers(h: Harness, ns: Namespace) -> None:
    stream: lk.AudioStream = ns["stream"]
    with anyio.fail_after(10):
        frame = await stream.receive()
    assert frame.sample_rate == 48000
    await stream.aclose()
    await alice_stops_tone(h, ns)


def ten_ms(value: int = 1000) -> lk.AudioFrame:
    frame = lk.AudioFrame.create(48000, 1, 480)
    frame.to_numpy()[:] = value
    return frame


async def mixer_sources(h: Harness, ns: Namespace) -> None:
    async def frames(n: int) -> AsyncIterator[lk.AudioFrame]:
        for _ in range(n):
            await anyio.lowlevel.checkpoint()
            yield ten_ms()

    ns["tts_frames"] = frames(30)
    ns["background"] = lambda: frames(50)
    ns["source"] = h.own(lk.AudioSource(48000, 1))


async def mixer_input_ends(h: Harness, ns: Namespace) -> None:
    with anyio.fail_after(10):
        while "mixer" not in ns:
            await anyio.sleep(0.01)
    await anyio.sleep(0.2)
    ns["mixer"].end_input()


async def alice_tone_heard(h: Harness, ns: Namespace) -> None:
    await alice_publishes_tone(h, ns)


async def an_audio_track_found(h: Harness, ns: Namespace) -> None:
    assert ns["tracks"] and isinstance(ns["tracks"][0], lk.RemoteAudioTrack)
    await alice_stops_tone(h, ns)


async def avatar_sources(h: Harness, ns: Namespace) -> None:
    async def avatar() -> AsyncIterator[tuple[lk.VideoFrame, lk.AudioFrame]]:
        for _ in range(6):
            yield lk.VideoFrame.create(64, 48, lk.VideoBufferType.RGBA), ten_ms()

    ns["audio"] = h.own(lk.AudioSource(48000, 1))
    ns["video"] = h.own(lk.VideoSource(64, 48))
    ns["avatar"] = avatar


async def background_music() -> AsyncIterator[lk.AudioFrame]:
    while True:
        await anyio.sleep(0.01)
        yield ten_ms(100)


async def agent_serves_alice(h: Harness, ns: Namespace) -> None:
    """Runs media.md's ``agent`` (a sketch that serves its caller until
    cancelled) for 2 s while alice speaks."""
    await alice_publishes_tone(h, ns)
    room = await h.room()
    caller = await room.wait_for_participant("alice")
    ns["my_denoiser"] = ns["Gain"](1.0)  # the guide's own FrameProcessor
    ns["background_music"] = background_music
    with anyio.move_on_after(2):
        await ns["agent"](room, caller, None)
    assert room.isconnected()
    await alice_stops_tone(h, ns)


# --- the specs -----------------------------------------------------------------------------

SPECS: dict[str, list[Spec]] = {
    "README.md": [
        Spec("import trio", program=True),
    ],
    "docs/getting-started.md": [
        Spec("import lkrtc_trio as lk", after=mode_printed),
        Spec("import trio", program=True),
    ],
    "docs/concepts.md": [
        Spec("async with lk.open_room(url, token", needs=("url", "token")),
        Spec(
            "with room.events() as events:",
            needs=("room",),
            during=then_end_room(
                steps(bob_updates_himself, bob_sends_chat), seen=(bob_changed, chat_from_bob)
            ),
        ),
    ],
    "docs/index.md": [
        Spec("with trio.fail_after(10):", needs=("room",), before=bob_joins),
        Spec(
            'await lp.publish_data(b"hi bob"',
            needs=("lp",),
            before=bob_listens,
            after=bob_sees_his_packets,
        ),
        Spec(
            "with room.events() as events:",
            needs=("room",),
            during=then_end_room(bob_sends_chat, seen=(chat_from_bob,)),
        ),
        Spec(
            "async for event in events:",
            needs=("room", "events"),
            during=then_end_room(bob_updates_himself, seen=(bob_changed,)),
            after=printed("bob {'mood': 'happy'} now"),
        ),
        Spec(
            "async def on_chat(",
            needs=("room", "other"),
            before=write_notes,
            after=printed("bob hi", "bob streamed token by token"),
        ),
        Spec(
            "@room.local_participant.register_rpc_method",
            needs=("room", "other"),
            after=add_replied,
        ),
        Spec(
            "limit = trio.CapacityLimiter(4)",
            needs=("lp",),
            before=names(do_the_work=do_the_work),
            after=work_is_served,
        ),
        Spec(
            "async def logger(",
            needs=("room",),
            before=names(chat_bot=chat_bot),
            during=then_end_room(consumers_saw_chat),
        ),
        Spec(
            "async with contextlib.AsyncExitStack()",
            needs=("url",),
            before=two_tokens,
            after=two_rooms_were_open,
        ),
        Spec(
            "while True:",
            needs=("room",),
            during=then_end_room(bob_sends_chat, seen=(chat_from_bob,)),
        ),
        Spec("# no conftest line needed", after=hello_test_passes),
    ],
    "docs/rpc.md": [
        Spec("import json", needs=("url", "token")),
        Spec("try:", needs=("room",), before=bob_serves_greet, after=greet_replied),
        Spec('@lp.register_rpc_method("divide")', needs=("lp",), after=divide_answers),
        Spec(
            "with trio.move_on_after(0.5):",
            needs=("lp",),
            before=bob_serves_slow,
            after=nothing_pending,
        ),
    ],
    "docs/data-streams.md": [
        Spec(
            "lp = room.local_participant",
            needs=("room",),
            before=steps(names(buffer=bytes(range(256)) * 40), report_pdf),
        ),
        Spec(
            "async with lp.stream_text(",
            needs=("lp",),
            before=steps(names(llm_tokens=llm_tokens), bob_reads("lk.transcription")),
            after=bob_read(lambda text: text == "The answer is 42."),
        ),
        Spec(
            "with trio.move_on_after(2):",
            needs=("lp",),
            before=bob_reads("lk.chat"),
            after=bob_read(aborted_by_cancellation),
        ),
        Spec(
            "async def on_chat(",
            needs=("room",),
            before=make_downloads,
            after=steps(
                bob_sends_text_and_file,
                printed("bob says hi there", "saved downloads/data.bin 1000 bytes"),
            ),
        ),
        Spec(
            'with room.text_streams("lk.chat") as incoming:',
            needs=("room",),
            fresh=True,
            during=then_end_room(bob_sends_text, seen=()),
        ),
    ],
    "docs/room-control.md": [
        Spec(
            "import lkrtc_trio as lk",
            needs=("url", "token"),
            before=alice_publishes_tone,
            during=then_end_room(subscribed_to_alice, own_room=True),
            after=steps(stream_was_made, alice_stops_tone),
        ),
        Spec(
            "import lkrtc_trio as lk",
            needs=("room",),
            before=mic_and_agent,
            after=publication_subscribed,
            timeout=40,
        ),
        Spec(
            "import lkrtc_trio as lk",
            before=turn_server,
            timeout=30,
        ),
        Spec("config = lk.RtcConfiguration(", before=names(username="u", password="p")),
        Spec(
            "import lkrtc_trio as lk",
            needs=("url", "token"),
            before=track_with_tone,
            during=then_end_room(frames_encrypted, own_room=True),
        ),
        Spec(
            "kp = room.e2ee_manager.key_provider",
            needs=("room",),
            options=e2ee(shared_key=None),
            before=names(my_key=b"my key", alices_key=b"alice's key"),
        ),
        Spec(
            "for cryptor in room.e2ee_manager.frame_cryptors():",
            needs=("room",),
            options=e2ee(),
            fresh=True,
            before=publish_encrypted,
            after=cryptors_switched,
        ),
        Spec(
            "first = (await track.get_stats()).summary()",
            needs=("room",),
            fresh=True,
            before=published_tone_heard_by_bob,
            after=bitrate_measured,
        ),
        Spec("stats = await room.get_rtc_stats()", needs=("room",)),
        Spec("await room.simulate_scenario(", needs=("room",)),
    ],
    "docs/deployment.md": [
        # a cluster of its own (Redis and two nodes), started and stopped by the block
        Spec("import lkrtc_trio as lk", after=printed("alice and bob share one room: True")),
    ],
    "docs/server-api.md": [
        Spec("import os"),
        Spec("from datetime import timedelta"),
        Spec("host_token = ("),
        Spec("verifier = api.TokenVerifier(", after=printed("refused: bad_signature")),
        Spec(
            "async with api.LiveKitAPI(url, api_key, api_secret) as lkapi:",
            after=printed("created standup", "['standup']"),
        ),
        Spec(
            "import anyio",
            after=printed("alice is now Alice Liddell", "the server says welcome", "removed: "),
        ),
        Spec(
            "async with api.LiveKitAPI(url, api_key, api_secret) as lkapi:",
            after=printed("'helper'"),
        ),
        Spec(
            "async with api.LiveKitAPI(url, api_key, api_secret) as lkapi:",
            after=printed("not_found 404"),
        ),
        Spec("import asyncio", program=True),
    ],
    "docs/media.md": [
        Spec("import math", after=tone_recorded),
        Spec("source = lk.AudioSource(", after=close_source),
        Spec(
            "source = lk.VideoSource(",
            before=names(
                frame=lk.VideoFrame.create(1280, 720, lk.VideoBufferType.RGBA), t_us=1, n=1
            ),
            after=close_source,
        ),
        Spec(
            "pub = await room.local_participant.publish_track(",
            needs=("room",),
            before=a_local_track,
        ),
        Spec(
            "async with lk.AudioStream(track",
            needs=("room",),
            before=alice_track,
            during=stop_tone_soon,
            after=frames_received,
        ),
        Spec(
            "class Gain(lk.FrameProcessor[lk.AudioFrame]):",
            needs=("room",),
            before=alice_track,
            after=steps(gain_applied, alice_stops_tone),
        ),
        Spec(
            'lk.load_audio_filter_plugin("nc"',
            needs=("room",),
            replace=lambda: dict(
                zip(
                    ("/path/to/liblivekit_nc_plugin.so", "/path/to/model.kef"),
                    map(str, nc_plugin()),
                    strict=True,
                )
            ),
            before=alice_track,
            after=plugin_stream_delivers,
        ),
        Spec(
            "with lk.AudioProcessingModule(",
            before=names(played=ten_ms(), mic=ten_ms()),
        ),
        Spec(
            "async with lk.AudioMixer(",
            before=mixer_sources,
            during=mixer_input_ends,
        ),
        Spec(
            "with lk.AudioResampler(",
            before=names(frames=[ten_ms() for _ in range(10)]),
        ),
        Spec(
            "with room.events() as events:",
            needs=("room",),
            before=alice_tone_heard,
            after=an_audio_track_found,
        ),
        Spec("async with lk.AVSynchronizer(", before=avatar_sources),
        Spec("async def agent(", needs=("room",), after=agent_serves_alice, timeout=30),
    ],
}


# --- matching blocks and specs -------------------------------------------------------------


def matched(guide: str) -> list[tuple[Block, Spec]]:
    """``guide``'s blocks that run, each with its spec (in order); raises when
    they are out of step."""
    blocks = [b for b in extract_blocks(guide) if b.skip is None]
    specs = SPECS.get(guide, [])
    problems = [
        f"{block}: its spec expects a block starting {spec.starts!r}"
        for block, spec in zip(blocks, specs, strict=False)
        if not block.first_line.startswith(spec.starts)
    ]
    problems += [
        f"{block}: no verdict (a Spec in SPECS, or a skip mark)" for block in blocks[len(specs) :]
    ]
    problems += [
        f"{guide}: a spec for a block that is not there: {s.starts!r}" for s in specs[len(blocks) :]
    ]
    if problems:
        raise AssertionError("\n".join(problems))
    return list(zip(blocks, specs, strict=True))


def test_blocks_and_skip_marks_are_read() -> None:
    text = """Some text.

```python
print("runs")
```

<!-- docs-test: skip needs a camera -->
```python
open_camera()
```

```sh
echo not python
```
"""
    first, second = extract_blocks("guide.md", text)
    assert (first.line, first.code, first.skip) == (4, 'print("runs")\n', None)
    assert (second.line, second.first_line, second.skip) == (9, "open_camera()", "needs a camera")


def test_every_block_has_a_verdict() -> None:
    """Each python block of the guides runs (in a session on trio and asyncio,
    on trio only, or as a program) or is marked skipped with a reason."""
    rows: list[tuple[str, str]] = []
    problems: list[str] = []
    for guide in GUIDES:
        try:
            pairs = matched(guide)
        except AssertionError as exc:
            problems.append(str(exc))
            continue
        verdict = {b.line: s for b, s in pairs}
        for block in extract_blocks(guide):
            spec = verdict.get(block.line)
            if block.skip is not None:
                rows.append((str(block), f"skipped: {block.skip}"))
            elif spec is not None and spec.program:
                rows.append((str(block), "program (a script)"))
            elif TRIO_ONLY.search(block.code):
                rows.append((str(block), "session, trio only"))
            else:
                rows.append((str(block), "session, trio and asyncio"))
    assert not problems, "\n".join(problems)
    assert set(SPECS) <= set(GUIDES), set(SPECS) - set(GUIDES)
    counts: dict[str, int] = {}
    for _, verdict_text in rows:
        kind = verdict_text.split(":")[0]
        counts[kind] = counts.get(kind, 0) + 1
    print()
    for where, verdict_text in rows:
        print(f"{verdict_text:28} {where}")
    print(counts)


# --- running the sessions ------------------------------------------------------------------


class _Errors(logging.Handler):
    """Collects the error records of lkrtc_trio's loggers (not the native core's)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        # lkrtc_trio.native.* is the native core's own log, which has errors of
        # its own to say (a room left while it still negotiates...); lkrtc_trio's
        # loggers are where a failing handler of a block is reported.
        if not record.name.startswith("lkrtc_trio.native"):
            self.records.append(record)


@contextlib.contextmanager
def errors_logged() -> Iterator[_Errors]:
    handler = _Errors()
    logger = logging.getLogger("lkrtc_trio")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


def logged(handler: _Errors) -> list[str]:
    """The errors logged since the last call."""
    messages = [f"{r.name}: {r.getMessage()}" for r in handler.records]
    handler.records.clear()
    return messages


def namespace(h: Harness, guide: str) -> Namespace:
    """What a guide's reader has imported, and the harness's ``print``."""
    import trio

    return {
        "__name__": f"docs:{guide}",
        "lk": lk,
        "lkrtc_trio": lk,
        "trio": trio,
        "anyio": anyio,
        "json": json,
        "contextlib": contextlib,
        "print": h.print,
    }


@contextlib.asynccontextmanager
async def harness(
    server: ServerInfo, room_name: str, me: str, workdir: Path
) -> AsyncIterator[Harness]:
    async with anyio.create_task_group() as tg:
        h = Harness(server, room_name, tg, me, workdir)
        try:
            yield h
        finally:
            with anyio.CancelScope(shield=True), anyio.fail_after(20):
                await h.close()
                tg.cancel_scope.cancel()
    await wait_released()


SESSIONS = [g for g in SPECS if any(not s.program for s in SPECS[g])]
PROGRAMS = [g for g in SPECS if any(s.program for s in SPECS[g])]


@pytest.mark.integration
# the dev server's secret is short, as server-api.md says
@pytest.mark.filterwarnings("ignore::jwt.InsecureKeyLengthWarning")
@pytest.mark.parametrize("guide", SESSIONS)
async def test_guide_examples_run(
    guide: str,
    anyio_backend: str,
    livekit_server: ServerInfo,
    livekit_room_name: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The guide's blocks run in order, in one namespace (see the module's rules)."""
    monkeypatch.chdir(tmp_path)
    # what server-api.md's reader has set (the server, its API key and secret)
    monkeypatch.setenv("LIVEKIT_URL", livekit_server.url)
    monkeypatch.setenv("LIVEKIT_API_KEY", livekit_server.api_key)
    monkeypatch.setenv("LIVEKIT_API_SECRET", livekit_server.api_secret)
    pairs = [(b, s) for b, s in matched(guide) if not s.program]
    me = "server" if guide == "docs/index.md" else "me"  # index.md calls "server"
    with errors_logged() as errors:
        async with harness(livekit_server, livekit_room_name, me, tmp_path) as h:
            ns = namespace(h, guide)
            for block, spec in pairs:
                if anyio_backend != "trio" and TRIO_ONLY.search(block.code):
                    print(f"  {block}: trio only")
                    continue
                if spec.replace is not None:
                    for old, new in spec.replace().items():
                        assert old in block.code, (block, old)
                        block = Block(block.guide, block.line, block.code.replace(old, new), None)
                try:
                    await h.run(block, spec, ns)
                except BaseException as exc:
                    if sys.version_info >= (3, 11):
                        exc.add_note(f"in the block at {block}")
                    raise
                assert not (errors_now := logged(errors)), (str(block), errors_now)
        assert not (errors_now := logged(errors)), errors_now


# --- programs -------------------------------------------------------------------------------


async def readme_peer(h: Harness, ns: Namespace) -> None:
    """README.md's program waits for "bob", then until he leaves."""
    await h.wait_printed("connected as program")
    bob = await h.peer("bob")
    # a publisher's join is announced at once (others' in 3 s batches, and the
    # program prints nothing when it sees bob)
    await h.publish_tone(bob)
    await anyio.sleep(1)
    await h.leave("bob")


async def getting_started_peer(h: Harness, ns: Namespace) -> None:
    """getting-started.md's program welcomes whoever joins, serves "ping",
    prints what they say and ends when they leave."""
    await h.wait_printed("already here: []")
    bob = await h.peer("bob")
    with bob.events() as events, anyio.fail_after(15):
        async for event in events:
            if isinstance(event, lk.DataReceived) and event.topic == "chat":
                assert event.payload == b"welcome"
                break
    reply = await bob.local_participant.perform_rpc(
        destination_identity="program", method="ping", payload=""
    )
    assert reply == "pong"
    await bob.local_participant.publish_data(b"hi there", topic="chat")
    await h.wait_printed("bob says hi there")
    await h.leave("bob")


async def a_room_to_list(h: Harness, ns: Namespace) -> None:
    await h.open("lister")


@dataclass(frozen=True)
class Program:
    """What a program's run needs, and what it prints ({room}: the test's room)."""

    expected: list[str]
    before: Step | None = None  #: before it starts
    peer: Step | None = None  #: the other participants' part, while it runs


PROGRAM_RUNS = {
    "README.md": Program(["connected as program"], peer=readme_peer),
    "docs/getting-started.md": Program(
        ["connected to", "already here: []", "bob joined", "bob says hi there", "bob left"],
        peer=getting_started_peer,
    ),
    # it lists the rooms twice, on trio then on asyncio
    "docs/server-api.md": Program(["'{room}'", "'{room}'"], before=a_room_to_list),
}


@pytest.mark.integration
@pytest.mark.parametrize("anyio_backend", ["trio"])
@pytest.mark.parametrize("guide", PROGRAMS)
async def test_guide_programs_run(
    guide: str, livekit_server: ServerInfo, livekit_room_name: str, tmp_path: Path
) -> None:
    """The program, as a script (its URL and token placeholders replaced, or
    the LIVEKIT_* environment variables it reads set), with participants of
    this process playing their part."""
    (block,) = [b for b, s in matched(guide) if s.program]
    code = block.code
    if URL_PLACEHOLDER in code or TOKEN_PLACEHOLDER in code:
        token = mint_token(
            "program",
            livekit_room_name,
            api_key=livekit_server.api_key,
            api_secret=livekit_server.api_secret,
        )
        code = code.replace(URL_PLACEHOLDER, repr(livekit_server.url))
        code = code.replace(TOKEN_PLACEHOLDER, repr(token))
    else:
        assert "LIVEKIT_URL" in code, f"{block}: where does it find the server?"
    script = tmp_path / "example.py"
    script.write_text(code)
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",  # its lines as they come
        "LIVEKIT_URL": livekit_server.url,
        "LIVEKIT_API_KEY": livekit_server.api_key,
        "LIVEKIT_API_SECRET": livekit_server.api_secret,
    }
    run = PROGRAM_RUNS[guide]
    expected = [text.format(room=livekit_room_name) for text in run.expected]
    stderr: list[str] = []
    async with harness(livekit_server, livekit_room_name, "peer", tmp_path) as h:

        async def pump(stream: anyio.abc.ByteReceiveStream, into: Callable[[str], Any]) -> None:
            buffered = b""
            async for chunk in stream:
                buffered += chunk
                *lines, buffered = buffered.split(b"\n")
                for line in lines:
                    into(line.decode(errors="replace"))

        if run.before is not None:
            await run.before(h, {})
        with anyio.fail_after(60):
            async with (
                await anyio.open_process(
                    [sys.executable, str(script)],
                    cwd=tmp_path,
                    env=env,
                ) as process,
                anyio.create_task_group() as tg,
            ):
                assert process.stdout is not None and process.stderr is not None
                tg.start_soon(pump, process.stdout, h.print)
                tg.start_soon(pump, process.stderr, stderr.append)
                try:
                    if run.peer is not None:
                        await run.peer(h, {})
                    returncode = await process.wait()
                except BaseException:
                    process.kill()
                    raise
    report = "\n".join(["stdout:", *h.printed, "stderr:", *stderr])
    assert returncode == 0, report
    for text in set(expected):
        count = sum(text in line for line in h.printed)
        assert count >= expected.count(text), (text, report)


# --- the Sphinx build -------------------------------------------------------------------------


def load_conf() -> Any:
    spec = importlib.util.spec_from_file_location("lkrtc_docs_conf", DOCS / "conf.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_docs_build_without_warnings(tmp_path: Path) -> None:
    """``sphinx -n -W``: no warning, every cross-reference resolved. Skipped
    work: ``make docs`` (which ``make test`` runs first) leaves the digest of
    the sources it built warning-free; the same digest means the same build."""
    built = DOCS / "_build" / "html" / ".sources-digest"
    digest = load_conf().sources_digest()
    if built.exists() and built.read_text() == digest:
        print("make docs built these sources without a warning")
        return
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "sphinx",
            "-n",
            "-W",
            "--keep-going",
            "-q",
            "-b",
            "html",
            "docs",
            str(tmp_path / "html"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr


DIRECTIVE = re.compile(
    r"^\.\. (?:auto(?:class|function|data|exception)|py:class)::\s+(?P<name>[\w.]+)\s*$"
)


def documented_names() -> list[str]:
    """The objects the API reference documents (docs/reference/*.md), by full name."""
    names: list[str] = []
    for page in sorted((DOCS / "reference").glob("*.md")):
        module = ""
        for line in page.read_text().splitlines():
            if line.startswith(".. currentmodule::"):
                module = line.split("::", 1)[1].strip()
            found = DIRECTIVE.match(line)
            if found:
                name = found.group("name")
                names.append(name if name.startswith("lkrtc_trio") else f"{module}.{name}")
    return names


def public_names(module_name: str) -> set[str]:
    """A package's public names: its ``__all__``, else what it re-exports."""
    module = importlib.import_module(module_name)
    exported = getattr(module, "__all__", None)
    if exported is None:
        exported = [
            name
            for name, value in vars(module).items()
            if (not name.startswith("_") or name == "__version__")
            and not inspect.ismodule(value)
            and name != "annotations"
        ]
    return {f"{module_name}.{name}" for name in exported}


def test_reference_documents_every_public_name_once() -> None:
    """Each public name of ``lkrtc_trio``, ``lkrtc_trio.testing`` and
    ``lkrtc_trio.api`` has exactly one entry in the API reference."""
    documented = documented_names()
    twice = sorted({n for n in documented if documented.count(n) > 1})
    public = set().union(
        *(public_names(m) for m in ("lkrtc_trio", "lkrtc_trio.testing", "lkrtc_trio.api"))
    )
    missing = sorted(public - set(documented))
    assert not twice, f"documented twice: {twice}"
    assert not missing, f"public, not in docs/reference/*.md: {missing}"
