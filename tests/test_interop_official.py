"""Interop with the official asyncio SDK (``livekit.rtc``) on a real livekit-server.

Each official participant runs in its own process (``tests/peers/official_peer.py``,
driven through JSON lines); lkrtc-trio runs in this one. Every wait is bounded; the
server batches participant-visibility updates of non-publishers every ~3 s, so each
test first waits until every side sees the others. One test per area, several checks
each: starting an official peer costs about a second.
"""

from __future__ import annotations

import base64
from contextlib import AsyncExitStack
from typing import Any

import anyio
import pytest

import lkrtc_trio as lk
from lkrtc_trio.testing import ServerInfo
from lkrtc_trio.testing.pytest_plugin import TokenFactory

from .helpers import next_event, see_each_other, wait_released
from .peers._official import OfficialPeer, open_official_peer

pytestmark = pytest.mark.integration

SEE = 20  # seconds to see each other (the server batches updates every ~3 s)
STEP = 10  # seconds for any single exchange
Code = lk.RpcError.ErrorCode
# -- helpers -------------------------------------------------------------------------------


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(event: dict[str, Any]) -> bytes:
    return base64.b64decode(event["payload_b64"])


def data_events(peer: OfficialPeer, since: int, topic: str) -> list[dict[str, Any]]:
    return [
        e
        for e in peer.events[since:]
        if e.get("event") == "data_received" and e.get("topic") == topic
    ]


def rpc_failure(reply: dict[str, Any]) -> tuple[int | None, str | None, str | None]:
    """(code, message, data) of a failed ``perform_rpc`` reply of an official peer."""
    assert reply["ok"] is False, reply
    return reply["code"], reply["error"], reply.get("data")


# -- RPC: official caller, lkrtc-trio handlers ----------------------------------------------


async def test_rpc_official_peer_calls_trio_handlers(
    livekit_server: ServerInfo, livekit_token: TokenFactory
) -> None:
    url = livekit_server.url
    me, caller = "trio-callee", "official-caller"
    async with lk.open_room(url, livekit_token(me)) as room:
        lp = room.local_participant
        seen: list[lk.RpcInvocationData] = []

        @lp.register_rpc_method("echo")  # async, decorator
        async def echo(data: lk.RpcInvocationData) -> str:
            seen.append(data)
            await anyio.sleep(0.01)
            return f"{data.caller_identity}|{data.method}|{data.payload}"

        def upper(data: lk.RpcInvocationData) -> str:  # sync, direct
            seen.append(data)
            return data.payload.upper()

        assert lp.register_rpc_method("upper", upper) is upper

        @lp.register_rpc_method("custom")  # sync, decorator, application error
        def custom(data: lk.RpcInvocationData) -> str:
            raise lk.RpcError(2001, "msg", "data")

        async def boom(data: lk.RpcInvocationData) -> str:  # async, direct, plain bug
            raise ValueError("handler bug")

        lp.register_rpc_method("boom", boom)

        def not_a_str(data: lk.RpcInvocationData) -> Any:
            return 42

        lp.register_rpc_method("not_a_str", not_a_str)

        def grow(data: lk.RpcInvocationData) -> str:
            return data.payload * 2

        lp.register_rpc_method("grow", grow)

        slow_state: dict[str, Any] = {}

        @lp.register_rpc_method("slow")
        async def slow(data: lk.RpcInvocationData) -> str:
            slow_state["response_timeout"] = data.response_timeout
            start = anyio.current_time()
            try:
                await anyio.sleep(5)
                slow_state["finished"] = True
            finally:
                slow_state["ran_for"] = anyio.current_time() - start
            return "too late"

        async with open_official_peer(url, livekit_token(caller)) as peer:
            await see_each_other(room, peer)

            async def call(
                method: str, payload: str = "", limit: float = STEP, **extra: Any
            ) -> dict[str, Any]:
                return await peer.call(
                    "perform_rpc", limit, destination=me, method=method, payload=payload, **extra
                )

            # success, with the caller's identity, through an async decorator handler
            text = 'héllo ✓ 🎉 "quoted" \n new line'
            reply = await call("echo", text)
            assert reply["ok"], reply
            assert reply["result"] == f"{caller}|echo|{text}"
            inv = seen[-1]
            assert (inv.caller_identity, inv.method, inv.payload) == (caller, "echo", text)
            assert inv.request_id
            assert 0 < inv.response_timeout <= 15

            # a sync, directly registered handler; the largest payload both ways
            big = "x" * 15_360
            reply = await call("upper", big)
            assert reply["ok"], reply["error"]
            assert reply["result"] == big.upper()
            assert seen[-1].payload == big and seen[-1].method == "upper"

            # RpcError from our handler arrives unchanged
            assert rpc_failure(await call("custom", "p")) == (2001, "msg", "data")
            # a plain exception, and a handler returning a non-str: APPLICATION_ERROR
            code, message, _ = rpc_failure(await call("boom"))
            assert code == Code.APPLICATION_ERROR
            assert "handler bug" not in (message or "")  # internals do not leak
            assert rpc_failure(await call("not_a_str"))[0] == Code.APPLICATION_ERROR
            # a response over the payload limit
            assert rpc_failure(await call("grow", "y" * 8_000))[0] == (
                Code.RESPONSE_PAYLOAD_TOO_LARGE
            )
            # an unknown method
            assert rpc_failure(await call("no-such-method"))[0] == Code.UNSUPPORTED_METHOD

            # a handler overrunning the caller's timeout is cancelled at its own
            # deadline (max(2 - min(7, 2), 1) = 1 s) and the caller gets 1502
            start = anyio.current_time()
            reply = await call("slow", "zzz", response_timeout=2)
            elapsed = anyio.current_time() - start
            assert rpc_failure(reply)[0] == Code.RESPONSE_TIMEOUT
            assert elapsed < 4, elapsed
            assert slow_state["response_timeout"] == pytest.approx(1.0, abs=0.05)
            assert "finished" not in slow_state
            assert 0.9 <= slow_state["ran_for"] < 2.5, slow_state

            # 20 concurrent calls, each answered with its own payload
            since = peer.mark()
            ids = [
                await peer.send("perform_rpc", destination=me, method="echo", payload=f"n{i}")
                for i in range(20)
            ]
            for i, cmd_id in enumerate(ids):
                reply = await peer.wait_for("reply", STEP, since=since, id=cmd_id)
                assert reply["ok"], reply
                assert reply["result"] == f"{caller}|echo|n{i}"

            # unregistering: callers get UNSUPPORTED_METHOD; unknown names are ignored
            lp.unregister_rpc_method("echo")
            lp.unregister_rpc_method("never-registered")
            assert rpc_failure(await call("echo", "gone"))[0] == Code.UNSUPPORTED_METHOD
            # registering again serves again; registering twice replaces the handler
            lp.register_rpc_method("echo", lambda d: f"back:{d.payload}")
            reply = await call("echo", "again")
            assert (reply["ok"], reply["result"]) == (True, "back:again")
            lp.register_rpc_method("upper", lambda d: d.payload.lower())
            reply = await call("upper", "MiXeD")
            assert (reply["ok"], reply["result"]) == (True, "mixed")

        assert lk.pending_requests() == 0
    await wait_released()


# -- RPC: lkrtc-trio caller, official handlers ----------------------------------------------


async def test_rpc_trio_calls_official_peer_handlers(
    livekit_server: ServerInfo, livekit_token: TokenFactory
) -> None:
    url = livekit_server.url
    me, callee = "trio-caller", "official-callee"
    async with lk.open_room(url, livekit_token(me)) as room:
        lp = room.local_participant
        async with open_official_peer(url, livekit_token(callee)) as peer:
            registrations: list[dict[str, Any]] = [
                {"method": "echo", "behaviour": "echo"},
                {
                    "method": "fail",
                    "behaviour": "error",
                    "code": 2002,
                    "message": "custom msg",
                    "data": "custom data ✓",
                },
                {"method": "raise", "behaviour": "raise", "message": "peer bug"},
                {"method": "sleep", "behaviour": "sleep", "seconds": 5},
                {"method": "nap", "behaviour": "sleep", "seconds": 2},
            ]
            for reg in registrations:
                reply = await peer.call("register_rpc", **reg)
                assert reply["ok"], reply
            await see_each_other(room, peer)

            async def rpc(method: str, payload: str = "", response_timeout: float = 10) -> str:
                return await lp.perform_rpc(
                    destination_identity=callee,
                    method=method,
                    payload=payload,
                    response_timeout=response_timeout,
                )

            # success; the callee sees our identity and its deadline
            # (max(10 - min(7, 10), 1) = 3 s)
            text = "grüße ✓ 🎉 {json: [1, 2]}"
            since = peer.mark()
            with anyio.fail_after(STEP):
                assert await rpc("echo", text) == text
            inv = await peer.wait_for("rpc_invoked", STEP, since=since, method="echo")
            assert (inv["caller"], inv["payload"]) == (me, text)
            assert inv["request_id"]
            assert inv["response_timeout"] == pytest.approx(3.0, abs=0.05)

            # the largest payload; one byte more is refused before anything is sent
            big = "é" * (15_360 // 2)
            with anyio.fail_after(STEP):
                assert await rpc("echo", big) == big
            since = peer.mark()
            with pytest.raises(lk.RpcError) as err:
                await rpc("echo", big + "x")
            assert err.value.code == Code.REQUEST_PAYLOAD_TOO_LARGE

            # the peer's RpcError arrives with its code, message and data
            with anyio.fail_after(STEP), pytest.raises(lk.RpcError) as err:
                await rpc("fail", "p")
            assert (err.value.code, err.value.message, err.value.data) == (
                2002,
                "custom msg",
                "custom data ✓",
            )
            # an exception in the peer's handler: APPLICATION_ERROR
            with anyio.fail_after(STEP), pytest.raises(lk.RpcError) as err:
                await rpc("raise")
            assert err.value.code == Code.APPLICATION_ERROR
            # an unknown method
            with anyio.fail_after(STEP), pytest.raises(lk.RpcError) as err:
                await rpc("no-such-method")
            assert err.value.code == Code.UNSUPPORTED_METHOD
            assert peer.find("rpc_invoked", since=since, payload=big + "x") is None

            # a handler sleeping past our timeout: RESPONSE_TIMEOUT within about the
            # timeout; the callee's deadline was max(2 - min(7, 2), 1) = 1 s
            since = peer.mark()
            start = anyio.current_time()
            with anyio.fail_after(STEP), pytest.raises(lk.RpcError) as err:
                await rpc("sleep", "z", response_timeout=2)
            elapsed = anyio.current_time() - start
            assert err.value.code == Code.RESPONSE_TIMEOUT
            assert elapsed < 3.5, elapsed
            inv = await peer.wait_for("rpc_invoked", STEP, since=since, method="sleep")
            assert inv["response_timeout"] == pytest.approx(1.0, abs=0.05)

            # 20 concurrent calls, each with its own answer
            answers: dict[int, str] = {}

            async def one(i: int) -> None:
                answers[i] = await rpc("echo", f"c{i}")

            with anyio.fail_after(STEP):
                async with anyio.create_task_group() as nursery:
                    for i in range(20):
                        nursery.start_soon(one, i)
            assert answers == {i: f"c{i}" for i in range(20)}

            # cancelling a call while the peer sleeps returns at once; the late
            # response is dropped and later calls work
            since = peer.mark()
            start = anyio.current_time()
            with anyio.move_on_after(0.5) as scope:
                await rpc("nap", "cancelled", response_timeout=10)
                pytest.fail("the call returned before the peer answered")
            assert scope.cancelled_caught
            assert anyio.current_time() - start < 1.0
            with anyio.fail_after(STEP):
                assert await rpc("echo", "during") == "during"  # while the nap goes on
            assert peer.find("rpc_returned", since=since, method="nap") is None
            await peer.wait_for("rpc_returned", STEP, since=since, method="nap")
            # the peer answered the cancelled call before this one: its late
            # response reaches nobody
            with anyio.fail_after(STEP):
                assert await rpc("echo", "after") == "after"
            with anyio.fail_after(STEP):
                while lk.pending_requests():
                    await anyio.sleep(0.01)

            # the peer unregisters: UNSUPPORTED_METHOD
            reply = await peer.call("unregister_rpc", method="echo")
            assert reply["ok"], reply
            with anyio.fail_after(STEP), pytest.raises(lk.RpcError) as err:
                await rpc("echo", "gone")
            assert err.value.code == Code.UNSUPPORTED_METHOD

        assert lk.pending_requests() == 0
    await wait_released()


# -- data packets ------------------------------------------------------------------------


async def test_data_packets_between_trio_and_official_peers(
    livekit_server: ServerInfo, livekit_token: TokenFactory
) -> None:
    url = livekit_server.url
    me = "trio-data"
    async with lk.open_room(url, livekit_token(me)) as room, AsyncExitStack() as stack:
        lp = room.local_participant
        a = await stack.enter_async_context(open_official_peer(url, livekit_token("peer-a")))
        b = await stack.enter_async_context(open_official_peer(url, livekit_token("peer-b")))
        await see_each_other(room, a, b)

        with room.events() as events:
            # lkrtc-trio -> official: 200 reliable packets, complete and in order
            marks = {a: a.mark(), b: b.mark()}
            sent = [f"{i:03d}:".encode() + bytes([i]) * (i * 37 % 1000) for i in range(200)]
            with anyio.fail_after(STEP):
                for packet in sent:
                    await lp.publish_data(packet, reliable=True, topic="seq")
            for peer, mark in marks.items():
                await peer.wait_for(
                    "data_received", STEP, since=mark, topic="seq", payload_b64=b64(sent[-1])
                )
                seq = data_events(peer, mark, "seq")
                assert [unb64(e) for e in seq] == sent
                assert {(e["kind"], e["identity"]) for e in seq} == {(1, me)}

            # a large packet, a str payload, and lossy packets
            large = bytes(range(256)) * 234  # 59904 bytes
            mark = a.mark()
            with anyio.fail_after(STEP):
                await lp.publish_data(large, topic="large", destination_identities=["peer-a"])
                await lp.publish_data("text ✓", topic="text", destination_identities=["peer-a"])
            ev = await a.wait_for("data_received", STEP, since=mark, topic="large")
            assert unb64(ev) == large
            ev = await a.wait_for("data_received", STEP, since=mark, topic="text")
            assert unb64(ev) == "text ✓".encode()
            with anyio.fail_after(STEP):
                while not data_events(a, mark, "lossy"):
                    await lp.publish_data(b"lossy!", reliable=False, topic="lossy")
                    await anyio.sleep(0.1)
            ev = data_events(a, mark, "lossy")[0]
            assert (unb64(ev), ev["kind"], ev["identity"]) == (b"lossy!", 0, me)

            # official -> lkrtc-trio: bytes, topic, kind and sender
            binary = bytes(range(256)) * 4
            reply = await a.call("publish_data", payload_b64=b64(binary), topic="bin")
            assert reply["ok"], reply
            got_bin = await next_event(events, lk.DataReceived, lambda e: e.topic == "bin")
            assert type(got_bin.payload) is bytes
            assert got_bin.payload == binary
            assert got_bin.kind == 1
            assert got_bin.participant is not None
            assert got_bin.participant.identity == "peer-a"
            assert got_bin.participant is room.remote_participants["peer-a"]

            for i in range(50):  # in order
                reply = await a.call("publish_data", payload_b64=b64(b"%d" % i), topic="ord")
                assert reply["ok"], reply
            for i in range(50):
                got = await next_event(events, lk.DataReceived, lambda e: e.topic == "ord")
                assert got.payload == b"%d" % i
                assert got.participant is not None and got.participant.identity == "peer-a"

            reply = await b.call("publish_data", payload_b64=b64(large), topic="large-in")
            assert reply["ok"], reply
            got = await next_event(events, lk.DataReceived, lambda e: e.topic == "large-in")
            assert got.payload == large
            assert got.participant is not None and got.participant.identity == "peer-b"

            with anyio.fail_after(STEP):
                while True:
                    reply = await b.call(
                        "publish_data", payload_b64=b64(b"l"), topic="lossy-in", reliable=False
                    )
                    assert reply["ok"], reply
                    with anyio.move_on_after(0.2):
                        lossy = await next_event(
                            events, lk.DataReceived, lambda e: e.topic == "lossy-in"
                        )
                        break
            assert (lossy.payload, lossy.kind) == (b"l", 0)
            assert lossy.participant is not None and lossy.participant.identity == "peer-b"

            # Destinations. Reliable packets of one sender arrive in order, so when a
            # later broadcast marker arrives, an earlier packet would have arrived too.

            # lkrtc-trio -> peer-a only: peer-b gets nothing
            ma, mb = a.mark(), b.mark()
            with anyio.fail_after(STEP):
                await lp.publish_data(b"for a", topic="dm", destination_identities=["peer-a"])
                await lp.publish_data(b"marker", topic="marker")
            await a.wait_for("data_received", STEP, since=ma, topic="marker")
            await b.wait_for("data_received", STEP, since=mb, topic="marker")
            assert [unb64(e) for e in data_events(a, ma, "dm")] == [b"for a"]
            assert data_events(b, mb, "dm") == []

            # lkrtc-trio -> both peers by identity
            with anyio.fail_after(STEP):
                await lp.publish_data(
                    b"for both", topic="both", destination_identities=["peer-a", "peer-b"]
                )
            for peer, mark in ((a, ma), (b, mb)):
                ev = await peer.wait_for("data_received", STEP, since=mark, topic="both")
                assert (unb64(ev), ev["identity"]) == (b"for both", me)

            # peer-a -> lkrtc-trio only: peer-b gets nothing
            mb = b.mark()
            reply = await a.call(
                "publish_data",
                payload_b64=b64(b"for trio"),
                topic="dm2",
                destination_identities=[me],
            )
            assert reply["ok"], reply
            reply = await a.call("publish_data", payload_b64=b64(b"m2"), topic="marker2")
            assert reply["ok"], reply
            got = await next_event(events, lk.DataReceived, lambda e: e.topic == "dm2")
            assert got.payload == b"for trio"
            await b.wait_for("data_received", STEP, since=mb, topic="marker2")
            assert data_events(b, mb, "dm2") == []

            # peer-a -> peer-b only: lkrtc-trio gets nothing before the marker
            mb = b.mark()
            reply = await a.call(
                "publish_data",
                payload_b64=b64(b"for b"),
                topic="dm3",
                destination_identities=["peer-b"],
            )
            assert reply["ok"], reply
            reply = await a.call("publish_data", payload_b64=b64(b"m3"), topic="marker3")
            assert reply["ok"], reply
            first = await next_event(
                events, lk.DataReceived, lambda e: e.topic in ("dm3", "marker3")
            )
            assert (first.topic, first.payload) == ("marker3", b"m3")
            ev = await b.wait_for("data_received", STEP, since=mb, topic="dm3")
            assert (unb64(ev), ev["identity"]) == (b"for b", "peer-a")

        assert lk.pending_requests() == 0
    await wait_released()


# -- metadata, name, attributes ----------------------------------------------------------


async def test_metadata_name_attributes_between_trio_and_official_peer(
    livekit_server: ServerInfo, livekit_token: TokenFactory
) -> None:
    url = livekit_server.url
    me, other = "trio-meta", "peer-meta"
    async with lk.open_room(url, livekit_token(me, name="Trio One")) as room:
        lp = room.local_participant
        assert lp.name == "Trio One"
        token = livekit_token(other, name="Peer One", metadata="initial", attributes={"r": "p"})
        async with open_official_peer(url, token) as peer:
            await see_each_other(room, peer)
            remote = room.remote_participants[other]
            assert (remote.name, remote.metadata, remote.attributes) == (
                "Peer One",
                "initial",
                {"r": "p"},
            )
            view = (await peer.call("participant", identity=me))["result"]
            assert (view["name"], view["metadata"], view["attributes"]) == ("Trio One", "", {})

            # ours, seen by the official peer
            since = peer.mark()
            with anyio.fail_after(STEP):
                await lp.set_metadata("trio metadata ✓")
            assert lp.metadata == "trio metadata ✓"
            ev = await peer.wait_for("participant_metadata_changed", STEP, since=since, identity=me)
            assert (ev["old"], ev["metadata"]) == ("", "trio metadata ✓")

            since = peer.mark()
            with anyio.fail_after(STEP):
                await lp.set_name("Trio Two")
            assert lp.name == "Trio Two"
            ev = await peer.wait_for("participant_name_changed", STEP, since=since, identity=me)
            assert (ev["old"], ev["name"]) == ("Trio One", "Trio Two")

            # set_attributes merges into the current attributes
            for update, expected in [
                ({"a": "1"}, {"a": "1"}),
                ({"b": "2"}, {"a": "1", "b": "2"}),
                ({"a": "10", "c": "3"}, {"a": "10", "b": "2", "c": "3"}),
            ]:
                since = peer.mark()
                with anyio.fail_after(STEP):
                    await lp.set_attributes(update)
                assert lp.attributes == expected
                ev = await peer.wait_for(
                    "participant_attributes_changed", STEP, since=since, identity=me
                )
                assert ev["changed"] == update
                assert ev["attributes"] == expected

            # an empty value removes the key
            since = peer.mark()
            with anyio.fail_after(STEP):
                await lp.set_attributes({"c": ""})
            assert lp.attributes == {"a": "10", "b": "2"}
            ev = await peer.wait_for(
                "participant_attributes_changed", STEP, since=since, identity=me
            )
            assert ev["attributes"] == {"a": "10", "b": "2"}

            view = (await peer.call("participant", identity=me))["result"]
            assert (view["name"], view["metadata"], view["attributes"]) == (
                "Trio Two",
                "trio metadata ✓",
                {"a": "10", "b": "2"},
            )

            # the peer's, seen by lkrtc-trio: room state is updated when the event
            # arrives
            with room.events() as events:
                reply = await peer.call("set_metadata", metadata="peer metadata ✓")
                assert reply["ok"], reply
                md = await next_event(
                    events, lk.ParticipantMetadataChanged, lambda e: e.participant.identity == other
                )
                assert room.remote_participants[other].metadata == "peer metadata ✓"
                assert (md.old_metadata, md.metadata) == ("initial", "peer metadata ✓")
                assert md.participant is room.remote_participants[other]
                assert md.participant.metadata == "peer metadata ✓"

                reply = await peer.call("set_name", name="Peer Two")
                assert reply["ok"], reply
                nm = await next_event(
                    events, lk.ParticipantNameChanged, lambda e: e.participant.identity == other
                )
                assert room.remote_participants[other].name == "Peer Two"
                assert (nm.old_name, nm.name) == ("Peer One", "Peer Two")

                reply = await peer.call("set_attributes", attributes={"x": "1"})
                assert reply["ok"], reply
                at = await next_event(
                    events,
                    lk.ParticipantAttributesChanged,
                    lambda e: e.participant.identity == other,
                )
                assert room.remote_participants[other].attributes == {"r": "p", "x": "1"}
                assert dict(at.changed_attributes) == {"x": "1"}

                reply = await peer.call("set_attributes", attributes={"r": "", "y": "2"})
                assert reply["ok"], reply
                at = await next_event(
                    events,
                    lk.ParticipantAttributesChanged,
                    lambda e: e.participant.identity == other,
                )
                assert room.remote_participants[other].attributes == {"x": "1", "y": "2"}
                assert dict(at.changed_attributes) == {"r": "", "y": "2"}

            # and the peer agrees about itself (the official SDK applies its own
            # update when the server's event reaches it, which may come after
            # its set_attributes call returned: poll, bounded)
            itself = ("Peer Two", "peer metadata ✓", {"x": "1", "y": "2"})
            with anyio.fail_after(STEP):
                while True:
                    view = (await peer.call("participant"))["result"]
                    if (view["name"], view["metadata"], view["attributes"]) == itself:
                        break
                    await anyio.sleep(0.05)

        assert lk.pending_requests() == 0
    await wait_released()


# -- SIP DTMF and transcriptions ---------------------------------------------------------


async def test_dtmf_and_transcription_between_trio_and_official_peer(
    livekit_server: ServerInfo, livekit_token: TokenFactory
) -> None:
    # livekit-server forwards transcriptions only from agent participants
    url = livekit_server.url
    me, other = "trio-agent", "peer-agent"
    agent = 4  # ParticipantKind.AGENT
    async with lk.open_room(url, livekit_token(me, kind="agent")) as room:
        lp = room.local_participant
        async with open_official_peer(url, livekit_token(other, kind="agent")) as peer:
            await see_each_other(room, peer)
            assert room.remote_participants[other].kind == agent
            assert (await peer.call("participant", identity=me))["result"]["kind"] == agent

            # lkrtc-trio -> official
            since = peer.mark()
            tones = [(11, "#"), (1, "1"), (12, "a"), (10, "*")]
            with anyio.fail_after(STEP):
                for code, digit in tones:
                    await lp.publish_dtmf(code=code, digit=digit)
            await peer.wait_for("sip_dtmf_received", STEP, since=since, code=10)
            got = [
                (e["code"], e["digit"], e["identity"])
                for e in peer.events[since:]
                if e["event"] == "sip_dtmf_received"
            ]
            assert got == [(c, d.upper(), me) for c, d in tones]

            segments = [
                lk.TranscriptionSegment(
                    id="s1", text="hello ✓", start_time=0, end_time=500, final=False, language="en"
                ),
                lk.TranscriptionSegment(
                    id="s2", text="world", start_time=500, end_time=900, final=True, language="de"
                ),
            ]
            since = peer.mark()
            with anyio.fail_after(STEP):
                await lp.publish_transcription(
                    lk.Transcription(
                        participant_identity=me, track_sid="TR_trioTrack", segments=segments
                    )
                )
            ev = await peer.wait_for("transcription_received", STEP, since=since)
            assert ev["identity"] == me
            assert ev["track_sid"] is None  # no such publication
            assert ev["segments"] == [
                {
                    "id": s.id,
                    "text": s.text,
                    "start_time": s.start_time,
                    "end_time": s.end_time,
                    "final": s.final,
                    "language": s.language,
                }
                for s in segments
            ]

            # official -> lkrtc-trio
            with room.events() as events:
                reply = await peer.call("publish_dtmf", code=5, digit="5")
                assert reply["ok"], reply
                dtmf = await next_event(events, lk.SipDTMFReceived)
                assert (dtmf.code, dtmf.digit) == (5, "5")
                assert dtmf.participant is room.remote_participants[other]

                reply = await peer.call(
                    "publish_transcription",
                    track_sid="TR_peerTrack",
                    segments=[
                        {
                            "id": "p1",
                            "text": "from the peer",
                            "start_time": 10,
                            "end_time": 20,
                            "final": True,
                            "language": "fr",
                        },
                    ],
                )
                assert reply["ok"], reply
                tr = await next_event(events, lk.TranscriptionReceived)
                assert list(tr.segments) == [
                    lk.TranscriptionSegment(
                        id="p1",
                        text="from the peer",
                        start_time=10,
                        end_time=20,
                        final=True,
                        language="fr",
                    )
                ]
                assert tr.participant is room.remote_participants[other]
                assert tr.publication is None

        assert lk.pending_requests() == 0
    await wait_released()
