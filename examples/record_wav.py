"""Record a remote audio track to a WAV file.

Joins a room as "recorder", waits for the first remote audio track it is
subscribed to (``TrackSubscribed``), reads it with
``AudioStream(track, sample_rate=48000, num_channels=1)`` for ``--seconds``
(or until the stream ends: the track is unpublished, its participant leaves
or the room closes), and writes the samples to a 16-bit mono WAV file with
the standard library's ``wave`` module. Each ``frame.data`` is an int16
memoryview over the received frame's buffer; its bytes go into the file as
they are.

It also prints the dominant frequency it recorded, estimated with the
standard library only: the median time between upward zero crossings.

Without ``--url`` it demonstrates the whole path on its own: it starts a
local ``livekit-server --dev`` and, in the same ``trio.run``, a second room
"tone" that publishes a 440 Hz sine (``--frequency``) until the recording is
done. It exits 0 only if the recorded frequency is within 15 Hz of the tone::

    python -m lkrtc_trio.testing.netns -- python examples/record_wav.py --seconds 2 --out tone.wav

With ``--url`` it records whatever audio the room has, for example
``examples/publish_tone.py`` run against the same server and room; it then
checks the frequency only if ``--frequency`` is given::

    python examples/publish_tone.py --url wss://... --api-key K --api-secret S --room R &
    python examples/record_wav.py --url wss://... --api-key K --api-secret S --room R \\
        --frequency 440

The recording is kept in memory and written (in a worker thread) at the end.
"""

from __future__ import annotations

import argparse
import itertools
import math
import secrets
import statistics
import sys
import time
import wave
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import trio

import lkrtc_trio as lk
from lkrtc_trio.testing import (
    DEFAULT_API_KEY,
    DEFAULT_API_SECRET,
    LocalServer,
    install_server,
    mint_token,
)

SAMPLE_RATE = 48000
NUM_CHANNELS = 1
TOLERANCE_HZ = 15.0
START = time.monotonic()


def say(who: str, what: str) -> None:
    print(f"[{time.monotonic() - START:6.2f}s] {who:>8}: {what}", flush=True)


# -- measuring the frequency (standard library only) ------------------------------
@dataclass
class PitchTracker:
    """Finds upward zero crossings (with hysteresis, so noise and silence do
    not count) and estimates the dominant frequency from the median period."""

    sample_rate: int
    threshold: int = 1000  # the signal must dip below -threshold between crossings
    crossings: list[float] = field(default_factory=list)
    _index: int = 0
    _prev: int = 0
    _armed: bool = False

    def feed(self, samples: memoryview) -> None:
        prev, armed, index = self._prev, self._armed, self._index
        for x in samples:
            if x < -self.threshold:
                armed = True
            elif armed and x >= 0 > prev:
                # Linear interpolation between the last negative sample and this one.
                self.crossings.append(index - 1 + prev / (prev - x))
                armed = False
            prev = x
            index += 1
        self._prev, self._armed, self._index = prev, armed, index

    def frequency(self) -> float | None:
        periods = [b - a for a, b in itertools.pairwise(self.crossings)]
        if len(periods) < 10:
            return None  # not enough of a tone to tell
        return self.sample_rate / statistics.median(periods)


# -- the recorder -------------------------------------------------------------------
async def first_audio_track(
    room: lk.Room, events: lk.EventSubscription
) -> tuple[lk.RemoteAudioTrack, lk.RemoteParticipant]:
    """The first subscribed remote audio track: one already in the room state,
    else the next ``TrackSubscribed`` of an audio track."""
    # `events` was opened before this looks at the state, so nothing is missed.
    for participant in room.remote_participants.values():
        for publication in participant.track_publications.values():
            if isinstance(publication.track, lk.RemoteAudioTrack):
                return publication.track, participant
    async for event in events:
        match event:
            case lk.TrackSubscribed(track=lk.RemoteAudioTrack() as track, participant=who):
                return track, who
            case _:
                pass
    raise RuntimeError("the room ended before an audio track was subscribed")


@dataclass
class Recording:
    pcm: bytearray
    frames: int
    dropped_frames: int
    ended: bool  # the stream ended before --seconds were recorded
    frequency: float | None

    @property
    def seconds(self) -> float:
        return len(self.pcm) / (2 * NUM_CHANNELS * SAMPLE_RATE)


async def record(track: lk.RemoteAudioTrack, seconds: float) -> Recording:
    """Reads ``seconds`` of audio from ``track`` (less if the stream ends)."""
    wanted_bytes = round(seconds * SAMPLE_RATE) * 2 * NUM_CHANNELS
    pcm = bytearray()
    pitch = PitchTracker(SAMPLE_RATE)
    frames = 0
    ended = True
    # Closing the stream (leaving the block) releases its native handle.
    async with lk.AudioStream(track, sample_rate=SAMPLE_RATE, num_channels=NUM_CHANNELS) as stream:
        async for frame in stream:  # stops when the track goes away
            frames += 1
            pcm += frame.data  # the frame's int16 samples, as bytes
            pitch.feed(frame.data)
            if len(pcm) >= wanted_bytes:
                ended = False
                break
        dropped = stream.dropped_frames  # frames we were too slow to read
    del pcm[wanted_bytes:]
    return Recording(pcm, frames, dropped, ended, pitch.frequency())


def write_wav(path: str, pcm: bytes | bytearray) -> None:
    with wave.open(path, "wb") as wav:
        wav.setnchannels(NUM_CHANNELS)
        wav.setsampwidth(2)  # int16
        wav.setframerate(SAMPLE_RATE)
        wav.writeframes(pcm)


# -- the tone publisher (only without --url) ------------------------------------------
def tone_frame(frequency: float, first_sample: int) -> lk.AudioFrame:
    """10 ms of a sine tone at 30 % of full scale, from sample ``first_sample``."""
    samples = SAMPLE_RATE // 100
    frame = lk.AudioFrame.create(SAMPLE_RATE, NUM_CHANNELS, samples)
    data = frame.data  # writable int16 view of the frame's buffer
    step = 2 * math.pi * frequency / SAMPLE_RATE
    for i in range(samples):
        data[i] = int(0.3 * 32767 * math.sin(step * (first_sample + i)))
    return frame


async def publish_tone(url: str, token: str, frequency: float, stop: trio.Event) -> None:
    """Joins a second room and publishes the tone until ``stop`` is set."""
    async with lk.open_room(url, token) as room:
        source = lk.AudioSource(SAMPLE_RATE, NUM_CHANNELS)
        track = lk.LocalAudioTrack.create_audio_track("tone", source)
        try:
            options = lk.TrackPublishOptions(source=lk.TrackSource.SOURCE_MICROPHONE)
            publication = await room.local_participant.publish_track(track, options)
            say("tone", f"publishing {frequency:g} Hz as track {publication.sid}")
            sample = 0
            while not stop.is_set():
                await source.capture_frame(tone_frame(frequency, sample))  # real-time pace
                sample += SAMPLE_RATE // 100
            source.clear_queue()  # drop what is still queued: nobody listens any more
            await room.local_participant.unpublish_track(publication.sid)
            say("tone", f"stopped after {sample / SAMPLE_RATE:.2f} s of audio; unpublished")
        finally:
            track.close()
            source.close()


# -- main -------------------------------------------------------------------------------
async def run(
    url: str,
    token: Callable[[str], str],
    out: str,
    seconds: float,
    tone: float | None,
) -> Recording:
    async with lk.open_room(url, token("recorder")) as room:
        say("recorder", f"connected to room {room.name!r}")
        with room.events() as events:  # before the publisher starts: nothing is missed
            async with trio.open_nursery() as nursery:
                stop = trio.Event()
                if tone is not None:
                    nursery.start_soon(publish_tone, url, token("tone"), tone, stop)
                try:
                    say("recorder", "waiting for a remote audio track")
                    with trio.fail_after(30):
                        track, who = await first_audio_track(room, events)
                    say("recorder", f"subscribed to track {track.sid} of {who.identity!r}")
                    with trio.fail_after(seconds + 15):  # in case frames stop coming
                        recording = await record(track, seconds)
                finally:
                    stop.set()
    how = "the stream ended" if recording.ended else "done"
    say(
        "recorder",
        f"{how}: {recording.seconds:.2f} s in {recording.frames} frames "
        f"({recording.dropped_frames} dropped)",
    )
    await trio.to_thread.run_sync(write_wav, out, recording.pcm)
    say("recorder", f"wrote {out}")
    handles = lk.live_native_handles()
    say("recorder", f"left; native handles still owned: {handles}")
    if handles:
        raise SystemExit(f"{handles} native handles leaked")
    return recording


def main() -> int:
    parser = argparse.ArgumentParser(description="record a remote audio track to a WAV file")
    parser.add_argument("--seconds", type=float, default=5.0, help="how long (default 5)")
    parser.add_argument("--out", default="recording.wav", help="WAV file (default recording.wav)")
    parser.add_argument(
        "--frequency",
        type=float,
        help="the tone to expect (and, without --url, to publish; default 440)",
    )
    parser.add_argument("--url", help="a LiveKit server (default: start a local one)")
    parser.add_argument("--token", help="an access token (default: mint one)")
    parser.add_argument("--room", help="room to mint tokens for (default: a random name)")
    parser.add_argument("--api-key", default=DEFAULT_API_KEY)
    parser.add_argument("--api-secret", default=DEFAULT_API_SECRET)
    args = parser.parse_args()
    if args.seconds <= 0:
        parser.error("--seconds must be > 0")
    if args.token and not args.url:
        parser.error("--token needs --url")
    room = args.room or f"record-{secrets.token_hex(3)}"
    minted = partial(mint_token, room=room, api_key=args.api_key, api_secret=args.api_secret)

    def token(identity: str) -> str:
        return str(args.token) if args.token and identity == "recorder" else minted(identity)

    if args.url:
        expected = args.frequency
        recording = trio.run(run, args.url, token, args.out, args.seconds, None)
    else:
        expected = args.frequency or 440.0
        with LocalServer(binary=install_server()) as info:
            say("server", f"livekit-server {info.url}")
            recording = trio.run(run, info.url, token, args.out, args.seconds, expected)
    freq = recording.frequency
    say("recorder", "dominant frequency: " + ("none found" if freq is None else f"{freq:.1f} Hz"))
    if expected is None:
        return 0
    if freq is None or abs(freq - expected) > TOLERANCE_HZ:
        print(f"FAILED: expected {expected:g} Hz +- {TOLERANCE_HZ:g}", flush=True)
        return 1
    print(f"OK: within {TOLERANCE_HZ:g} Hz of {expected:g} Hz", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
