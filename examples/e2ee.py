"""End-to-end encryption: two participants in an encrypted room.

Starts ``livekit-server --dev`` on free ports (or uses ``--url``), connects
"alice" and "bob" with the same shared key (``RoomOptions.encryption``), and:

1. alice publishes a 440 Hz tone; both sides report their frame cryptor
   working (``E2eeStateChanged`` with ``EncryptionState.OK``) and bob hears
   the tone: the server only ever forwarded encrypted frames;
2. alice sends bob a data packet, encrypted the same way, and it arrives
   intact;
3. both ratchet the shared key (``ratchet_shared_key``): they derive the same
   new key, and bob still hears the tone;
4. the frame cryptors of each side are listed.

Each step is printed with the time since the start. Exits 0 only if every
outcome is the expected one. See docs/room-control.md, "Encrypted room".

Run (as root, inside a private network namespace: libwebrtc ignores
loopback)::

    python -m lkrtc_trio.testing.netns -- python examples/e2ee.py
    python examples/e2ee.py --url wss://... --api-key KEY --api-secret SECRET
"""

from __future__ import annotations

import argparse
import itertools
import math
import secrets
import sys
import time
from collections.abc import Callable
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

START = time.monotonic()
SAMPLE_RATE = 48000
TONE_HZ = 440.0
TOLERANCE_HZ = 15.0
SHARED_KEY = b"a key only alice and bob know"


def say(who: str, what: str) -> None:
    print(f"[{time.monotonic() - START:6.2f}s] {who:>6}: {what}", flush=True)


def check(ok: bool, what: str) -> None:
    """Stops the example (exit status 1) on an unexpected outcome."""
    if not ok:
        raise SystemExit(f"e2ee example failed: {what}")


def encrypted(key: bytes) -> lk.RoomOptions:
    provider = lk.KeyProviderOptions(shared_key=key)
    return lk.RoomOptions(encryption=lk.E2EEOptions(key_provider_options=provider))


def tone_frame(first_sample: int) -> lk.AudioFrame:
    """10 ms of the tone (48 kHz mono), from sample ``first_sample``."""
    frame = lk.AudioFrame.create(SAMPLE_RATE, 1, SAMPLE_RATE // 100)
    data = frame.data  # a writable int16 memoryview of the frame's own buffer
    step = 2 * math.pi * TONE_HZ / SAMPLE_RATE
    for i in range(len(data)):
        data[i] = int(0.3 * 32767 * math.sin(step * (first_sample + i)))
    return frame


async def play_tone(source: lk.AudioSource) -> None:
    """Captures the tone until cancelled (``capture_frame`` paces it)."""
    sample = 0
    while True:
        await source.capture_frame(tone_frame(sample))
        sample += SAMPLE_RATE // 100


def frequency(pcm: bytes) -> float:
    """The strongest frequency of int16 mono ``pcm``: the median period between
    upward zero crossings (standard library only)."""
    samples = memoryview(pcm).cast("h")
    crossings = [i for i in range(1, len(samples)) if samples[i - 1] < 0 <= samples[i]]
    periods = sorted(b - a for a, b in itertools.pairwise(crossings))
    return SAMPLE_RATE / periods[len(periods) // 2] if periods else 0.0


async def listen(track: lk.RemoteAudioTrack, seconds: float) -> float:
    """The frequency bob hears in the last half of ``seconds`` of the track."""
    pcm = bytearray()
    wanted = int(seconds * SAMPLE_RATE) * 2
    async with lk.AudioStream(track, sample_rate=SAMPLE_RATE, num_channels=1) as stream:
        with trio.fail_after(seconds + 10):
            async for frame in stream:
                pcm += frame.data
                if len(pcm) >= wanted:
                    break
    return frequency(bytes(pcm[wanted // 2 : wanted]))


async def subscribed_and_ok(
    events: lk.EventSubscription, who: str, *, subscribe: bool
) -> lk.RemoteAudioTrack | None:
    """Waits for ``E2eeStateChanged(OK)`` and, if ``subscribe``, for the
    subscription to alice's track (in whichever order they come)."""
    track: lk.RemoteAudioTrack | None = None
    ok = False
    with trio.fail_after(10):
        async for event in events:
            match event:
                case lk.TrackSubscribed(track=lk.RemoteAudioTrack() as remote):
                    say(who, f"subscribed to alice's track {remote.sid}")
                    track = remote
                case lk.E2eeStateChanged(participant=p, state=state) if p is not None:
                    say(who, f"event: the cryptor of {p.identity}'s track is {state.name}")
                    ok = ok or state == lk.EncryptionState.OK
            if ok and (track is not None or not subscribe):
                break
    return track


async def run(url: str, token: Callable[..., str]) -> None:
    async with (
        lk.open_room(url, token("alice"), options=encrypted(SHARED_KEY)) as alice,
        lk.open_room(url, token("bob"), options=encrypted(SHARED_KEY)) as bob,
    ):
        say("alice", f"connected to the encrypted room {alice.name!r}")
        say("bob", f"connected; already in the room: {sorted(bob.remote_participants)}")
        alice_keys, bob_keys = alice.e2ee_manager.key_provider, bob.e2ee_manager.key_provider
        assert alice_keys is not None and bob_keys is not None
        check(alice.e2ee_manager.enabled, "encryption is not enabled")
        with alice.events() as alice_events, bob.events() as bob_events:
            say("demo", f"-- 1. an encrypted {TONE_HZ:g} Hz tone")
            async with (
                lk.AudioSource(SAMPLE_RATE, 1) as source,
                lk.LocalAudioTrack.create_audio_track("tone", source) as track,
                trio.open_nursery() as nursery,
            ):
                options = lk.TrackPublishOptions(source=lk.TrackSource.SOURCE_MICROPHONE)
                pub = await alice.local_participant.publish_track(track, options)
                nursery.start_soon(play_tone, source)
                say("alice", f"publishes the tone as track {pub.sid}")
                await subscribed_and_ok(alice_events, "alice", subscribe=False)
                remote = await subscribed_and_ok(bob_events, "bob", subscribe=True)
                assert remote is not None
                heard = await listen(remote, 1.0)
                say("bob", f"decrypts and hears {heard:.1f} Hz")
                check(abs(heard - TONE_HZ) <= TOLERANCE_HZ, f"heard {heard:.1f} Hz")

                say("demo", "-- 2. an encrypted data packet")
                secret = b"meet at noon"
                await alice.local_participant.publish_data(secret, topic="secret")
                say("alice", f"sent {secret!r} on topic 'secret'")
                with trio.fail_after(10):
                    async for event in bob_events:
                        if isinstance(event, lk.DataReceived) and event.topic == "secret":
                            sender = event.participant_identity
                            say("bob", f"received {event.payload!r} from {sender!r}")
                            check(event.payload == secret, "the packet did not arrive intact")
                            break

                say("demo", "-- 3. ratcheting the shared key")
                new_key = alice_keys.ratchet_shared_key()
                say("alice", f"ratcheted the key to {new_key.hex()[:16]}...")
                check(bob_keys.ratchet_shared_key() == new_key, "bob derived another key")
                say("bob", "ratcheted too: the same new key")
                heard = await listen(remote, 1.0)
                say("bob", f"still hears {heard:.1f} Hz")
                check(abs(heard - TONE_HZ) <= TOLERANCE_HZ, f"heard {heard:.1f} Hz after ratchet")

                say("demo", "-- 4. the frame cryptors")
                for who, room in (("alice", alice), ("bob", bob)):
                    for c in room.e2ee_manager.frame_cryptors():
                        say(
                            who,
                            f"cryptor of {c.participant_identity}'s track {c.track_sid}: "
                            f"key index {c.key_index}, enabled {c.enabled}",
                        )
                        check(c.track_sid == pub.sid and c.enabled, "unexpected cryptor")
                nursery.cancel_scope.cancel()
                await alice.local_participant.unpublish_track(pub.sid)
        say("demo", "leaving")
    handles = lk.live_native_handles()
    say("demo", f"native handles still owned: {handles}")
    check(handles == 0, "native handles leaked")


def main() -> int:
    parser = argparse.ArgumentParser(description="lkrtc_trio end-to-end encryption example")
    parser.add_argument("--url", help="a LiveKit server (default: start a local one)")
    parser.add_argument("--api-key", default=DEFAULT_API_KEY)
    parser.add_argument("--api-secret", default=DEFAULT_API_SECRET)
    args = parser.parse_args()
    room = f"e2ee-{secrets.token_hex(3)}"
    token = partial(mint_token, room=room, api_key=args.api_key, api_secret=args.api_secret)
    if args.url:
        trio.run(run, args.url, token)
    else:
        with LocalServer(binary=install_server()) as info:
            print(f"livekit-server {info.url}", flush=True)
            trio.run(run, info.url, token)
    print("e2ee example: everything as expected", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
