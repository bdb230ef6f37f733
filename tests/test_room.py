"""Rooms against a real livekit-server (started by the session fixture).

Rules: the server and every participant run on the test host (the run's own
network namespace, or loopback), ports are free ports, and every wait is
bounded by ``fail_after``.
"""

from __future__ import annotations

import sys
from typing import Any

import anyio
import pytest

import lkrtc_trio as lk
from lkrtc_trio._runtime import get_runtime
from lkrtc_trio.testing import ServerInfo, free_port, test_host
from lkrtc_trio.testing.pytest_plugin import TokenFactory

from .helpers import server_participants, wait_released, wait_server
from .peers._official import open_official_peer

if sys.version_info < (3, 11):
    from exceptiongroup import ExceptionGroup

pytestmark = pytest.mark.integration

CLIENT_INITIATED = 1
SEE_TIMEOUT = 20  # the server batches participant updates (about 3 s)


@pytest.mark.matrix
async def test_two_trio_clients_see_each_other_and_leave_cleanly(
    livekit_server: ServerInfo, livekit_token: TokenFactory, livekit_room_name: str
) -> None:
    url = livekit_server.url
    async with lk.open_room(url, livekit_token("alice")) as alice:
        assert alice.isconnected()
        assert alice.name == livekit_room_name
        assert alice.local_participant.identity == "alice"
        assert alice.connection_state == 1
        with alice.events() as events:
            async with lk.open_room(url, livekit_token("bob")) as bob:
                with anyio.fail_after(SEE_TIMEOUT):
                    seen_by_alice = await alice.wait_for_participant("bob")
                    seen_by_bob = await bob.wait_for_participant("alice")
                assert seen_by_alice.identity == "bob"
                assert seen_by_alice.sid == bob.local_participant.sid
                assert seen_by_bob.sid == alice.local_participant.sid
                assert set(alice.remote_participants) == {"bob"}
                assert lk.live_native_handles() >= 4  # 2 rooms, 2 locals, remotes
            # bob left: alice is told, with state updated first
            with anyio.fail_after(SEE_TIMEOUT):
                async for event in events:
                    if isinstance(event, lk.ParticipantConnected):
                        assert event.participant.identity == "bob"
                    if isinstance(event, lk.ParticipantDisconnected):
                        assert event.participant.identity == "bob"
                        assert event.reason == CLIENT_INITIATED
                        assert "bob" not in alice.remote_participants
                        break
            assert not bob.isconnected()
            with pytest.raises(lk.RoomClosedError):
                bob.events()
    assert not alice.isconnected()
    await wait_released()


async def test_subscription_ends_when_room_closes_and_wait_fails(
    livekit_server: ServerInfo, livekit_token: TokenFactory
) -> None:
    async with lk.open_room(livekit_server.url, livekit_token("solo")) as room:
        sub = room.events()
        async with anyio.create_task_group() as nursery:
            outcome: list[BaseException] = []

            async def wait_for_ghost() -> None:
                try:
                    await room.wait_for_participant("ghost")
                except lk.RoomClosedError as exc:
                    outcome.append(exc)

            nursery.start_soon(wait_for_ghost)
            await anyio.wait_all_tasks_blocked()
            await room.disconnect()
        assert len(outcome) == 1
        with anyio.fail_after(5):
            rest = [e async for e in sub]  # ends instead of hanging
        assert all(not isinstance(e, lk.ParticipantConnected) for e in rest)
        assert not room.isconnected()
        with pytest.raises(lk.RoomClosedError):
            await room.get_rtc_stats()
    await wait_released()


async def test_official_sdk_peer_and_trio_client_see_each_other(
    livekit_server: ServerInfo, livekit_token: TokenFactory
) -> None:
    url = livekit_server.url
    async with lk.open_room(url, livekit_token("trio-side")) as room:
        with room.events() as events:
            async with open_official_peer(url, livekit_token("asyncio-side")) as peer:
                with anyio.fail_after(SEE_TIMEOUT):
                    p = await room.wait_for_participant("asyncio-side")
                    if "trio-side" not in peer.connected["remote"]:
                        await peer.wait_for("participant_connected", identity="trio-side")
                assert p.identity == "asyncio-side"
                reply = await peer.call("list")
                assert reply["result"] == ["trio-side"]
            with anyio.fail_after(SEE_TIMEOUT):
                async for event in events:
                    if isinstance(event, lk.ParticipantDisconnected):
                        assert event.participant.identity == "asyncio-side"
                        break
        # and the other way round: the official peer sees us leave
        async with open_official_peer(url, livekit_token("watcher")) as watcher:
            async with lk.open_room(url, livekit_token("leaver")):
                with anyio.fail_after(SEE_TIMEOUT):
                    if "leaver" not in watcher.connected["remote"]:
                        await watcher.wait_for("participant_connected", identity="leaver")
            with anyio.fail_after(SEE_TIMEOUT):
                gone = await watcher.wait_for("participant_disconnected", identity="leaver")
            assert gone["identity"] == "leaver"
    await wait_released()


async def test_bad_token_raises_connect_error_quickly(livekit_server: ServerInfo) -> None:
    start = anyio.current_time()
    with pytest.raises(lk.ConnectError) as info:
        async with lk.open_room(livekit_server.url, "not-a-token"):
            pytest.fail("connected with a bad token")
    assert "401" in info.value.reason or "unauthorized" in info.value.reason.lower()
    assert anyio.current_time() - start < 5
    await wait_released()


async def test_unreachable_server_raises_within_connect_timeout() -> None:
    port = free_port(test_host())  # nobody listens there
    url = f"ws://{test_host()}:{port}"
    from lkrtc_trio.testing import mint_token

    opts = lk.RoomOptions(connect_timeout=3.0)
    start = anyio.current_time()
    with pytest.raises(lk.ConnectError) as info:
        async with lk.open_room(url, mint_token("x", "r"), options=opts):
            pytest.fail("connected to nothing")
    assert anyio.current_time() - start < 3.0 + 2.5
    assert info.value.reason
    await wait_released()


async def test_malformed_url_raises_connect_error() -> None:
    from lkrtc_trio.testing import mint_token

    with anyio.fail_after(10), pytest.raises(lk.ConnectError):
        async with lk.open_room("not a url", mint_token("x", "r")):
            pytest.fail("connected to a malformed URL")
    with pytest.raises(TypeError):
        async with lk.open_room(b"ws://x", "t"):  # type: ignore[arg-type]
            pass
    await wait_released()


@pytest.mark.parametrize("delay", [0.0, 0.001, 0.005, 0.02, 0.05, 0.1, 0.3])
async def test_cancelling_connect_leaves_nothing_behind(
    livekit_server: ServerInfo, livekit_token: TokenFactory, livekit_room_name: str, delay: float
) -> None:
    url = livekit_server.url
    async with lk.open_room(url, livekit_token("observer")) as observer:
        entered = False
        with anyio.move_on_after(delay) as scope:
            async with lk.open_room(url, livekit_token("cancelled")):
                entered = True
                await anyio.sleep_forever()
        assert scope.cancelled_caught
        # No task was left behind (the nursery of this test would wait for it),
        # no waiter stays pending, and the late result's handles are released.
        with anyio.fail_after(15):
            while lk.pending_requests() or lk.live_native_handles() > _handles_of(observer):
                await anyio.sleep(0.01)
        # The connect has completed one way or the other by now: if it got
        # through, the participant was made to leave. The server's own view
        # says so (the observer's view lags).
        await wait_server(livekit_server, livekit_room_name, lambda v: "cancelled" not in v)
        assert "observer" in await server_participants(livekit_server, livekit_room_name)
        assert entered or lk.live_native_handles() == _handles_of(observer)
    await wait_released()


def _handles_of(room: lk.Room) -> int:
    return 2 + sum(1 + len(p.track_publications) for p in room.remote_participants.values())


async def test_a_cancel_while_the_room_starts_still_leaves_the_server(
    livekit_server: ServerInfo,
    livekit_token: TokenFactory,
    livekit_room_name: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A cancellation that lands after the connect, while the room's service
    task starts, must still disconnect (not only drop the handles)."""
    from lkrtc_trio._session import RoomSession

    starting = anyio.Event()
    original = RoomSession.run_services

    async def slow_start(self: RoomSession, *, task_status: Any) -> None:
        starting.set()
        await anyio.sleep(5)  # the cancel lands here
        await original(self, task_status=task_status)

    monkeypatch.setattr(RoomSession, "run_services", slow_start)
    url = livekit_server.url

    async def open_and_wait() -> None:
        async with lk.open_room(url, livekit_token("starting")):
            pytest.fail("the room opened although its start was cancelled")

    async with anyio.create_task_group() as tg:
        tg.start_soon(open_and_wait)
        with anyio.fail_after(15):
            await starting.wait()
        # connected: the server has it
        assert "starting" in await server_participants(livekit_server, livekit_room_name)
        tg.cancel_scope.cancel()
    await wait_server(livekit_server, livekit_room_name, lambda v: "starting" not in v, limit=5)
    await wait_released()


async def test_thousand_concurrent_requests_each_get_their_own_completion(
    livekit_server: ServerInfo, livekit_token: TokenFactory
) -> None:
    """1000 native requests in flight at once through the real library; each
    completion carries its own request_async_id back to its own caller."""
    from lkrtc_trio import _lkffi
    from lkrtc_trio._proto import ffi_pb2

    rt = get_runtime()
    payload = b"x" * 32
    keep = _lkffi.ffi.from_buffer(payload)
    async with lk.open_room(livekit_server.url, livekit_token("burst")) as room:
        lp_handle = room.local_participant._rec.handle.id
        paired = 0

        async def one() -> None:
            nonlocal paired
            req = ffi_pb2.FfiRequest()
            pd = req.publish_data
            pd.local_participant_handle = lp_handle
            pd.data_ptr = int(_lkffi.ffi.cast("uintptr_t", keep))
            pd.data_len = len(payload)
            pd.reliable = True
            pd.topic = "burst"
            cb = await rt.request_async(req, "publish_data")
            assert cb.async_id == pd.request_async_id
            assert not cb.error
            paired += 1

        with anyio.fail_after(60):
            async with anyio.create_task_group() as nursery:
                for _ in range(1000):
                    nursery.start_soon(one)
        assert paired == 1000
        assert lk.pending_requests() == 0
    await wait_released()


@pytest.mark.matrix
def test_asyncio_backend_smoke(livekit_server: ServerInfo, livekit_token: TokenFactory) -> None:
    """The same rooms run on asyncio through anyio."""
    url = livekit_server.url
    tok_a, tok_b = livekit_token("aio-a"), livekit_token("aio-b")

    async def main() -> None:
        async with lk.open_room(url, tok_a) as a:
            with a.events() as events:
                async with lk.open_room(url, tok_b) as b:
                    with anyio.fail_after(SEE_TIMEOUT):
                        await a.wait_for_participant("aio-b")
                        await b.wait_for_participant("aio-a")
                with anyio.fail_after(SEE_TIMEOUT):
                    async for event in events:
                        if isinstance(event, lk.ParticipantDisconnected):
                            break
        with anyio.fail_after(10):
            while lk.pending_requests() or lk.live_native_handles():
                await anyio.sleep(0.01)

    anyio.run(main, backend="asyncio")
    assert lk.live_native_handles() == 0


async def test_exceptions_leave_open_room_as_they_were_raised(
    livekit_server: ServerInfo, livekit_token: TokenFactory
) -> None:
    """What leaves the block is what the block raised: a group of yours stays a
    group (not flattened), a single exception keeps its own context."""
    url = livekit_server.url
    leaf = KeyError(1)
    with pytest.raises(ExceptionGroup) as info:
        async with lk.open_room(url, livekit_token("groups")):
            raise ExceptionGroup("mine", [leaf])
    # the caller's group, not flattened into its leaf nor wrapped in ours (trio
    # may rebuild the group object when it filters cancellations out of it)
    assert info.value.message == "mine"
    assert len(info.value.exceptions) == 1 and info.value.exceptions[0] is leaf

    first = KeyError("first")
    with pytest.raises(ValueError) as caught:
        async with lk.open_room(url, livekit_token("context")):
            try:
                raise first
            except KeyError:
                raise ValueError("second")  # noqa: B904 - the implicit context is the point
    assert caught.value.__context__ is first
    assert not caught.value.__suppress_context__
    await wait_released()


async def test_a_storm_of_cancelled_connects_leaves_nothing_anywhere(
    livekit_server: ServerInfo, livekit_token: TokenFactory, livekit_room_name: str
) -> None:
    """100 ``open_room`` calls cancelled after U(0, 60 ms): no handle, no pending
    request here, and no participant left on the server (its own API says)."""
    import random

    rng = random.Random(7)
    url = livekit_server.url
    entered = 0
    for i in range(100):
        with anyio.move_on_after(rng.uniform(0, 0.06)):
            async with lk.open_room(url, livekit_token(f"storm-{i}")):
                entered += 1
                await anyio.sleep_forever()
    await wait_released(limit=30)
    view = await wait_server(livekit_server, livekit_room_name, lambda v: not v, limit=20)
    assert view == {}
    assert entered < 100  # most were cancelled mid-connect, the case that matters
