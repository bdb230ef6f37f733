"""Fault scenarios against a real server, each run in a subprocess of its own
with a server of its own (``tests/test_faults.py`` runs them and asserts on
what they print; ``tests/faults/measure.py`` runs them for the tables of
``docs/reliability.md``).

Every scenario has a sender and a receiver room. The sender makes reliable
``publish_data`` calls, numbered payloads, at a steady rate through the fault;
the receiver records what arrives. Times are seconds since the fault.

- ``partition SECONDS``: every packet to or from the server is dropped
  (nftables) for SECONDS.
- ``one-sided SECONDS``: only the sender is cut off: it runs in a child
  process with a group id of its own, and only that group's traffic is
  dropped. The receiver keeps its connection.
- ``kill``: the server is SIGKILLed; the sender then tries ``publish_data``,
  ``set_metadata`` and ``perform_rpc``; ``reconnect_timeout`` is 5 s (8 s for
  ``simulate``, the default 30 s elsewhere).
- ``restart``: the server is SIGKILLed and started again on the same ports 2 s
  later.
- ``simulate KIND``: ``Room.simulate_scenario(KIND)`` on the sender.
- ``stream-partition SECONDS``: as ``partition``, but the sender writes a text
  stream (a part every 100 ms) through the fault, and the receiver records
  how its reader ended; a stream before and one after the fault are the
  controls.

Prints one JSON object (see :class:`Log`); exit 0 unless the scenario itself
broke. ``SDK`` is ``trio`` or ``asyncio`` (lkrtc-trio on that backend) or
``official`` (the official SDK, ``partition`` only).

Usage (from the repository root):
    python -m tests.faults.scenarios SCENARIO ARG SDK [COUNT]
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from lkrtc_trio.testing import LocalServer, ServerInfo, mint_token
from tests.faults.netcut import GroupPartition, Partition

ROOM = "faults"
CUT_GID = 4242  # the one-sided partition's group
SETTLE = 45.0  # the longest wait for both rooms to be connected again


class Log:
    """What a scenario saw. ``output()`` is the JSON printed."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.fault_at = 0.0
        self.events: list[tuple[float, str, str, dict[str, Any]]] = []
        # per call: (made at, sequence or None, outcome, seconds it took)
        self.sent: list[tuple[float, int | None, str, float]] = []
        self.received: list[int] = []
        self.calls: dict[str, tuple[str, float]] = {}
        self.end: dict[str, Any] = {}

    def now(self) -> float:
        return time.monotonic() - self.t0

    def event(self, who: str, name: str, **detail: Any) -> None:
        self.events.append((self.now(), who, name, detail))

    def output(self) -> dict[str, Any]:
        f = self.fault_at

        def rel(t: float) -> float:
            return round(t - f, 3)

        return {
            "events": [(rel(t), w, n, d) for t, w, n, d in self.events],
            "sent": [(rel(t), s, o, round(d, 3)) for t, s, o, d in self.sent],
            "received": self.received,
            "calls": {k: (o, rel(t)) for k, (o, t) in self.calls.items()},
            "end": self.end,
        }


def payload(i: int) -> bytes:
    return b"%06d" % i


async def send_steadily(
    log: Log, publish: Callable[[bytes], Awaitable[Any]], count: int, span: float
) -> None:
    """``count`` calls evenly over ``span`` seconds, each in a task of its own
    (a call blocked by the fault does not hold the next ones back)."""

    async def one(i: int) -> None:
        made = log.now()
        outcome, seq = "ok", None
        try:
            result = await publish(payload(i))
            seq = result if isinstance(result, int) else None
        except Exception as exc:
            outcome = type(exc).__name__
            print(f"call {i} made at {made:.3f}: {outcome}: {exc}", file=sys.stderr)
        log.sent[i] = (made, seq, outcome, log.now() - made)

    log.sent = [(0.0, None, "pending", 0.0)] * count
    async with anyio.create_task_group() as tg:
        for i in range(count):
            tg.start_soon(one, i)
            await anyio.sleep(span / count)


# -- lkrtc-trio --------------------------------------------------------------------------
async def watch(log: Log, who: str, room: Any, receive: bool) -> None:
    import lkrtc_trio as lk

    quiet = (lk.ConnectionQualityChanged, lk.ParticipantsUpdated, lk.RoomUpdated)
    async for e in room.events(max_buffer=100_000):
        if isinstance(e, lk.DataReceived):
            if receive:
                log.received.append(int(e.payload))
        elif isinstance(e, lk.ReliableDataMayBeLost):
            log.event(who, "ReliableDataMayBeLost", **dataclasses.asdict(e))
        elif isinstance(e, (lk.Disconnected, lk.ConnectionStateChanged)):
            value = e.reason if isinstance(e, lk.Disconnected) else e.state
            log.event(who, type(e).__name__, value=value.name)
        elif isinstance(e, (lk.ParticipantConnected, lk.ParticipantDisconnected)):
            log.event(who, type(e).__name__, identity=e.participant.identity)
        elif not isinstance(e, quiet):
            log.event(who, type(e).__name__)


async def connected_both(rooms: list[Any], limit: float) -> bool:
    """Waits until every room is connected, sees the others and has settled
    (no reconnection in progress); False at once if a room ended."""

    def settled(room: Any) -> bool:
        session = room._session
        return session.reconnecting_since is None and session.settle_deadline is None

    with anyio.move_on_after(limit):
        while True:
            if all(r.isconnected() and settled(r) for r in rooms) and all(
                len(r.remote_participants) == len(rooms) - 1 for r in rooms
            ):
                return True
            if any(r._session.ended.is_set() for r in rooms):
                return False  # a room that ended does not come back
            await anyio.sleep(0.1)
    return False


async def ours(scenario: str, arg: str, count: int, log: Log, server: LocalServer) -> None:
    import lkrtc_trio as lk
    from lkrtc_trio._runtime import get_runtime, live_native_handles, pending_requests
    from tests.helpers import server_participants

    info = server.info
    # the library's bound on reconnecting: short where the scenario is about
    # it, the default elsewhere
    timeouts = {"kill": 5.0, "simulate": 8.0}
    options = lk.RoomOptions(reconnect_timeout=timeouts.get(scenario, 30.0))
    async with (
        lk.open_room(info.url, mint_token("sender", ROOM), options=options) as sender,
        lk.open_room(info.url, mint_token("receiver", ROOM), options=options) as receiver,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(watch, log, "sender", sender, False)
        tg.start_soon(watch, log, "receiver", receiver, True)
        assert await connected_both([sender, receiver], 10), "the rooms did not meet"
        lp = sender.local_participant
        sid_before = lp.sid

        @receiver.local_participant.register_rpc_method("echo")
        async def echo(data: lk.RpcInvocationData) -> str:
            return data.payload

        async def fault() -> None:
            if scenario == "partition":
                with Partition(info):
                    log.event("test", "cut")
                    await anyio.sleep(float(arg))
                log.event("test", "healed")
            elif scenario == "kill":
                server.kill()
                log.event("test", "killed")
                await anyio.sleep(0.5)
                async with anyio.create_task_group() as calls:
                    for name, call in (
                        ("publish_data", lambda: lp.publish_data(b"late")),
                        ("set_metadata", lambda: lp.set_metadata("late")),
                        (
                            "perform_rpc",
                            lambda: lp.perform_rpc(
                                destination_identity="receiver", method="echo", payload="x"
                            ),
                        ),
                    ):
                        calls.start_soon(record_call, log, name, call)
            elif scenario == "restart":
                server.kill()
                log.event("test", "killed")
                await anyio.sleep(2)
                # on this thread: the server dies with the thread that starts it
                server.restart()
                log.event("test", "restarted")
            elif scenario == "simulate":
                kind = lk.SimulateScenario[arg]
                await sender.simulate_scenario(kind)
                log.event("test", "simulated")
            else:
                raise SystemExit(f"unknown scenario {scenario}")

        span = float(arg) + 4 if scenario == "partition" else 6.0
        async with anyio.create_task_group() as inner:
            inner.start_soon(send_steadily, log, lp.publish_data, count, span)
            await anyio.sleep(1)
            log.fault_at = log.now()
            await fault()
        await anyio.sleep(1)
        rooms = [sender, receiver]
        if scenario == "kill":
            with anyio.move_on_after(15):
                gone = lk.ConnectionState.CONN_DISCONNECTED
                while not all(r.connection_state == gone for r in rooms):
                    await anyio.sleep(0.1)
        else:
            log.end["reconnected"] = await connected_both(rooms, SETTLE)
            # everything after the fault is delivered once the rooms are back
            with anyio.move_on_after(10):
                while len(set(log.received)) < count and all(r.isconnected() for r in rooms):
                    await anyio.sleep(0.2)
        log.end["sender_sid_changed"] = lp.sid != sid_before
        tg.cancel_scope.cancel()
    closed = log.now()
    dispatcher = get_runtime().dispatcher
    # late native completions of cancelled calls (a retired call's lent buffer is
    # released by its completion, which may come after the call stopped counting)
    with anyio.move_on_after(10):
        while pending_requests() or live_native_handles() or dispatcher.pinned():
            await anyio.sleep(0.05)
    log.end["handles"] = live_native_handles()
    log.end["pending"] = pending_requests()
    log.end["pinned"] = dispatcher.pinned()
    log.end["settled_after_close"] = round(log.now() - closed, 3)
    if server.running:
        with anyio.fail_after(10):
            while await server_participants(info, ROOM):
                await anyio.sleep(0.2)
        log.end["server_participants"] = 0


async def record_call(log: Log, name: str, call: Callable[[], Awaitable[Any]]) -> None:
    try:
        await call()
        outcome = "ok"
    except Exception as exc:
        outcome = type(exc).__name__
        if hasattr(exc, "code"):
            outcome += f"({exc.code})"
    log.calls[name] = (outcome, log.now())


# -- a data stream through a partition ------------------------------------------------------
async def stream_partition(seconds: float, log: Log, server: LocalServer) -> None:
    import lkrtc_trio as lk
    from lkrtc_trio._runtime import live_native_handles, pending_requests
    from tests.helpers import server_participants

    info = server.info
    readers: dict[str, dict[str, Any]] = {}

    async def on_text(reader: lk.TextStreamReader, identity: str) -> None:
        name = reader.info.attributes["name"]
        parts = 0
        outcome = "complete"
        try:
            async for chunk in reader:
                parts += chunk.count("|")
        except lk.StreamError as exc:
            outcome = f"StreamError: {exc}"
        readers[name] = {"outcome": outcome, "parts": parts, "at": round(log.now(), 3)}
        log.event("receiver", "stream_end", stream=name, outcome=outcome, parts=parts)

    async def write(lp: lk.LocalParticipant, name: str, parts: int, gap: float) -> dict[str, Any]:
        written = 0
        outcome = "closed"
        try:
            async with lp.stream_text(topic="s", attributes={"name": name}) as w:
                for i in range(parts):
                    await w.write(f"part {i:05d}|")
                    written += 1
                    await anyio.sleep(gap)
        except lk.LiveKitError as exc:
            outcome = f"{type(exc).__name__}: {exc}"
        return {"outcome": outcome, "written": written, "at": round(log.now(), 3)}

    async with (
        lk.open_room(info.url, mint_token("sender", ROOM)) as sender,
        lk.open_room(info.url, mint_token("receiver", ROOM)) as receiver,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(watch, log, "sender", sender, False)
        tg.start_soon(watch, log, "receiver", receiver, True)
        receiver.register_text_stream_handler("s", on_text)
        assert await connected_both([sender, receiver], 10), "the rooms did not meet"
        lp = sender.local_participant
        writers: dict[str, dict[str, Any]] = {}
        writers["before"] = await write(lp, "before", 20, 0.01)

        async def through() -> None:
            writers["through"] = await write(lp, "through", int((seconds + 25) / 0.1), 0.1)

        async with anyio.create_task_group() as inner:
            inner.start_soon(through)
            await anyio.sleep(1)
            log.fault_at = log.now()
            with Partition(info):
                log.event("test", "cut")
                await anyio.sleep(seconds)
            log.event("test", "healed")
        log.end["reconnected"] = await connected_both([sender, receiver], SETTLE)
        writers["after"] = await write(lp, "after", 20, 0.01)
        with anyio.move_on_after(10):
            while len(readers) < 3:
                await anyio.sleep(0.1)
        log.end["writers"] = writers
        log.end["readers"] = readers
        log.end["open"] = [
            (r._session.streams.open_readers, r._session.streams.open_writers)
            for r in (sender, receiver)
        ]
        tg.cancel_scope.cancel()
    with anyio.move_on_after(10):
        while pending_requests() or live_native_handles():
            await anyio.sleep(0.05)
    log.end["handles"] = live_native_handles()
    log.end["pending"] = pending_requests()
    with anyio.fail_after(10):
        while await server_participants(info, ROOM):
            await anyio.sleep(0.2)
    log.end["server_participants"] = 0


# -- one-sided: the sender in a child process whose traffic alone is dropped ------------
async def one_sided(seconds: float, sdk: str, count: int, log: Log, server: LocalServer) -> None:
    import lkrtc_trio as lk
    from lkrtc_trio._runtime import live_native_handles, pending_requests
    from tests.helpers import server_participants

    info = server.info
    argv = [sys.executable, "-m", "tests.faults.scenarios", "cut-sender", str(seconds), sdk]
    argv += [str(count), info.url]
    async with (
        lk.open_room(info.url, mint_token("receiver", ROOM)) as receiver,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(watch, log, "receiver", receiver, True)
        with anyio.fail_after(SETTLE + seconds + 30):
            child = await anyio.run_process(argv, check=False, group=CUT_GID, stderr=None)
        if child.returncode != 0:
            raise SystemExit(f"the cut-off sender failed ({child.returncode})")
        theirs = json.loads(child.stdout)
        # the child's times are relative to its fault: place it on our clock
        log.fault_at = log.now() - (time.time() - theirs["fault_wall"])
        for t, w, n, d in theirs["events"]:
            log.events.append((t + log.fault_at, w, n, d))
        log.events.sort(key=lambda e: e[0])
        log.sent = [(t + log.fault_at, s, o, d) for t, s, o, d in theirs["sent"]]
        with anyio.move_on_after(10):
            while len(set(log.received)) < count:
                await anyio.sleep(0.2)
        log.end.update(theirs["end"])
        tg.cancel_scope.cancel()
    log.end["receiver_handles"] = live_native_handles()
    log.end["receiver_pending"] = pending_requests()
    with anyio.fail_after(10):
        while await server_participants(info, ROOM):
            await anyio.sleep(0.2)
    log.end["server_participants"] = 0


async def cut_sender(seconds: float, count: int, url: str, log: Log) -> dict[str, Any]:
    import lkrtc_trio as lk
    from lkrtc_trio._runtime import live_native_handles, pending_requests

    host, _ = url.removeprefix("ws://").rsplit(":", 1)
    async with (
        lk.open_room(url, mint_token("sender", ROOM)) as sender,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(watch, log, "sender", sender, False)
        with anyio.fail_after(10):
            await sender.wait_for_participant("receiver")
        # the server's other ports are unknown here: cut every server port of
        # this process (its group), which is all of its traffic
        cut = GroupPartition(host)
        async with anyio.create_task_group() as inner:
            publish = sender.local_participant.publish_data
            inner.start_soon(send_steadily, log, publish, count, seconds + 4)
            await anyio.sleep(1)
            log.fault_at = log.now()
            with cut:
                log.event("test", "cut")
                await anyio.sleep(seconds)
            log.event("test", "healed")
        with anyio.move_on_after(SETTLE):
            while not (sender.isconnected() and "receiver" in sender.remote_participants):
                await anyio.sleep(0.1)
        log.end["reconnected"] = sender.isconnected()
        await anyio.sleep(3)
        tg.cancel_scope.cancel()
    log.end["handles"] = live_native_handles()
    log.end["pending"] = pending_requests()
    return {
        "events": [(t - log.fault_at, w, n, d) for t, w, n, d in log.events],
        "sent": [(t - log.fault_at, s, o, d) for t, s, o, d in log.sent],
        "fault_wall": time.time() - (log.now() - log.fault_at),
        "end": log.end,
    }


# -- the official SDK --------------------------------------------------------------------
async def official(seconds: float, count: int, log: Log, info: ServerInfo) -> None:
    from livekit import rtc

    rooms = {"sender": rtc.Room(), "receiver": rtc.Room()}
    for who, room in rooms.items():
        for name in ("reconnecting", "reconnected", "disconnected"):
            room.on(name, lambda *a, who=who, name=name: log.event(who, name.capitalize()))
    rooms["receiver"].on("data_received", lambda p: log.received.append(int(p.data)))
    for who, room in rooms.items():
        await room.connect(info.url, mint_token(who, ROOM))
    try:
        with anyio.fail_after(10):
            while not all(r.remote_participants for r in rooms.values()):
                await anyio.sleep(0.05)
        lp = rooms["sender"].local_participant

        async def publish(data: bytes) -> None:
            await lp.publish_data(data, reliable=True)

        async with anyio.create_task_group() as inner:
            inner.start_soon(send_steadily, log, publish, count, seconds + 4)
            await anyio.sleep(1)
            log.fault_at = log.now()
            with Partition(info):
                log.event("test", "cut")
                await anyio.sleep(seconds)
            log.event("test", "healed")
        with anyio.move_on_after(SETTLE):
            await anyio.sleep(1)
            while not all(r.isconnected() for r in rooms.values()):
                await anyio.sleep(0.2)
        log.end["reconnected"] = all(r.isconnected() for r in rooms.values())
        with anyio.move_on_after(10):
            while len(set(log.received)) < count:
                await anyio.sleep(0.2)
    finally:
        for room in rooms.values():
            await room.disconnect()


def main() -> None:
    scenario, arg, sdk = sys.argv[1], sys.argv[2], sys.argv[3]
    count = int(sys.argv[4]) if len(sys.argv) > 4 else 400
    log = Log()
    if scenario == "cut-sender":  # the child of one-sided
        out = anyio.run(cut_sender, float(arg), count, sys.argv[5], log, backend=sdk)
        print(json.dumps(out))
        return
    server = LocalServer()
    server.start()
    try:
        if sdk == "official":
            anyio.run(official, float(arg), count, log, server.info, backend="asyncio")
        elif scenario == "stream-partition":
            anyio.run(stream_partition, float(arg), log, server, backend=sdk)
        elif scenario == "one-sided":
            anyio.run(one_sided, float(arg), sdk, count, log, server, backend=sdk)
        else:
            anyio.run(ours, scenario, arg, count, log, server, backend=sdk)
    finally:
        server.stop()
    print(json.dumps(log.output()))


if __name__ == "__main__":
    main()
