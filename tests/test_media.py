"""Media end to end between lkrtc-trio clients on a real server: tones, a
sweep, a video colour cycle, track events, stream ends, cancel safety."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import numpy as np
import pytest

import lkrtc_trio as lk
from lkrtc_trio.testing import ServerInfo
from lkrtc_trio.testing.pytest_plugin import TokenFactory

from .helpers import wait_server
from .tones import AMPLITUDE, RATE, dominant, play

pytestmark = pytest.mark.integration

SWEEP = [100, 300, 500, 700, 1000]
COLOURS = {
    "red": (255, 0, 0),
    "green": (0, 255, 0),
    "blue": (0, 0, 255),
    "white": (255, 255, 255),
    "black": (0, 0, 0),
}


def rms_of(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(samples.astype(float) ** 2)))


def nearest(choices: list[int], value: float) -> str:
    return str(min(choices, key=lambda f: abs(f - value)))


def runs(labels: list[str], min_len: int) -> list[str]:
    out: list[str] = []
    count = 0
    for i, label in enumerate(labels):
        count = count + 1 if i and label == labels[i - 1] else 1
        if count == min_len and (not out or out[-1] != label):
            out.append(label)
    return out


@asynccontextmanager
async def publisher_and_subscriber(
    server: ServerInfo, token: TokenFactory
) -> AsyncIterator[tuple[lk.Room, lk.Room]]:
    async with (
        lk.open_room(server.url, token("pub")) as pub,
        lk.open_room(server.url, token("sub")) as sub,
    ):
        yield pub, sub
    with anyio.fail_after(10):
        while lk.pending_requests() or lk.live_native_handles():
            await anyio.sleep(0.01)


async def subscribed(events: lk.EventSubscription, kind: lk.TrackKind) -> lk.TrackSubscribed:
    with anyio.fail_after(15):
        async for event in events:
            if isinstance(event, lk.TrackSubscribed) and event.track.kind == kind:
                return event
    raise AssertionError("room ended")


async def test_tone_and_sweep_arrive_intact(
    livekit_server: ServerInfo, livekit_token: TokenFactory
) -> None:
    async with publisher_and_subscriber(livekit_server, livekit_token) as (pub, sub):
        with sub.events() as events:
            async with lk.AudioSource(RATE, 1) as source:
                track = lk.LocalAudioTrack.create_audio_track("tone", source)
                await pub.local_participant.publish_track(
                    track, lk.TrackPublishOptions(source=lk.TrackSource.SOURCE_MICROPHONE)
                )
                got = await subscribed(events, lk.TrackKind.KIND_AUDIO)
                assert got.participant.identity == "pub" and got.publication.subscribed
                stream = lk.AudioStream(got.track, sample_rate=RATE, num_channels=1, capacity=1000)
                chunks: list[np.ndarray] = []
                async with anyio.create_task_group() as nursery:
                    nursery.start_soon(play, source, [(440, 2.0)] + [(f, 0.5) for f in SWEEP])

                    with anyio.fail_after(15):
                        async for frame in stream:
                            assert (frame.sample_rate, frame.num_channels) == (RATE, 1)
                            chunks.append(frame.to_numpy()[:, 0].copy())
                            if sum(map(len, chunks)) >= RATE * 4.8:
                                break
                stream.close()
                assert stream.dropped_frames == 0
                signal = np.concatenate(chunks)
                start = int(np.argmax(np.abs(signal) > 1000))  # first audible sample
                steady = signal[start + RATE // 2 : start + int(RATE * 1.8)]
                assert abs(dominant(steady) - 440) <= 15
                sent_rms = AMPLITUDE * 32767 / math.sqrt(2)
                rms = float(np.sqrt(np.mean(steady.astype(float) ** 2)))
                assert abs(rms - sent_rms) / sent_rms < 0.10, (rms, sent_rms)
                window = RATE // 10
                sweep_part = signal[start + 2 * RATE :]
                labels = [
                    nearest(SWEEP, dominant(part))
                    for i in range(0, len(sweep_part) - window, window)
                    # silence after the sweep has no pitch: not a label
                    if rms_of(part := sweep_part[i : i + window]) > sent_rms / 4
                ]
                order = runs(labels, 2)
                assert order == [str(f) for f in SWEEP], labels
                await pub.local_participant.unpublish_track(track.sid)
                track.close()


async def test_video_colour_cycle_arrives_in_order(
    livekit_server: ServerInfo, livekit_token: TokenFactory
) -> None:
    width, height, fps = 320, 240, 30
    async with publisher_and_subscriber(livekit_server, livekit_token) as (pub, sub):
        with sub.events() as events:
            async with lk.VideoSource(width, height) as source:
                track = lk.LocalVideoTrack.create_video_track("colours", source)
                await pub.local_participant.publish_track(
                    track, lk.TrackPublishOptions(source=lk.TrackSource.SOURCE_CAMERA)
                )

                async def cycle() -> None:
                    frame = lk.VideoFrame.create(width, height, lk.VideoBufferType.RGBA)
                    pixels = frame.to_numpy()
                    for name in ["black", *COLOURS]:  # black first: let the stream start
                        pixels[:] = (*COLOURS[name], 255)
                        for _ in range(int(fps * 0.8)):
                            source.capture_frame(frame)
                            await anyio.sleep(1 / fps)

                got = await subscribed(events, lk.TrackKind.KIND_VIDEO)
                stream = lk.VideoStream(got.track, format=lk.VideoBufferType.RGBA, capacity=500)
                labels: list[str] = []
                async with anyio.create_task_group() as nursery:
                    nursery.start_soon(cycle)
                    with anyio.fail_after(15):
                        async for frame in stream:
                            mean = frame.to_numpy()[::8, ::8, :3].reshape(-1, 3).mean(axis=0)
                            name, dist = min(
                                ((n, float(np.abs(mean - c).max())) for n, c in COLOURS.items()),
                                key=lambda x: x[1],
                            )
                            labels.append(name if dist < 60 else "?")
                            if len(runs(labels, 3)) >= 6 and labels[-1] == "black":
                                break
                            if nursery.cancel_scope.cancel_called:
                                break
                    nursery.cancel_scope.cancel()
                stream.close()
                order = [c for c in runs(labels, 3) if c != "?"]
                assert order[-5:] == list(COLOURS), labels
                await pub.local_participant.unpublish_track(track.sid)
                track.close()


async def test_track_events_mute_and_stream_end(
    livekit_server: ServerInfo, livekit_token: TokenFactory
) -> None:
    async with publisher_and_subscriber(livekit_server, livekit_token) as (pub, sub):
        with sub.events() as theirs, pub.events() as mine:
            source = lk.AudioSource(RATE, 1)
            track = lk.LocalAudioTrack.create_audio_track("mic", source)
            publication = await pub.local_participant.publish_track(track)
            assert publication.track is track and track.sid == publication.sid
            assert pub.local_participant.track_publications == {publication.sid: publication}

            async def next_event(sub_: lk.EventSubscription, kind: type) -> object:
                with anyio.fail_after(15):
                    async for e in sub_:
                        if isinstance(e, kind):
                            return e
                raise AssertionError("ended")

            local = await next_event(mine, lk.LocalTrackPublished)
            assert isinstance(local, lk.LocalTrackPublished) and local.publication is publication
            remote = await next_event(theirs, lk.TrackPublished)
            assert isinstance(remote, lk.TrackPublished) and remote.publication.sid == track.sid
            got = await next_event(theirs, lk.TrackSubscribed)
            assert isinstance(got, lk.TrackSubscribed)
            stream = lk.AudioStream(got.track)

            track.mute()
            assert track.muted
            muted = await next_event(theirs, lk.TrackMuted)
            assert isinstance(muted, lk.TrackMuted) and muted.publication.muted
            track.unmute()
            unmuted = await next_event(theirs, lk.TrackUnmuted)
            assert isinstance(unmuted, lk.TrackUnmuted) and not unmuted.publication.muted

            await pub.local_participant.unpublish_track(track.sid)
            gone = await next_event(mine, lk.LocalTrackUnpublished)
            assert isinstance(gone, lk.LocalTrackUnpublished)
            assert pub.local_participant.track_publications == {}
            unsub = await next_event(theirs, lk.TrackUnsubscribed)
            assert isinstance(unsub, lk.TrackUnsubscribed) and unsub.track is got.track
            with anyio.fail_after(5):  # the stream ends by itself
                async for _ in stream:
                    pass
            assert got.track.closed
            with pytest.raises(lk.UnpublishTrackError):
                await pub.local_participant.unpublish_track(track.sid)
            track.close()
            source.close()
            with pytest.raises(lk.ResourceClosedError):
                await pub.local_participant.publish_track(track)


async def test_stream_ends_when_the_publisher_leaves(
    livekit_server: ServerInfo, livekit_token: TokenFactory
) -> None:
    async with lk.open_room(livekit_server.url, livekit_token("listener")) as listener:
        with listener.events() as events:
            async with lk.open_room(livekit_server.url, livekit_token("talker")) as talker:
                source = lk.AudioSource(RATE, 1)
                track = lk.LocalAudioTrack.create_audio_track("mic", source)
                await talker.local_participant.publish_track(track)
                got = await subscribed(events, lk.TrackKind.KIND_AUDIO)
                stream = lk.AudioStream(got.track)
                async with anyio.create_task_group() as nursery:
                    nursery.start_soon(play, source, [(440, 0.5)])
                    with anyio.fail_after(5):
                        await stream.receive()  # media flows
            # talker left: the stream ends by itself (python-sdks #179)
            with anyio.fail_after(10):
                async for _ in stream:
                    pass
            track.close()
            source.close()
    with anyio.fail_after(10):
        while lk.live_native_handles():
            await anyio.sleep(0.01)


@pytest.mark.parametrize("delay", [0.0, 0.001, 0.005, 0.02])
async def test_cancelled_publish_leaves_no_track_behind(
    livekit_server: ServerInfo, livekit_token: TokenFactory, livekit_room_name: str, delay: float
) -> None:
    async with publisher_and_subscriber(livekit_server, livekit_token) as (pub, _sub):
        source = lk.AudioSource(RATE, 1)
        track = lk.LocalAudioTrack.create_audio_track("mic", source)
        returned = False
        with anyio.move_on_after(delay):
            publication = await pub.local_participant.publish_track(track)
            returned = True
            await anyio.sleep_forever()
        if returned:  # the publish completed before the cancel: the track is ours
            await pub.local_participant.unpublish_track(publication.sid)
        else:  # cancelled mid-publish: the late completion is unpublished for us
            assert pub.local_participant.track_publications == {}
        with anyio.fail_after(15):
            while lk.pending_requests():
                await anyio.sleep(0.01)
        assert pub.local_participant.track_publications == {}
        # the publish has completed one way or the other by now; the server's
        # own view (not the subscriber's, which lags) ends with no track of ours
        view = await wait_server(livekit_server, livekit_room_name, lambda v: v.get("pub") == 0)
        assert set(view) == {"pub", "sub"}
        track.close()
        source.close()


async def test_publish_without_permission_raises(
    livekit_server: ServerInfo, livekit_token: TokenFactory
) -> None:
    async with (
        lk.open_room(livekit_server.url, livekit_token("viewer", can_publish=False)) as room,
        lk.AudioSource(RATE, 1) as source,
    ):
        track = lk.LocalAudioTrack.create_audio_track("mic", source)
        with anyio.fail_after(20), pytest.raises(lk.PublishTrackError):
            await room.local_participant.publish_track(track)
        assert room.local_participant.track_publications == {}
        track.close()


async def test_capture_after_a_cancelled_capture_waits_for_it(
    livekit_server: ServerInfo, livekit_token: TokenFactory
) -> None:
    """The native source takes one capture at a time; a capture whose caller
    was cancelled is still in flight, and the next call waits for it instead
    of failing with InvalidState."""
    async with (
        lk.open_room(livekit_server.url, livekit_token("player")) as room,
        lk.AudioSource(RATE, 1, queue_size_ms=200) as source,
    ):
        track = lk.LocalAudioTrack.create_audio_track("mic", source)
        await room.local_participant.publish_track(track)
        for _ in range(3):
            with anyio.move_on_after(0.5) as scope:
                await play(source, [(440, 5.0)])  # fills the queue, then waits
            assert scope.cancelled_caught
            await play(source, [(440, 0.05)])  # right away: must not fail
        await room.local_participant.unpublish_track(track.sid)
        track.close()


async def test_streams_from_participant_exist_before_the_track(
    livekit_server: ServerInfo, livekit_token: TokenFactory
) -> None:
    """``VideoStream.from_participant`` (camera) and ``AudioStream.from_participant``
    (microphone) made before anything is published deliver the tracks published
    afterwards; ``from_track`` is the keyword spelling of the constructor."""
    async with publisher_and_subscriber(livekit_server, livekit_token) as (pub, sub):
        with sub.events() as events:
            remote = await sub.wait_for_participant("pub")
            video = lk.VideoStream.from_participant(
                participant=remote,
                track_source=lk.TrackSource.SOURCE_CAMERA,
                format=lk.VideoBufferType.RGBA,
            )
            audio = lk.AudioStream.from_participant(
                participant=remote, track_source=lk.TrackSource.SOURCE_MICROPHONE
            )
            assert video.track is None and audio.track is None
            async with (
                lk.VideoSource(64, 48) as vsource,
                lk.AudioSource(RATE, 1) as asource,
                lk.LocalVideoTrack.create_video_track("cam", vsource) as vtrack,
                lk.LocalAudioTrack.create_audio_track("mic", asource) as atrack,
                anyio.create_task_group() as nursery,
            ):
                lp = pub.local_participant
                camera = lk.TrackPublishOptions(source=lk.TrackSource.SOURCE_CAMERA)
                mic = lk.TrackPublishOptions(source=lk.TrackSource.SOURCE_MICROPHONE)
                await lp.publish_track(vtrack, camera)
                await lp.publish_track(atrack, mic)

                async def frames() -> None:
                    frame = lk.VideoFrame.create(64, 48, lk.VideoBufferType.RGBA)
                    frame.to_numpy()[:] = (0, 200, 0, 255)
                    while True:
                        vsource.capture_frame(frame)
                        await anyio.sleep(1 / 30)

                nursery.start_soon(frames)
                nursery.start_soon(play, asource, [(440, math.inf)])
                got = await subscribed(events, lk.TrackKind.KIND_VIDEO)
                by_track = lk.VideoStream.from_track(track=got.track, capacity=2)
                with anyio.fail_after(15):
                    first = await video.receive()
                    while True:  # the first frames may be black while the encoder starts
                        pixel = first.to_numpy()[24, 32, :3]
                        if abs(int(pixel[1]) - 200) < 40 and int(pixel[0]) < 40:
                            break
                        first = await video.receive()
                    samples = [(await audio.receive()).to_numpy()[:, 0] for _ in range(60)]
                    await by_track.receive()
                assert (first.width, first.height) == (64, 48)
                assert abs(dominant(np.concatenate(samples[-40:])) - 440) < 5
                nursery.cancel_scope.cancel()
            for stream in (video, audio, by_track):
                await stream.aclose()
