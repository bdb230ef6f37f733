"""RPC between two participants: serve methods on one, call them from the other.

"server" registers four methods:

* ``greet``: an async handler, registered with the decorator;
* ``add``: a sync handler, registered directly; sums a JSON list
  (``"[2, 3]"`` -> ``"5"``), so a payload that is not JSON makes it raise,
  and the caller gets 1500 APPLICATION_ERROR;
* ``divide``: raises ``RpcError(2001, ...)`` on a division by zero, which
  reaches the caller unchanged (code, message and data);
* ``slow``: takes longer than its caller allows; its cancel scope stops it.

"client" calls them, then an unknown method (1400 UNSUPPORTED_METHOD), then
``slow`` with ``response_timeout=2`` (1502 RESPONSE_TIMEOUT), then cancels a
call of its own (it returns at once and leaves nothing pending). Each handler
reports how long it had to answer: ``max(timeout - min(7 s, timeout), 1 s)``
(see docs/rpc.md). Every outcome is printed; the script exits 0 only if each
is the expected one.

Run (starts a local ``livekit-server --dev``; as root, inside a private
network namespace)::

    python -m lkrtc_trio.testing.netns -- python examples/rpc.py

or against a server of yours::

    python examples/rpc.py --url wss://... --api-key KEY --api-secret SECRET
"""

from __future__ import annotations

import argparse
import json
import logging
import secrets
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
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

Code = lk.RpcError.ErrorCode
START = time.monotonic()


def say(who: str, what: str) -> None:
    print(f"[{time.monotonic() - START:6.2f}s] {who:>6}: {what}", flush=True)


@dataclass
class Notes:
    """What the server's handlers saw, for the checks at the end."""

    #: seconds each invocation had to answer, by "method(payload)"
    deadlines: dict[str, float] = field(default_factory=dict)
    #: set when an invocation of `slow` ends
    slow_ended: trio.Event = field(default_factory=trio.Event)


def serve(lp: lk.LocalParticipant, notes: Notes) -> None:
    """Registers the server's methods on its local participant."""

    @lp.register_rpc_method("greet")  # decorator form; async handler
    async def greet(data: lk.RpcInvocationData) -> str:
        notes.deadlines[f"greet({data.payload})"] = data.response_timeout
        say(
            "server",
            f"greet({data.payload!r}) called by {data.caller_identity!r}, "
            f"{data.response_timeout:.1f} s to answer",
        )
        return f"hello {data.caller_identity}, you said {data.payload!r}"

    def add(data: lk.RpcInvocationData) -> str:  # sync: runs on the event loop, keep it short
        numbers = json.loads(data.payload)  # an exception here -> 1500 for the caller
        return str(sum(numbers))

    lp.register_rpc_method("add", add)  # direct form

    @lp.register_rpc_method("divide")
    async def divide(data: lk.RpcInvocationData) -> str:
        a, b = json.loads(data.payload)
        if b == 0:
            # An RpcError reaches the caller as is. Codes 1001-1999 are the
            # built-in ones; pick yours outside that range.
            raise lk.RpcError(2001, "division by zero", data=data.payload)
        return str(a / b)

    @lp.register_rpc_method("slow")
    async def slow(data: lk.RpcInvocationData) -> str:
        notes.deadlines[f"slow({data.payload})"] = data.response_timeout
        say("server", f"slow({data.payload!r}): started, {data.response_timeout:.1f} s to answer")
        started = trio.current_time()
        try:
            await trio.sleep(30)  # longer than it may: its cancel scope stops it
        finally:
            took = trio.current_time() - started
            say("server", f"slow({data.payload!r}): cancelled after {took:.1f} s")
            notes.slow_ended.set()
        return "too late"


async def run(url: str, token: Callable[[str], str]) -> list[str]:
    """Runs the scenario; returns the unexpected outcomes (none, we hope)."""
    failures: list[str] = []
    notes = Notes()

    async with (
        lk.open_room(url, token("server")) as server_room,
        lk.open_room(url, token("client")) as client_room,
    ):
        # livekit-server announces participants that publish nothing in
        # batches, every 3 s: expect about 3 s here.
        say("both", "connected; each waits until it sees the other")
        with trio.fail_after(20):
            await server_room.wait_for_participant("client")
            await client_room.wait_for_participant("server")
        serve(server_room.local_participant, notes)
        say("server", "registered greet, add, divide and slow")

        client = client_room.local_participant

        async def call(
            method: str, payload: str, expected: str | int, response_timeout: float | None = None
        ) -> None:
            """One call: prints the reply or the RpcError and checks it is
            `expected` (a reply, or an error code)."""
            started = trio.current_time()
            outcome: str | int
            try:
                reply = await client.perform_rpc(
                    destination_identity="server",
                    method=method,
                    payload=payload,
                    response_timeout=response_timeout,
                )
            except lk.RpcError as exc:
                outcome = exc.code
                shown = f"RpcError {exc.code} {exc.message!r}"
                if exc.data:
                    shown += f" data={exc.data!r}"
            else:
                outcome = reply
                shown = repr(reply)
            took = trio.current_time() - started
            ok = outcome == expected
            say(
                "client",
                f"{method}({payload!r}) -> {shown} in {took:.2f} s"
                + ("" if ok else f"   UNEXPECTED, wanted {expected!r}"),
            )
            if not ok:
                failures.append(f"{method}({payload!r}): got {outcome!r}, wanted {expected!r}")

        with trio.fail_after(60):
            await call("greet", "hi", "hello client, you said 'hi'")
            await call("greet", "quick", "hello client, you said 'quick'", response_timeout=10)
            await call("add", "[2, 3, 4]", "9")
            await call("divide", "[1, 4]", "0.25")
            await call("divide", "[1, 0]", 2001)  # the handler's own RpcError
            say("client", "next, add raises; lkrtc_trio logs its traceback (stderr)")
            await call("add", "two and three", Code.APPLICATION_ERROR)
            await call("shout", "?", Code.UNSUPPORTED_METHOD)  # nobody registered it

            # The handler has max(timeout - min(7 s, timeout), 1 s) = 1 s here;
            # its cancel scope stops it and the caller gets RESPONSE_TIMEOUT.
            notes.slow_ended = trio.Event()
            await call("slow", "timeout 2 s", Code.RESPONSE_TIMEOUT, response_timeout=2)
            await notes.slow_ended.wait()

            # Cancelling perform_rpc returns at once and leaves nothing pending;
            # the handler's late answer (1502, after its 1 s) is dropped.
            notes.slow_ended = trio.Event()
            with trio.move_on_after(0.5) as scope:
                await client.perform_rpc(
                    destination_identity="server",
                    method="slow",
                    payload="cancelled",
                    response_timeout=3,
                )
            pending = lk.pending_requests()
            say("client", f"gave up on slow('cancelled') after 0.5 s; pending requests: {pending}")
            await notes.slow_ended.wait()
            await trio.sleep(0.2)  # let its late answer arrive (and be dropped)
            if not scope.cancelled_caught or pending or lk.pending_requests():
                failures.append(f"cancelled call: pending {pending}, {lk.pending_requests()}")
            await call("greet", "still there?", "hello client, you said 'still there?'")

        # How long each handler had: max(timeout - min(7 s, timeout), 1 s).
        wanted = {
            "greet(hi)": 8.0,  # default timeout, 15 s
            "greet(quick)": 3.0,  # 10 s
            "slow(timeout 2 s)": 1.0,  # 2 s
            "slow(cancelled)": 1.0,  # 3 s
        }
        for key, seconds in wanted.items():
            got = notes.deadlines.get(key)
            if got is None or abs(got - seconds) > 0.01:
                failures.append(f"{key} had {got} s to answer, wanted {seconds} s")
        say("both", "leaving")
    handles = lk.live_native_handles()
    say("both", f"left; native handles still owned: {handles}")
    if handles:
        failures.append(f"{handles} native handles leaked")
    return failures


def main() -> int:
    parser = argparse.ArgumentParser(description="lkrtc_trio RPC example")
    parser.add_argument("--url", help="a LiveKit server (default: start a local one)")
    parser.add_argument("--api-key", default=DEFAULT_API_KEY)
    parser.add_argument("--api-secret", default=DEFAULT_API_SECRET)
    args = parser.parse_args()
    # Handlers that raise something other than RpcError are logged by
    # lkrtc_trio.participant (with the traceback) before the caller gets 1500.
    logging.basicConfig(format="%(name)s %(levelname)s: %(message)s", level=logging.WARNING)
    room = f"rpc-{secrets.token_hex(3)}"
    token = partial(mint_token, room=room, api_key=args.api_key, api_secret=args.api_secret)
    if args.url:
        failures = trio.run(run, args.url, token)
    else:
        with LocalServer(binary=install_server()) as info:
            print(f"livekit-server {info.url}", flush=True)
            failures = trio.run(run, info.url, token)
    for failure in failures:
        print(f"UNEXPECTED: {failure}", flush=True)
    print("rpc example: " + ("failed" if failures else "every outcome as expected"), flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
