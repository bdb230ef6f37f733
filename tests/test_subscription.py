"""Selective subscription, publication controls and track subscription
permissions between lkrtc-trio clients on a real server (one room per test),
plus the input checks that need no server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import anyio
import pytest

import lkrtc_trio as lk
from lkrtc_trio import _participant
from lkrtc_trio._proto import track_publication_pb2
from lkrtc_trio._runtime import get_runtime
from lkrtc_trio.testing import ServerInfo
from lkrtc_trio.testing.pytest_plugin import TokenFactory

from .helpers import SEE, next_event, wait_released
from .test_state import event, mirror

integration = pytest.mark.integration

RATE = 48000
MANUAL = lk.RoomOptions(auto_subscribe=False)
#: how long "no other subscription arrives" is watched (allowed ones took
#: about 50 ms here)
QUIET = 1.5


@asynccontextmanager
async def rooms(
    server: ServerInfo, token: TokenFactory, *who: tuple[str, lk.RoomOptions | None]
) -> AsyncIterator[list[lk.Room]]:
    """One room per (identity, options); waits until all see each other;
    afterwards, until every native handle is released."""
    async with AsyncExitStack() as stack:
        opened = [
            await stack.enter_async_context(lk.open_room(server.url, token(i), options=o))
            for i, o in who
        ]
        with anyio.fail_after(SEE):
            for room in opened:
                for other, _ in who:
                    if other != room.local_participant.identity:
                        await room.wait_for_participant(other)
        yield opened
    await wait_released()


async def publish_audio(
    room: lk.Room, name: str, stack: AsyncExitStack
) -> lk.LocalTrackPublication:
    source = await stack.enter_async_context(lk.AudioSource(RATE, 1))
    track = await stack.enter_async_context(lk.LocalAudioTrack.create_audio_track(name, source))
    return await room.local_participant.publish_track(track)


async def published(
    events: lk.EventSubscription, count: int, seen: list[Any] | None = None
) -> dict[str, lk.RemoteTrackPublication]:
    """The next ``count`` TrackPublished events' publications, by track name."""
    out: dict[str, lk.RemoteTrackPublication] = {}
    while len(out) < count:
        got = await next_event(events, lk.TrackPublished, seen=seen)
        out[got.publication.name] = got.publication
    return out


def status(pub: lk.RemoteTrackPublication) -> lk.SubscriptionStatus:
    """(A call, so that type checkers do not narrow the property.)"""
    return pub.subscription_status


def enabled(pub: lk.RemoteTrackPublication) -> bool:
    return pub.enabled


def remote_tracks() -> int:
    return sum(1 for label in get_runtime().live_handles().values() if label == "remote_track")


def drain(events: lk.EventSubscription) -> list[Any]:
    out: list[Any] = []
    while True:
        try:
            out.append(events.receive_nowait())
        except anyio.WouldBlock:
            return out


# -- no server -----------------------------------------------------------------


def test_video_quality_matches_the_installed_schema() -> None:
    native = track_publication_pb2.VideoQuality.DESCRIPTOR.values
    assert {m.name: m.value for m in lk.VideoQuality} == {v.name: v.number for v in native}


def test_participant_track_permission_checks_its_fields() -> None:
    perm = lk.ParticipantTrackPermission("agent", allowed_track_sids=["TR_a", "TR_b"])
    assert perm.allowed_track_sids == ("TR_a", "TR_b") and not perm.allow_all
    assert lk.ParticipantTrackPermission("agent", True).allow_all
    with pytest.raises(TypeError):
        lk.ParticipantTrackPermission(3)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        lk.ParticipantTrackPermission("")
    with pytest.raises(TypeError):
        lk.ParticipantTrackPermission("a", allow_all=1)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        lk.ParticipantTrackPermission("a", allowed_track_sids="TR_a")
    with pytest.raises(TypeError):
        lk.ParticipantTrackPermission("a", allowed_track_sids=[1])  # type: ignore[list-item]
    with pytest.raises(ValueError):
        lk.ParticipantTrackPermission("a", allowed_track_sids=["MIC"])
    with pytest.raises(AttributeError):
        perm.allow_all = True  # type: ignore[misc]


def test_the_state_mirror_keeps_the_subscription_state() -> None:
    state, _rt, backend = mirror()
    p0 = state.remote_participants()["p0"]
    old = p0.track_publications["TR_0"]  # there when we joined, never asked for
    assert status(old) == lk.SubscriptionStatus.UNSUBSCRIBED and not enabled(old)
    assert old.subscription_allowed and old.encryption_type == lk.EncryptionType.NONE

    state.auto_subscribe = True  # a room that subscribes to everything

    def publish(m: Any) -> None:
        m.participant_identity = "p0"
        m.publication.handle.id = 300
        m.publication.info.sid = "TR_1"
        m.publication.info.kind = lk.TrackKind.KIND_AUDIO

    out = state.apply("track_published", event("track_published", publish))
    assert isinstance(out, lk.TrackPublished)
    new = out.publication
    assert status(new) == lk.SubscriptionStatus.DESIRED

    def fail(m: Any) -> None:
        m.participant_identity = "p0"
        m.track_sid = "TR_1"
        m.error = "not allowed: ..."

    new._rec.allowed = False  # what the watcher does before it sends the failure
    out = state.apply("track_subscription_failed", event("track_subscription_failed", fail))
    assert out == lk.TrackSubscriptionFailed(
        participant=p0, track_sid="TR_1", error="not allowed: ...", publication=new
    )
    assert status(new) == lk.SubscriptionStatus.NOT_ALLOWED and not new.subscription_allowed

    def arrive(m: Any) -> None:
        m.participant_identity = "p0"
        m.track.handle.id = 400
        m.track.info.sid = "TR_1"
        m.track.info.kind = lk.TrackKind.KIND_AUDIO

    out = state.apply("track_subscribed", event("track_subscribed", arrive))
    assert isinstance(out, lk.TrackSubscribed) and out.publication is new
    assert status(new) == lk.SubscriptionStatus.SUBSCRIBED
    assert new.subscription_allowed and enabled(new) and new._rec.deadline is None

    def unknown(m: Any) -> None:  # a native failure for a track not (yet) known
        m.participant_identity = "p0"
        m.track_sid = "TR_9"
        m.error = "track not found"

    out = state.apply("track_subscription_failed", event("track_subscription_failed", unknown))
    assert isinstance(out, lk.TrackSubscriptionFailed) and out.publication is None

    def mine(m: Any) -> None:  # before publish_track saw its completion
        m.track_sid = "TR_L"

    out = state.apply("local_track_subscribed", event("local_track_subscribed", mine))
    assert out == lk.LocalTrackSubscribed(track_sid="TR_L")
    assert state.local._early_subscribed == {"TR_L"}
    state.release_all()
    assert 300 in backend.dropped and 400 in backend.dropped


# -- with a server ---------------------------------------------------------------


@integration
async def test_subscribing_to_chosen_tracks_only(
    livekit_server: ServerInfo, livekit_token: TokenFactory
) -> None:
    async with (
        rooms(
            livekit_server, livekit_token, ("alice", MANUAL), ("bob", MANUAL), ("me", MANUAL)
        ) as (
            alice,
            bob,
            me,
        ),
        AsyncExitStack() as stack,
        me.events() as events,
        alice.events() as alice_events,
    ):
        seen: list[Any] = []
        with anyio.fail_after(15):
            mic = await publish_audio(alice, "alice-mic", stack)
            music = await publish_audio(alice, "alice-music", stack)
            await publish_audio(bob, "bob-mic", stack)
            pubs = await published(events, 3, seen)
        assert all(status(p) == lk.SubscriptionStatus.UNSUBSCRIBED for p in pubs.values())
        assert all(not p.subscribed and p.track is None for p in pubs.values())

        chosen = {"alice-mic", "bob-mic"}
        for name in chosen:
            pubs[name].set_subscribed(True)
            assert status(pubs[name]) == lk.SubscriptionStatus.DESIRED
        got: dict[str, lk.TrackSubscribed] = {}
        with anyio.fail_after(10):
            while len(got) < 2:
                e = await next_event(events, lk.TrackSubscribed, seen=seen)
                got[e.publication.name] = e
        assert set(got) == chosen
        assert got["alice-mic"].publication is pubs["alice-mic"]
        assert got["alice-mic"].participant.identity == "alice"
        with anyio.move_on_after(QUIET):  # nothing else arrives
            await next_event(events, lk.TrackSubscribed, seen=seen)
            raise AssertionError("a track that was not asked for was subscribed")
        for name, pub in pubs.items():
            assert pub.subscribed == (name in chosen), name
            assert status(pub) == (
                lk.SubscriptionStatus.SUBSCRIBED
                if name in chosen
                else lk.SubscriptionStatus.UNSUBSCRIBED
            )
            assert (pub.track is not None) == (name in chosen)
        assert remote_tracks() == 2
        # the publisher heard of its one subscribed track only
        first = await next_event(alice_events, lk.LocalTrackSubscribed)
        assert first.track_sid == mic.sid
        await mic.wait_for_subscription()
        assert not any(
            isinstance(e, lk.LocalTrackSubscribed) and e.track_sid == music.sid
            for e in drain(alice_events)
        )

        track = pubs["alice-mic"].track
        assert track is not None
        pubs["alice-mic"].set_subscribed(False)
        gone = await next_event(events, lk.TrackUnsubscribed, seen=seen)
        assert gone.publication is pubs["alice-mic"] and gone.track is track
        assert status(pubs["alice-mic"]) == lk.SubscriptionStatus.UNSUBSCRIBED
        assert track.closed and pubs["alice-mic"].track is None
        assert not pubs["alice-mic"].subscribed and pubs["bob-mic"].subscribed
        assert remote_tracks() == 1
        pubs["alice-mic"].set_subscribed(False)  # already so: nothing happens
        assert not any(isinstance(e, lk.TrackSubscriptionFailed) for e in seen + drain(events))


@integration
async def test_wait_for_subscription(
    livekit_server: ServerInfo, livekit_token: TokenFactory
) -> None:
    async with (
        rooms(livekit_server, livekit_token, ("pub", None), ("sub", MANUAL)) as (pub, sub),
        AsyncExitStack() as stack,
        sub.events() as events,
    ):
        mic = await publish_audio(pub, "mic", stack)
        remote = (await published(events, 1))["mic"]
        rec = mic._rec

        # a cancelled wait leaves nothing behind
        handles = lk.live_native_handles()
        with anyio.move_on_after(0.2) as scope:
            await mic.wait_for_subscription()
        assert scope.cancelled_caught
        assert rec.waiters == 0 and rec.first_subscription is None
        assert lk.pending_requests() == 0 and lk.live_native_handles() == handles

        # two waiters, then the peer subscribes: both return
        returned: list[float] = []

        async def wait() -> None:
            await mic.wait_for_subscription()
            returned.append(anyio.current_time())

        async with anyio.create_task_group() as tg:
            tg.start_soon(wait)
            tg.start_soon(wait)
            await anyio.sleep(0.2)
            assert rec.waiters == 2 and not returned
            asked = anyio.current_time()
            remote.set_subscribed(True)
            with anyio.fail_after(10):
                while len(returned) < 2:
                    await anyio.sleep(0.01)
        assert all(t > asked for t in returned)
        assert rec.waiters == 0 and rec.first_subscription is None
        await next_event(events, lk.TrackSubscribed)
        with anyio.fail_after(0.5):  # already happened: at once
            await mic.wait_for_subscription()

        # unpublished while waiting, or before: ResourceClosedError
        errors: list[BaseException] = []

        async def wait_closed(publication: lk.LocalTrackPublication) -> None:
            try:
                await publication.wait_for_subscription()
            except (lk.ResourceClosedError, lk.RoomClosedError) as exc:
                errors.append(exc)

        other = await publish_audio(pub, "other", stack)
        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(wait_closed, other)
                await anyio.sleep(0.1)
                assert other._rec.waiters == 1
                await pub.local_participant.unpublish_track(other.sid)
        assert [type(e) for e in errors] == [lk.ResourceClosedError]
        assert other._rec.waiters == 0 and other._rec.first_subscription is None
        with pytest.raises(lk.ResourceClosedError):
            await other.wait_for_subscription()

        # the room closes while waiting: RoomClosedError
        errors.clear()
        last = await publish_audio(pub, "last", stack)
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(wait_closed, last)
                await anyio.sleep(0.1)
                assert last._rec.waiters == 1
                await pub.disconnect()
        assert [type(e) for e in errors] == [lk.RoomClosedError]
        with pytest.raises(lk.RoomClosedError):
            await last.wait_for_subscription()
        assert last._rec.waiters == 0 and lk.pending_requests() == 0


@integration
async def test_controls_of_a_subscribed_video(
    livekit_server: ServerInfo, livekit_token: TokenFactory
) -> None:
    width, height = 640, 360
    async with (
        rooms(livekit_server, livekit_token, ("cam", None), ("viewer", MANUAL)) as (cam, viewer),
        AsyncExitStack() as stack,
        viewer.events() as events,
        anyio.create_task_group() as tg,
    ):
        source = await stack.enter_async_context(lk.VideoSource(width, height))
        track = await stack.enter_async_context(
            lk.LocalVideoTrack.create_video_track("camera", source)
        )

        async def frames() -> None:
            frame = lk.VideoFrame.create(width, height, lk.VideoBufferType.RGBA)
            frame.to_numpy()[:] = 128
            while True:
                source.capture_frame(frame)
                await anyio.sleep(1 / 15)

        tg.start_soon(frames)
        await cam.local_participant.publish_track(
            track,
            lk.TrackPublishOptions(source=lk.TrackSource.SOURCE_CAMERA, simulcast=True),
        )
        await publish_audio(cam, "mic", stack)
        pubs = await published(events, 2)
        video, audio = pubs["camera"], pubs["mic"]
        assert video.kind == lk.TrackKind.KIND_VIDEO and video.simulcasted
        assert video.encryption_type == lk.EncryptionType.NONE

        # bad input, wrong kind, not subscribed yet: typed errors, nothing sent
        with pytest.raises(TypeError):
            video.set_subscribed(1)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            video.set_enabled("no")  # type: ignore[arg-type]
        with pytest.raises(RuntimeError):
            video.set_enabled(False)
        with pytest.raises(RuntimeError):
            video.set_video_dimensions(320, 180)
        with pytest.raises(ValueError):
            audio.set_video_quality(lk.VideoQuality.VIDEO_QUALITY_LOW)
        with pytest.raises(ValueError):
            audio.set_video_dimensions(320, 180)
        for bad in ("high", True, 2.0):
            with pytest.raises(TypeError):
                video.set_video_quality(bad)  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            video.set_video_quality(7)  # type: ignore[arg-type]
        for w, h, error in (
            (0, 180, ValueError),
            (320, -1, ValueError),
            (70000, 1, ValueError),
            (320.0, 180, TypeError),
            (320, None, TypeError),
        ):
            with pytest.raises(error):
                video.set_video_dimensions(w, h)  # type: ignore[arg-type]
        assert not enabled(video)

        video.set_subscribed(True)
        got = await next_event(events, lk.TrackSubscribed)
        assert got.publication is video and isinstance(got.track, lk.RemoteVideoTrack)
        assert enabled(video) and video.subscription_allowed
        stream = lk.VideoStream(got.track)
        with anyio.fail_after(10):  # media flows
            await stream.receive()

        async def frames_within(seconds: float) -> int:
            n = 0
            with anyio.move_on_after(seconds):
                async for _ in stream:
                    n += 1
            return n

        video.set_enabled(False)
        assert not enabled(video) and video.subscribed
        await frames_within(0.7)  # what was on its way
        assert await frames_within(1.5) == 0  # the server stopped forwarding it
        video.set_enabled(True)
        assert enabled(video)
        video.set_video_quality(lk.VideoQuality.VIDEO_QUALITY_LOW)
        video.set_video_quality(2)  # type: ignore[arg-type]  # a plain int is fine
        video.set_video_dimensions(320, 180)
        assert (video.width, video.height) == (width, height)  # the published size
        with anyio.fail_after(10):  # media flows again
            await stream.receive()
        stream.close()

        # the publisher leaves: the publications are gone
        await cam.disconnect()
        await next_event(events, lk.ParticipantDisconnected)
        calls: list[Callable[[], None]] = [
            lambda: video.set_subscribed(True),
            lambda: video.set_enabled(True),
            lambda: video.set_video_quality(lk.VideoQuality.VIDEO_QUALITY_HIGH),
            lambda: video.set_video_dimensions(320, 180),
            lambda: audio.set_subscribed(True),
        ]
        for call in calls:
            with pytest.raises(lk.ResourceClosedError):
                call()
        assert not video.subscribed and video.track is None and got.track.closed
        tg.cancel_scope.cancel()
    # the room is closed
    for call in calls:
        with pytest.raises(lk.RoomClosedError):
            call()


@integration
async def test_permissions_refuse_then_allow(
    livekit_server: ServerInfo, livekit_token: TokenFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_participant, "SUBSCRIBE_TIMEOUT", 2.0)
    async with (
        rooms(
            livekit_server, livekit_token, ("me", None), ("agent", MANUAL), ("guest", MANUAL)
        ) as (me, agent, guest),
        AsyncExitStack() as stack,
        agent.events() as agent_events,
        guest.events() as guest_events,
    ):
        lp = me.local_participant
        bad: Sequence[tuple[dict[str, Any], type[Exception]]] = [
            ({"allow_all_participants": 1}, TypeError),
            ({"participant_permissions": lk.ParticipantTrackPermission("agent")}, TypeError),
            ({"participant_permissions": ["agent"]}, TypeError),
            (
                {
                    "participant_permissions": [
                        lk.ParticipantTrackPermission("agent"),
                        lk.ParticipantTrackPermission("agent", True),
                    ]
                },
                ValueError,
            ),
        ]
        for kwargs, error in bad:
            with pytest.raises(error):
                await lp.set_track_subscription_permissions(**kwargs)
        await lp.set_track_subscription_permissions(
            allow_all_participants=False,
            participant_permissions=[lk.ParticipantTrackPermission("agent", allow_all=True)],
        )
        mic = await publish_audio(me, "mic", stack)
        theirs = (await published(agent_events, 1))["mic"]
        mine = (await published(guest_events, 1))["mic"]

        theirs.set_subscribed(True)
        ok = await next_event(agent_events, lk.TrackSubscribed)
        assert ok.publication is theirs and theirs.subscription_allowed

        started = anyio.current_time()
        mine.set_subscribed(True)
        assert status(mine) == lk.SubscriptionStatus.DESIRED
        failed = await next_event(guest_events, lk.TrackSubscriptionFailed)
        assert anyio.current_time() - started >= 1.9
        assert failed.track_sid == mic.sid and failed.publication is mine
        assert failed.participant.identity == "me" and "not allowed" in failed.error
        assert not mine.subscription_allowed and not mine.subscribed
        assert status(mine) == lk.SubscriptionStatus.NOT_ALLOWED

        # allowed by track sid now: the subscription asked for arrives
        allowed_at = anyio.current_time()
        await lp.set_track_subscription_permissions(
            allow_all_participants=False,
            participant_permissions=[
                lk.ParticipantTrackPermission("agent", allow_all=True),
                lk.ParticipantTrackPermission("guest", allowed_track_sids=[mic.sid]),
            ],
        )
        arrived = await next_event(guest_events, lk.TrackSubscribed)
        assert anyio.current_time() - allowed_at < 5
        assert arrived.publication is mine and mine.subscribed
        assert mine.subscription_allowed
        assert status(mine) == lk.SubscriptionStatus.SUBSCRIBED
        assert theirs.subscribed  # the agent's is untouched
        with anyio.move_on_after(2.5):  # no stale failure from the old deadline
            await next_event(guest_events, lk.TrackSubscriptionFailed)
            raise AssertionError("a failure after the track arrived")
    with pytest.raises(lk.RoomClosedError):
        await lp.set_track_subscription_permissions()
