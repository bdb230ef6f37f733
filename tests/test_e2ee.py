"""End-to-end encryption on a real server: keyed participants hear a 440 Hz tone
and read data packets intact, a participant with the wrong key (or none) hears
nothing and is told why, ratcheting keeps media flowing, the frame cryptors
switch encryption per track, and the official SDK interoperates with the same
key. The API's typed errors and closed-room behaviour are checked too.

Measured native behaviour these tests rely on (livekit 1.2.x native core):

- a receiver with a wrong shared key reports ``DECRYPTION_FAILED``, but only with
  ``failure_tolerance >= 0``; with the default (-1, unlimited) it reports nothing
  and simply plays no audio;
- a receiver with no key for the sender (per-participant mode) reports
  ``MISSING_KEY``;
- encrypted data packets that do not decrypt are dropped (no ``DataReceived``).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import numpy as np
import pytest

import lkrtc_trio as lk
from lkrtc_trio.testing import ServerInfo
from lkrtc_trio.testing.pytest_plugin import TokenFactory

from .helpers import next_event, wait_released
from .peers._official import open_official_peer
from .tones import AMPLITUDE, RATE, play

pytestmark = pytest.mark.integration

KEY = b"the shared key of the test room"
WRONG = b"not the key of the test room"
STEP = 10  # seconds for any single exchange
TONE = 440.0
TONE_RMS = AMPLITUDE * 32767 / math.sqrt(2)
WINDOW = RATE // 10  # 100 ms analysis windows
#: seconds recorded for each "hears it / hears nothing" check; only the second
#: half is judged: a change of keys leaves up to ~0.5 s of jitter-buffer tail
LISTEN = 1.0
OK = lk.EncryptionState.OK


def encrypted(
    key: bytes | None = KEY, *, failure_tolerance: int = -1, key_ring_size: int = 16
) -> lk.RoomOptions:
    provider = lk.KeyProviderOptions(
        shared_key=key, failure_tolerance=failure_tolerance, key_ring_size=key_ring_size
    )
    return lk.RoomOptions(encryption=lk.E2EEOptions(key_provider_options=provider))


# -- audio -----------------------------------------------------------------------------------


@asynccontextmanager
async def publishing(room: lk.Room) -> AsyncIterator[lk.LocalTrackPublication]:
    """Publishes the tone as a microphone track for the block; then unpublishes
    it and closes the track and the source."""
    async with (
        lk.AudioSource(RATE, 1) as source,
        lk.LocalAudioTrack.create_audio_track("tone", source) as track,
        anyio.create_task_group() as tg,
    ):
        options = lk.TrackPublishOptions(source=lk.TrackSource.SOURCE_MICROPHONE)
        with anyio.fail_after(STEP):
            publication = await room.local_participant.publish_track(track, options)
        tg.start_soon(play, source, [(TONE, math.inf)])
        yield publication
        tg.cancel_scope.cancel()
        with anyio.fail_after(STEP):
            await room.local_participant.unpublish_track(publication.sid)


async def subscribed(events: lk.EventSubscription, identity: str) -> lk.RemoteAudioTrack:
    got = await next_event(
        events,
        lk.TrackSubscribed,
        lambda e: e.participant.identity == identity and e.track.kind == lk.TrackKind.KIND_AUDIO,
        STEP,
    )
    assert isinstance(got.track, lk.RemoteAudioTrack)
    return got.track


async def record(track: lk.RemoteAudioTrack, seconds: float = LISTEN) -> np.ndarray[Any, Any]:
    """``seconds`` of the track from now (a fresh stream), 48 kHz mono."""
    need = round(seconds * RATE)
    chunks: list[np.ndarray[Any, Any]] = []
    have = 0
    async with lk.AudioStream(track, sample_rate=RATE, num_channels=1, capacity=500) as stream:
        with anyio.fail_after(seconds + STEP):
            async for frame in stream:
                chunks.append(frame.to_numpy()[:, 0].astype(np.float64))
                have += len(chunks[-1])
                if have >= need:
                    break
    assert have >= need, "the stream ended early"
    return np.concatenate(chunks)[:need]


def analyse(samples: np.ndarray[Any, Any]) -> list[tuple[float, float]]:
    """(dominant frequency Hz, rms) of each 100 ms window."""
    out = []
    for start in range(0, len(samples) - WINDOW + 1, WINDOW):
        part = samples[start : start + WINDOW]
        spectrum = np.abs(np.fft.rfft(part * np.hanning(WINDOW)))
        freq = float(np.fft.rfftfreq(WINDOW, 1 / RATE)[int(np.argmax(spectrum))])
        out.append((freq, float(np.sqrt(np.mean(part**2)))))
    return out


def is_tone(freq: float, rms: float) -> bool:
    return abs(freq - TONE) <= 15 and rms >= 0.5 * TONE_RMS


def assert_hears(windows: list[tuple[float, float]]) -> None:
    """The settled second half of a recording is the tone, at its level."""
    settled = windows[len(windows) // 2 :]
    assert settled and all(is_tone(f, r) for f, r in settled), windows


def tone_share(samples: np.ndarray[Any, Any]) -> float:
    """The share of the settled second half's energy within 20 Hz of the tone:
    about 1 for the tone, about 0 for silence and for noise (what a decoder
    makes of frames it cannot decrypt)."""
    settled = samples[len(samples) // 2 :]
    power = np.abs(np.fft.rfft(settled * np.hanning(len(settled)))) ** 2
    near = np.abs(np.fft.rfftfreq(len(settled), 1 / RATE) - TONE) <= 20
    total = float(power.sum())
    return float(power[near].sum()) / total if total > 0 else 0.0


async def hears(track: lk.RemoteAudioTrack) -> None:
    assert_hears(analyse(await record(track)))


async def hears_nothing(track: lk.RemoteAudioTrack) -> None:
    samples = await record(track)
    assert tone_share(samples) < 0.1, analyse(samples)


def state_of(identity: str, state: lk.EncryptionState) -> Any:
    def match(e: lk.E2eeStateChanged) -> bool:
        return e.participant is not None and e.participant.identity == identity and e.state == state

    return match


async def state_changed(
    events: lk.EventSubscription,
    identity: str,
    state: lk.EncryptionState,
    seen: list[Any] | None = None,
) -> lk.E2eeStateChanged:
    return await next_event(events, lk.E2eeStateChanged, state_of(identity, state), STEP, seen)


def drain(events: lk.EventSubscription) -> list[lk.RoomEvent]:
    """The events already buffered in ``events``."""
    out = []
    while True:
        try:
            out.append(events.receive_nowait())
        except anyio.WouldBlock:
            return out


def one_cryptor(room: lk.Room) -> lk.FrameCryptor:
    cryptors = room.e2ee_manager.frame_cryptors()
    assert len(cryptors) == 1, cryptors
    return cryptors[0]


# -- tests -----------------------------------------------------------------------------------


async def test_same_shared_key_hears_the_tone(
    livekit_server: ServerInfo, livekit_token: TokenFactory
) -> None:
    url = livekit_server.url
    async with (
        lk.open_room(url, livekit_token("alice"), options=encrypted()) as alice,
        lk.open_room(url, livekit_token("bob"), options=encrypted()) as bob,
    ):
        assert alice.e2ee_manager.enabled and bob.e2ee_manager.enabled
        options = alice.e2ee_manager.options
        assert options is not None and options.encryption_type == lk.EncryptionType.GCM
        with alice.events() as mine, bob.events() as theirs:
            async with publishing(alice) as pub:
                track = await subscribed(theirs, "alice")
                assert track.sid == pub.sid
                await hears(track)
                # both ends report their cryptor working, for the sender's identity
                ok = await state_changed(mine, "alice", OK)
                assert ok.participant is alice.local_participant
                ok = await state_changed(theirs, "alice", OK)
                assert ok.participant is bob.remote_participants["alice"]
                sent, got = one_cryptor(alice), one_cryptor(bob)
                for c in (sent, got):
                    assert (c.participant_identity, c.track_sid) == ("alice", pub.sid)
                    assert c.enabled and c.key_index == 0
    await wait_released()


async def test_participant_encryption_status_is_reported(
    livekit_server: ServerInfo, livekit_token: TokenFactory
) -> None:
    url = livekit_server.url
    async with (
        lk.open_room(url, livekit_token("alice"), options=encrypted()) as alice,
        lk.open_room(url, livekit_token("plain")) as plain,
    ):
        assert not plain.e2ee_manager.enabled and plain.e2ee_manager.key_provider is None
        with plain.events() as events:
            async with publishing(alice):
                status = await next_event(
                    events,
                    lk.ParticipantEncryptionStatusChanged,
                    lambda e: e.participant.identity == "alice",
                    STEP,
                )
                assert status.is_encrypted
                assert status.participant is plain.remote_participants["alice"]
                # without the key the audio is noise at best, never the tone
                await hears_nothing(await subscribed(events, "alice"))
                assert plain.e2ee_manager.frame_cryptors() == []
    await wait_released()


async def test_official_peer_with_the_same_key_hears_and_is_heard(
    livekit_server: ServerInfo, livekit_token: TokenFactory
) -> None:
    url = livekit_server.url
    env = {"OFFICIAL_PEER_E2EE_KEY": KEY.hex()}
    async with lk.open_room(url, livekit_token("trio"), options=encrypted()) as room:
        with room.events() as events:
            async with open_official_peer(url, livekit_token("official"), env=env) as peer:
                async with publishing(room) as pub:
                    await peer.wait_for("track_subscribed", STEP, track_sid=pub.sid)
                    since = peer.mark()
                    cmd = await peer.send("record_audio", identity="trio", seconds=2 * LISTEN)
                    reply = await peer.wait_for("reply", STEP + 2 * LISTEN, since=since, id=cmd)
                    assert reply["ok"], reply
                    rec = reply["result"]
                    assert rec["track_sid"] == pub.sid
                    assert_hears(list(zip(rec["windows"], rec["rms"], strict=True)))
                    await peer.wait_for("e2ee_state_changed", STEP, identity="trio", state=int(OK))
                    exported = await peer.call("e2ee_export_shared_key")
                    assert exported["result"] == KEY.hex(), exported
                    cryptors = (await peer.call("e2ee_frame_cryptors"))["result"]
                    assert [(c["participant_identity"], c["track_sid"]) for c in cryptors] == [
                        ("trio", pub.sid)
                    ]
                # the other way: the official peer's tone, decrypted here
                since = peer.mark()
                cmd = await peer.send("publish_tone", frequency=TONE, seconds=3.0)
                track = await subscribed(events, "official")
                await hears(track)
                await state_changed(events, "official", OK)
                reply = await peer.wait_for("reply", STEP, since=since, id=cmd)
                assert reply["ok"], reply
    await wait_released()


async def test_wrong_key_hears_nothing_and_reports_decryption_failed(
    livekit_server: ServerInfo, livekit_token: TokenFactory
) -> None:
    url = livekit_server.url
    async with (
        lk.open_room(url, livekit_token("alice"), options=encrypted()) as alice,
        lk.open_room(url, livekit_token("bob"), options=encrypted()) as bob,
        lk.open_room(
            url, livekit_token("eve"), options=encrypted(WRONG, failure_tolerance=0)
        ) as eve,
    ):
        with bob.events() as bobs, eve.events() as eves:
            async with publishing(alice):
                good, bad = await subscribed(bobs, "alice"), await subscribed(eves, "alice")
                seen: list[Any] = []
                failed = await state_changed(
                    eves, "alice", lk.EncryptionState.DECRYPTION_FAILED, seen
                )
                assert failed.participant is eve.remote_participants["alice"]
                async with anyio.create_task_group() as tg:  # at the same time
                    tg.start_soon(hears, good)
                    tg.start_soon(hears_nothing, bad)
                # eve never decrypted a frame
                states = [e for e in seen + drain(eves) if isinstance(e, lk.E2eeStateChanged)]
                assert OK not in {e.state for e in states}, states
    await wait_released()


async def test_encrypted_data_reaches_only_the_keyed_participant(
    livekit_server: ServerInfo, livekit_token: TokenFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="lkrtc_trio.native")
    url = livekit_server.url
    payload = os.urandom(10_000)
    # alice first: the others know her from their join on; bob last: once his
    # side is up, the others' is too
    async with (
        lk.open_room(url, livekit_token("alice"), options=encrypted()) as alice,
        lk.open_room(url, livekit_token("eve"), options=encrypted(WRONG)) as eve,
        lk.open_room(url, livekit_token("plain")) as plain,
        lk.open_room(url, livekit_token("bob"), options=encrypted()) as bob,
        bob.events() as bobs,
        eve.events() as eves,
        plain.events() as plains,
    ):

        def ours(e: lk.DataReceived) -> bool:
            return e.topic == "secret"

        got: lk.DataReceived | None = None
        for attempt in range(10):  # until bob's side of the data channel is up
            await alice.local_participant.publish_data(bytes([attempt]) + payload, topic="secret")
            with anyio.move_on_after(1):
                got = await next_event(bobs, lk.DataReceived, ours, STEP)
            if got is not None:
                break
        assert got is not None, "bob never received the packet"
        assert got.payload[1:] == payload and got.participant_identity == "alice"
        assert got.participant is bob.remote_participants["alice"]
        assert got.kind == lk.DataPacketKind.KIND_RELIABLE
        # a last packet after bob's: by the time bob has it, the others had theirs
        await alice.local_participant.publish_data(b"last" + payload, topic="secret")
        last = await next_event(bobs, lk.DataReceived, lambda e: e.payload[:4] == b"last", STEP)
        assert last.payload == b"last" + payload
        await anyio.sleep(0.3)
        # eve's packets do not decrypt and plain cannot decrypt: both are dropped
        for events in (eves, plains):
            assert not [e for e in drain(events) if isinstance(e, lk.DataReceived)]
        # eve did receive them: her native core says it could not decrypt them
        with anyio.fail_after(STEP):
            while not any("decrypt data packet" in r.getMessage() for r in caplog.records):
                await anyio.sleep(0.05)
    await wait_released()


async def test_ratcheting_keeps_audio_flowing(
    livekit_server: ServerInfo, livekit_token: TokenFactory
) -> None:
    url = livekit_server.url
    async with (
        lk.open_room(url, livekit_token("alice"), options=encrypted()) as alice,
        lk.open_room(url, livekit_token("bob"), options=encrypted()) as bob,
    ):
        mine, theirs = alice.e2ee_manager.key_provider, bob.e2ee_manager.key_provider
        assert mine is not None and theirs is not None
        with bob.events() as events:
            async with publishing(alice):
                track = await subscribed(events, "alice")
                await hears(track)
                # both sides ratchet: they derive the same new key
                new = mine.ratchet_shared_key()
                assert new != KEY and theirs.ratchet_shared_key() == new
                assert mine.export_shared_key() == new == theirs.export_shared_key()
                await hears(track)
                # only the sender ratchets: the receiver follows by itself
                newer = mine.ratchet_shared_key(0)
                assert newer not in (new, KEY)
                await state_changed(events, "alice", lk.EncryptionState.KEY_RATCHETED)
                await hears(track)
    await wait_released()


async def test_per_participant_keys(
    livekit_server: ServerInfo, livekit_token: TokenFactory
) -> None:
    url = livekit_server.url
    per_participant = encrypted(None, failure_tolerance=0)
    key = b"alice's own key"
    async with (
        lk.open_room(url, livekit_token("alice"), options=per_participant) as alice,
        lk.open_room(url, livekit_token("bob"), options=per_participant) as bob,
        lk.open_room(url, livekit_token("carol"), options=per_participant) as carol,
    ):
        a, b, c = (r.e2ee_manager.key_provider for r in (alice, bob, carol))
        assert a is not None and b is not None and c is not None
        assert a.options.shared_key is None  # per-participant mode
        a.set_key("alice", key)  # what alice encrypts with
        b.set_key("alice", key)  # what bob decrypts alice's frames with
        assert a.export_key("alice") == key == b.export_key("alice")
        with pytest.raises(lk.NativeError):
            c.export_key("alice")  # carol has no key for alice (yet)
        with bob.events() as bobs, carol.events() as carols:
            async with publishing(alice):
                good, bad = await subscribed(bobs, "alice"), await subscribed(carols, "alice")
                await state_changed(carols, "alice", lk.EncryptionState.MISSING_KEY)
                async with anyio.create_task_group() as tg:
                    tg.start_soon(hears, good)
                    tg.start_soon(hears_nothing, bad)
                # carol gets the key: she hears it too
                c.set_key("alice", key)
                await state_changed(carols, "alice", OK)
                await hears(bad)
                # alice and bob ratchet alice's key: the same derivation on both sides
                new = a.ratchet_key("alice")
                assert new != key and b.ratchet_key("alice") == new == a.export_key("alice")
                await hears(good)
    await wait_released()


async def test_frame_cryptors_switch_encryption_per_track(
    livekit_server: ServerInfo, livekit_token: TokenFactory
) -> None:
    url = livekit_server.url
    async with (
        lk.open_room(url, livekit_token("alice"), options=encrypted()) as alice,
        lk.open_room(url, livekit_token("bob"), options=encrypted(failure_tolerance=0)) as bob,
    ):
        with bob.events() as events:
            async with publishing(alice) as pub:
                track = await subscribed(events, "alice")
                await hears(track)
                sender, receiver = one_cryptor(alice), one_cryptor(bob)
                assert sender.track_sid == receiver.track_sid == pub.sid

                # the sender stops encrypting: bob's decryptor fails on plain frames
                sender.set_enabled(False)
                assert not sender.enabled and not one_cryptor(alice).enabled
                await state_changed(events, "alice", lk.EncryptionState.DECRYPTION_FAILED)
                await hears_nothing(track)
                # bob stops decrypting too: the plain frames play
                receiver.set_enabled(False)
                assert not one_cryptor(bob).enabled
                await hears(track)
                sender.set_enabled(True)
                receiver.set_enabled(True)
                assert one_cryptor(alice).enabled and one_cryptor(bob).enabled
                await hears(track)

                # a second key at index 1 on both sides, and the sender switches to it
                for room in (alice, bob):
                    provider = room.e2ee_manager.key_provider
                    assert provider is not None
                    provider.set_shared_key(b"the second key", key_index=1)
                sender.set_key_index(1)
                assert sender.key_index == 1 == one_cryptor(alice).key_index
                await hears(track)

                # the whole manager off on both sides: plain audio again
                for room in (alice, bob):
                    room.e2ee_manager.set_enabled(False)
                    assert not room.e2ee_manager.enabled
                    assert not one_cryptor(room).enabled
                await hears(track)
    await wait_released()


async def test_key_provider_api_and_typed_errors(
    livekit_server: ServerInfo, livekit_token: TokenFactory
) -> None:
    url = livekit_server.url
    async with (
        lk.open_room(url, livekit_token("alice"), options=encrypted(key_ring_size=4)) as room,
        lk.open_room(url, livekit_token("plain")) as plain,
    ):
        manager = room.e2ee_manager
        kp = manager.key_provider
        assert kp is not None and kp.options.key_ring_size == 4 and kp.options.shared_key == KEY
        assert room.e2ee_manager is manager  # one manager per room

        # round trips, per index and per participant
        assert kp.export_shared_key() == KEY
        kp.set_shared_key(b"key three", 3)
        assert kp.export_shared_key(3) == b"key three" and kp.export_shared_key(0) == KEY
        kp.set_key("someone", bytearray(b"their key"), key_index=2)
        assert kp.export_key("someone", 2) == b"their key"
        ratcheted = kp.ratchet_key("someone", 2)
        assert ratcheted != b"their key" and kp.export_key("someone", 2) == ratcheted

        # nothing at that index: the native core has no key to give
        with pytest.raises(lk.NativeError, match="index 1"):
            kp.export_shared_key(1)
        with pytest.raises(lk.NativeError):
            kp.ratchet_shared_key(2)
        with pytest.raises(lk.NativeError):
            kp.export_key("nobody")
        with pytest.raises(lk.NativeError):
            kp.ratchet_key("nobody")

        # bad input: refused before anything is sent
        for call in (
            lambda: kp.set_shared_key("text"),  # type: ignore[arg-type]
            lambda: kp.set_shared_key(None),  # type: ignore[arg-type]
            lambda: kp.set_shared_key(b"k", 1.0),  # type: ignore[arg-type]
            lambda: kp.export_shared_key(True),
            lambda: kp.set_key(7, b"k"),  # type: ignore[arg-type]
            lambda: kp.export_key(None),  # type: ignore[arg-type]
            lambda: manager.set_enabled(1),  # type: ignore[arg-type]
        ):
            with pytest.raises(TypeError):
                call()
        for call in (
            lambda: kp.set_shared_key(b""),
            lambda: kp.set_shared_key(b"k", -1),
            lambda: kp.export_shared_key(4),  # key_ring_size 4
            lambda: kp.ratchet_shared_key(99),
            lambda: kp.set_key("", b"k"),
            lambda: kp.ratchet_key("someone", 4),
        ):
            with pytest.raises(ValueError):
                call()
        assert kp.export_shared_key(3) == b"key three"  # nothing above changed a key

        # a room without encryption has a manager with nothing to manage
        assert plain.e2ee_manager.options is None and not plain.e2ee_manager.enabled
        assert plain.e2ee_manager.key_provider is None
        assert plain.e2ee_manager.frame_cryptors() == []
        with pytest.raises(ValueError):
            plain.e2ee_manager.set_enabled(True)
        with pytest.raises(TypeError, match="no public constructor"):
            lk.E2EEManager()  # type: ignore[call-arg]
        with pytest.raises(TypeError, match="no public constructor"):
            lk.KeyProvider()  # type: ignore[call-arg]
        with pytest.raises(TypeError, match="no public constructor"):
            lk.FrameCryptor()  # type: ignore[call-arg]

        # a published track has a cryptor; it goes with the track
        async with publishing(room) as pub:
            cryptor = one_cryptor(room)
            assert (cryptor.participant_identity, cryptor.track_sid) == ("alice", pub.sid)
            with pytest.raises(ValueError):
                cryptor.set_key_index(4)
            with pytest.raises(TypeError):
                cryptor.set_enabled("yes")  # type: ignore[arg-type]
            async with publishing(room) as second:
                sids = {c.track_sid for c in manager.frame_cryptors()}
                assert sids == {pub.sid, second.sid}
        with anyio.fail_after(STEP):  # the native core drops them soon after unpublishing
            while manager.frame_cryptors():
                await anyio.sleep(0.02)
        with pytest.raises(lk.NativeError, match="unpublished"):
            cryptor.set_enabled(False)
        with pytest.raises(lk.NativeError):
            cryptor.set_key_index(1)

        async with publishing(room):
            cryptor = one_cryptor(room)
    # closed: every call raises RoomClosedError; the properties still answer
    assert manager.enabled and manager.key_provider is kp
    closed_calls: list[Callable[[], object]] = [
        lambda: kp.set_shared_key(b"k"),
        lambda: kp.export_shared_key(),
        lambda: kp.ratchet_shared_key(),
        lambda: kp.set_key("someone", b"k"),
        lambda: kp.export_key("someone"),
        lambda: kp.ratchet_key("someone"),
        lambda: manager.set_enabled(False),
        manager.frame_cryptors,
        lambda: cryptor.set_enabled(False),
        lambda: cryptor.set_key_index(0),
        plain.e2ee_manager.frame_cryptors,
    ]
    for closed_call in closed_calls:
        with pytest.raises(lk.RoomClosedError):
            closed_call()
    with pytest.raises(TypeError):  # bad input is still refused first
        kp.set_shared_key("text")  # type: ignore[arg-type]
    await wait_released()
