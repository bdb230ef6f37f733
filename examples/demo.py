"""The `make demo` walkthrough: a local server and two participants.

Starts ``livekit-server --dev`` on free ports (building it on first use),
connects "alice" and "bob" with lkrtc_trio, shows that each sees the other
through room state and events, then leaves and checks that every native
handle was released. Exits 0 on success.

Run: ``make demo`` (or ``python examples/demo.py`` with a server binary
already installed: ``python -m lkrtc_trio.testing install-server``).
"""

from __future__ import annotations

import sys
import time

import trio

import lkrtc_trio as lk
from lkrtc_trio.testing import LocalServer, install_server, mint_token

ROOM = "demo"


def say(who: str, what: str, t0: float) -> None:
    print(f"[{time.monotonic() - t0:6.2f}s] {who:>6}: {what}", flush=True)


async def run(url: str) -> None:
    t0 = time.monotonic()
    async with lk.open_room(url, mint_token("alice", ROOM, name="Alice")) as alice:
        say("alice", f"connected to room {alice.name!r} as {alice.local_participant.sid}", t0)
        with alice.events() as events:
            async with lk.open_room(url, mint_token("bob", ROOM, name="Bob")) as bob:
                say("bob", f"connected; already in the room: {sorted(bob.remote_participants)}", t0)
                with trio.fail_after(20):
                    seen = await alice.wait_for_participant("bob")
                    await bob.wait_for_participant("alice")
                say("alice", f"sees {seen.identity!r} (name {seen.name!r}, sid {seen.sid})", t0)
                say("bob", f"sees {sorted(bob.remote_participants)}", t0)
                say("bob", "leaving", t0)
            with trio.fail_after(20):
                async for event in events:
                    match event:
                        case lk.ParticipantConnected(participant=p):
                            say("alice", f"event: {p.identity!r} connected", t0)
                        case lk.ParticipantDisconnected(participant=p, reason=reason):
                            say(
                                "alice", f"event: {p.identity!r} disconnected (reason {reason})", t0
                            )
                            break
        say("alice", "leaving", t0)
    handles = lk.live_native_handles()
    say("demo", f"native handles still owned: {handles}", t0)
    if handles:
        raise SystemExit("demo failed: native handles leaked")


def main() -> int:
    binary = install_server()
    with LocalServer(binary=binary) as info:
        print(f"livekit-server {info.url} (log: see LocalServer.log_path)", flush=True)
        trio.run(run, info.url)
    print("demo finished OK", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
