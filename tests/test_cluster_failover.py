"""A node of a two-node cluster goes away while rooms live on both nodes.

Each test has a cluster of its own (node 0 survives, node 1 goes) and three
rooms, placed with ``CreateRoomRequest(node_id=...)``:

* ``stay``, on node 0, both participants signalling through node 0;
* ``gone``, on node 1: ``g1`` signals through node 1, ``g2`` through node 0
  (relayed to node 1);
* ``relay``, on node 0: ``r1`` signals through node 1, ``r2`` through node 0.

``stop`` is :meth:`LocalServer.stop`: SIGTERM (livekit-server starts to drain
and would wait for every participant to leave), a second SIGTERM 0.5 s later
(it closes its rooms and tells their participants). ``kill`` is SIGKILL, a
crash. Every participant has ``reconnect_timeout=RECONNECT``. What is checked,
with the measured times printed (``-s``) for the deployment guide:

* ``stay`` is unaffected: RPC calls and data packets every 100 ms throughout,
  all answered and all delivered in order, no connection event.
* ``gone``'s participants: ``stop``: ``Disconnected(SERVER_SHUTDOWN)`` within
  about 0.5 s of the SIGTERM; ``kill``: ``g1`` is Disconnected
  (CONNECTION_TIMEOUT) at ``reconnect_timeout``, ``g2`` reconnects (the room
  moves to node 0) or is Disconnected, within ``KILL_BOUND``. A call pending
  across the failure (``g2`` -> ``g1``, a handler that never answers) fails
  with a typed error within the same bound; afterwards publishing from a
  disconnected room raises ``RoomDisconnectedError``.
* ``r1`` lost its signalling node: ``Reconnecting`` at once (the native core
  retries the same URL), ``Disconnected(CONNECTION_TIMEOUT)`` at
  ``reconnect_timeout``.
* A new join to ``gone`` through node 0 succeeds, and RPC works there.
* Nothing is left: no native handle, no pending request.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field

import anyio
import pytest

import lkrtc_trio as lk
from lkrtc_trio import api
from lkrtc_trio.testing import ClusterInfo, LocalCluster, install_server, mint_token

from .helpers import SEE, wait_released

pytestmark = pytest.mark.integration

RECONNECT = 4.0  # reconnect_timeout of every participant
STOP_BOUND = 3.0  # seconds from the first SIGTERM: the room's participants are told
KILL_BOUND = 20.0  # seconds from SIGKILL: the gone room's participants have reconnected or left
CONNECTION = (lk.Reconnecting, lk.Reconnected, lk.Disconnected)


@pytest.fixture
def cluster() -> Iterator[LocalCluster]:
    # started here, on the main thread (the processes die with the thread that started them)
    c = LocalCluster(nodes=2, binary=install_server())
    c.start()
    try:
        yield c
    finally:
        c.stop()


@dataclass
class Timeline:
    t0: float = 0.0
    events: list[tuple[float, str, object]] = field(default_factory=list)

    def now(self) -> float:
        return time.monotonic() - self.t0 if self.t0 else -1.0

    def of(
        self, who: str, kind: type | tuple[type, ...] = CONNECTION
    ) -> list[tuple[float, object]]:
        return [(t, e) for t, w, e in self.events if w == who and isinstance(e, kind)]


async def _watch(room: lk.Room, who: str, timeline: Timeline) -> None:
    with room.events() as events:
        async for event in events:
            if isinstance(event, CONNECTION):
                timeline.events.append((timeline.now(), who, event))


async def _place_rooms(info: ClusterInfo) -> None:
    n0, n1 = info.nodes
    assert n0.node_id and n1.node_id and n0.node_id != n1.node_id
    async with api.LiveKitAPI(n0.http_url, info.api_key, info.api_secret) as client:
        for name, node in (("stay", n0), ("gone", n1), ("relay", n0)):
            await client.room.create_room(api.CreateRoomRequest(name=name, node_id=node.node_id))


@pytest.mark.parametrize("how", ["stop", "kill"])
async def test_a_node_goes_away_while_rooms_live_on_both(
    cluster: LocalCluster, how: str, anyio_backend: str
) -> None:
    info = cluster.info
    await _place_rooms(info)
    u0, u1 = info.urls
    options = lk.RoomOptions(reconnect_timeout=RECONNECT)

    def join(url: str, identity: str, room: str) -> AbstractAsyncContextManager[lk.Room]:
        return lk.open_room(url, mint_token(identity, room), options=options)

    timeline = Timeline()
    stay_rpcs: list[tuple[float, str]] = []
    stay_sent: list[int] = []
    stay_got: list[int] = []
    pending: dict[str, tuple[float, BaseException | None]] = {}
    async with (
        join(u0, "s1", "stay") as s1,
        join(u0, "s2", "stay") as s2,
        join(u1, "g1", "gone") as g1,
        join(u0, "g2", "gone") as g2,
        join(u1, "r1", "relay") as r1,
        join(u0, "r2", "relay") as r2,
    ):
        with anyio.fail_after(SEE):
            for room, other in ((s1, "s2"), (s2, "s1"), (g1, "g2"), (g2, "g1"), (r1, "r2")):
                await room.wait_for_participant(other)
        s1.local_participant.register_rpc_method("echo", lambda d: d.payload)

        @g1.local_participant.register_rpc_method("hang")
        async def hang(data: lk.RpcInvocationData) -> str:
            await anyio.sleep_forever()
            raise AssertionError("unreachable")

        async def call_pending() -> None:
            try:
                await g2.local_participant.perform_rpc(
                    destination_identity="g1", method="hang", payload="", response_timeout=60
                )
            except Exception as exc:  # recorded and checked below
                pending["g2->g1"] = (timeline.now(), exc)
            else:
                pending["g2->g1"] = (timeline.now(), None)

        async def stay_traffic() -> None:
            for i in range(10_000):
                reply = await s2.local_participant.perform_rpc(
                    destination_identity="s1", method="echo", payload=str(i)
                )
                stay_rpcs.append((timeline.now(), reply))
                await s2.local_participant.publish_data(str(i).encode(), topic="stay")
                stay_sent.append(i)
                await anyio.sleep(0.1)

        async def stay_receive() -> None:
            with s1.events(max_buffer=10_000) as events:
                async for event in events:
                    if isinstance(event, lk.DataReceived) and event.topic == "stay":
                        stay_got.append(int(event.payload))

        async with anyio.create_task_group() as tg:
            for room, who in (
                (s1, "s1"),
                (s2, "s2"),
                (g1, "g1"),
                (g2, "g2"),
                (r1, "r1"),
                (r2, "r2"),
            ):
                tg.start_soon(_watch, room, who, timeline)
            tg.start_soon(stay_receive)
            tg.start_soon(stay_traffic)
            tg.start_soon(call_pending)
            await anyio.sleep(1.0)  # traffic flows, the call is pending
            assert "g2->g1" not in pending
            node = cluster.nodes[1]
            timeline.t0 = time.monotonic()
            await anyio.to_thread.run_sync(node.stop if how == "stop" else node.kill)
            assert not node.running

            def settled() -> bool:
                gone_done = all(
                    any(isinstance(e, (lk.Disconnected, lk.Reconnected)) for _, e in timeline.of(w))
                    for w in ("g1", "g2")
                )
                relay_done = bool(timeline.of("r1", lk.Disconnected))
                return gone_done and relay_done and "g2->g1" in pending

            with anyio.fail_after(KILL_BOUND + 5):
                while not settled():
                    await anyio.sleep(0.05)
            await anyio.sleep(1.0)  # stay's traffic goes on a little longer
            tg.cancel_scope.cancel()

        # ---- stay: unaffected
        assert timeline.of("s1") == [] and timeline.of("s2") == []
        assert [int(r) for _, r in stay_rpcs] == list(range(len(stay_rpcs)))
        assert any(t > timeline.of("r1", lk.Disconnected)[0][0] for t, _ in stay_rpcs)
        with anyio.fail_after(5):
            while len(stay_got) < len(stay_sent):
                await anyio.sleep(0.05)
        assert stay_got == stay_sent, "every packet of the surviving room, in order"

        # ---- gone: told (stop) or reconnected / timed out (kill), within the bound
        bounds: dict[str, float] = {}
        g1_events = timeline.of("g1")
        g2_events = timeline.of("g2")
        if how == "stop":
            for who, seen in (("g1", g1_events), ("g2", g2_events)):
                [(at, event)] = seen
                assert isinstance(event, lk.Disconnected), (who, seen)
                assert event.reason == lk.DisconnectReason.SERVER_SHUTDOWN
                assert at < STOP_BOUND, (who, at)
                bounds[f"{who} Disconnected"] = at
        else:
            assert isinstance(g1_events[0][1], lk.Reconnecting) and g1_events[0][0] < 1.0
            (at, last) = g1_events[-1]
            assert isinstance(last, lk.Disconnected), g1_events
            assert last.reason == lk.DisconnectReason.CONNECTION_TIMEOUT
            assert RECONNECT - 0.2 < at < RECONNECT + 1.5, at
            bounds["g1 Disconnected"] = at
            (at, last) = g2_events[-1]
            assert isinstance(last, (lk.Reconnected, lk.Disconnected)), g2_events
            assert at < KILL_BOUND, g2_events
            bounds[f"g2 {type(last).__name__}"] = at
        at, error = pending["g2->g1"]
        assert isinstance(error, (lk.RpcError, lk.RoomDisconnectedError)), error
        if isinstance(error, lk.RpcError):
            assert error.code in (
                lk.RpcError.ErrorCode.RECIPIENT_DISCONNECTED,
                lk.RpcError.ErrorCode.CONNECTION_TIMEOUT,
            ), error
        assert at < (STOP_BOUND if how == "stop" else KILL_BOUND), at
        bounds[f"pending call failed ({type(error).__name__})"] = at
        with pytest.raises(lk.RoomDisconnectedError):
            await g1.local_participant.publish_data(b"after")

        # ---- relay: its signalling node went away
        r1_events = timeline.of("r1")
        assert isinstance(r1_events[0][1], lk.Reconnecting) and r1_events[0][0] < 1.0, r1_events
        [(at, last)] = timeline.of("r1", lk.Disconnected)
        assert isinstance(last, lk.Disconnected)
        assert last.reason == lk.DisconnectReason.CONNECTION_TIMEOUT
        assert RECONNECT - 0.2 < at < RECONNECT + 1.5 + (0.5 if how == "stop" else 0), at
        bounds["r1 Disconnected"] = at
        with pytest.raises(lk.RoomDisconnectedError):
            await r1.local_participant.publish_data(b"after")
        assert s1.isconnected() and s2.isconnected() and r2.isconnected()

        # ---- the gone room's name works again, through the surviving node
        async with join(u0, "n1", "gone") as n1, join(u0, "n2", "gone") as n2:
            n2.local_participant.register_rpc_method("echo", lambda d: "n2:" + d.payload)
            with anyio.fail_after(SEE):
                await n1.wait_for_participant("n2")
                assert (
                    await n1.local_participant.perform_rpc(
                        destination_identity="n2", method="echo", payload="hi"
                    )
                    == "n2:hi"
                )
            assert "g1" not in n1.remote_participants

        print(
            f"\nfailover bounds [{how}, {anyio_backend}] (s after the "
            f"{'first SIGTERM' if how == 'stop' else 'SIGKILL'}): "
            + ", ".join(f"{k} {v:.3f}" for k, v in bounds.items())
            + f"; stay: {len(stay_rpcs)} RPCs, {len(stay_got)} packets, no event"
        )
    await wait_released()
