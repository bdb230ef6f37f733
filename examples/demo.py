"""The `make demo` walkthrough: a local server and two participants.

Starts ``livekit-server --dev`` on free ports (building it on first use),
connects "alice" and "bob" with lkrtc_trio, and then:

1. each sees the other, through room state and through events;
2. alice calls bob's RPC method ``greet`` (a round trip);
3. alice sends bob a data packet on the topic "chat";
4. alice sends bob data streams: a text written in several parts
   (``stream_text``) and a file (``send_file``); bob takes them from
   subscriptions (``text_streams``, ``byte_streams``), reads the text whole
   and saves the file (``write_to_file``), and both must arrive exactly;
5. bob updates his attributes, and alice sees the change;
6. alice publishes a 440 Hz tone as a microphone track; bob is subscribed
   to it (``TrackSubscribed``), reads 1.5 s of it with ``AudioStream`` and
   measures its frequency (numpy's FFT when numpy is installed, else zero
   crossings); then alice unpublishes it and bob's stream ends by itself;
7. bob leaves, alice sees him go; then alice leaves, and every native
   handle has been released.

Each step is printed with the time since the start. Exits 0 only if every
outcome is the expected one. See examples/rpc.py and examples/data.py for
more, examples/chat.py for data streams, examples/publish_tone.py and
examples/record_wav.py for audio, and docs/ for the concepts.

Run: ``make demo`` (or, with the server binary already installed by
``python -m lkrtc_trio.testing install-server``:
``python -m lkrtc_trio.testing.netns -- python examples/demo.py``;
``--url`` with ``--api-key``/``--api-secret`` uses a server of yours).
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import math
import os
import secrets
import statistics
import sys
import tempfile
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


def say(who: str, what: str) -> None:
    print(f"[{time.monotonic() - START:6.2f}s] {who:>6}: {what}", flush=True)


def check(ok: bool, what: str) -> None:
    """Stops the demo (exit status 1) on an unexpected outcome."""
    if not ok:
        raise SystemExit(f"demo failed: {what}")


async def see_each_other(alice: lk.Room, bob: lk.Room, alice_events: lk.EventSubscription) -> None:
    # livekit-server tells others about participants that publish nothing in
    # batches, every 3 s: expect about 3 s here.
    with trio.fail_after(20):
        seen = await alice.wait_for_participant("bob")  # from room state
        await bob.wait_for_participant("alice")
    say("alice", f"sees {seen.identity!r} (name {seen.name!r}, sid {seen.sid})")
    say("bob", f"sees {sorted(bob.remote_participants)}")
    # The same arrival as an event: room state is updated first, then the
    # event is delivered, so it is already in alice's subscription.
    with trio.fail_after(5):
        async for event in alice_events:
            match event:
                case lk.ParticipantConnected(participant=p):
                    say("alice", f"event: {p.identity!r} connected")
                    check(p.identity == "bob", f"{p.identity!r} connected, not bob")
                    break


async def rpc_round_trip(alice: lk.Room, bob: lk.Room) -> None:
    @bob.local_participant.register_rpc_method("greet")
    async def greet(data: lk.RpcInvocationData) -> str:
        say("bob", f"greet called by {data.caller_identity!r} with {data.payload!r}")
        return f"hello {data.caller_identity}!"

    say("bob", "registered the RPC method 'greet'")
    with trio.fail_after(10):
        reply = await alice.local_participant.perform_rpc(
            destination_identity="bob", method="greet", payload="hi", response_timeout=5
        )
    say("alice", f"greet replied {reply!r}")
    check(reply == "hello alice!", f"greet replied {reply!r}")


async def data_exchange(alice: lk.Room, bob_events: lk.EventSubscription) -> None:
    await alice.local_participant.publish_data(
        b"hi bob", topic="chat", destination_identities=["bob"]
    )
    say("alice", "sent 'hi bob' to bob on topic 'chat'")
    with trio.fail_after(10):
        async for event in bob_events:
            match event:
                case lk.DataReceived(payload=payload, participant=sender, topic="chat"):
                    who = sender.identity if sender is not None else None
                    say("bob", f"received {payload!r} from {who!r} on topic 'chat'")
                    check((payload, who) == (b"hi bob", "alice"), "wrong packet")
                    break


async def data_streams(alice: lk.Room, bob: lk.Room) -> None:
    parts = ["Data streams ", "carry text of any length, ", "written in parts: ", "ünïcödé 🎉"]
    sender = alice.local_participant
    # Subscribe before anything is sent: a stream on a topic that nobody
    # serves is dropped (and logged once per topic).
    with bob.text_streams("chat") as texts, bob.byte_streams("files") as files:
        async with sender.stream_text(topic="chat", destination_identities=["bob"]) as writer:
            for part in parts:
                await writer.write(part)
        # Leaving the block closed the stream; an exception would have aborted it.
        say("alice", f"streamed {len(parts)} parts of text to bob on topic 'chat'")
        with trio.fail_after(10):
            async with await texts.receive() as text_reader:  # closed when done
                text = await text_reader.read_all()
        say("bob", f"read {text!r} from {text_reader.participant_identity!r}")
        check(text == "".join(parts), f"the text arrived as {text!r}")
        check(text_reader.participant_identity == "alice", "the text's sender")

        with tempfile.TemporaryDirectory(prefix="lkrtc-demo-") as tmp:
            outbox, inbox = trio.Path(tmp, "alice"), trio.Path(tmp, "bob")
            await outbox.mkdir()
            await inbox.mkdir()
            content = os.urandom(100_000)
            await (outbox / "random.bin").write_bytes(content)
            sent = await sender.send_file(outbox / "random.bin", topic="files")
            say("alice", f"sent the file {sent.name!r} ({sent.size} bytes) on topic 'files'")
            with trio.fail_after(10):
                async with await files.receive() as file_reader:
                    saved = trio.Path(await file_reader.write_to_file(inbox))
            received = await saved.read_bytes()
            digest = hashlib.sha256(received).hexdigest()
            say("bob", f"saved {saved.name!r}: {len(received)} bytes, SHA-256 {digest[:16]}...")
            check(received == content, "the file did not arrive exactly")
            check(file_reader.info.stream_id == sent.stream_id, "not the stream sent")


async def attributes_update(bob: lk.Room, alice_events: lk.EventSubscription) -> None:
    await bob.local_participant.set_attributes({"status": "ready"})
    say("bob", f"set his attributes; now {bob.local_participant.attributes}")
    with trio.fail_after(10):
        async for event in alice_events:
            match event:
                case lk.ParticipantAttributesChanged(participant=p, changed_attributes=changed):
                    say("alice", f"event: {p.identity!r} changed attributes {dict(changed)}")
                    check(p.identity == "bob" and changed == {"status": "ready"}, "attributes")
                    check(p.attributes == {"status": "ready"}, "state not updated")
                    break


async def see_leave(alice_events: lk.EventSubscription) -> None:
    with trio.fail_after(20):
        async for event in alice_events:
            match event:
                case lk.ParticipantDisconnected(participant=p, reason=reason):
                    say("alice", f"event: {p.identity!r} disconnected ({reason.name})")
                    check(p.identity == "bob", f"{p.identity!r} left, not bob")
                    break


def tone_frame(first_sample: int) -> lk.AudioFrame:
    """10 ms of the tone (48 kHz mono), from sample ``first_sample``."""
    frame = lk.AudioFrame.create(SAMPLE_RATE, 1, SAMPLE_RATE // 100)
    data = frame.data  # a writable int16 memoryview of the frame's own buffer
    step = 2 * math.pi * TONE_HZ / SAMPLE_RATE
    for i in range(len(data)):
        data[i] = int(0.3 * 32767 * math.sin(step * (first_sample + i)))
    return frame


async def play_tone(room: lk.Room, stop: trio.Event) -> None:
    """Publishes the tone until `stop` is set, then unpublishes it and closes
    the track and the source (each holds a native handle)."""
    source = lk.AudioSource(SAMPLE_RATE, 1)
    track = lk.LocalAudioTrack.create_audio_track("tone", source)
    try:
        options = lk.TrackPublishOptions(source=lk.TrackSource.SOURCE_MICROPHONE)
        pub = await room.local_participant.publish_track(track, options)
        say("alice", f"publishes a {TONE_HZ:g} Hz tone as track {pub.sid}")
        sample = 0
        while not stop.is_set():
            await source.capture_frame(tone_frame(sample))  # waits while the queue is full
            sample += SAMPLE_RATE // 100
        source.clear_queue()
        await room.local_participant.unpublish_track(pub.sid)
        say("alice", f"unpublished the tone after {sample / SAMPLE_RATE:.2f} s of audio")
    finally:
        track.close()
        source.close()


def dominant_frequency(pcm: bytes | bytearray) -> tuple[float, str]:
    """The strongest frequency in int16 mono `pcm`, and how it was found."""
    try:
        import numpy as np
    except ImportError:
        return zero_crossing_frequency(memoryview(pcm).cast("h")), "zero crossings"
    x = np.frombuffer(pcm, dtype=np.int16) * np.hanning(len(pcm) // 2)
    spectrum = np.abs(np.fft.rfft(x))
    k = int(np.argmax(spectrum[1:-1])) + 1
    a, b, c = spectrum[k - 1], spectrum[k], spectrum[k + 1]  # parabolic peak interpolation
    shift = 0.5 * (a - c) / (a - 2 * b + c) if a - 2 * b + c else 0.0
    return float((k + shift) * SAMPLE_RATE / len(x)), "numpy FFT"


def zero_crossing_frequency(samples: memoryview, threshold: int = 1000) -> float:
    """Median period between upward zero crossings (with hysteresis, so that
    silence and noise do not count). Standard library only."""
    crossings: list[float] = []
    prev, armed = 0, False
    for i, x in enumerate(samples):
        if x < -threshold:
            armed = True
        elif armed and x >= 0 > prev:
            crossings.append(i - 1 + prev / (prev - x))
            armed = False
        prev = x
    periods = [b - a for a, b in itertools.pairwise(crossings)]
    return SAMPLE_RATE / statistics.median(periods) if periods else 0.0


async def audio_tone(alice: lk.Room, bob_events: lk.EventSubscription) -> None:
    stop = trio.Event()
    wanted = int(1.5 * SAMPLE_RATE) * 2  # bytes: 1.5 s of int16 mono
    pcm = bytearray()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(play_tone, alice, stop)
        try:
            with trio.fail_after(15):
                async for event in bob_events:
                    match event:
                        case lk.TrackSubscribed(track=lk.RemoteAudioTrack() as track):
                            say("bob", f"subscribed to alice's audio track {track.sid}")
                            break
            # 10 ms frames, in the format asked for (the native core resamples).
            # Leaving the block closes the stream and releases its native handle.
            async with lk.AudioStream(track, sample_rate=SAMPLE_RATE, num_channels=1) as stream:
                with trio.fail_after(15):
                    async for frame in stream:
                        pcm += frame.data  # the frame's int16 samples, as bytes
                        if len(pcm) >= wanted:
                            break
                say("bob", f"read {len(pcm) / 2 / SAMPLE_RATE:.2f} s of audio; alice may stop")
                stop.set()  # alice stops and unpublishes the track
                with trio.move_on_after(10) as waited:
                    async for _ in stream:  # ends by itself once the track is unsubscribed
                        pass
                check(not waited.cancelled_caught, "the stream did not end with its track")
                say("bob", f"the stream ended ({stream.dropped_frames} frames dropped)")
        finally:
            stop.set()
    freq, how = dominant_frequency(bytes(pcm[:wanted]))
    say("bob", f"hears {freq:.1f} Hz ({how})")
    check(abs(freq - TONE_HZ) <= TOLERANCE_HZ, f"heard {freq:.1f} Hz, not {TONE_HZ:g} Hz")


async def run(url: str, token: Callable[..., str]) -> None:
    async with lk.open_room(url, token("alice", name="Alice")) as alice:
        say("alice", f"connected to room {alice.name!r} as {alice.local_participant.sid}")
        with alice.events() as alice_events:  # every event from now on
            async with lk.open_room(url, token("bob", name="Bob")) as bob:
                say("bob", f"connected; already in the room: {sorted(bob.remote_participants)}")
                with bob.events() as bob_events:
                    say("demo", "-- 1. seeing each other")
                    await see_each_other(alice, bob, alice_events)
                    say("demo", "-- 2. an RPC round trip")
                    await rpc_round_trip(alice, bob)
                    say("demo", "-- 3. a data packet")
                    await data_exchange(alice, bob_events)
                    say("demo", "-- 4. data streams: a text in parts, and a file")
                    await data_streams(alice, bob)
                    say("demo", "-- 5. an attributes update")
                    await attributes_update(bob, alice_events)
                    say("demo", f"-- 6. audio: a {TONE_HZ:g} Hz tone")
                    await audio_tone(alice, bob_events)
                say("bob", "leaving")
            say("demo", "-- 7. leaving")
            await see_leave(alice_events)
        say("alice", "leaving")
    handles = lk.live_native_handles()
    say("demo", f"native handles still owned: {handles}")
    check(handles == 0, "native handles leaked")


def main() -> int:
    parser = argparse.ArgumentParser(description="lkrtc_trio demo")
    parser.add_argument("--url", help="a LiveKit server (default: start a local one)")
    parser.add_argument("--api-key", default=DEFAULT_API_KEY)
    parser.add_argument("--api-secret", default=DEFAULT_API_SECRET)
    args = parser.parse_args()
    room = f"demo-{secrets.token_hex(3)}"
    token = partial(mint_token, room=room, api_key=args.api_key, api_secret=args.api_secret)
    if args.url:
        trio.run(run, args.url, token)
    else:
        with LocalServer(binary=install_server()) as info:
            print(f"livekit-server {info.url} (log: see LocalServer.log_path)", flush=True)
            trio.run(run, info.url, token)
    print("demo finished OK", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
