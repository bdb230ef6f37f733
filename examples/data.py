"""Data packets, metadata and attributes between three participants.

alice, bob and carol join one room. Then:

1. **Data.** alice sends one packet to bob only (``destination_identities``)
   and one to everyone; carol answers alice only. Each packet has a topic, and
   each receiver reads its packets from ``room.events()`` with ``match``.
   Reliable packets from one sender arrive complete and in order, so each
   sender ends with a "done" packet and a receiver stops when it has every
   sender's: carol never sees alice's packet for bob.
2. **Updates.** bob changes his metadata and name; carol (who joined with the
   attribute ``team=blue``) sets ``status=away``, which merges, then removes
   ``team`` by setting it to ``""``. alice watches the matching events; room
   state is updated before each event is delivered.

Prints what happened; exits 0 only if everything was as expected.

Run (starts a local ``livekit-server --dev``; as root, inside a private
network namespace)::

    python -m lkrtc_trio.testing.netns -- python examples/data.py

or against a server of yours::

    python examples/data.py --url wss://... --api-key KEY --api-secret SECRET
"""

from __future__ import annotations

import argparse
import secrets
import sys
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from functools import partial

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
#: (sender, topic, text) as a receiver saw it
Packet = tuple[str, str, str]


def say(who: str, what: str) -> None:
    print(f"[{time.monotonic() - START:6.2f}s] {who:>6}: {what}", flush=True)


async def inbox(me: str, events: lk.EventSubscription, senders: set[str]) -> list[Packet]:
    """Prints and returns the packets `me` receives, until each of `senders`
    has sent its "done" packet."""
    got: list[Packet] = []
    waiting = senders - {me}
    async for event in events:
        match event:
            case lk.DataReceived(topic="done", participant=lk.RemoteParticipant() as sender):
                waiting.discard(sender.identity)
                if not waiting:
                    return got
            case lk.DataReceived(payload=payload, participant=sender, topic=topic):
                # `participant` is None when the sender is not in this room's
                # state: the server itself, or someone whose join has not been
                # announced yet (hence the wait for everyone above).
                who = sender.identity if sender is not None else "(unknown)"
                say(me, f"got {payload.decode()!r} from {who} on topic {topic!r}")
                got.append((who, topic, payload.decode()))
            case _:
                pass  # other room events
    raise RuntimeError(f"{me}'s room ended early")


async def exchange_data(rooms: dict[str, lk.Room]) -> list[str]:
    """Step 1; returns what went wrong."""
    alice, carol = rooms["alice"].local_participant, rooms["carol"].local_participant
    subscriptions = {name: room.events() for name, room in rooms.items()}
    received: dict[str, list[Packet]] = {}

    async def receive(name: str) -> None:
        with subscriptions[name] as events:
            received[name] = await inbox(name, events, {"alice", "carol"})

    with trio.fail_after(15):
        async with trio.open_nursery() as nursery:
            for name in rooms:  # subscribed above, before anything was sent
                nursery.start_soon(receive, name)

            await alice.publish_data("hi bob", topic="chat", destination_identities=["bob"])
            say("alice", "sent 'hi bob' to bob only (topic 'chat')")
            await alice.publish_data(b"lunch at noon", topic="news")
            say("alice", "sent 'lunch at noon' to everyone (topic 'news')")
            await alice.publish_data(b"", topic="done")

            await carol.publish_data(
                "see you there", topic="chat", destination_identities=["alice"]
            )
            say("carol", "sent 'see you there' to alice only (topic 'chat')")
            await carol.publish_data(b"", topic="done")

    expected = {
        "alice": [("carol", "chat", "see you there")],
        "bob": [("alice", "chat", "hi bob"), ("alice", "news", "lunch at noon")],
        "carol": [("alice", "news", "lunch at noon")],
    }
    return [
        f"{name} got {sorted(received[name])}, wanted {sorted(packets)}"
        for name, packets in expected.items()
        if sorted(received[name]) != sorted(packets)  # senders' packets may interleave
    ]


async def update_participants(rooms: dict[str, lk.Room]) -> list[str]:
    """Step 2; returns what went wrong."""
    alice, bob, carol = (rooms[n] for n in ("alice", "bob", "carol"))
    wanted = ('{"role": "host"}', "Bob the host", {"status": "away"})

    def as_alice_sees_them() -> tuple[str, str, dict[str, str]]:
        seen_bob, seen_carol = alice.remote_participants["bob"], alice.remote_participants["carol"]
        return seen_bob.metadata, seen_bob.name, seen_carol.attributes

    with alice.events() as events:
        await bob.local_participant.set_metadata('{"role": "host"}')
        say("bob", "set his metadata")
        await bob.local_participant.set_name("Bob the host")
        say("bob", "set his name")
        await carol.local_participant.set_attributes({"status": "away"})  # merges
        say("carol", f"set status=away; her attributes: {carol.local_participant.attributes}")
        await carol.local_participant.set_attributes({"team": ""})  # "" removes a key
        say("carol", f"removed team; her attributes: {carol.local_participant.attributes}")

        # alice sees one event per change. The server sends these at once
        # (unlike joins and leaves of participants that publish nothing).
        unseen = {"bob's metadata", "bob's name", "carol's status", "carol's team"}
        with trio.fail_after(15):
            async for event in events:
                match event:
                    case lk.ParticipantMetadataChanged(
                        participant=p, old_metadata=old, metadata=new
                    ):
                        say("alice", f"{p.identity}'s metadata: {old!r} -> {new!r}")
                        unseen.discard(f"{p.identity}'s metadata")
                    case lk.ParticipantNameChanged(participant=p, old_name=old, name=new):
                        say("alice", f"{p.identity}'s name: {old!r} -> {new!r}")
                        unseen.discard(f"{p.identity}'s name")
                    case lk.ParticipantAttributesChanged(
                        participant=p, changed_attributes=changed
                    ) if p.identity == "carol":
                        say("alice", f"carol's attributes changed: {dict(changed)}")
                        unseen -= {f"carol's {key}" for key in changed}
                if not unseen:
                    break

    # Room state is updated before each event is delivered, so it is current now.
    metadata, name, attributes = as_alice_sees_them()
    say("alice", f"bob is now {name!r} with metadata {metadata!r}")
    say("alice", f"carol's attributes are now {attributes}")
    return [] if (metadata, name, attributes) == wanted else [f"alice sees {as_alice_sees_them()}"]


async def run(url: str, token: Callable[..., str]) -> list[str]:
    """Connects the three, runs both steps; returns what went wrong."""
    async with AsyncExitStack() as stack:
        rooms: dict[str, lk.Room] = {}
        for name in ("alice", "bob", "carol"):
            attributes = {"team": "blue"} if name == "carol" else None
            rooms[name] = await stack.enter_async_context(
                lk.open_room(url, token(name, attributes=attributes))
            )
            say(name, "connected")
        # livekit-server announces participants that publish nothing in
        # batches, every 3 s: expect about 3 s here.
        say("all", "waiting until everyone sees everyone")
        with trio.fail_after(20):
            for name, room in rooms.items():
                for other in rooms.keys() - {name}:
                    await room.wait_for_participant(other)
        carol = rooms["alice"].remote_participants["carol"]
        say("alice", f"sees carol, with the attributes of her token: {carol.attributes}")

        say("all", "-- 1. data packets")
        failures = await exchange_data(rooms)
        say("all", "-- 2. metadata, name and attributes")
        failures += await update_participants(rooms)
        say("all", "leaving")
    handles = lk.live_native_handles()
    say("all", f"left; native handles still owned: {handles}")
    if handles:
        failures.append(f"{handles} native handles leaked")
    return failures


def main() -> int:
    parser = argparse.ArgumentParser(description="lkrtc_trio data example")
    parser.add_argument("--url", help="a LiveKit server (default: start a local one)")
    parser.add_argument("--api-key", default=DEFAULT_API_KEY)
    parser.add_argument("--api-secret", default=DEFAULT_API_SECRET)
    args = parser.parse_args()
    room = f"data-{secrets.token_hex(3)}"
    token = partial(mint_token, room=room, api_key=args.api_key, api_secret=args.api_secret)

    if args.url:
        failures = trio.run(run, args.url, token)
    else:
        with LocalServer(binary=install_server()) as info:
            print(f"livekit-server {info.url}", flush=True)
            failures = trio.run(run, info.url, token)
    for failure in failures:
        print(f"UNEXPECTED: {failure}", flush=True)
    print("data example: " + ("failed" if failures else "everything as expected"), flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
