"""AVSynchronizer: A/V offset and frame rate measured by a subscriber on a real
server; cancel safety, close and clear of the video queue (no server)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import anyio
import numpy as np
import pytest

import lkrtc_trio as lk
from lkrtc_trio.testing import ServerInfo
from lkrtc_trio.testing.pytest_plugin import TokenFactory

from .helpers import wait_handles
from .test_media import publisher_and_subscriber
from .tones import RATE

W, H, FPS = 160, 120, 30  # small: the encoder keeps up on a 2-core machine
SECONDS = 10
SAMPLES = RATE // FPS  # audio pushed with each video frame (1/30 s)
BEEP = int(RATE * 0.1)  # 100 ms of 1 kHz at each marker
QUIET, LOUD = 0.02, 0.5  # the quiet 300 Hz tone under it (no DTX gaps), the beep
WARMUP = 2  # markers in the first seconds are not judged (streams settle)
MAX_OFFSET = 0.100  # the bound on |audio - video| at the receiver, per marker
DARK, WHITE = (24, 24, 24, 255), (255, 255, 255, 255)
# the default encoding of so small a video is 15 fps: ask for 30
VIDEO_OPTIONS = lk.TrackPublishOptions(
    source=lk.TrackSource.SOURCE_CAMERA,
    simulcast=False,
    video_max_framerate=FPS,
    video_max_bitrate=300_000,
)


@dataclass
class Measured:
    video: list[float] = field(default_factory=list)  # white-frame arrival times
    audio: list[float] = field(default_factory=list)  # beep-start arrival times
    frames: list[float] = field(default_factory=list)  # every video frame's arrival
    sent_video: list[float] = field(default_factory=list)  # marker captures (sender)
    sent_audio: list[float] = field(default_factory=list)  # beep due times (sender)
    actual_fps: list[float] = field(default_factory=list)

    def offsets(self, after: float) -> list[float]:
        """audio minus video for each video marker at or after ``after``
        (each paired with the nearest audio marker within half a second)."""
        out = []
        for v in self.video:
            if v < after or not self.audio:
                continue
            a = min(self.audio, key=lambda t: abs(t - v))
            if abs(a - v) < 0.5:
                out.append(a - v)
        return out


def solid(colour: tuple[int, int, int, int]) -> lk.VideoFrame:
    frame = lk.VideoFrame.create(W, H, lk.VideoBufferType.RGBA)
    frame.to_numpy()[:] = colour
    return frame


def audio_chunk(index: int) -> lk.AudioFrame:
    """The audio pushed with video frame ``index``: the quiet tone, plus the
    beep for the first 100 ms of every second."""
    start = index * SAMPLES
    n = np.arange(start, start + SAMPLES)
    signal = QUIET * np.sin(2 * np.pi * 300 * n / RATE)
    in_second = n % RATE
    beep = in_second < BEEP
    signal[beep] += LOUD * np.sin(2 * np.pi * 1000 * in_second[beep] / RATE)
    frame = lk.AudioFrame.create(RATE, 1, SAMPLES)
    frame.to_numpy()[:, 0] = (signal * 32767).astype(np.int16)
    return frame


async def produce(
    av: lk.AVSynchronizer, audio: lk.AudioSource, video: lk.VideoSource, out: Measured
) -> None:
    """``SECONDS`` of A/V at ``FPS``, as fast as the synchronizer takes it: each
    video frame, then the audio that starts with it (white frame and beep
    once a second). Records when the sender captures each white frame and
    when each beep is due to play out."""
    dark, white = solid(DARK), solid(WHITE)
    capture = video.capture_frame

    def spy(frame: lk.VideoFrame, *args: Any, **kwargs: Any) -> None:
        if frame is white:
            out.sent_video.append(anyio.current_time())
        capture(frame, *args, **kwargs)

    video.capture_frame = spy  # type: ignore[method-assign]
    try:
        for i in range(SECONDS * FPS):
            marker = i % FPS == 0
            await av.push(white if marker else dark, i / FPS)
            if marker:
                out.sent_audio.append(anyio.current_time() + audio.queued_duration)
                out.actual_fps.append(av.actual_fps)
            await av.push(audio_chunk(i), (i + 1) / FPS)
        await av.wait_for_playout()
        out.actual_fps.append(av.actual_fps)
    finally:
        del video.capture_frame


async def watch_video(stream: lk.VideoStream, out: Measured) -> None:
    lit = False
    async for frame in stream:
        now = anyio.current_time()
        out.frames.append(now)
        bright = float(frame.to_numpy()[::4, ::4, :3].mean()) > 128
        if bright and not lit:
            out.video.append(now)
        lit = bright


async def watch_audio(stream: lk.AudioStream, out: Measured) -> None:
    loud = False
    async for frame in stream:
        now = anyio.current_time()
        samples = np.abs(frame.to_numpy()[:, 0].astype(np.int32))
        hot = np.nonzero(samples > LOUD * 32767 / 2)[0]
        if len(hot) and not loud:  # the beep starts in this frame, at sample hot[0]
            out.audio.append(now + hot[0] / RATE)
        # the beep has ended when a whole frame is quiet again
        loud = bool(len(hot)) or (loud and samples.max() > QUIET * 32767 * 2)


@pytest.mark.integration
async def test_av_in_step_at_the_receiver(
    livekit_server: ServerInfo, livekit_token: TokenFactory
) -> None:
    """10 s of A/V at 30 fps through the synchronizer; the subscriber sees
    every marker's audio and video within 100 ms of each other (after a
    2 s warm-up) and 30 fps within 5 %."""
    m = Measured()
    async with publisher_and_subscriber(livekit_server, livekit_token) as (pub, sub):
        with sub.events() as events:
            async with (
                lk.AudioSource(RATE, 1) as audio,
                lk.VideoSource(W, H) as video,
            ):
                a_track = lk.LocalAudioTrack.create_audio_track("beeps", audio)
                v_track = lk.LocalVideoTrack.create_video_track("flashes", video)
                for track, options in [
                    (a_track, lk.TrackPublishOptions(source=lk.TrackSource.SOURCE_MICROPHONE)),
                    (v_track, VIDEO_OPTIONS),
                ]:
                    await pub.local_participant.publish_track(track, options)
                got: dict[lk.TrackKind, lk.Track] = {}
                with anyio.fail_after(15):
                    async for event in events:
                        if isinstance(event, lk.TrackSubscribed):
                            got[event.track.kind] = event.track
                            if len(got) == 2:
                                break
                a_stream = lk.AudioStream(got[lk.TrackKind.KIND_AUDIO], capacity=1000)
                v_stream = lk.VideoStream(
                    got[lk.TrackKind.KIND_VIDEO], format=lk.VideoBufferType.RGBA, capacity=500
                )
                start = anyio.current_time()
                async with anyio.create_task_group() as tg:
                    tg.start_soon(watch_video, v_stream, m)
                    tg.start_soon(watch_audio, a_stream, m)
                    with anyio.fail_after(SECONDS + 10):
                        async with lk.AVSynchronizer(
                            audio_source=audio, video_source=video, video_fps=FPS
                        ) as av:
                            await produce(av, audio, video, m)
                    tg.cancel_scope.cancel()
                a_stream.close()
                v_stream.close()
                for track in (a_track, v_track):
                    await pub.local_participant.unpublish_track(track.sid)
                    track.close()

    judged_from = start + WARMUP
    offsets = m.offsets(judged_from)
    sent = [a - v for a, v in zip(m.sent_audio, m.sent_video, strict=False)]
    window = [t for t in m.frames if m.video[0] <= t <= m.video[-1]] if m.video else []
    received_fps = (len(window) - 1) / (window[-1] - window[0]) if len(window) > 1 else 0.0
    report = (
        f"receiver offsets (ms) {[round(o * 1000) for o in m.offsets(start)]}, "
        f"sender offsets (ms) {[round(o * 1000) for o in sent]}, "
        f"received fps {received_fps:.2f} over {len(window)} frames "
        f"({len(m.frames)} frames, {len(m.video)} flashes, {len(m.audio)} beeps), "
        f"publisher actual_fps {[round(f, 1) for f in m.actual_fps]}"
    )
    print(report)
    assert len(offsets) >= SECONDS - WARMUP - 1, report  # at most one marker lost
    assert max(abs(o) for o in offsets) <= MAX_OFFSET, report
    assert abs(received_fps - FPS) <= FPS * 0.05, report
    assert all(abs(f - FPS) <= FPS * 0.05 for f in m.actual_fps[2:]), report
    # the synchronizer's own bound (lock slack 16.7 ms + the loop's wakeup latency)
    assert max(abs(o) for o in sent) <= 0.050, report


class Recorder:
    """Records which frames a video source captured, and when."""

    def __init__(self, video: lk.VideoSource) -> None:
        self.frames: list[lk.VideoFrame] = []
        self.times: list[float] = []
        capture = video.capture_frame

        def spy(frame: lk.VideoFrame, *args: Any, **kwargs: Any) -> None:
            self.frames.append(frame)
            self.times.append(anyio.current_time())
            capture(frame, *args, **kwargs)

        video.capture_frame = spy  # type: ignore[method-assign]


def frames(n: int) -> list[lk.VideoFrame]:
    return [lk.VideoFrame.create(16, 16, lk.VideoBufferType.RGBA) for _ in range(n)]


async def test_video_alone_is_paced_on_a_grid() -> None:
    start_handles = lk.live_native_handles()
    async with lk.AudioSource(RATE, 1) as audio, lk.VideoSource(16, 16) as video:
        seen = Recorder(video)
        av = lk.AVSynchronizer(audio_source=audio, video_source=video, video_fps=30)
        with pytest.raises(RuntimeError, match="async with"):
            await av.push(frames(1)[0])
        sent = frames(16)
        with anyio.fail_after(5):
            async with av:
                for frame in sent:  # as fast as the queue takes them
                    await av.push(frame)
                await av.wait_for_playout()
                assert abs(av.actual_fps - 30) < 1.5
        assert seen.frames == sent
        gaps = np.diff(seen.times)
        # an absolute grid: 15 intervals take 15/30 s (no drift accumulates)
        assert abs(seen.times[-1] - seen.times[0] - 15 / 30) < 0.02, gaps
        assert gaps.min() > 0.015, gaps  # no burst
        with pytest.raises(lk.ResourceClosedError):
            await av.push(sent[0])
    await wait_handles(start_handles)


async def test_cancelled_push_queues_nothing() -> None:
    start_handles = lk.live_native_handles()
    async with lk.AudioSource(RATE, 1) as audio, lk.VideoSource(16, 16) as video:
        seen = Recorder(video)
        f = frames(5)
        with anyio.fail_after(5):
            # 10 fps, room for 3 frames: f0 is captured at once, f1-f3 wait
            async with lk.AVSynchronizer(
                audio_source=audio, video_source=video, video_fps=10, video_queue_size_ms=300
            ) as av:
                for frame in f[:4]:
                    await av.push(frame)
                with anyio.move_on_after(0.02) as scope:
                    await av.push(f[4])  # waits for room (100 ms)
                await av.wait_for_playout()
        # cancelled while waiting: not queued (a push that got room just
        # before the cancel completed instead, and was captured)
        assert seen.frames == (f[:4] if scope.cancelled_caught else f), scope.cancelled_caught
    await wait_handles(start_handles)


async def test_leaving_stops_at_once_with_frames_queued() -> None:
    start_handles = lk.live_native_handles()
    async with lk.AudioSource(RATE, 1) as audio, lk.VideoSource(16, 16) as video:
        seen = Recorder(video)
        f = frames(5)
        refused: list[BaseException] = []

        async def blocked_push(av: lk.AVSynchronizer) -> None:
            try:
                await av.push(f[4])
            except lk.ResourceClosedError as exc:
                refused.append(exc)

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                # 2 fps: the queued frames would take 1.5 s to play
                async with lk.AVSynchronizer(
                    audio_source=audio, video_source=video, video_fps=2, video_queue_size_ms=1500
                ) as av:
                    for frame in f[:4]:
                        await av.push(frame)
                    tg.start_soon(blocked_push, av)
                    await anyio.sleep(0.05)
                    leaving = anyio.current_time()
                left = anyio.current_time() - leaving
        assert left < 0.5, left
        assert seen.frames == f[:1]  # the queued ones were dropped, not captured
        assert len(refused) == 1  # the push waiting for room was refused
        await anyio.sleep(0.6)  # no stray task captures anything later
        assert seen.frames == f[:1]
        with pytest.raises(lk.ResourceClosedError):
            await av.push(f[0])
    await wait_handles(start_handles)


async def test_clear_queue_and_reset() -> None:
    start_handles = lk.live_native_handles()
    async with lk.AudioSource(RATE, 1) as audio, lk.VideoSource(16, 16) as video:
        seen = Recorder(video)
        f = frames(5)
        with anyio.fail_after(5):
            async with lk.AVSynchronizer(
                audio_source=audio, video_source=video, video_fps=2, video_queue_size_ms=1500
            ) as av:
                for frame in f[:4]:
                    await av.push(frame)
                await av.clear_queue()
                with anyio.fail_after(0.2):
                    await av.wait_for_playout()  # nothing left to play
                assert seen.frames == f[:1]
                av.reset()  # the grid restarts: the next frame goes at once
                await av.push(f[4])
                with anyio.fail_after(0.2):
                    await av.wait_for_playout()
                assert seen.frames == [f[0], f[4]]
    await wait_handles(start_handles)


async def test_errors_propagate_as_they_are() -> None:
    start_handles = lk.live_native_handles()
    async with lk.AudioSource(RATE, 1) as audio:
        video = lk.VideoSource(16, 16)
        f = frames(2)
        for bad in ({"video_fps": 0}, {"video_fps": 30, "video_queue_size_ms": 0}):
            with pytest.raises(ValueError):  # the video queue is always bounded
                lk.AVSynchronizer(audio_source=audio, video_source=video, **bad)
        av = lk.AVSynchronizer(audio_source=audio, video_source=video, video_fps=30)
        with pytest.raises(ValueError, match="mine"):  # not wrapped in a group
            async with av:
                await av.push(f[0])
                raise ValueError("mine")
        with pytest.raises(RuntimeError):
            await av.__aenter__()  # once only
        # the pacing task fails (its video source was closed): the next
        # push raises that error, and so does leaving a block that did not see it
        with anyio.fail_after(5):
            for pushes in (2, 1):
                with pytest.raises(lk.ResourceClosedError, match="video source"):
                    async with lk.AVSynchronizer(
                        audio_source=audio, video_source=video, video_fps=30
                    ) as av:
                        video.close()
                        for frame in f[:pushes]:
                            await av.push(frame)
                        await anyio.sleep(0.05)
    await wait_handles(start_handles)
