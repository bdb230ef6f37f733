"""A participant driven by the official asyncio SDK (``livekit.rtc``), for interop tests.

Usage: ``python official_peer.py URL TOKEN``

Protocol (JSON lines): every room event and every command reply is written to stdout as one
JSON object per line; commands are read from stdin, one JSON object per line, each with an
``"id"``. Replies look like ``{"event": "reply", "id": ..., "ok": bool, "result": ...,
"error": ..., "code": ...}``. Stdin EOF or a ``disconnect`` command disconnects and exits 0;
a failed connect writes ``{"event": "error", ...}`` and exits 3. Logs go to stderr only.

Commands (``"cmd"``): ``list``, ``publish_data``, ``perform_rpc``, ``register_rpc`` (behaviour
echo/error/raise/sleep), ``unregister_rpc``, ``participant`` (a participant's identity, sid,
name, metadata, attributes and kind as this peer sees it), ``publish_dtmf``,
``publish_transcription``, ``set_metadata``, ``set_name``, ``set_attributes``, ``disconnect``;
media: ``record_audio`` (identity, seconds, sample_rate, num_channels, window, wait: per-window
dominant frequency and RMS of a participant's audio, never the audio itself), ``record_video``
(identity, seconds, wait: mean [r, g, b] of each frame and the first frame's size, and
``metadata``: each frame's [rotation, user_timestamp, frame_id, user_data hex] with None for
a field the frame did not carry), ``publish_video`` (frames, fps, width, height, rotation,
name, features: a list of ``FrameMetadataFeature`` values; frame i is grey level i % 256 and
carries ``FrameMetadata(user_timestamp=10**12 + i, frame_id=i + 1, user_data=b"f%d" % i)``;
unpublished when sent; replies with its sid),
``publish_tone`` (frequency, seconds, sample_rate, amplitude, name: a sine tone published as a
microphone track, unpublished when it has played; replies with its sid).
Data streams (replies describe the stream sent: ``stream_id``, ``topic``, ``mime_type``,
``size``, ``attributes``, ``name`` for bytes, and the ``sha256`` hex and ``length`` of what
was written): ``register_text_stream`` / ``register_byte_stream`` (topic, inline_max: a
handler that reads each incoming stream whole and emits ``text_stream_opened`` /
``byte_stream_opened`` at once, then ``text_stream_received`` (identity, stream_id, topic,
attributes as of the end, mime_type, size, length in characters, bytes, sha256, chunks, and
``text`` itself unless longer than inline_max characters) / ``byte_stream_received`` (the
same with name, length in bytes and sha256, never the bytes), or ``stream_failed`` (kind,
identity, stream_id, topic, description of the StreamError, ``read``: characters or bytes
read before it, ``partial`` text when short) when reading raises),
``unregister_text_stream`` / ``unregister_byte_stream`` (topic), ``send_text`` (text, topic,
attributes, destination_identities), ``stream_text`` (parts, topic, attributes,
destination_identities, delay between writes, close_attributes; abort_reason: close with
that reason instead; hold: never close, the stream stays open until the peer leaves),
``send_bytes`` / ``stream_bytes`` (name, size, seed: the content is
``seeded_bytes(seed, size)``; mime_type, topic, attributes, destination_identities;
stream_bytes also chunk_size, delay, total_size, abort_reason), ``send_file`` (path, topic,
attributes, destination_identities), ``send_many_text_streams`` (count, parts, part_chars,
delay, topic, key_prefix, destination_identities: ``count`` concurrent text streams, each
with the attribute ``stream`` = key_prefix + its index and ``parts`` writes of
``stream_part(key, j, part_chars)`` with ``delay`` seconds between, so that their writes
interleave; replies with each stream's key, stream_id, text and sha256) and
``open_streams`` (readers and writers of this peer still open).
Events: ``connected``, ``participant_connected``/``_disconnected``, ``data_received``,
``participant_metadata_changed``/``_name_changed``/``_attributes_changed``,
``track_published``/``_unpublished``/``_subscribed``/``_unsubscribed``/``_muted``/``_unmuted``
(identity, track_sid, kind, name, source), ``sip_dtmf_received``, ``transcription_received``,
``rpc_invoked``, ``rpc_returned`` (a handler returned its payload), ``record_started`` (a
recording's stream exists), ``record_first_frame`` (of a video recording), ``tone_published``,
``connection_state_changed``, ``disconnected``, ``e2ee_state_changed`` (identity,
state: the native ``EncryptionState`` value), ``participant_encryption_status_changed``
(identity, is_encrypted).

End-to-end encryption: with ``OFFICIAL_PEER_E2EE_KEY`` (the shared key, hex) in the
environment the peer connects with ``RoomOptions(encryption=E2EEOptions(...))`` in
shared-key mode (``OFFICIAL_PEER_E2EE_FAILURE_TOLERANCE``: its ``failure_tolerance``).
Commands: ``e2ee_export_shared_key`` / ``e2ee_ratchet_shared_key`` (key_index; reply:
the key in hex), ``e2ee_frame_cryptors`` (reply: participant_identity, track_sid,
key_index, enabled of each).

This runs in its own process because one process cannot initialise the native library twice.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import logging
import os
import sys
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TextIO

import numpy as np
from livekit import rtc
from livekit.rtc._proto import video_frame_pb2 as proto_video

log = logging.getLogger("official_peer")

JsonDict = dict[str, Any]

_out: TextIO | None = None


def _take_stdout() -> None:
    """Keep the protocol channel private: anything else (native code included) writing to
    fd 1 would corrupt it, so fd 1 is pointed at stderr and the protocol uses a duplicate."""
    global _out
    _out = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr


def emit(event: str, **fields: Any) -> None:
    global _out
    if _out is None:
        return
    try:
        _out.write(json.dumps({"event": event, **fields}) + "\n")
        _out.flush()
    except (OSError, ValueError):
        _out = None
        log.warning("stdout is gone; dropping events")


def _start_stdin_reader(
    loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[bytes | None]
) -> None:
    # A daemon thread doing raw os.read() calls: works for any stdin kind, and unlike
    # sys.stdin it holds no buffer lock that would abort interpreter shutdown.
    def run() -> None:
        buf = b""
        try:
            while chunk := os.read(0, 65536):
                *lines, buf = (buf + chunk).split(b"\n")
                for line in lines:
                    loop.call_soon_threadsafe(queue.put_nowait, line)
            if buf:
                loop.call_soon_threadsafe(queue.put_nowait, buf)
        except OSError:
            log.exception("stdin read failed")
        except RuntimeError:  # the loop is closed: we are exiting anyway
            return
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(queue.put_nowait, None)

    threading.Thread(target=run, name="stdin-reader", daemon=True).start()


def _ident(p: rtc.Participant | None) -> str | None:
    return None if p is None else p.identity


def _publication_fields(p: rtc.Participant, pub: rtc.TrackPublication) -> JsonDict:
    """What track events report: whose track, its sid, kind, name and source."""
    return {
        "identity": p.identity,
        "track_sid": pub.sid,
        "kind": int(pub.kind),
        "name": pub.name,
        "source": int(pub.source),
    }


def _attach_room_events(room: rtc.Room) -> None:
    def on_participant_connected(p: rtc.RemoteParticipant) -> None:
        emit(
            "participant_connected",
            identity=p.identity,
            sid=p.sid,
            name=p.name,
            metadata=p.metadata,
            attributes=dict(p.attributes),
        )

    def on_participant_disconnected(p: rtc.RemoteParticipant) -> None:
        emit("participant_disconnected", identity=p.identity, reason=p.disconnect_reason)

    def on_data_received(packet: rtc.DataPacket) -> None:
        emit(
            "data_received",
            payload_b64=base64.b64encode(packet.data).decode("ascii"),
            topic=packet.topic,
            kind=int(packet.kind),
            identity=_ident(packet.participant),
        )

    def on_connection_state_changed(state: int) -> None:
        emit("connection_state_changed", state=int(state))

    def on_disconnected(reason: int) -> None:
        emit("disconnected", reason=int(reason))

    def on_metadata_changed(p: rtc.Participant, old: str, new: str) -> None:
        emit("participant_metadata_changed", identity=p.identity, old=old, metadata=new)

    def on_name_changed(p: rtc.Participant, old: str, new: str) -> None:
        emit("participant_name_changed", identity=p.identity, old=old, name=new)

    def on_attributes_changed(changed: dict[str, str], p: rtc.Participant) -> None:
        emit(
            "participant_attributes_changed",
            identity=p.identity,
            changed=dict(changed),
            attributes=dict(p.attributes),
        )

    def on_track_published(pub: rtc.RemoteTrackPublication, p: rtc.RemoteParticipant) -> None:
        emit("track_published", **_publication_fields(p, pub), muted=pub.muted)

    def on_track_unpublished(pub: rtc.RemoteTrackPublication, p: rtc.RemoteParticipant) -> None:
        emit("track_unpublished", **_publication_fields(p, pub))

    def on_track_subscribed(
        track: rtc.Track, pub: rtc.RemoteTrackPublication, p: rtc.RemoteParticipant
    ) -> None:
        emit("track_subscribed", **_publication_fields(p, pub))

    def on_track_unsubscribed(
        track: rtc.Track | None, pub: rtc.RemoteTrackPublication, p: rtc.RemoteParticipant
    ) -> None:
        emit("track_unsubscribed", **_publication_fields(p, pub))

    def on_track_muted(p: rtc.Participant, pub: rtc.TrackPublication) -> None:
        emit("track_muted", **_publication_fields(p, pub))

    def on_track_unmuted(p: rtc.Participant, pub: rtc.TrackPublication) -> None:
        emit("track_unmuted", **_publication_fields(p, pub))

    def on_sip_dtmf_received(dtmf: rtc.SipDTMF) -> None:
        emit(
            "sip_dtmf_received",
            code=int(dtmf.code),
            digit=dtmf.digit,
            identity=_ident(dtmf.participant),
        )

    def on_transcription_received(
        segments: list[rtc.TranscriptionSegment],
        p: rtc.Participant | None,
        pub: rtc.TrackPublication | None,
    ) -> None:
        emit(
            "transcription_received",
            identity=_ident(p),
            track_sid=None if pub is None else pub.sid,
            segments=[
                {
                    "id": s.id,
                    "text": s.text,
                    "start_time": int(s.start_time),
                    "end_time": int(s.end_time),
                    "final": bool(s.final),
                    "language": s.language,
                }
                for s in segments
            ],
        )

    def on_e2ee_state_changed(p: rtc.Participant | None, state: int) -> None:
        emit("e2ee_state_changed", identity=_ident(p), state=int(state))

    def on_encryption_status_changed(p: rtc.Participant | None, is_encrypted: bool) -> None:
        emit(
            "participant_encryption_status_changed",
            identity=_ident(p),
            is_encrypted=bool(is_encrypted),
        )

    handlers: dict[str, Callable[..., None]] = {
        "e2ee_state_changed": on_e2ee_state_changed,
        "participant_encryption_status_changed": on_encryption_status_changed,
        "participant_connected": on_participant_connected,
        "participant_disconnected": on_participant_disconnected,
        "data_received": on_data_received,
        "connection_state_changed": on_connection_state_changed,
        "disconnected": on_disconnected,
        "participant_metadata_changed": on_metadata_changed,
        "participant_name_changed": on_name_changed,
        "participant_attributes_changed": on_attributes_changed,
        "track_published": on_track_published,
        "track_unpublished": on_track_unpublished,
        "track_subscribed": on_track_subscribed,
        "track_unsubscribed": on_track_unsubscribed,
        "track_muted": on_track_muted,
        "track_unmuted": on_track_unmuted,
        "sip_dtmf_received": on_sip_dtmf_received,
        "transcription_received": on_transcription_received,
    }
    for name, handler in handlers.items():
        room.on(name, handler)  # type: ignore[arg-type]  # names are valid EventTypes


def _rpc_handler(
    cmd: JsonDict,
) -> Callable[[rtc.RpcInvocationData], Awaitable[str]]:
    behaviour = str(cmd.get("behaviour", "echo"))
    if behaviour not in ("echo", "error", "raise", "sleep"):
        raise ValueError(f"unknown rpc behaviour {behaviour!r}")

    async def handler(data: rtc.RpcInvocationData) -> str:
        emit(
            "rpc_invoked",
            method=data.method,
            caller=data.caller_identity,
            payload=data.payload,
            request_id=data.request_id,
            response_timeout=data.response_timeout,
        )
        if behaviour == "error":
            raise rtc.RpcError(
                int(cmd.get("code", 2000)), str(cmd.get("message", "error")), cmd.get("data")
            )
        if behaviour == "raise":
            raise RuntimeError(str(cmd.get("message", "handler raised")))
        if behaviour == "sleep":
            await asyncio.sleep(float(cmd.get("seconds", 1.0)))
        # written before the SDK sends the response, so it precedes any later reply
        emit("rpc_returned", method=data.method, request_id=data.request_id)
        return data.payload

    return handler


def _participant_info(p: rtc.Participant) -> JsonDict:
    return {
        "identity": p.identity,
        "sid": p.sid,
        "name": p.name,
        "metadata": p.metadata,
        "attributes": dict(p.attributes),
        "kind": int(p.kind),
    }


# -- media -------------------------------------------------------------------------------


def _dominant_frequency(segment: np.ndarray[Any, Any], sample_rate: int) -> float:
    """Frequency (Hz) of the strongest rfft bin of ``segment`` under a Hann window,
    refined by parabolic interpolation of the log magnitudes around the peak."""
    n = len(segment)
    spectrum = np.abs(np.fft.rfft(segment * np.hanning(n)))
    k = int(np.argmax(spectrum))
    offset = 0.0
    if 0 < k < len(spectrum) - 1:
        a, b, c = np.log(spectrum[k - 1 : k + 2] + 1e-12)
        denom = a - 2 * b + c
        if denom < 0:
            offset = float(0.5 * (a - c) / denom)
    return (k + offset) * sample_rate / n


def analyse_audio(samples: np.ndarray[Any, Any], sample_rate: int, window: float) -> JsonDict:
    """Per non-overlapping window of ``window`` seconds: dominant frequency and RMS
    (in int16 sample units) of a mono float signal."""
    size = max(2, round(window * sample_rate))
    freqs: list[float] = []
    rms: list[float] = []
    for start in range(0, len(samples) - size + 1, size):
        segment = samples[start : start + size]
        freqs.append(round(_dominant_frequency(segment, sample_rate), 2))
        rms.append(round(float(np.sqrt(np.mean(segment**2))), 2))
    return {"windows": freqs, "rms": rms, "window_samples": size}


async def _close_stream(stream: rtc.AudioStream | rtc.VideoStream) -> None:
    """Closes a stream, giving up after 5 s (closing waits for its end of stream)."""
    try:
        await asyncio.wait_for(stream.aclose(), 5)
    except Exception:
        log.exception("closing %r failed", stream)


def _mean_colour(frame: rtc.VideoFrame, step: int = 4) -> list[int]:
    """Mean [r, g, b] of an RGBA frame, over every ``step``-th pixel of every
    ``step``-th row."""
    pixels = np.frombuffer(frame.data, dtype=np.uint8)[: frame.width * frame.height * 4]
    rgb = pixels.reshape(frame.height, frame.width, 4)[::step, ::step, :3]
    return [round(float(v)) for v in rgb.mean(axis=(0, 1))]


# -- data streams ------------------------------------------------------------------------

#: characters a ``stream_part`` draws from: 1, 2, 3 and 4 UTF-8 bytes each
PART_ALPHABET = "abcxyz éüñ 你好世界 🎉🚀"


def seeded_bytes(seed: int | str, size: int) -> bytes:
    """``size`` deterministic bytes: SHA-256 of ``"{seed}:{k}"`` for k = 0, 1, ...,
    concatenated and cut to ``size``."""
    blocks = (size + 31) // 32
    return b"".join(hashlib.sha256(f"{seed}:{k}".encode()).digest() for k in range(blocks))[:size]


def stream_part(key: str, index: int, chars: int) -> str:
    """Part ``index`` of the stream ``key``: a marker naming both, then ``chars``
    deterministic characters of mixed UTF-8 widths."""
    noise = seeded_bytes(f"{key}#{index}", chars)
    body = "".join(PART_ALPHABET[b % len(PART_ALPHABET)] for b in noise)
    return f"<{key}#{index}>{body}"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _info_fields(info: rtc.TextStreamInfo | rtc.ByteStreamInfo) -> JsonDict:
    fields: JsonDict = {
        "stream_id": info.stream_id,
        "topic": info.topic,
        "mime_type": info.mime_type,
        "size": info.size,
        "timestamp": info.timestamp,
        "attributes": dict(info.attributes or {}),
    }
    if isinstance(info, rtc.ByteStreamInfo):
        fields["name"] = info.name
    return fields


def _str_dict(value: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in dict(value or {}).items()}


def _identities(cmd: JsonDict) -> list[str] | None:
    ids = cmd.get("destination_identities")
    return None if not ids else [str(i) for i in ids]


class Peer:
    def __init__(self, room: rtc.Room) -> None:
        self.room = room
        self.stop = asyncio.Event()
        self.tasks: set[asyncio.Task[None]] = set()
        #: stream writers opened and not closed (``hold`` keeps them open)
        self.open_writers: set[rtc.TextStreamWriter | rtc.ByteStreamWriter] = set()
        #: incoming streams being read
        self.open_readers = 0

    def spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def remote_identities(self) -> list[str]:
        return sorted(p.identity for p in self.room.remote_participants.values())

    async def subscribed_track(
        self, identity: str, kind: rtc.TrackKind.ValueType, timeout: float
    ) -> tuple[rtc.RemoteTrack, rtc.RemoteTrackPublication]:
        """The first subscribed track of ``kind`` that ``identity`` publishes, waiting up
        to ``timeout`` seconds for one. Raises TimeoutError."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            p = self.room.remote_participants.get(identity)
            for pub in [] if p is None else list(p.track_publications.values()):
                if pub.kind == kind and pub.track is not None:
                    return pub.track, pub
            if loop.time() > deadline:
                raise TimeoutError(f"no subscribed track of kind {kind} from {identity!r}")
            await asyncio.sleep(0.02)

    async def record_audio(self, cmd: JsonDict) -> JsonDict:
        """Reads ``seconds`` of a participant's audio track and returns its analysis
        (never the audio). Emits ``record_started`` once the stream exists."""
        identity = str(cmd["identity"])
        seconds = float(cmd["seconds"])
        sample_rate = int(cmd.get("sample_rate", 48000))
        num_channels = int(cmd.get("num_channels", 1))
        window = float(cmd.get("window", 0.1))
        wait = float(cmd.get("wait", 10.0))
        track, pub = await self.subscribed_track(identity, rtc.TrackKind.KIND_AUDIO, wait)
        stream = rtc.AudioStream(track, sample_rate=sample_rate, num_channels=num_channels)
        emit("record_started", id=cmd.get("id"), identity=identity, track_sid=pub.sid)
        need = round(seconds * sample_rate)
        chunks: list[np.ndarray[Any, Any]] = []

        async def read() -> bool:
            """True if the stream ended before ``need`` samples."""
            have = 0
            async for event in stream:
                f = event.frame
                pcm = np.frombuffer(f.data, dtype=np.int16)
                pcm = pcm[: f.samples_per_channel * f.num_channels]
                mono = pcm.reshape(-1, f.num_channels).astype(np.float64).mean(axis=1)
                chunks.append(mono)
                have += len(mono)
                if have >= need:
                    return False
            return True

        try:
            ended = await asyncio.wait_for(read(), seconds + wait)
        finally:
            await _close_stream(stream)
        frames = len(chunks)
        samples = np.concatenate(chunks)[:need] if chunks else np.zeros(0)
        return {
            "track_sid": pub.sid,
            "samples": len(samples),
            "frames": frames,
            "sample_rate": sample_rate,
            "window": window,
            "ended": ended,
            **analyse_audio(samples, sample_rate, window),
        }

    async def record_video(self, cmd: JsonDict) -> JsonDict:
        """Reads ``seconds`` of a participant's video track from its first frame on;
        returns each frame's mean colour. Emits ``record_started`` once the stream
        exists and ``record_first_frame`` when the first frame arrives."""
        identity = str(cmd["identity"])
        seconds = float(cmd["seconds"])
        wait = float(cmd.get("wait", 10.0))
        track, pub = await self.subscribed_track(identity, rtc.TrackKind.KIND_VIDEO, wait)
        stream = rtc.VideoStream(track)
        emit("record_started", id=cmd.get("id"), identity=identity, track_sid=pub.sid)
        loop = asyncio.get_running_loop()
        colours: list[list[int]] = []
        sizes: list[list[int]] = []
        metadata: list[list[Any]] = []
        ended = False

        async def read() -> None:
            nonlocal ended
            async for event in stream:
                meta = event.metadata
                metadata.append(
                    [
                        int(event.rotation),  # type: ignore[call-overload]
                        meta.user_timestamp if meta and meta.HasField("user_timestamp") else None,
                        meta.frame_id if meta and meta.HasField("frame_id") else None,
                        meta.user_data.hex() if meta and meta.HasField("user_data") else None,
                    ]
                )
                frame = event.frame
                if frame.type != rtc.VideoBufferType.RGBA:
                    frame = frame.convert(rtc.VideoBufferType.RGBA)
                if not colours:
                    emit("record_first_frame", id=cmd.get("id"), identity=identity)
                colours.append(_mean_colour(frame))
                size = [frame.width, frame.height]
                if not sizes or sizes[-1] != size:
                    sizes.append(size)
            ended = True

        # the first frame may take up to ``wait`` seconds; then record for ``seconds``
        reader = asyncio.ensure_future(read())
        try:
            first_by = loop.time() + wait
            while not colours and not reader.done() and loop.time() < first_by:
                await asyncio.sleep(0.01)
            if colours:
                await asyncio.wait({reader}, timeout=seconds)
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
            await _close_stream(stream)
        if not colours:
            raise TimeoutError(f"no video frame from {identity} within {wait}s")
        return {
            "track_sid": pub.sid,
            "colours": colours,
            "frames": len(colours),
            "width": sizes[0][0],
            "height": sizes[0][1],
            "sizes": sizes,
            "metadata": metadata,
            "ended": ended,
        }

    async def publish_video(self, cmd: JsonDict) -> JsonDict:
        """Publishes a camera track of ``frames`` grey frames at ``fps``, each with
        its ``FrameMetadata`` and the given rotation, then unpublishes it. Emits
        ``video_published`` with the sid once published."""
        frames = int(cmd["frames"])
        fps = float(cmd.get("fps", 30))
        width, height = int(cmd.get("width", 160)), int(cmd.get("height", 120))
        rotation = int(cmd.get("rotation", 0))
        features: list[Any] = [int(f) for f in cmd.get("features", [])]
        lp = self.room.local_participant
        source = rtc.VideoSource(width, height)
        try:
            track = rtc.LocalVideoTrack.create_video_track(str(cmd.get("name", "video")), source)
            options = rtc.TrackPublishOptions(
                source=rtc.TrackSource.SOURCE_CAMERA, frame_metadata_features=features
            )
            pub = await lp.publish_track(track, options)
            emit("video_published", id=cmd.get("id"), track_sid=pub.sid)
            loop = asyncio.get_running_loop()
            start = loop.time()
            for i in range(frames):
                data = bytes([i % 256]) * (width * height * 4)
                frame = rtc.VideoFrame(width, height, rtc.VideoBufferType.RGBA, data)
                meta = proto_video.FrameMetadata(
                    user_timestamp=10**12 + i, frame_id=i + 1, user_data=b"f%d" % i
                )
                source.capture_frame(frame, rotation=rotation, metadata=meta)  # type: ignore[arg-type]
                await asyncio.sleep(max(0.0, start + (i + 1) / fps - loop.time()))
            await lp.unpublish_track(pub.sid)
        finally:
            await source.aclose()
        return {"track_sid": pub.sid, "frames": frames}

    async def publish_tone(self, cmd: JsonDict) -> JsonDict:
        """Publishes a microphone track playing a sine tone for ``seconds``, then
        unpublishes it. Emits ``tone_published`` with the sid once published."""
        frequency = float(cmd["frequency"])
        seconds = float(cmd["seconds"])
        sample_rate = int(cmd.get("sample_rate", 48000))
        amplitude = float(cmd.get("amplitude", 0.5))
        name = str(cmd.get("name", "tone"))
        lp = self.room.local_participant
        source = rtc.AudioSource(sample_rate, 1)
        try:
            track = rtc.LocalAudioTrack.create_audio_track(name, source)
            options = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
            pub = await lp.publish_track(track, options)
            emit("tone_published", id=cmd.get("id"), track_sid=pub.sid, name=name)
            per_frame = sample_rate // 100  # 10 ms frames
            t = np.arange(per_frame) / sample_rate
            total = round(seconds * 100)
            for i in range(total):
                phase = 2 * np.pi * frequency * i * per_frame / sample_rate
                wave = amplitude * 32767 * np.sin(phase + 2 * np.pi * frequency * t)
                frame = rtc.AudioFrame(wave.astype(np.int16).tobytes(), sample_rate, 1, per_frame)
                await source.capture_frame(frame)
            await source.wait_for_playout()
            await lp.unpublish_track(pub.sid)
        finally:
            await source.aclose()
        return {"track_sid": pub.sid, "samples": total * per_frame}

    # -- data streams ------------------------------------------------------------------

    async def read_text_stream(
        self, reader: rtc.TextStreamReader, identity: str, inline_max: int
    ) -> None:
        """Reads an incoming text stream whole; emits what arrived, or how it failed."""
        self.open_readers += 1
        emit("text_stream_opened", identity=identity, **_info_fields(reader.info))
        parts: list[str] = []
        try:
            async for chunk in reader:
                parts.append(chunk)
        except Exception as e:
            text = "".join(parts)
            emit(
                "stream_failed",
                kind="text",
                identity=identity,
                **_info_fields(reader.info),
                error_type=type(e).__name__,
                description=e.description if isinstance(e, rtc.StreamError) else repr(e),
                read=len(text),
                read_bytes=len(text.encode()),
                partial=text if len(text) <= inline_max else None,
            )
            return
        finally:
            reader.close()
            self.open_readers -= 1
        text = "".join(parts)
        data = text.encode()
        emit(
            "text_stream_received",
            identity=identity,
            **_info_fields(reader.info),
            length=len(text),
            bytes=len(data),
            sha256=_sha256(data),
            chunks=len(parts),
            text=text if len(text) <= inline_max else None,
        )

    async def read_byte_stream(self, reader: rtc.ByteStreamReader, identity: str) -> None:
        """Reads an incoming byte stream whole; emits its size and SHA-256, or how it
        failed."""
        self.open_readers += 1
        emit("byte_stream_opened", identity=identity, **_info_fields(reader.info))
        digest = hashlib.sha256()
        length = chunks = 0
        try:
            async for chunk in reader:
                digest.update(chunk)
                length += len(chunk)
                chunks += 1
        except Exception as e:
            emit(
                "stream_failed",
                kind="byte",
                identity=identity,
                **_info_fields(reader.info),
                error_type=type(e).__name__,
                description=e.description if isinstance(e, rtc.StreamError) else repr(e),
                read=length,
                read_bytes=length,
                partial=None,
            )
            return
        finally:
            reader.close()
            self.open_readers -= 1
        emit(
            "byte_stream_received",
            identity=identity,
            **_info_fields(reader.info),
            length=length,
            sha256=digest.hexdigest(),
            chunks=chunks,
        )

    def register_text_stream(self, cmd: JsonDict) -> None:
        inline_max = int(cmd.get("inline_max", 100_000))

        def handler(reader: rtc.TextStreamReader, identity: str) -> None:
            self.spawn(self.read_text_stream(reader, identity, inline_max))

        self.room.register_text_stream_handler(str(cmd.get("topic", "")), handler)

    def register_byte_stream(self, cmd: JsonDict) -> None:
        def handler(reader: rtc.ByteStreamReader, identity: str) -> None:
            self.spawn(self.read_byte_stream(reader, identity))

        self.room.register_byte_stream_handler(str(cmd.get("topic", "")), handler)

    async def finish_writer(
        self, writer: rtc.TextStreamWriter | rtc.ByteStreamWriter, cmd: JsonDict
    ) -> None:
        """Closes a writer as ``cmd`` says: with ``abort_reason``, normally (with
        ``close_attributes``), or not at all (``hold``)."""
        if cmd.get("hold"):
            return  # stays open (in open_writers) until the peer leaves
        self.open_writers.discard(writer)
        reason = cmd.get("abort_reason")
        if reason:
            await writer.aclose(reason=str(reason))
        else:
            await writer.aclose(attributes=_str_dict(cmd.get("close_attributes")) or None)

    async def stream_text(self, cmd: JsonDict) -> JsonDict:
        parts = [str(p) for p in cmd.get("parts", [])]
        delay = float(cmd.get("delay", 0))
        writer = await self.room.local_participant.stream_text(
            topic=str(cmd.get("topic", "")),
            attributes=_str_dict(cmd.get("attributes")) or None,
            destination_identities=_identities(cmd),
        )
        self.open_writers.add(writer)
        try:
            for i, part in enumerate(parts):
                if i and delay:
                    await asyncio.sleep(delay)
                await writer.write(part)
            emit("stream_written", id=cmd.get("id"), stream_id=writer.info.stream_id)
        except BaseException:
            self.open_writers.discard(writer)
            with contextlib.suppress(Exception):
                await writer.aclose(reason="the peer's write failed")
            raise
        await self.finish_writer(writer, cmd)
        data = "".join(parts).encode()
        return {**_info_fields(writer.info), "sha256": _sha256(data), "length": len(data)}

    async def stream_bytes(self, cmd: JsonDict) -> JsonDict:
        size = int(cmd["size"])
        content = seeded_bytes(cmd.get("seed", 0), size)
        chunk_size = max(1, int(cmd.get("chunk_size", 65536)))
        delay = float(cmd.get("delay", 0))
        total = cmd.get("total_size", size)
        writer = await self.room.local_participant.stream_bytes(
            str(cmd.get("name", "stream.bin")),
            total_size=None if total is None else int(total),
            mime_type=str(cmd.get("mime_type", "application/octet-stream")),
            attributes=_str_dict(cmd.get("attributes")) or None,
            destination_identities=_identities(cmd),
            topic=str(cmd.get("topic", "")),
        )
        self.open_writers.add(writer)
        try:
            for start in range(0, size, chunk_size):
                if start and delay:
                    await asyncio.sleep(delay)
                await writer.write(content[start : start + chunk_size])
            emit("stream_written", id=cmd.get("id"), stream_id=writer.info.stream_id)
        except BaseException:
            self.open_writers.discard(writer)
            with contextlib.suppress(Exception):
                await writer.aclose(reason="the peer's write failed")
            raise
        await self.finish_writer(writer, cmd)
        return {**_info_fields(writer.info), "sha256": _sha256(content), "length": size}

    async def send_many_text_streams(self, cmd: JsonDict) -> list[JsonDict]:
        count = int(cmd["count"])
        n_parts = int(cmd.get("parts", 5))
        chars = int(cmd.get("part_chars", 1000))
        delay = float(cmd.get("delay", 0.05))
        prefix = str(cmd.get("key_prefix", "peer-"))
        topic = str(cmd.get("topic", ""))
        lp = self.room.local_participant

        async def one(i: int) -> JsonDict:
            key = f"{prefix}{i}"
            writer = await lp.stream_text(
                topic=topic,
                attributes={"stream": key, **_str_dict(cmd.get("attributes"))},
                destination_identities=_identities(cmd),
            )
            self.open_writers.add(writer)
            parts = [stream_part(key, j, chars) for j in range(n_parts)]
            try:
                for j, part in enumerate(parts):
                    # stagger the streams so that their writes interleave
                    await asyncio.sleep(delay * (1 + (i + j) % 3))
                    await writer.write(part)
            finally:
                self.open_writers.discard(writer)
            await writer.aclose()
            text = "".join(parts)
            return {
                "key": key,
                "stream_id": writer.info.stream_id,
                "text": text,
                "sha256": _sha256(text.encode()),
            }

        return list(await asyncio.gather(*(one(i) for i in range(count))))

    async def run_command(self, cmd: JsonDict) -> Any:
        name = cmd.get("cmd")
        lp = self.room.local_participant
        if name == "list":
            return self.remote_identities()
        if name == "publish_data":
            await lp.publish_data(
                base64.b64decode(cmd.get("payload_b64", "")),
                reliable=bool(cmd.get("reliable", True)),
                topic=str(cmd.get("topic") or ""),
                destination_identities=list(cmd.get("destination_identities") or []),
            )
            return None
        if name == "perform_rpc":
            timeout = cmd.get("response_timeout")
            latency = cmd.get("max_round_trip_latency")
            return await lp.perform_rpc(
                destination_identity=str(cmd["destination"]),
                method=str(cmd["method"]),
                payload=str(cmd.get("payload", "")),
                response_timeout=None if timeout is None else float(timeout),
                max_round_trip_latency=None if latency is None else float(latency),
            )
        if name == "register_rpc":
            lp.register_rpc_method(str(cmd["method"]), _rpc_handler(cmd))
            return None
        if name == "unregister_rpc":
            lp.unregister_rpc_method(str(cmd["method"]))
            return None
        if name == "participant":
            # The peer's view of a participant (its own when identity is omitted or its own).
            identity = cmd.get("identity")
            if identity is None or identity == lp.identity:
                return _participant_info(lp)
            remote = next(
                (p for p in self.room.remote_participants.values() if p.identity == identity),
                None,
            )
            return None if remote is None else _participant_info(remote)
        if name == "publish_dtmf":
            await lp.publish_dtmf(code=int(cmd["code"]), digit=str(cmd["digit"]))
            return None
        if name == "publish_transcription":
            await lp.publish_transcription(
                rtc.Transcription(
                    participant_identity=str(cmd.get("participant_identity") or lp.identity),
                    track_sid=str(cmd["track_sid"]),
                    segments=[
                        rtc.TranscriptionSegment(
                            id=str(seg["id"]),
                            text=str(seg["text"]),
                            start_time=int(seg.get("start_time", 0)),
                            end_time=int(seg.get("end_time", 0)),
                            language=str(seg.get("language", "")),
                            final=bool(seg.get("final", False)),
                        )
                        for seg in cmd.get("segments", [])
                    ],
                )
            )
            return None
        if name == "set_metadata":
            await lp.set_metadata(str(cmd["metadata"]))
            return None
        if name == "set_name":
            await lp.set_name(str(cmd["name"]))
            return None
        if name == "set_attributes":
            await lp.set_attributes({str(k): str(v) for k, v in dict(cmd["attributes"]).items()})
            return None
        if name == "record_audio":
            return await self.record_audio(cmd)
        if name == "record_video":
            return await self.record_video(cmd)
        if name == "publish_tone":
            return await self.publish_tone(cmd)
        if name == "publish_video":
            return await self.publish_video(cmd)
        if name == "register_text_stream":
            self.register_text_stream(cmd)
            return None
        if name == "register_byte_stream":
            self.register_byte_stream(cmd)
            return None
        if name == "unregister_text_stream":
            self.room.unregister_text_stream_handler(str(cmd.get("topic", "")))
            return None
        if name == "unregister_byte_stream":
            self.room.unregister_byte_stream_handler(str(cmd.get("topic", "")))
            return None
        if name == "send_text":
            text_info = await lp.send_text(
                str(cmd["text"]),
                topic=str(cmd.get("topic", "")),
                attributes=_str_dict(cmd.get("attributes")) or None,
                destination_identities=_identities(cmd),
            )
            data = str(cmd["text"]).encode()
            return {**_info_fields(text_info), "sha256": _sha256(data), "length": len(data)}
        if name == "stream_text":
            return await self.stream_text(cmd)
        if name == "send_bytes":
            size = int(cmd["size"])
            content = seeded_bytes(cmd.get("seed", 0), size)
            info = await lp.send_bytes(
                content,
                topic=str(cmd.get("topic", "")),
                name=None if cmd.get("name") is None else str(cmd["name"]),
                mime_type=None if cmd.get("mime_type") is None else str(cmd["mime_type"]),
                attributes=_str_dict(cmd.get("attributes")) or None,
                destination_identities=_identities(cmd),
            )
            return {**_info_fields(info), "sha256": _sha256(content), "length": size}
        if name == "stream_bytes":
            return await self.stream_bytes(cmd)
        if name == "send_file":
            path = str(cmd["path"])
            info = await lp.send_file(
                path,
                topic=str(cmd.get("topic", "")),
                attributes=_str_dict(cmd.get("attributes")) or None,
                destination_identities=_identities(cmd),
            )
            content = await asyncio.to_thread(Path(path).read_bytes)
            return {**_info_fields(info), "sha256": _sha256(content), "length": len(content)}
        if name == "send_many_text_streams":
            return await self.send_many_text_streams(cmd)
        if name == "open_streams":
            return {"readers": self.open_readers, "writers": len(self.open_writers)}
        if name in ("e2ee_export_shared_key", "e2ee_ratchet_shared_key"):
            provider = self.room.e2ee_manager.key_provider
            if provider is None:
                raise ValueError("the peer was started without OFFICIAL_PEER_E2EE_KEY")
            index = int(cmd.get("key_index", 0))
            if name == "e2ee_export_shared_key":
                return provider.export_shared_key(index).hex()
            return provider.ratchet_shared_key(index).hex()
        if name == "e2ee_frame_cryptors":
            return [
                {
                    "participant_identity": c.participant_identity,
                    "track_sid": c.track_sid,
                    "key_index": c.key_index,
                    "enabled": c.enabled,
                }
                for c in self.room.e2ee_manager.frame_cryptors()
            ]
        if name == "disconnect":
            await self.room.disconnect()
            self.stop.set()
            return None
        raise ValueError(f"unknown command {name!r}")

    async def handle(self, cmd: JsonDict) -> None:
        cmd_id = cmd.get("id")
        try:
            result = await self.run_command(cmd)
        except rtc.RpcError as e:
            emit(
                "reply",
                id=cmd_id,
                ok=False,
                result=None,
                error=e.message,
                code=e.code,
                data=e.data,
            )
        except Exception as e:
            log.exception("command %r failed", cmd.get("cmd"))
            emit("reply", id=cmd_id, ok=False, result=None, error=repr(e), code=None)
        else:
            emit("reply", id=cmd_id, ok=True, result=result, error=None, code=None)

    def dispatch(self, line: bytes) -> None:
        try:
            cmd = json.loads(line)
            if not isinstance(cmd, dict):
                raise ValueError("command is not a JSON object")
        except ValueError as e:
            log.error("bad command line %r: %s", line, e)
            emit("reply", id=None, ok=False, result=None, error=f"bad command: {e}", code=None)
            return
        task = asyncio.get_running_loop().create_task(self.handle(cmd))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def serve(self) -> None:
        lines: asyncio.Queue[bytes | None] = asyncio.Queue()
        _start_stdin_reader(asyncio.get_running_loop(), lines)
        stop_wait = asyncio.ensure_future(self.stop.wait())
        try:
            while not self.stop.is_set():
                get = asyncio.ensure_future(lines.get())
                await asyncio.wait({get, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
                if not get.done():
                    get.cancel()
                    break
                line = get.result()
                if line is None:
                    log.info("stdin closed")
                    break
                if line.strip():
                    self.dispatch(line)
        finally:
            stop_wait.cancel()
        await self.room.disconnect()  # no-op if already disconnected
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


def _room_options() -> rtc.RoomOptions:
    """Default options, with shared-key encryption if ``OFFICIAL_PEER_E2EE_KEY`` is set."""
    key = os.environ.get("OFFICIAL_PEER_E2EE_KEY")
    if not key:
        return rtc.RoomOptions()
    tolerance = int(os.environ.get("OFFICIAL_PEER_E2EE_FAILURE_TOLERANCE", "-1"))
    provider = rtc.KeyProviderOptions(shared_key=bytes.fromhex(key), failure_tolerance=tolerance)
    return rtc.RoomOptions(encryption=rtc.E2EEOptions(key_provider_options=provider))


async def main(url: str, token: str) -> int:
    room = rtc.Room()
    _attach_room_events(room)
    try:
        await room.connect(url, token, options=_room_options())
    except Exception as e:
        message = e.message if isinstance(e, rtc.ConnectError) else repr(e)
        log.error("connect failed: %s", message)
        emit("error", message=message)
        return 3
    lp = room.local_participant
    peer = Peer(room)
    # No await between connect() returning and this line: no room event can precede it.
    emit(
        "connected",
        identity=lp.identity,
        sid=lp.sid,
        room=room.name,
        remote=peer.remote_identities(),
    )
    await peer.serve()
    log.info("exiting")
    return 0


if __name__ == "__main__":
    _take_stdout()
    logging.basicConfig(
        level=os.environ.get("OFFICIAL_PEER_LOG_LEVEL", "INFO"),
        stream=sys.stderr,
        format=f"[official_peer {os.getpid()}] %(levelname)s %(name)s: %(message)s",
    )
    if len(sys.argv) != 3:
        print("usage: official_peer.py URL TOKEN", file=sys.stderr)
        sys.exit(2)
    sys.exit(asyncio.run(main(sys.argv[1], sys.argv[2])))
