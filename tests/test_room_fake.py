"""Room and source behaviour driven over the fake native backend: event orders
and failures that a real server produces only by chance, made deterministic.

The room is built from a synthetic ``connect`` result and registered as the
sink of its handles; events are delivered through the bridge, the path native
threads take. Every test runs on trio and on asyncio.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import anyio
import pytest

import lkrtc_trio as lk
from lkrtc_trio import _audio
from lkrtc_trio._participant import LocalTrackPublication
from lkrtc_trio._proto import ffi_pb2, participant_pb2
from lkrtc_trio._records import PublicationRecord
from lkrtc_trio._room import Room, _one_exception
from lkrtc_trio._runtime import Runtime

from .fakes import FakeBackend, deliver, event_bytes

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup, ExceptionGroup

ROOM, LOCAL, PUB = 1, 2, 3
ACTIVE = participant_pb2.ParticipantState.PARTICIPANT_STATE_ACTIVE
JOINING = participant_pb2.ParticipantState.PARTICIPANT_STATE_JOINING
JOINED = participant_pb2.ParticipantState.PARTICIPANT_STATE_JOINED


@pytest.fixture
def fake() -> Iterator[tuple[Runtime, FakeBackend]]:
    backend = FakeBackend()
    yield Runtime(backend), backend


def make_room(rt: Runtime, options: lk.RoomOptions | None = None, state: int = ACTIVE) -> Room:
    ev = ffi_pb2.FfiEvent()
    res = ev.connect.result
    res.room.handle.id = ROOM
    res.room.info.name = "fake"
    res.local_participant.handle.id = LOCAL
    res.local_participant.info.identity = "me"
    res.local_participant.info.state = state  # type: ignore[assignment]
    room = Room._create(rt, res, options or lk.RoomOptions())
    for key in room._sink_keys:
        rt.add_sink(key, room)
    return room


def room_event(fill: Any) -> bytes:
    def build(ev: Any) -> None:
        ev.room_event.room_handle = ROOM
        fill(ev.room_event)

    return event_bytes(build)


def add_local_publication(rt: Runtime, room: Room, sid: str) -> LocalTrackPublication:
    info = ffi_pb2.FfiEvent().publish_track.publication.info
    info.sid = sid
    rec = PublicationRecord(rt.own(PUB, "local_publication"), info)
    pub = LocalTrackPublication(rec)
    room.local_participant._rec.publications[sid] = rec
    return pub


@pytest.mark.parametrize("completion_first", [True, False])
async def test_local_track_unpublished_is_reported_once_in_either_order(
    fake: tuple[Runtime, FakeBackend], completion_first: bool
) -> None:
    rt, backend = fake
    room = make_room(rt)
    pub = add_local_publication(rt, room, "TR_a")
    events = room.events()

    def unpublished(re: Any) -> None:
        re.local_track_unpublished.publication_sid = "TR_a"

    async def unpublish() -> None:
        await room.local_participant.unpublish_track("TR_a")

    async with anyio.create_task_group() as tg:
        tg.start_soon(unpublish)
        await anyio.wait_all_tasks_blocked()
        aid = backend.sent[-1][1]
        done = event_bytes(lambda ev: setattr(ev.unpublish_track, "async_id", aid))
        order = [done, room_event(unpublished)]
        if not completion_first:
            order.reverse()
        for data in order:
            deliver(rt, data)
            await anyio.wait_all_tasks_blocked()
    got = []
    while True:
        try:
            got.append(events.receive_nowait())
        except anyio.WouldBlock:
            break
    assert got == [lk.LocalTrackUnpublished(publication=pub, participant=room.local_participant)]
    assert "TR_a" not in room.local_participant.track_publications
    assert PUB in backend.dropped and backend.dropped.count(PUB) == 1
    assert not room.local_participant._unpublished_first  # nothing remembered for ever
    room._release()


async def test_cancelled_wait_for_participant_leaves_no_entry(
    fake: tuple[Runtime, FakeBackend],
) -> None:
    rt, _ = fake
    room = make_room(rt)
    results: list[str] = []

    async def wait(limit: float) -> None:
        with anyio.move_on_after(limit):
            results.append((await room.wait_for_participant("bob")).identity)

    async with anyio.create_task_group() as tg:
        tg.start_soon(wait, 0.05)  # gives up
        tg.start_soon(wait, 5)  # still waiting, on the same event
        await anyio.sleep(0.2)  # the first gave up; the second still waits
        assert set(room._arrivals) == {"bob"}

        def joined(re: Any) -> None:
            info = re.participant_connected.info
            info.handle.id = 77
            info.info.identity = "bob"

        deliver(rt, room_event(joined))
    assert results == ["bob"]
    assert room._arrivals == {}

    async def wait_carol() -> None:
        with anyio.move_on_after(0.05):
            await room.wait_for_participant("carol")

    async with anyio.create_task_group() as tg:
        tg.start_soon(wait_carol)
        await anyio.sleep(0.01)
        assert set(room._arrivals) == {"carol"}
    assert room._arrivals == {}  # the cancelled waiter took its entry with it
    room._release()


async def test_fast_paths_are_checkpoints(fake: tuple[Runtime, FakeBackend]) -> None:
    """Calls that can return at once still checkpoint, like trio's own APIs: a
    cancelled scope stops them."""
    rt, _ = fake
    room = make_room(rt)

    def joined(re: Any) -> None:
        info = re.participant_connected.info
        info.handle.id = 77
        info.info.identity = "bob"

    deliver(rt, room_event(joined))
    with anyio.CancelScope() as scope:
        scope.cancel()
        await room.wait_for_participant("bob")  # present: returns at once...
    assert scope.cancelled_caught  # ...but only after a checkpoint
    sub = room.events()
    with anyio.CancelScope() as scope:
        scope.cancel()
        await sub.aclose()
    assert scope.cancelled_caught
    room._release()


async def test_a_panic_releases_a_cancelled_capture(
    fake: tuple[Runtime, FakeBackend], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A capture cancelled in flight, then a native panic: the next capture
    raises NativePanicError instead of waiting for ever for a completion that
    will never come."""
    rt, _ = fake
    monkeypatch.setattr(_audio, "get_runtime", lambda: rt)
    source = lk.AudioSource(48000, 1)
    frame = lk.AudioFrame.create(48000, 1, 480)
    with anyio.move_on_after(0.05) as scope:
        await source.capture_frame(frame)  # the fake never completes it
    assert scope.cancelled_caught
    deliver(rt, event_bytes(lambda ev: setattr(ev.panic, "message", "boom")))
    with anyio.fail_after(2), pytest.raises(lk.NativePanicError):
        await source.capture_frame(frame)
    source.close()


def test_one_exception_rules() -> None:
    """What leaves open_room in place of its task group's exception group."""

    async def check() -> None:
        caught: list[BaseException] = []
        with anyio.CancelScope() as scope:
            scope.cancel()
            try:
                await anyio.lowlevel.checkpoint()
            except anyio.get_cancelled_exc_class() as exc:
                caught.append(exc)
                raise
        err = ValueError("mine")
        assert _one_exception(BaseExceptionGroup("", [err])) is err
        # the caller's own group stays a group: not flattened
        mine = ExceptionGroup("user", [KeyError(1)])
        assert _one_exception(BaseExceptionGroup("", [mine])) is mine
        # cancellations of the room's own tasks do not count
        c = caught[0]
        assert _one_exception(BaseExceptionGroup("", [c, err])) is err
        assert _one_exception(BaseExceptionGroup("", [c])) is c
        # two real errors: the group is raised
        assert _one_exception(BaseExceptionGroup("", [err, KeyError(2)])) is None
        # KeyboardInterrupt wins
        ki = KeyboardInterrupt()
        assert _one_exception(BaseExceptionGroup("", [err, ki])) is ki

    for backend in ("trio", "asyncio"):
        anyio.run(check, backend=backend)


async def test_a_lost_update_answer_counts_only_with_a_server_event(
    fake: tuple[Runtime, FakeBackend],
) -> None:
    """The retry rule of set_metadata/set_name/set_attributes: after a timeout
    the update counts as applied only if a server event *after* the request
    shows it; a value that was already in place proves nothing."""
    rt, backend = fake
    room = make_room(rt)
    lp = room.local_participant
    lp._rec.info.metadata = "same"

    def timed_out(aid: int) -> bytes:
        def fill(ev: Any) -> None:
            ev.set_local_metadata.async_id = aid
            ev.set_local_metadata.error = "signal failure: timeout"

        return event_bytes(fill)

    async def answer_timeouts(count: int, then_event: bool = False) -> None:
        for _ in range(count):
            await anyio.wait_all_tasks_blocked()
            aid = backend.sent[-1][1]
            if then_event:

                def changed(re: Any) -> None:
                    re.participant_metadata_changed.participant_identity = "me"
                    re.participant_metadata_changed.metadata = "new"

                deliver(rt, room_event(changed))
            deliver(rt, timed_out(aid))

    # already "same", two lost answers, no event: not silently "applied"
    async with anyio.create_task_group() as tg:
        tg.start_soon(answer_timeouts, 2)
        with pytest.raises(lk.ParticipantUpdateError, match="timeout"):
            await lp.set_metadata("same")
    assert [w for w, _ in backend.sent].count("set_local_metadata") == 2
    # a lost answer, but the server's event shows the new value: done, once
    async with anyio.create_task_group() as tg:
        tg.start_soon(answer_timeouts, 1, True)
        await lp.set_metadata("new")
    assert [w for w, _ in backend.sent].count("set_local_metadata") == 3
    assert lp.metadata == "new"
    # a refusal is never retried
    refused = ffi_pb2.FfiEvent()

    async def refuse() -> None:
        await anyio.wait_all_tasks_blocked()
        refused.set_local_metadata.async_id = backend.sent[-1][1]
        refused.set_local_metadata.error = "request failed: NOT_ALLOWED"
        deliver(rt, refused.SerializeToString())

    async with anyio.create_task_group() as tg:
        tg.start_soon(refuse)
        with pytest.raises(lk.ParticipantUpdateError, match="NOT_ALLOWED"):
            await lp.set_metadata("other")
    assert [w for w, _ in backend.sent].count("set_local_metadata") == 4
    room._release()


async def test_calls_waiting_when_the_room_closes_raise_at_once(
    fake: tuple[Runtime, FakeBackend],
) -> None:
    """Updates, data and RPC calls still waiting for a native answer when the
    room closes raise RoomClosedError at once, not after the native core's own
    timeout (or never): the fake backend never answers them."""
    rt, backend = fake
    room = make_room(rt, lk.RoomOptions(disconnect_timeout=0.5))
    lp = room.local_participant
    outcomes: dict[str, tuple[str, float]] = {}

    async def call(name: str, fn: Any) -> None:
        try:
            await fn()
            outcomes[name] = ("returned", anyio.current_time())
        except lk.LiveKitError as exc:
            outcomes[name] = (type(exc).__name__, anyio.current_time())

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(call, "metadata", lambda: lp.set_metadata("m"))
            tg.start_soon(call, "attributes", lambda: lp.set_attributes({"a": "1"}))
            tg.start_soon(call, "data", lambda: lp.publish_data(b"x"))
            tg.start_soon(
                call,
                "rpc",
                lambda: lp.perform_rpc(destination_identity="bob", method="m", payload=""),
            )
            await anyio.wait_all_tasks_blocked()
            assert len(backend.sent) == 4  # all four are waiting for the native core
            closing = anyio.current_time()
            await room.disconnect()  # its own disconnect is never answered either
    assert {name: kind for name, (kind, _) in outcomes.items()} == dict.fromkeys(
        ("metadata", "attributes", "data", "rpc"), "RoomClosedError"
    )
    assert all(at - closing < 0.1 for _, at in outcomes.values())  # not the 0.5 s
    # the data payload stays lent until the native core completes the send;
    # nothing waits for that completion any more (not pending)
    assert rt.dispatcher.pending() == 0 and rt.dispatcher.pinned() == 1
    [data_id] = [aid for which, aid in backend.sent if which == "publish_data"]
    deliver(rt, event_bytes(lambda ev: setattr(ev.publish_data, "async_id", data_id)))
    assert rt.dispatcher.pending() == 0 and rt.dispatcher.pinned() == 0


async def test_bad_input_gets_our_own_clear_errors_and_sends_nothing(
    fake: tuple[Runtime, FakeBackend],
) -> None:
    rt, backend = fake
    room = make_room(rt)
    lp = room.local_participant
    with pytest.raises(TypeError, match="reliable must be a bool"):
        await lp.publish_data(b"x", reliable="no")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="response_timeout must be a number"):
        await lp.perform_rpc(
            destination_identity="b",
            method="m",
            payload="",
            response_timeout=True,
        )
    with pytest.raises(TypeError, match="segment id must be a str"):
        lk.TranscriptionSegment(id=1, text="t")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="start_time must be >= 0"):
        lk.TranscriptionSegment(id="s", text="t", start_time=-5)
    with pytest.raises(TypeError, match="end_time must be an int"):
        lk.TranscriptionSegment(id="s", text="t", end_time=1.5)  # type: ignore[arg-type]
    assert backend.sent == []  # refused before anything was sent
    # None means everyone, like an empty list
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: lp.publish_data(b"x", destination_identities=None))
        await anyio.wait_all_tasks_blocked()
        [(which, aid)] = backend.sent
        assert which == "publish_data"
        deliver(rt, event_bytes(lambda ev: setattr(ev.publish_data, "async_id", aid)))
    room._release()


async def test_a_burst_of_invocations_gets_limit_running_plus_limit_waiting(
    fake: tuple[Runtime, FakeBackend],
) -> None:
    """Invocations that arrive in one burst (one dispatcher pass, before the
    service task runs) are admitted exactly like a trickle: ``limit`` run,
    ``limit`` wait, the rest are refused "recipient overloaded" at once."""
    from lkrtc_trio._session import RoomSession

    rt, _ = fake
    limit = 3
    session = RoomSession(rt, rt.own(ROOM, "room"), limit)
    release = anyio.Event()
    served: list[int] = []
    most = running = 0

    async def serve(invocation_id: int, data: Any) -> None:
        nonlocal most, running
        running += 1
        most = max(most, running)
        try:
            await release.wait()
        finally:
            running -= 1
        served.append(invocation_id)

    session.serve_rpc = serve
    data = lk.RpcInvocationData("req", "caller", "payload", 10.0, "m")
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            await tg.start(session.run_services)
            answers = [session.queue_rpc(i, data) for i in range(10)]  # one burst
            refused = [i for i, a in enumerate(answers) if a is not None]
            assert refused == list(range(2 * limit, 10))
            assert all(
                a.code == lk.RpcError.ErrorCode.APPLICATION_ERROR and "overloaded" in a.message
                for a in answers
                if a is not None
            )
            await anyio.wait_all_tasks_blocked()
            assert running == limit
            # still full: the waiting ones count until they are served
            assert session.queue_rpc(99, data) is not None
            release.set()
            await anyio.wait_all_tasks_blocked()
            assert sorted(served) == list(range(2 * limit))
            assert session.queue_rpc(100, data) is None  # room again
            await anyio.wait_all_tasks_blocked()
            assert served[-1] == 100
            tg.cancel_scope.cancel()
    session.handle.close()
    assert most == limit


def completion(field: str, async_id: int) -> bytes:
    return event_bytes(lambda ev: setattr(getattr(ev, field), "async_id", async_id))


def sent_topics(backend: FakeBackend) -> list[str]:
    return [r.publish_data.topic for r in backend.requests if r.HasField("publish_data")]


async def test_dtmf_is_held_until_the_server_announced_us(
    fake: tuple[Runtime, FakeBackend],
) -> None:
    """A receiving native core drops DTMF from a sender it does not know yet:
    publish_dtmf waits until our state is JOINED (the server has announced us)."""
    rt, backend = fake
    room = make_room(rt, state=JOINING)
    lp = room.local_participant
    done: list[str] = []

    async def tone() -> None:
        await lp.publish_dtmf(code=1, digit="1")
        done.append("sent")

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(tone)
            await anyio.wait_all_tasks_blocked()
            assert not any(w == "publish_sip_dtmf" for w, _ in backend.sent)

            def joined(re: Any) -> None:
                info = re.participants_updated.participants.add()
                info.identity = "me"
                info.state = JOINED

            deliver(rt, room_event(joined))
            await anyio.wait_all_tasks_blocked()
            [(_, dtmf_id)] = [(w, a) for w, a in backend.sent if w == "publish_sip_dtmf"]
            deliver(rt, completion("publish_sip_dtmf", dtmf_id))
    assert done == ["sent"]
    room._release()


def reconnecting(re: Any) -> None:
    re.reconnecting.SetInParent()


def reconnected(re: Any) -> None:
    re.reconnected.SetInParent()


async def test_calls_made_while_reconnecting_wait_then_go_in_call_order(
    fake: tuple[Runtime, FakeBackend],
) -> None:
    """Calls made while the room reconnects are held in lkrtc_trio (nothing
    reaches the native core), then sent in call order once the room is back;
    the reliable packets accepted before are reported as possibly lost."""
    rt, backend = fake
    room = make_room(rt, lk.RoomOptions(disconnect_timeout=0.1))
    lp = room.local_participant
    results: list[Any] = []
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            await tg.start(room._session.run_services)
            sub = room.events(max_buffer=100)
            tg.start_soon(lambda: lp.publish_data(b"before", topic="before"))
            await anyio.wait_all_tasks_blocked()
            [(_, first)] = [(w, a) for w, a in backend.sent if w == "publish_data"]
            deliver(rt, completion("publish_data", first))
            deliver(rt, room_event(reconnecting))
            n_sent = len(backend.sent)

            async def send(i: int) -> None:
                results.append((i, await lp.publish_data(b"held", topic=f"t{i}")))

            for i in range(5):
                tg.start_soon(send, i)
                await anyio.wait_all_tasks_blocked()  # call order: 0, 1, 2, ...
            tg.start_soon(lambda: lp.set_metadata("held"))
            await anyio.wait_all_tasks_blocked()
            assert len(backend.sent) == n_sent  # nothing reached the native core
            deliver(rt, room_event(reconnected))  # nobody else was here: settled at once
            assert sent_topics(backend) == ["before", "t0", "t1", "t2", "t3", "t4"]
            assert backend.sent[-1][0] == "set_local_metadata"
            for which, async_id in backend.sent[n_sent:]:
                if which == "publish_data":
                    deliver(rt, completion("publish_data", async_id))
            await anyio.wait_all_tasks_blocked()
            assert sorted(results) == [(i, i + 2) for i in range(5)]  # sequences 2..6
            got = [e async for e in _drain(sub)]
            assert [type(e).__name__ for e in got] == [
                "Reconnecting",
                "Reconnected",
                "ReliableDataMayBeLost",
            ]
            lost = got[-1]
            assert isinstance(lost, lk.ReliableDataMayBeLost)
            assert (lost.first_sequence, lost.last_sequence, lost.count) == (1, 1, 1)
            tg.cancel_scope.cancel()
    await room.disconnect()


def failed(field: str, async_id: int, error: str) -> bytes:
    def build(ev: Any) -> None:
        getattr(ev, field).async_id = async_id
        getattr(ev, field).error = error

    return event_bytes(build)


@pytest.mark.parametrize("reconnect_first", [False, True])
async def test_a_send_failed_by_the_link_going_down_is_sent_again_once_back(
    fake: tuple[Runtime, FakeBackend], reconnect_first: bool
) -> None:
    """The native core fails a publish_data whose link just went down, before
    (or after) it reports Reconnecting: the call does not fail, the packet is
    held and sent again once the room is back, under its sequence number."""
    rt, backend = fake
    room = make_room(rt, lk.RoomOptions(disconnect_timeout=0.1))
    lp = room.local_participant
    results: list[Any] = []
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            await tg.start(room._session.run_services)

            async def send(topic: str) -> None:
                results.append((topic, await lp.publish_data(b"x", topic=topic)))

            tg.start_soon(send, "cut")
            await anyio.wait_all_tasks_blocked()
            [(_, first)] = [(w, a) for w, a in backend.sent if w == "publish_data"]
            if reconnect_first:
                deliver(rt, room_event(reconnecting))
                tg.start_soon(send, "later")  # made after "cut": held
                await anyio.wait_all_tasks_blocked()
            deliver(rt, failed("publish_data", first, "engine: connection error"))
            await anyio.wait_all_tasks_blocked()
            if not reconnect_first:
                deliver(rt, room_event(reconnecting))  # within RECONNECT_GRACE
                await anyio.wait_all_tasks_blocked()
                tg.start_soon(send, "later")
                await anyio.wait_all_tasks_blocked()
            assert sent_topics(backend) == ["cut"]  # held while reconnecting
            assert results == []
            deliver(rt, room_event(reconnected))
            # sent again in its place: before the call made after it
            assert sent_topics(backend) == ["cut", "cut", "later"]
            for which, async_id in backend.sent[-2:]:
                deliver(rt, completion(which, async_id))
            await anyio.wait_all_tasks_blocked()
            assert sorted(results) == [("cut", 1), ("later", 2)]
            tg.cancel_scope.cancel()
    await room.disconnect()


async def test_a_failed_send_is_not_sent_again_after_a_later_one(
    fake: tuple[Runtime, FakeBackend],
) -> None:
    """A later packet already reached the native core (which held it and will
    send it once reconnected): sending the failed one again would reorder
    them, so its call fails instead."""
    rt, backend = fake
    room = make_room(rt, lk.RoomOptions(disconnect_timeout=0.1))
    lp = room.local_participant
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            await tg.start(room._session.run_services)
            later: list[Any] = []

            async def send_later() -> None:
                later.append(await lp.publish_data(b"x", topic="later"))

            async def cut() -> None:
                await anyio.wait_all_tasks_blocked()
                tg.start_soon(send_later)
                await anyio.wait_all_tasks_blocked()
                (_, first), (_, second) = [(w, a) for w, a in backend.sent if w == "publish_data"]
                deliver(rt, room_event(reconnecting))
                deliver(rt, failed("publish_data", first, "engine: connection error"))
                deliver(rt, room_event(reconnected))
                deliver(rt, completion("publish_data", second))

            tg.start_soon(cut)
            with pytest.raises(lk.PublishDataError, match="connection error"):
                await lp.publish_data(b"x", topic="cut")
            await anyio.wait_all_tasks_blocked()
            assert sent_topics(backend) == ["cut", "later"]  # not sent again
            assert later == [2]
            tg.cancel_scope.cancel()
    await room.disconnect()


async def test_a_send_that_fails_with_no_reconnection_raises_after_the_grace(
    fake: tuple[Runtime, FakeBackend],
) -> None:
    rt, backend = fake
    room = make_room(rt, lk.RoomOptions(disconnect_timeout=0.1))
    lp = room.local_participant
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            await tg.start(room._session.run_services)

            async def fail_it() -> None:
                await anyio.wait_all_tasks_blocked()
                [(_, first)] = [(w, a) for w, a in backend.sent if w == "publish_data"]
                deliver(rt, failed("publish_data", first, "send buffer is full"))

            tg.start_soon(fail_it)
            start = anyio.current_time()
            with pytest.raises(lk.PublishDataError, match="send buffer is full"):
                await lp.publish_data(b"x", topic="t")
            waited = anyio.current_time() - start
            assert 0.9 < waited < 3.0, waited  # RECONNECT_GRACE, then the error
            assert sent_topics(backend) == ["t"]  # not sent again
            tg.cancel_scope.cancel()
    await room.disconnect()


async def _drain(sub: Any) -> Any:
    while True:
        try:
            yield sub.receive_nowait()
        except (anyio.WouldBlock, anyio.EndOfStream):
            return


async def test_a_reconnected_room_settles_when_everyone_is_back(
    fake: tuple[Runtime, FakeBackend], monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a full reconnect the native core removes every participant and
    re-adds them as they rejoin: held calls go out (and the report comes) only
    once everyone who was here is back, or at the settle deadline."""
    from lkrtc_trio import _session

    monkeypatch.setattr(_session, "SETTLE_LIMIT", 0.3)
    rt, backend = fake
    room = make_room(rt, lk.RoomOptions(disconnect_timeout=0.1))
    lp = room.local_participant

    def joined(identity: str, handle: int) -> Any:
        def fill(re: Any) -> None:
            info = re.participant_connected.info
            info.handle.id = handle
            info.info.identity = identity

        return fill

    def left(identity: str) -> Any:
        def fill(re: Any) -> None:
            re.participant_disconnected.participant_identity = identity

        return fill

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            await tg.start(room._session.run_services)
            deliver(rt, room_event(joined("bob", 70)))
            deliver(rt, room_event(joined("carol", 71)))
            deliver(rt, room_event(left("bob")))  # the full reconnect removes them...
            deliver(rt, room_event(left("carol")))
            deliver(rt, room_event(reconnecting))
            tg.start_soon(lambda: lp.publish_data(b"held", topic="held"))
            await anyio.wait_all_tasks_blocked()
            deliver(rt, room_event(reconnected))
            await anyio.wait_all_tasks_blocked()
            assert sent_topics(backend) == []  # bob and carol are not back yet
            deliver(rt, room_event(joined("bob", 72)))
            await anyio.wait_all_tasks_blocked()
            assert sent_topics(backend) == []
            deliver(rt, room_event(joined("carol", 73)))  # everyone is back
            assert sent_topics(backend) == ["held"]
            # the next episode: carol never comes back; the deadline settles it
            deliver(rt, room_event(left("carol")))
            deliver(rt, room_event(reconnecting))
            deliver(rt, room_event(reconnected))
            tg.start_soon(lambda: lp.publish_data(b"held", topic="late"))
            await anyio.wait_all_tasks_blocked()
            assert sent_topics(backend) == ["held"]
            start = anyio.current_time()
            while sent_topics(backend) == ["held"]:
                await anyio.sleep(0.01)
            assert sent_topics(backend) == ["held", "late"]
            assert 0.2 < anyio.current_time() - start < 1.0
            tg.cancel_scope.cancel()
    await room.disconnect()


async def test_a_reconnect_that_lasts_gives_up_at_reconnect_timeout(
    fake: tuple[Runtime, FakeBackend],
) -> None:
    """Reconnecting for ``reconnect_timeout``: Disconnected(CONNECTION_TIMEOUT),
    held calls raise RoomDisconnectedError having sent nothing, the native
    core is told to disconnect; a Reconnected in time cancels the deadline."""
    rt, backend = fake
    room = make_room(rt, lk.RoomOptions(reconnect_timeout=0.3, disconnect_timeout=0.2))
    lp = room.local_participant
    outcome: list[tuple[str, float]] = []

    async def held() -> None:
        try:
            await lp.publish_data(b"held")
        except lk.RoomDisconnectedError:
            outcome.append(("RoomDisconnectedError", anyio.current_time()))

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            await tg.start(room._session.run_services)
            sub = room.events()
            deliver(rt, room_event(reconnecting))
            await anyio.sleep(0.2)
            deliver(rt, room_event(reconnected))  # in time: no give-up
            await anyio.sleep(0.3)
            assert room.isconnected()
            deliver(rt, room_event(reconnecting))
            began = anyio.current_time()
            tg.start_soon(held)
            await anyio.wait_all_tasks_blocked()
            assert not any(w == "publish_data" for w, _ in backend.sent)
            while not outcome:
                await anyio.sleep(0.01)
            tg.cancel_scope.cancel()
    [(_, at)] = outcome
    assert 0.25 < at - began < 0.6
    assert not any(w == "publish_data" for w, _ in backend.sent)
    assert any(w == "disconnect" for w, _ in backend.sent)
    names = [type(e).__name__ for e in [e async for e in _drain(sub)]]
    assert names[-3:] == ["Reconnecting", "ConnectionStateChanged", "Disconnected"]
    assert room.disconnect_reason == lk.DisconnectReason.CONNECTION_TIMEOUT
    assert rt.dispatcher.pending() <= 1  # only the unanswered native disconnect
    await room.disconnect()
    room._release()


async def test_a_held_call_that_is_cancelled_leaves_nothing(
    fake: tuple[Runtime, FakeBackend],
) -> None:
    """Cancelled while held (the room reconnecting): never sent, its buffer
    released at once, nothing pending; the calls around it still go in order."""
    rt, backend = fake
    room = make_room(rt, lk.RoomOptions(disconnect_timeout=0.1))
    lp = room.local_participant
    buf = bytearray(b"cancelled")
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            await tg.start(room._session.run_services)
            deliver(rt, room_event(reconnecting))
            tg.start_soon(lambda: lp.publish_data(b"a", topic="a"))
            await anyio.wait_all_tasks_blocked()
            with anyio.move_on_after(0.05):
                await lp.publish_data(buf, topic="cancelled")
            buf.extend(b"!")  # released: resizable again
            assert rt.dispatcher.pinned() == 0 and rt.dispatcher.pending() == 0
            tg.start_soon(lambda: lp.publish_data(b"b", topic="b"))
            await anyio.wait_all_tasks_blocked()
            deliver(rt, room_event(reconnected))
            assert sent_topics(backend) == ["a", "b"]
            for which, async_id in list(backend.sent):
                if which == "publish_data":
                    deliver(rt, completion("publish_data", async_id))
            await anyio.wait_all_tasks_blocked()
            assert rt.dispatcher.pending() == 0
            tg.cancel_scope.cancel()
    await room.disconnect()


async def test_subscription_permissions_are_sent_whole_or_not_at_all(
    fake: tuple[Runtime, FakeBackend],
) -> None:
    """A cancelled call sent nothing; a call that returns sent the whole rule;
    bad input is refused before anything is sent."""
    rt, backend = fake
    room = make_room(rt, lk.RoomOptions(disconnect_timeout=0.1))
    lp = room.local_participant

    def sent() -> list[Any]:
        return [
            r.set_track_subscription_permissions
            for r in backend.requests
            if r.HasField("set_track_subscription_permissions")
        ]

    agent = lk.ParticipantTrackPermission(participant_identity="agent", allow_all=True)
    with anyio.CancelScope() as scope:
        scope.cancel()
        await lp.set_track_subscription_permissions(
            allow_all_participants=False, participant_permissions=[agent]
        )
    assert scope.cancelled_caught and sent() == []
    with pytest.raises(ValueError, match="twice"):
        await lp.set_track_subscription_permissions(participant_permissions=[agent, agent])
    with pytest.raises(TypeError):
        await lp.set_track_subscription_permissions(participant_permissions=["agent"])  # type: ignore[list-item]
    assert sent() == []
    await lp.set_track_subscription_permissions(
        allow_all_participants=False, participant_permissions=[agent]
    )
    [msg] = sent()
    assert not msg.all_participants_allowed
    assert [(p.participant_identity, p.allow_all) for p in msg.permissions] == [("agent", True)]
    await lp.set_track_subscription_permissions(participant_permissions=None)  # everyone again
    assert sent()[-1].all_participants_allowed and not sent()[-1].permissions
    await room.disconnect()
    with pytest.raises(lk.RoomClosedError):
        await lp.set_track_subscription_permissions()
    assert len(sent()) == 2
