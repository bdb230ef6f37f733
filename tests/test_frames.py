"""Frames, sources and the resampler against the real native core (no server)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import lkrtc_trio as lk


def tone(freq: float, rate: int, seconds: float, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (amplitude * 32767 * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def peak(samples: np.ndarray, rate: int) -> float:
    spec = np.abs(np.fft.rfft(samples.astype(float) * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[np.argmax(spec)])


def test_audio_frame_views_share_memory() -> None:
    frame = lk.AudioFrame.create(48000, 2, 480)
    assert frame.data.format == "h" and len(frame.data) == 960
    assert not frame.data.readonly
    frame.data[1] = 1234  # channel 1 of sample 0
    arr = frame.to_numpy()
    assert arr.shape == (480, 2) and arr[0, 1] == 1234  # same buffer, no copy
    arr[5, 0] = -7
    assert frame.data[10] == -7
    assert frame.duration == pytest.approx(0.01)
    readonly = lk.AudioFrame(bytes(960 * 2), 48000, 2, 480)
    assert readonly.data.readonly
    with pytest.raises(ValueError):
        lk.AudioFrame(bytes(10), 48000, 1, 480)
    with pytest.raises(ValueError):
        lk.AudioFrame.create(0, 1, 10)


def test_audio_frame_from_numpy_shares_memory_and_checks_dtype() -> None:
    stereo = np.zeros((480, 2), dtype=np.int16)
    frame = lk.AudioFrame.from_numpy(stereo, 48000)
    assert (frame.num_channels, frame.samples_per_channel) == (2, 480)
    frame.data[3] = 99  # sample 1, channel 1: written through to the array
    assert stereo[1, 1] == 99
    assert frame.to_numpy().base is not None and np.shares_memory(frame.to_numpy(), stereo)
    mono = lk.AudioFrame.from_numpy(np.arange(160, dtype=np.int16), 16000)
    assert (mono.num_channels, mono.samples_per_channel, mono.data[159]) == (1, 160, 159)
    strided = np.arange(960, dtype=np.int16).reshape(480, 2)[:, ::-1]  # not contiguous: copied
    copied = lk.AudioFrame.from_numpy(strided, 48000)
    assert copied.to_numpy()[0].tolist() == [1, 0] and not np.shares_memory(
        copied.to_numpy(), strided
    )
    with pytest.raises(TypeError, match="int16"):
        lk.AudioFrame.from_numpy(np.zeros(480, dtype=np.float32), 48000)
    with pytest.raises(ValueError):
        lk.AudioFrame.from_numpy(np.zeros((2, 2, 2), dtype=np.int16), 48000)


def test_audio_frame_userdata_wav_and_combine() -> None:
    samples = tone(440, 16000, 0.03)
    frames = [
        lk.AudioFrame.from_numpy(samples[i : i + 160].copy(), 16000) for i in range(0, 480, 160)
    ]
    assert frames[0].userdata == {}
    frames[0].userdata["speaker"] = "alice"
    assert frames[0].userdata == {"speaker": "alice"} and frames[1].userdata == {}
    tagged = lk.AudioFrame(bytes(4), 8000, 1, 2, userdata={"seq": 7})
    assert tagged.userdata["seq"] == 7

    combined = lk.combine_audio_frames(frames)
    assert (combined.sample_rate, combined.num_channels, combined.samples_per_channel) == (
        16000,
        1,
        480,
    )
    assert np.array_equal(combined.to_numpy()[:, 0], samples)
    assert lk.combine_audio_frames(frames[0]) is frames[0]
    assert lk.combine_audio_frames(iter(frames)).samples_per_channel == 480
    with pytest.raises(ValueError, match="no frames"):
        lk.combine_audio_frames([])
    with pytest.raises(ValueError, match="frame 1"):
        lk.combine_audio_frames([frames[0], lk.AudioFrame.create(48000, 1, 480)])
    with pytest.raises(ValueError, match="frame 1"):
        lk.combine_audio_frames([frames[0], lk.AudioFrame.create(16000, 2, 160)])

    import io
    import wave

    with wave.open(io.BytesIO(combined.to_wav_bytes()), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, 16000)
        assert wav.getnframes() == 480
        assert np.array_equal(np.frombuffer(wav.readframes(480), dtype=np.int16), samples)


def test_video_frame_planes_numpy_and_native_conversion() -> None:
    rgba = lk.VideoFrame.create(64, 48, lk.VideoBufferType.RGBA)
    pixels = rgba.to_numpy()
    assert pixels.shape == (48, 64, 4)
    pixels[:] = (200, 40, 10, 255)
    i420 = rgba.convert(lk.VideoBufferType.I420)
    assert i420.type == lk.VideoBufferType.I420
    y, u, v = (i420.get_plane(i) for i in range(3))
    assert y is not None and u is not None and v is not None
    assert (len(y), len(u), len(v)) == (64 * 48, 32 * 24, 32 * 24)
    assert i420.get_plane(3) is None
    back = i420.convert(lk.VideoBufferType.RGBA).to_numpy()
    assert np.abs(back[..., :3].astype(int).mean(axis=(0, 1)) - (200, 40, 10)).max() < 12
    with pytest.raises(ValueError):
        lk.VideoFrame(64, 48, lk.VideoBufferType.RGBA, bytes(100))
    assert lk.live_native_handles() == 0  # conversion buffers released at once


def test_resampler_keeps_the_tone_and_releases_its_handle() -> None:
    samples = tone(440, 48000, 1.0)
    with lk.AudioResampler(48000, 16000, num_channels=1, quality=3) as rs:
        out: list[np.ndarray] = []
        for i in range(0, len(samples), 480):
            chunk = samples[i : i + 480].copy()
            frame = lk.AudioFrame(chunk.tobytes(), 48000, 1, len(chunk))
            out += [f.to_numpy()[:, 0].copy() for f in rs.push(frame)]
        out += [f.to_numpy()[:, 0].copy() for f in rs.flush()]
        with pytest.raises(ValueError):
            rs.push(lk.AudioFrame.create(44100, 1, 441))
    resampled = np.concatenate(out)
    assert abs(len(resampled) - 16000) < 400
    assert abs(peak(resampled[2000:], 16000) - 440) < 5
    assert lk.live_native_handles() == 0


async def test_audio_source_validates_and_closes() -> None:
    with pytest.raises(ValueError):
        lk.AudioSource(48000, 3)
    source = lk.AudioSource(48000, 1, queue_size_ms=100)
    track = lk.LocalAudioTrack.create_audio_track("t", source)
    assert track.kind == lk.TrackKind.KIND_AUDIO and track.name == "t"
    assert lk.live_native_handles() == 2
    with pytest.raises(ValueError):
        await source.capture_frame(lk.AudioFrame.create(16000, 1, 160))
    frame = lk.AudioFrame.create(48000, 1, 480)
    await source.capture_frame(frame)  # no room needed: the source queues it
    assert source.queued_duration > 0
    source.clear_queue()
    await source.wait_for_playout()
    track.close()
    source.close()
    # closed by us: a closed-resource error of its own, not a room error
    with pytest.raises(lk.ResourceClosedError):
        await source.capture_frame(frame)
    with pytest.raises(lk.ResourceClosedError):
        lk.LocalAudioTrack.create_audio_track("again", source)
    assert not issubclass(lk.ResourceClosedError, lk.RoomClosedError)
    assert lk.live_native_handles() == 0
    video = lk.VideoSource(32, 32)
    vtrack = lk.LocalVideoTrack.create_video_track("v", video)
    video.capture_frame(lk.VideoFrame.create(32, 32, lk.VideoBufferType.I420))
    async with vtrack, video:
        assert vtrack.kind == lk.TrackKind.KIND_VIDEO
    assert lk.live_native_handles() == 0


class _RecordingReads:
    """A backend stand-in that records which native ranges would be read."""

    def __init__(self) -> None:
        self.reads: list[tuple[int, int]] = []
        self.released: list[int] = []
        self.backend = self

    def read(self, address: int, length: int) -> bytes:
        self.reads.append((address, length))
        return bytes(length)

    def read_into_bytearray(self, address: int, length: int) -> bytearray:
        self.reads.append((address, length))
        return bytearray(length)

    def _release(self, handle: int) -> None:
        self.released.append(handle)


def _owned_buffer(width: int, height: int, planes: list[tuple[int, int, int]]) -> Any:
    from lkrtc_trio._proto import video_frame_pb2

    owned = video_frame_pb2.OwnedVideoBuffer()
    owned.handle.id = 42
    info = owned.info
    info.type = video_frame_pb2.VideoBufferType.I420
    info.width, info.height = width, height
    info.data_ptr = 0x1000
    for ptr, stride, size in planes:
        comp = info.components.add()
        comp.data_ptr, comp.stride, comp.size = ptr, stride, size
    return owned


def test_native_video_buffers_are_checked_before_any_read() -> None:
    from lkrtc_trio._video import VideoFrame

    # a padded I420 4x2 frame (strides 8/8/8): read row by row, within bounds
    rt = _RecordingReads()
    ok = _owned_buffer(4, 2, [(0x1000, 8, 16), (0x2000, 8, 8), (0x3000, 8, 8)])
    frame = VideoFrame._from_native(rt, ok)
    assert (frame.width, frame.height) == (4, 2)
    assert rt.released == [42]
    for address, length in rt.reads:  # every read inside its plane
        plane = max(
            (p for p in ok.info.components if p.data_ptr <= address), key=lambda p: p.data_ptr
        )
        assert address + length <= plane.data_ptr + plane.size
    bad = [
        _owned_buffer(4, 2, [(0x1000, 2, 16), (0x2000, 8, 8), (0x3000, 8, 8)]),  # stride < row
        _owned_buffer(4, 2, [(0x1000, 8, 9), (0x2000, 8, 8), (0x3000, 8, 8)]),  # too short
        _owned_buffer(4, 2, [(0x1000, 8, 16), (0x2000, 8, 8)]),  # a plane missing
        _owned_buffer(4, 2, [(0, 8, 16), (0x2000, 8, 8), (0x3000, 8, 8)]),  # null plane
        _owned_buffer(0, 2, []),  # no pixels
        _owned_buffer(100_000, 2, []),  # absurd size
    ]
    for owned in bad:
        rt = _RecordingReads()
        with pytest.raises(lk.NativeError, match="malformed video buffer"):
            VideoFrame._from_native(rt, owned)
        assert rt.reads == []  # refused before reading anything
        assert rt.released == [42]  # the handle is released all the same


async def test_every_closeable_object_supports_async_with() -> None:
    source = lk.AudioSource(48000, 1)
    async with (
        lk.AudioResampler(48000, 16000) as rs,
        source,
        lk.LocalAudioTrack.create_audio_track("t", source) as track,
        lk.VideoSource(16, 16) as video,
    ):
        assert lk.live_native_handles() == 4
    assert track.closed and lk.live_native_handles() == 0
    with pytest.raises(lk.ResourceClosedError):
        rs.push(lk.AudioFrame.create(48000, 1, 480))
    with pytest.raises(lk.ResourceClosedError):
        video.capture_frame(lk.VideoFrame.create(16, 16, lk.VideoBufferType.I420))


def test_frame_metadata_and_publish_features_are_validated() -> None:
    from lkrtc_trio._proto import ffi_pb2

    meta = lk.FrameMetadata(user_timestamp=2**64 - 1, frame_id=2**32 - 1, user_data=b"\x00x")
    for bad in (
        {"user_timestamp": 2**64},
        {"user_timestamp": -1},
        {"frame_id": 2**32},
        {"frame_id": -1},
    ):
        with pytest.raises(ValueError):
            lk.FrameMetadata(**bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        lk.FrameMetadata(user_data="text")  # type: ignore[arg-type]
    with pytest.raises(AttributeError):
        meta.frame_id = 3  # type: ignore[misc]  # frozen
    req = ffi_pb2.FfiRequest()
    meta._fill(req.capture_video_frame.metadata)
    assert lk.FrameMetadata._from_proto(req.capture_video_frame.metadata) == meta
    assert lk.FrameMetadata._from_proto(ffi_pb2.FfiRequest().capture_video_frame.metadata) == (
        lk.FrameMetadata()
    )
    options = lk.TrackPublishOptions(
        frame_metadata_features=(
            lk.FrameMetadataFeature.FMF_FRAME_ID,
            lk.FrameMetadataFeature.FMF_USER_DATA,
        )
    )
    msg = ffi_pb2.FfiRequest().publish_track.options
    options._fill(msg)
    assert list(msg.frame_metadata_features) == [1, 2]
    bad_options = lk.TrackPublishOptions(frame_metadata_features=(7,))  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        bad_options._fill(ffi_pb2.FfiRequest().publish_track.options)
    with pytest.raises(TypeError):
        lk.NoiseCancellationOptions("nc", {"not json": {1, 2}})
    assert lk.NoiseCancellationOptions("nc").options == {}


def test_video_source_checks_capture_arguments() -> None:
    source = lk.VideoSource(16, 16)
    try:
        frame = lk.VideoFrame.create(16, 16, lk.VideoBufferType.RGBA)
        with pytest.raises(ValueError):
            source.capture_frame(frame, timestamp_us=-1)
        with pytest.raises(ValueError):
            source.capture_frame(frame, rotation=9)
        source.capture_frame(
            frame,
            timestamp_us=1,
            rotation=lk.VideoRotation.VIDEO_ROTATION_180,
            metadata=lk.FrameMetadata(frame_id=1),
        )
    finally:
        source.close()
    assert lk.live_native_handles() == 0
