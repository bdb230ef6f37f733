"""Publish a sine tone as a microphone track.

Joins a room as "tone", publishes an audio track fed by an ``AudioSource``
and sends a sine tone (440 Hz by default, 48 kHz mono) for ``--seconds``,
then waits for the queued audio to play out, unpublishes the track and
closes the track and the source. Each 10 ms frame is made with
``AudioFrame.create`` and filled through ``frame.data``, an int16
memoryview over the frame's own buffer (no copy, no numpy needed).

``capture_frame`` waits while the source's queue (``queue_size_ms``, 1 s by
default) is full, so the loop below runs at real-time pace without sleeping.

Run (starts a local ``livekit-server --dev``; as root, inside a private
network namespace)::

    python -m lkrtc_trio.testing.netns -- python examples/publish_tone.py --seconds 5

Nobody listens in that case. To hear (or record) it, publish into a room of
your own server and join the same room with a client, or with
``examples/record_wav.py``::

    python examples/publish_tone.py --url wss://... --token TOKEN
    python examples/publish_tone.py --url wss://... --api-key KEY --api-secret SECRET --room R
"""

from __future__ import annotations

import argparse
import math
import secrets
import sys
import time

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
FRAME_MS = 10
START = time.monotonic()


def say(what: str) -> None:
    print(f"[{time.monotonic() - START:6.2f}s] {what}", flush=True)


def tone_frame(frequency: float, first_sample: int, amplitude: float = 0.3) -> lk.AudioFrame:
    """A 10 ms frame of the sine tone, starting at sample ``first_sample``."""
    samples = SAMPLE_RATE * FRAME_MS // 1000
    frame = lk.AudioFrame.create(SAMPLE_RATE, NUM_CHANNELS, samples)
    data = frame.data  # int16 memoryview over the frame's buffer: writes go straight in
    peak = amplitude * 32767
    step = 2 * math.pi * frequency / SAMPLE_RATE
    for i in range(samples):
        data[i] = int(peak * math.sin(step * (first_sample + i)))
    return frame


async def publish_tone(room: lk.Room, frequency: float, seconds: float) -> None:
    """Publishes ``seconds`` of the tone on ``room``, then unpublishes."""
    source = lk.AudioSource(SAMPLE_RATE, NUM_CHANNELS)  # queue_size_ms=1000
    try:
        track = lk.LocalAudioTrack.create_audio_track("tone", source)
        try:
            options = lk.TrackPublishOptions(source=lk.TrackSource.SOURCE_MICROPHONE)
            publication = await room.local_participant.publish_track(track, options)
            say(f"published track {publication.sid} ({frequency:g} Hz, {SAMPLE_RATE} Hz mono)")
            frames = round(seconds * 1000 / FRAME_MS)
            samples_per_frame = SAMPLE_RATE * FRAME_MS // 1000
            for n in range(frames):
                # Waits while the source's queue is full: real-time pace.
                await source.capture_frame(tone_frame(frequency, n * samples_per_frame))
            say(f"captured {frames} frames; waiting for the queued audio to play out")
            await source.wait_for_playout()
            await room.local_participant.unpublish_track(publication.sid)
            say("unpublished")
        finally:
            track.close()
    finally:
        source.close()


async def run(url: str, token: str, frequency: float, seconds: float) -> None:
    async with lk.open_room(url, token) as room:
        say(f"connected to room {room.name!r} as {room.local_participant.identity!r}")
        await publish_tone(room, frequency, seconds)
    handles = lk.live_native_handles()
    say(f"left; native handles still owned: {handles}")
    if handles:
        raise SystemExit(f"{handles} native handles leaked")


def main() -> int:
    parser = argparse.ArgumentParser(description="publish a sine tone as a microphone track")
    parser.add_argument("--frequency", type=float, default=440.0, help="Hz (default 440)")
    parser.add_argument("--seconds", type=float, default=5.0, help="how long (default 5)")
    parser.add_argument("--url", help="a LiveKit server (default: start a local one)")
    parser.add_argument("--token", help="an access token (default: mint one)")
    parser.add_argument("--room", help="room to mint a token for (default: a random name)")
    parser.add_argument("--identity", default="tone")
    parser.add_argument("--api-key", default=DEFAULT_API_KEY)
    parser.add_argument("--api-secret", default=DEFAULT_API_SECRET)
    args = parser.parse_args()
    if args.seconds <= 0 or not 0 < args.frequency < SAMPLE_RATE / 2:
        parser.error("--seconds must be > 0 and --frequency between 0 and 24000 Hz")
    if args.token and not args.url:
        parser.error("--token needs --url")
    token = args.token or mint_token(
        args.identity,
        args.room or f"tone-{secrets.token_hex(3)}",
        api_key=args.api_key,
        api_secret=args.api_secret,
    )
    if args.url:
        trio.run(run, args.url, token, args.frequency, args.seconds)
    else:
        with LocalServer(binary=install_server()) as info:
            say(f"livekit-server {info.url}")
            trio.run(run, info.url, token, args.frequency, args.seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
