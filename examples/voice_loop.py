"""A voice-agent-shaped loop, without any AI: hear, process, mix, answer, transcribe.

Starts ``livekit-server --dev`` on free ports (or uses ``--url``) and connects
two participants:

* "caller" speaks: three "utterances" (speech-like: a 440, 660 or 550 Hz
  voice with vibrato and four syllables a second, lasting 600, 800 and
  500 ms, with 500 ms pauses) over a low hiss, published as a microphone
  track;
* "agent" does what a voice agent does with each 10 ms of it:

  1. hears it: ``AudioStream.from_participant`` (the caller's microphone,
     whichever track that is), with ``noise_cancellation=`` a
     ``FrameProcessor`` of its own (a noise gate standing in for a denoiser
     plugin);
  2. cleans it with an ``AudioProcessingModule`` (echo cancellation, noise
     suppression, high-pass filter), feeding what it plays as the reverse
     stream, so that the echo canceller knows what to remove;
  3. when an utterance ends (200 ms of quiet), answers it: echoes it back,
     mixed by an ``AudioMixer`` over a quiet 200 Hz background tone that
     plays all along, published as its own microphone track;
  4. writes a transcript of each utterance with ``stream_text`` on the
     ``lk.transcription`` topic: "heard N ms of audio".

Turn taking matters for the echo canceller: while the caller speaks, the
agent plays only the background, so the far end (what it plays) is not a
copy of the near end (what it hears). Echoing the caller while they still
speak would make the caller's own voice look like an echo, and AEC would
remove it.

The caller checks what came back: one transcript per utterance with about its
duration, and the agent's voice carrying each utterance's frequency over the
background tone. Every step is printed. Exits 0 only if every outcome is the
expected one (last line: "voice_loop example: everything as expected"). See
docs/media.md, "A voice agent's audio path".

Run (as root, inside a private network namespace: libwebrtc ignores
loopback)::

    python -m lkrtc_trio.testing.netns -- python examples/voice_loop.py
    python examples/voice_loop.py --url wss://... --api-key KEY --api-secret SECRET
"""

from __future__ import annotations

import argparse
import secrets
import sys
import time
from collections.abc import AsyncIterator, Callable
from functools import partial

import numpy as np
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
RATE = 48000
FRAME = RATE // 100  # 10 ms
#: (frequency Hz, milliseconds) of each utterance; PAUSE ms of hiss before each, in
#: which the agent answers (turn taking, as a voice agent does)
UTTERANCES = [(440.0, 600), (660.0, 800), (550.0, 500)]
PAUSE = 1300
SPEECH_LEVEL, HISS_LEVEL, BACKGROUND_LEVEL = 0.3, 0.01, 0.03  # of full scale
BACKGROUND_HZ = 200.0
VOICE_RMS = 1000.0  # a 10 ms frame louder than this is speech
HANGOVER_MS = 200  # an utterance ends after this much quiet
TRANSCRIPTION = "lk.transcription"


def say(who: str, what: str) -> None:
    print(f"[{time.monotonic() - START:6.2f}s] {who:>6}: {what}", flush=True)


def check(ok: bool, what: str) -> None:
    """Stops the example (exit status 1) on an unexpected outcome."""
    if not ok:
        raise SystemExit(f"voice_loop example failed: {what}")


def rms(frame: lk.AudioFrame) -> float:
    samples = frame.to_numpy().astype(np.float64)
    return float(np.sqrt(np.mean(samples**2)))


def dominant(samples: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64) * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / RATE)[np.argmax(spectrum)])


# -- the caller -------------------------------------------------------------------------


def utterance(frequency: float, ms: int) -> np.ndarray:
    """A voiced sound: ``frequency`` with a 5 Hz, 2 % vibrato, in syllables
    (a 4 Hz swell between 40 % and 100 % level). Unlike a steady tone, the
    noise suppressor does not take it for noise, nor the echo canceller for
    an echo of itself."""
    t = np.arange(RATE * ms // 1000) / RATE
    phase = 2 * np.pi * frequency * (t - 0.02 / (2 * np.pi * 5) * np.cos(2 * np.pi * 5 * t))
    envelope = 0.7 - 0.3 * np.cos(2 * np.pi * 4 * t)
    return SPEECH_LEVEL * 32767 * envelope * np.sin(phase)


async def speak(source: lk.AudioSource) -> None:
    """The utterances, each after a pause, over a low hiss, then a last pause."""
    rng = np.random.default_rng(7)
    silence = np.zeros(RATE * PAUSE // 1000)
    audio = np.concatenate(
        [part for f, ms in UTTERANCES for part in (silence, utterance(f, ms))] + [silence] * 2
    )
    audio += rng.normal(0.0, HISS_LEVEL * 32767, len(audio))
    samples = np.clip(audio, -32768, 32767).astype(np.int16)
    for start in range(0, len(samples), FRAME):
        await source.capture_frame(lk.AudioFrame.from_numpy(samples[start : start + FRAME], RATE))
    await source.wait_for_playout()


async def collect_transcripts(
    caller: lk.Room, out: list[str], done: trio.Event, task_status: trio.TaskStatus[None]
) -> None:
    """Every transcript, in order; ``done`` is set once there is one per utterance."""
    with caller.text_streams(TRANSCRIPTION) as incoming:
        task_status.started()
        async for reader in incoming:
            text = await reader.read_all()
            attributes = dict(reader.info.attributes)
            say("caller", f"transcript {text!r} (segment {attributes.get('lk.segment_id')})")
            out.append(text)
            if len(out) >= len(UTTERANCES):
                done.set()


async def listen(track: lk.Track, seconds: float) -> np.ndarray:
    """``seconds`` of the agent's voice, from its first audible frame on."""
    chunks: list[np.ndarray] = []
    async with lk.AudioStream(track, sample_rate=RATE, num_channels=1) as stream:
        async for frame in stream:
            if chunks or rms(frame) > 100:
                chunks.append(frame.to_numpy()[:, 0].copy())
            if len(chunks) * 10 >= seconds * 1000:
                break
    return np.concatenate(chunks)


# -- the agent --------------------------------------------------------------------------


class NoiseGate(lk.FrameProcessor[lk.AudioFrame]):
    """Silences frames quieter than ``threshold`` RMS (a stand-in for a
    denoiser plugin: it runs on each received frame before the agent sees it)."""

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold

    @property
    def enabled(self) -> bool:
        return True

    def _process(self, frame: lk.AudioFrame) -> lk.AudioFrame:
        if rms(frame) < self.threshold:
            frame.to_numpy()[:] = 0
        return frame

    def _close(self) -> None:
        """Nothing to release (a plugin would free its model here)."""


async def background() -> AsyncIterator[lk.AudioFrame]:
    """A quiet tone, for ever (the mixer pulls it at the pace of the voice)."""
    t = np.arange(FRAME) / RATE
    n = 0
    while True:
        wave = BACKGROUND_LEVEL * 32767 * np.sin(2 * np.pi * BACKGROUND_HZ * (t + n * FRAME / RATE))
        yield lk.AudioFrame.from_numpy(wave.astype(np.int16), RATE)
        n += 1


async def agent(room: lk.Room, caller: lk.RemoteParticipant, stats: dict[str, int]) -> None:
    """Runs until cancelled: hear -> gate -> APM -> (echo + background) -> publish,
    and a transcript at the end of each utterance."""
    gate = NoiseGate(threshold=5 * HISS_LEVEL * 32767)
    voice_in, voice_out = trio.open_memory_channel[lk.AudioFrame](50)
    async with (
        lk.AudioStream.from_participant(
            participant=caller,
            track_source=lk.TrackSource.SOURCE_MICROPHONE,
            noise_cancellation=gate,
        ) as heard,
        lk.AudioProcessingModule(
            echo_cancellation=True, noise_suppression=True, high_pass_filter=True
        ) as apm,
        lk.AudioSource(RATE, 1, queue_size_ms=100) as source,
        lk.LocalAudioTrack.create_audio_track("agent-voice", source) as track,
        lk.AudioMixer(RATE, 1, blocksize=FRAME, capacity=5) as mixer,
        trio.open_nursery() as nursery,
    ):
        options = lk.TrackPublishOptions(source=lk.TrackSource.SOURCE_MICROPHONE)
        await room.local_participant.publish_track(track, options)
        say("agent", "publishes its voice; mixing the echo over a 200 Hz background")
        mixer.add_stream(voice_out)  # our replies
        mixer.add_stream(background())

        async def speak_mix() -> None:
            async for frame in mixer:
                apm.process_reverse_stream(frame)  # what we play: the echo reference
                await source.capture_frame(frame)
                stats["played"] += 1

        nursery.start_soon(speak_mix)
        apm.set_stream_delay_ms(100)  # our playout queue, roughly

        async def reply(frames: list[lk.AudioFrame]) -> None:
            for frame in frames:
                await voice_in.send(frame)  # the mixer takes them at the playout pace

        utterance: list[lk.AudioFrame] = []  # from its first voiced frame on
        quiet = 0  # ms of quiet since the last voiced frame
        segment = 0
        async for frame in heard:
            apm.process_stream(frame)  # cleaned in place
            stats["heard"] += 1
            if rms(frame) > VOICE_RMS:
                quiet = 0
            elif utterance:
                quiet += 10
            if rms(frame) > VOICE_RMS or utterance:
                utterance.append(frame)
            if utterance and quiet >= HANGOVER_MS:
                # the turn is over: answer with what we heard, and transcribe it
                speech, utterance = utterance[: len(utterance) - quiet // 10], []
                speaking_ms = 10 * len(speech)
                nursery.start_soon(reply, speech)
                segment += 1
                async with room.local_participant.stream_text(
                    topic=TRANSCRIPTION,
                    attributes={
                        "lk.segment_id": f"SG_{segment}",
                        "lk.transcription_final": "true",
                    },
                ) as writer:
                    await writer.write(f"heard {speaking_ms} ms of audio")
                say("agent", f"utterance {segment}: {speaking_ms} ms; transcript sent")


async def run(url: str, token: Callable[..., str]) -> None:
    async with (
        lk.open_room(url, token("caller")) as caller,
        lk.open_room(url, token("agent")) as agent_room,
        trio.open_nursery() as nursery,
    ):
        say("caller", f"connected to {caller.name!r}")
        remote_caller = await agent_room.wait_for_participant("caller")
        stats = {"heard": 0, "played": 0}
        nursery.start_soon(agent, agent_room, remote_caller, stats)
        transcripts: list[str] = []
        transcribed = trio.Event()
        await nursery.start(collect_transcripts, caller, transcripts, transcribed)

        with caller.events() as events:
            async with (
                lk.AudioSource(RATE, 1) as mic,
                lk.LocalAudioTrack.create_audio_track("mic", mic) as mic_track,
            ):
                options = lk.TrackPublishOptions(source=lk.TrackSource.SOURCE_MICROPHONE)
                pub = await caller.local_participant.publish_track(mic_track, options)
                say("caller", "speaks: " + ", ".join(f"{f:g} Hz {ms} ms" for f, ms in UTTERANCES))
                with trio.fail_after(20):
                    async for event in events:
                        if isinstance(event, lk.TrackSubscribed):
                            voice = event.track
                            break
                say("caller", "subscribed to the agent's voice")
                total = sum(ms + PAUSE for _, ms in UTTERANCES) / 1000
                async with trio.open_nursery() as talk:
                    talk.start_soon(speak, mic)
                    with trio.fail_after(total + 10):
                        heard = await listen(voice, total + 1.5)  # + the last answer
                with trio.fail_after(10):
                    await transcribed.wait()
                await caller.local_participant.unpublish_track(pub.sid)
        nursery.cancel_scope.cancel()

    say("demo", f"agent heard {stats['heard']} frames, played {stats['played']}")
    want = [f"heard {ms} ms of audio" for _, ms in UTTERANCES]
    got_ms = [int(t.split()[1]) for t in transcripts]
    check(len(transcripts) == len(UTTERANCES), f"transcripts {transcripts}, wanted {want}")
    for (_, ms), got in zip(UTTERANCES, got_ms, strict=True):
        check(abs(got - ms) <= 150, f"an utterance of {ms} ms transcribed as {got} ms")
    # what the caller heard back: each utterance's frequency, over the background
    window = RATE // 10
    found: list[float] = []
    for start in range(0, len(heard) - window, window):
        chunk = heard[start : start + window]
        if np.sqrt(np.mean(chunk.astype(np.float64) ** 2)) > VOICE_RMS:
            f = dominant(chunk)
            nearest = min((u for u, _ in UTTERANCES), key=lambda u: abs(u - f))
            if abs(nearest - f) < 30 and (not found or found[-1] != nearest):
                found.append(nearest)
    say("caller", "heard back: " + ", ".join(f"{f:.0f} Hz" for f in found))
    check(found == [f for f, _ in UTTERANCES], f"heard {found}, wanted {UTTERANCES}")
    quiet = [
        heard[s : s + window]
        for s in range(0, len(heard) - window, window)
        if np.sqrt(np.mean(heard[s : s + window].astype(np.float64) ** 2)) < VOICE_RMS
    ]
    check(bool(quiet), "no pause heard")
    bg = dominant(np.concatenate(quiet))
    say("caller", f"between utterances: the {bg:.0f} Hz background")
    check(abs(bg - BACKGROUND_HZ) < 10, f"background at {bg:.0f} Hz")
    handles = lk.live_native_handles()
    say("demo", f"native handles still owned: {handles}")
    check(handles == 0, "native handles leaked")


def main() -> int:
    parser = argparse.ArgumentParser(description="lkrtc_trio voice-agent loop example")
    parser.add_argument("--url", help="a LiveKit server (default: start a local one)")
    parser.add_argument("--api-key", default=DEFAULT_API_KEY)
    parser.add_argument("--api-secret", default=DEFAULT_API_SECRET)
    args = parser.parse_args()
    room = f"voice-{secrets.token_hex(3)}"
    token = partial(mint_token, room=room, api_key=args.api_key, api_secret=args.api_secret)
    if args.url:
        trio.run(run, args.url, token)
    else:
        with LocalServer(binary=install_server()) as info:
            print(f"livekit-server {info.url}", flush=True)
            trio.run(run, info.url, token)
    print("voice_loop example: everything as expected", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
