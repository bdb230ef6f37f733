"""Media interop with the official asyncio SDK (``livekit.rtc``) on a real livekit-server.

lkrtc-trio publishes a tone, a frequency sweep and a video colour cycle; an official
participant (``tests/peers/official_peer.py``, in its own process) records them and reports
only an analysis (per-window dominant frequency and RMS, per-frame mean colour). The other
way round, the official peer publishes a tone that lkrtc-trio reads with ``AudioStream``
until the stream ends by itself. Track events are checked on both sides. Every wait is
bounded.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from typing import Any

import anyio
import numpy as np
import pytest

import lkrtc_trio as lk
from lkrtc_trio.testing import ServerInfo
from lkrtc_trio.testing.pytest_plugin import TokenFactory

from .helpers import next_event, see_each_other, wait_handles
from .peers._official import open_official_peer

pytestmark = pytest.mark.integration

SEE = 20  # seconds to see each other (the server batches updates every ~3 s)
STEP = 10  # seconds for any single exchange
RATE = 48_000
FRAME = RATE // 100  # 10 ms
AMPLITUDE = 0.5  # of full scale
FULL_SCALE = 32767
TONE_RMS = AMPLITUDE * FULL_SCALE / math.sqrt(2)
WINDOW = 0.1  # seconds per analysis window
SWEEP = (100, 300, 500, 700, 1000)
MIC = lk.TrackSource.SOURCE_MICROPHONE

WIDTH, HEIGHT, FPS = 320, 240, 30
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (255, 0, 0),
    "green": (0, 255, 0),
    "blue": (0, 0, 255),
    "white": (255, 255, 255),
    "black": (0, 0, 0),
}
IDLE = (128, 128, 128)  # sent before and after the cycle: far from every colour above
COLOUR_FRAMES = round(0.6 * FPS)  # 0.6 s per colour
COLOUR_DISTANCE = 60.0  # a frame further than this from every colour is unclassified

# -- helpers -------------------------------------------------------------------------------


async def play(source: lk.AudioSource, plan: Sequence[tuple[float, float]]) -> None:
    """Captures (frequency Hz, seconds) segments as phase-continuous 10 ms frames."""
    t = np.arange(FRAME) / RATE
    phase = 0.0
    for frequency, seconds in plan:
        for _ in range(round(seconds * 100)):
            frame = lk.AudioFrame.create(RATE, 1, FRAME)
            wave = AMPLITUDE * FULL_SCALE * np.sin(phase + 2 * np.pi * frequency * t)
            frame.to_numpy()[:, 0] = np.round(wave).astype(np.int16)
            phase = (phase + 2 * np.pi * frequency * FRAME / RATE) % (2 * np.pi)
            await source.capture_frame(frame)


def dominant_frequency(samples: np.ndarray[Any, Any]) -> float:
    """Frequency of the strongest rfft bin (Hann window), parabolically refined."""
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64) * np.hanning(len(samples))))
    k = int(np.argmax(spectrum))
    offset = 0.0
    if 0 < k < len(spectrum) - 1:
        a, b, c = np.log(spectrum[k - 1 : k + 2] + 1e-12)
        if a - 2 * b + c < 0:
            offset = float(0.5 * (a - c) / (a - 2 * b + c))
    return (k + offset) * RATE / len(samples)


def collapse(labels: Sequence[str | None], min_run: int) -> list[str]:
    """Runs of equal consecutive labels, keeping runs of at least ``min_run`` (None
    labels break runs and are dropped), with equal neighbours merged."""
    out: list[str] = []
    i = 0
    while i < len(labels):
        j = i
        while j < len(labels) and labels[j] == labels[i]:
            j += 1
        label = labels[i]
        if label is not None and j - i >= min_run and (not out or out[-1] != label):
            out.append(label)
        i = j
    return out


def nearest_sweep(frequency: float) -> int:
    return min(SWEEP, key=lambda f: abs(f - frequency))


def nearest_colour(rgb: Sequence[int]) -> str | None:
    name, want = min(COLOURS.items(), key=lambda kv: math.dist(kv[1], rgb))
    return name if math.dist(want, rgb) <= COLOUR_DISTANCE else None


def solid(rgb: tuple[int, int, int]) -> lk.VideoFrame:
    frame = lk.VideoFrame.create(WIDTH, HEIGHT, lk.VideoBufferType.RGBA)
    pixels = frame.to_numpy()
    pixels[:, :, :3] = rgb
    pixels[:, :, 3] = 255
    return frame


# -- lkrtc-trio audio -> official ----------------------------------------------------------


async def test_trio_audio_reaches_official_peer(
    livekit_server: ServerInfo, livekit_token: TokenFactory
) -> None:
    url = livekit_server.url
    me, listener = "trio-speaker", "official-listener"
    async with (
        lk.open_room(url, livekit_token(me)) as room,
        open_official_peer(url, livekit_token(listener)) as peer,
    ):
        await see_each_other(room, peer)
        lp = room.local_participant
        baseline = lk.live_native_handles()
        with room.events() as events:
            async with (
                lk.AudioSource(RATE, 1) as source,
                lk.LocalAudioTrack.create_audio_track("tone", source) as track,
            ):
                # publish: LocalTrackPublished here, track_published there
                mark = peer.mark()
                with anyio.fail_after(STEP):
                    pub = await lp.publish_track(track, lk.TrackPublishOptions(source=MIC))
                sid = pub.sid
                assert sid.startswith("TR_") and track.sid == sid
                assert (pub.kind, pub.source, pub.name) == (lk.TrackKind.KIND_AUDIO, MIC, "tone")
                assert lp.track_publications[sid] is pub and pub.track is track
                local = await next_event(
                    events, lk.LocalTrackPublished, lambda e: e.publication.sid == sid
                )
                assert local.publication is pub and local.participant is lp
                seen = await peer.wait_for("track_published", STEP, since=mark, track_sid=sid)
                assert seen["identity"] == me
                assert (seen["kind"], seen["name"], seen["source"]) == (1, "tone", int(MIC))
                await peer.wait_for("track_subscribed", STEP, since=mark, track_sid=sid)

                # a 440 Hz tone: its pitch and its energy arrive
                since = peer.mark()
                cmd = await peer.send("record_audio", identity=me, seconds=2.0)
                await peer.wait_for("record_started", STEP, since=since, id=cmd)
                with anyio.fail_after(STEP):
                    await play(source, [(440.0, 2.3)])
                    await source.wait_for_playout()
                reply = await peer.wait_for("reply", STEP, since=since, id=cmd)
                assert reply["ok"], reply
                rec = reply["result"]
                assert rec["track_sid"] == sid and rec["samples"] == 2 * RATE, rec["samples"]
                skip = round(0.5 / WINDOW)  # network, jitter buffer and decoder settling
                freqs, rms = rec["windows"][skip:], rec["rms"][skip:]
                assert len(freqs) >= 10
                assert all(abs(f - 440) <= 15 for f in freqs), freqs
                steady_rms = math.sqrt(sum(r * r for r in rms) / len(rms))
                assert abs(steady_rms - TONE_RMS) <= 0.10 * TONE_RMS, (steady_rms, rms)
                print(
                    f"lkrtc-trio tone at the official peer: peaks {min(freqs):.1f}.."
                    f"{max(freqs):.1f} Hz, rms {steady_rms:.0f} (sent {TONE_RMS:.0f})"
                )

                # a 100/300/500/700/1000 Hz sweep keeps its order
                await anyio.sleep(0.3)  # the tone's tail leaves the network and jitter buffer
                since = peer.mark()
                cmd = await peer.send("record_audio", identity=me, seconds=3.3)
                await peer.wait_for("record_started", STEP, since=since, id=cmd)
                with anyio.fail_after(STEP):
                    await play(source, [(float(f), 0.5) for f in SWEEP])
                    await source.wait_for_playout()
                reply = await peer.wait_for("reply", STEP, since=since, id=cmd)
                assert reply["ok"], reply
                rec = reply["result"]
                labels = [
                    str(nearest_sweep(f))
                    if r > 0.25 * TONE_RMS  # silent windows before and after: no label
                    else None
                    for f, r in zip(rec["windows"], rec["rms"], strict=True)
                ]
                order = collapse(labels, 2)
                assert order == [str(f) for f in SWEEP], (order, rec["windows"], rec["rms"])
                print(f"sweep at the official peer: {labels}")

                # mute and unmute reach the official peer
                mark = peer.mark()
                track.mute()
                assert track.muted
                seen = await peer.wait_for("track_muted", STEP, since=mark, track_sid=sid)
                assert (seen["identity"], seen["kind"], seen["source"]) == (me, 1, int(MIC))
                mark = peer.mark()
                track.unmute()
                assert not track.muted
                seen = await peer.wait_for("track_unmuted", STEP, since=mark, track_sid=sid)
                assert seen["identity"] == me

                # unpublish: LocalTrackUnpublished here, track_unpublished there
                mark = peer.mark()
                with anyio.fail_after(STEP):
                    await lp.unpublish_track(sid)
                assert sid not in lp.track_publications
                local_gone = await next_event(
                    events, lk.LocalTrackUnpublished, lambda e: e.publication.sid == sid
                )
                assert local_gone.participant is lp
                seen = await peer.wait_for("track_unpublished", STEP, since=mark, track_sid=sid)
                assert (seen["identity"], seen["kind"], seen["name"]) == (me, 1, "tone")
            # the track and the source are closed: nothing of theirs is left
            assert track.closed
            await wait_handles(baseline)
        assert lk.pending_requests() == 0
    await wait_handles(0)


# -- lkrtc-trio video -> official ----------------------------------------------------------


async def test_trio_video_colour_cycle_reaches_official_peer(
    livekit_server: ServerInfo, livekit_token: TokenFactory
) -> None:
    url = livekit_server.url
    me, watcher = "trio-camera", "official-watcher"
    async with (
        lk.open_room(url, livekit_token(me)) as room,
        open_official_peer(url, livekit_token(watcher)) as peer,
    ):
        await see_each_other(room, peer)
        lp = room.local_participant
        baseline = lk.live_native_handles()
        idle = solid(IDLE)
        frames = {name: solid(rgb) for name, rgb in COLOURS.items()}
        queue: deque[lk.VideoFrame] = deque()
        sent = 0
        async with (
            lk.VideoSource(WIDTH, HEIGHT) as source,
            lk.LocalVideoTrack.create_video_track("colours", source) as track,
        ):

            async def pump() -> None:
                """30 fps: the queued frames, then the idle frame again and again."""
                nonlocal sent
                start = anyio.current_time()
                for i in range(FPS * 60):
                    source.capture_frame(queue.popleft() if queue else idle)
                    sent += 1
                    await anyio.sleep_until(start + (i + 1) / FPS)

            mark = peer.mark()
            # without a framerate the native default for 320x240 is 20 fps
            options = lk.TrackPublishOptions(
                source=lk.TrackSource.SOURCE_CAMERA,
                video_max_framerate=FPS,
                video_max_bitrate=300_000,
            )
            with anyio.fail_after(STEP):
                pub = await lp.publish_track(track, options)
            seen = await peer.wait_for("track_published", STEP, since=mark, track_sid=pub.sid)
            assert (seen["identity"], seen["kind"], seen["name"]) == (me, 2, "colours")
            assert seen["source"] == int(lk.TrackSource.SOURCE_CAMERA)

            async with anyio.create_task_group() as nursery:
                nursery.start_soon(pump)
                since = peer.mark()
                cmd = await peer.send("record_video", identity=me, seconds=4.0)
                await peer.wait_for("record_first_frame", STEP, since=since, id=cmd)
                sent_before = sent
                await anyio.sleep(0.3)  # a few idle frames first
                for name in COLOURS:
                    queue.extend([frames[name]] * COLOUR_FRAMES)
                reply = await peer.wait_for("reply", 4.0 + STEP, since=since, id=cmd)
                nursery.cancel_scope.cancel()
            assert not queue, "the colour cycle outlasted the recording"
            assert reply["ok"], reply
            rec = reply["result"]
            assert (rec["width"], rec["height"]) == (WIDTH, HEIGHT), rec["sizes"]
            assert rec["frames"] >= 0.75 * FPS * 4.0, rec["frames"]  # the framerate applies
            labels = [nearest_colour(rgb) for rgb in rec["colours"]]
            order = collapse(labels, 3)
            assert order == list(COLOURS), (order, rec["colours"])
            print(
                f"colour cycle at the official peer: {rec['frames']} frames received in 4 s "
                f"({sent - sent_before} sent meanwhile), sizes {rec['sizes']}, {order}, "
                f"means {sorted({tuple(c) for c in rec['colours']})}"
            )

            with anyio.fail_after(STEP):
                await lp.unpublish_track(pub.sid)
        await wait_handles(baseline)
    await wait_handles(0)


# -- official audio -> lkrtc-trio ----------------------------------------------------------


async def test_official_tone_reaches_trio_and_its_stream_ends(
    livekit_server: ServerInfo, livekit_token: TokenFactory
) -> None:
    url = livekit_server.url
    me, speaker = "trio-listener", "official-speaker"
    seconds = 2.5
    async with (
        lk.open_room(url, livekit_token(me)) as room,
        open_official_peer(url, livekit_token(speaker)) as peer,
    ):
        await see_each_other(room, peer)
        with room.events(max_buffer=10_000) as events:
            since = peer.mark()
            cmd = await peer.send("publish_tone", frequency=440, seconds=seconds)
            before: list[Any] = []
            got = await next_event(
                events,
                lk.TrackSubscribed,
                lambda e: e.participant.identity == speaker,
                seen=before,
            )
            sid = got.publication.sid
            published = [
                e for e in before if isinstance(e, lk.TrackPublished) and e.publication.sid == sid
            ]
            assert published and published[0].publication is got.publication
            assert got.participant is room.remote_participants[speaker]
            assert isinstance(got.track, lk.RemoteAudioTrack) and got.track.sid == sid
            assert (got.publication.kind, got.publication.source) == (lk.TrackKind.KIND_AUDIO, MIC)
            assert got.publication.subscribed and got.publication.track is got.track
            tone = await peer.wait_for("tone_published", STEP, since=since, id=cmd)
            assert tone["track_sid"] == sid

            # read until the stream ends by itself (the peer unpublishes after the tone)
            stream = lk.AudioStream(got.track, sample_rate=RATE, num_channels=1, capacity=500)
            chunks: list[np.ndarray[Any, Any]] = []
            last_tone_at = anyio.current_time()
            with anyio.fail_after(seconds + STEP):
                async for frame in stream:
                    assert (frame.sample_rate, frame.num_channels) == (RATE, 1)
                    pcm = frame.to_numpy()[:, 0].copy()
                    chunks.append(pcm)
                    if np.abs(pcm).max() > 0.1 * AMPLITUDE * FULL_SCALE:
                        last_tone_at = anyio.current_time()
            ended_at = anyio.current_time()
            reply = await peer.wait_for("reply", STEP, since=since, id=cmd)
            replied_at = reply["_received_at"]  # when the peer's unpublish reply arrived
            assert reply["ok"], reply
            assert reply["result"]["track_sid"] == sid
            assert stream.dropped_frames == 0
            assert got.track.closed

            signal = np.concatenate(chunks).astype(np.float64)
            audible = np.flatnonzero(np.abs(signal) > 0.1 * AMPLITUDE * FULL_SCALE)
            assert len(audible) > RATE, len(audible)  # over a second of tone arrived
            steady = signal[audible[0] + RATE // 2 : audible[-1] - RATE // 10]
            assert len(steady) >= RATE // 2
            peak = dominant_frequency(steady)
            assert abs(peak - 440) <= 15, peak
            rms = float(np.sqrt(np.mean(steady**2)))
            assert abs(rms - TONE_RMS) <= 0.10 * TONE_RMS, (rms, TONE_RMS)

            gone = await next_event(
                events, lk.TrackUnpublished, lambda e: e.publication.sid == sid, seen=before
            )
            assert gone.participant.identity == speaker
            assert sid not in room.remote_participants[speaker].track_publications
            # the stream ended by itself soon after the tone and the unpublish
            assert ended_at - last_tone_at < 5, (ended_at, last_tone_at)
            assert abs(ended_at - replied_at) < 5, (ended_at, replied_at)
            print(
                f"official tone at lkrtc-trio: peak {peak:.1f} Hz, rms {rms:.0f} "
                f"(sent {TONE_RMS:.0f}), {len(signal) / RATE:.2f} s read, stream ended "
                f"{ended_at - last_tone_at:.2f} s after the last tone frame and "
                f"{ended_at - replied_at:+.2f} s from the peer's unpublish reply"
            )
        assert lk.pending_requests() == 0
    await wait_handles(0)


# -- video frame metadata, rotation and timestamps, both ways --------------------------------

ALL_FEATURES = (
    lk.FrameMetadataFeature.FMF_USER_TIMESTAMP,
    lk.FrameMetadataFeature.FMF_FRAME_ID,
    lk.FrameMetadataFeature.FMF_USER_DATA,
)
META_W, META_H = 160, 120


def check_metadata_sequence(meta: list[tuple[int, int | None, bytes | None]], tag: bytes) -> None:
    """Each received frame carries the metadata its sender attached: user_timestamp
    10**12 + i, frame_id i + 1 and user_data ``tag + str(i)``, in sending order."""
    assert len(meta) >= 20, meta
    ids = []
    for user_timestamp, frame_id, user_data in meta:
        i = user_timestamp - 10**12
        assert frame_id == i + 1 and user_data == tag + b"%d" % i, (user_timestamp, frame_id)
        ids.append(i)
    assert ids == sorted(set(ids)), ids  # in order, no duplicates (a few may be skipped)


async def test_video_metadata_rotation_and_timestamps_both_ways(
    livekit_server: ServerInfo, livekit_token: TokenFactory
) -> None:
    """lkrtc-trio -> official and official -> lkrtc-trio: ``FrameMetadata`` (user
    timestamp, frame id, user data) arrives with the frame it was attached to; a
    frame captured with a 90 (or 270) degree rotation arrives rotated (width and
    height swapped; the native receive pipeline applies the rotation, so the
    receiver's ``rotation`` is 0); receive timestamps increase by about the
    capture interval."""
    url = livekit_server.url
    me, them = "trio-meta", "official-meta"
    async with (
        lk.open_room(url, livekit_token(me)) as room,
        open_official_peer(url, livekit_token(them)) as peer,
    ):
        await see_each_other(room, peer)
        lp = room.local_participant
        baseline = lk.live_native_handles()
        with room.events() as events:
            # official -> lkrtc-trio
            since = peer.mark()
            await peer.send(
                "publish_video",
                frames=75,
                fps=FPS,
                width=META_W,
                height=META_H,
                rotation=int(lk.VideoRotation.VIDEO_ROTATION_270),
                features=[int(f) for f in ALL_FEATURES],
            )
            got = await next_event(
                events, lk.TrackSubscribed, lambda e: e.participant.identity == them, STEP
            )
            received: list[lk.VideoFrame] = []
            async with lk.VideoStream(got.track, capacity=200) as stream:
                with anyio.move_on_after(STEP):
                    async for frame in stream:
                        received.append(frame)
            reply = await peer.wait_for("reply", STEP, since=since)
            assert reply["ok"], reply
        # every frame of the sender's size carries its metadata; when the track goes the
        # native core adds a few 8x8 black frames, which carry none
        sent = [f for f in received if (f.width, f.height) == (META_H, META_W)]  # rotated
        assert len(sent) >= 20 and all(f.metadata is not None for f in sent), len(sent)
        assert all((f.width, f.height, f.metadata) == (8, 8, None) for f in received[len(sent) :])
        assert {f.rotation for f in received} == {lk.VideoRotation.VIDEO_ROTATION_0}
        meta = [f.metadata for f in sent if f.metadata is not None]
        check_metadata_sequence(
            [(m.user_timestamp or 0, m.frame_id, m.user_data) for m in meta], b"f"
        )
        # receive timestamps keep the capture spacing (the encoder may skip frames)
        stamps = np.diff([f.timestamp_us for f in sent])
        gaps = np.diff([m.frame_id or 0 for m in meta])
        assert (stamps > 0).all(), stamps
        spacing = float(np.median(stamps / gaps))
        assert abs(spacing - 1e6 / FPS) < 0.25e6 / FPS, (stamps, gaps)

        # lkrtc-trio -> official
        async with (
            lk.VideoSource(META_W, META_H) as source,
            lk.LocalVideoTrack.create_video_track("meta", source) as track,
        ):
            options = lk.TrackPublishOptions(
                source=lk.TrackSource.SOURCE_CAMERA, frame_metadata_features=ALL_FEATURES
            )
            with anyio.fail_after(STEP):
                pub = await lp.publish_track(track, options)

            async def pump() -> None:
                frame = lk.VideoFrame.create(META_W, META_H, lk.VideoBufferType.RGBA)
                start = anyio.current_time()
                for i in range(FPS * 30):
                    frame.to_numpy()[:] = i % 256
                    source.capture_frame(
                        frame,
                        timestamp_us=i * 1_000_000 // FPS,
                        rotation=lk.VideoRotation.VIDEO_ROTATION_90,
                        metadata=lk.FrameMetadata(
                            user_timestamp=10**12 + i, frame_id=i + 1, user_data=b"t%d" % i
                        ),
                    )
                    await anyio.sleep_until(start + (i + 1) / FPS)

            async with anyio.create_task_group() as nursery:
                nursery.start_soon(pump)
                since = peer.mark()
                cmd = await peer.send("record_video", identity=me, seconds=2.0)
                reply = await peer.wait_for("reply", 2.0 + STEP, since=since, id=cmd)
                nursery.cancel_scope.cancel()
            assert reply["ok"], reply
            rec = reply["result"]
            assert rec["sizes"] == [[META_H, META_W]], rec["sizes"]  # rotated
            assert {m[0] for m in rec["metadata"]} == {0}
            check_metadata_sequence(
                [(m[1], m[2], bytes.fromhex(m[3])) for m in rec["metadata"] if m[1] is not None],
                b"t",
            )
            with anyio.fail_after(STEP):
                await lp.unpublish_track(pub.sid)
        await wait_handles(baseline)
    await wait_handles(0)
