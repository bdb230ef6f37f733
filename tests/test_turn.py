"""ICE configuration and TURN: relay-only media through livekit-server's
embedded TURN server (``LocalServer(turn=True)``), proved from both ends.

The client side: ``room.get_rtc_stats()``. Every transport's selected
candidate pair (``transport.selected_candidate_pair_id``) must have a local
candidate of type RELAY whose URL is the test server's TURN URL and whose port
is one of the TURN server's relay ports, and the pair must have carried the
audio (``candidate_pair.bytes_sent`` / ``bytes_received``, and the
``outbound_rtp``/``inbound_rtp`` audio streams ride on that transport). The
server side: its selected pair's remote candidate is a ``relay`` candidate on
the very port the client reports, and its log never says a relay-only
participant became active over a direct connection (``"connectionType"`` is
``"turn"``, or now and then ``"unknown"`` when it logged before the first
packet).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import pytest

import lkrtc_trio as lk
from lkrtc_trio._proto import stats_pb2
from lkrtc_trio.testing import LocalServer, ServerInfo, install_server, mint_token
from lkrtc_trio.testing.pytest_plugin import TokenFactory

from .helpers import wait_released, wait_server
from .tones import RATE, dominant, play

integration = pytest.mark.integration

RELAY_ONLY = lk.RtcConfiguration(ice_transport_type=lk.IceTransportType.TRANSPORT_RELAY)
#: Short: the failing connects below wait for all of it.
FAIL_CONNECT_TIMEOUT = 2.0
#: The native core's fixed wait for the peer connections (its
#: ``ICE_CONNECT_TIMEOUT``), which ``connect_timeout`` does not shorten.
NATIVE_ICE_WAIT = 15.0


# --------------------------------------------------------------------------- helpers


class TurnServer:
    """The module's TURN-enabled server: where it listens and its log."""

    def __init__(self, server: LocalServer) -> None:
        self.server = server
        self.info = server.info
        assert self.info.turn_port is not None and self.info.turn_relay_ports is not None
        self.turn_url: str = self.info.turn_url or ""
        self.relay_ports = range(self.info.turn_relay_ports[0], self.info.turn_relay_ports[1] + 1)

    def token(self, identity: str, room: str) -> str:
        return mint_token(
            identity, room, api_key=self.info.api_key, api_secret=self.info.api_secret
        )

    def log_records(self) -> list[dict[str, Any]]:
        """The server log's structured lines: message + JSON fields."""
        assert self.server.log_path is not None
        records = []
        for line in Path(self.server.log_path).read_text(errors="replace").splitlines():
            # time, level, logger, caller, message, JSON fields
            parts = line.split("\t")
            if len(parts) < 6 or not parts[5].startswith("{"):
                continue
            try:
                fields = json.loads(parts[5])
            except ValueError:
                continue
            records.append({"msg": parts[4], **fields})
        return records


@pytest.fixture(scope="module")
def turn_server() -> Iterator[TurnServer]:
    """A livekit-server with its embedded TURN server, for this module."""
    server = LocalServer(binary=install_server(), turn=True)
    server.start()
    try:
        yield TurnServer(server)
    finally:
        server.stop()


_B62 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


def base62(src: bytes) -> str:
    """github.com/jxskiss/base62's StdEncoding (not the usual big-number
    base 62): 6 bits at a time from the end, 5 when the value is 30..63."""
    out = []
    pos = len(src) * 8
    while pos > 0:
        size = 6
        r, i = pos & 7, pos >> 3
        if r == 0:
            i, r = i - 1, 8
        b = src[i] >> (8 - r)
        if r < 6 and i > 0:
            b |= src[i - 1] << r
        b &= 0x3F
        if b & 0x1E == 0x1E:
            if pos > 6 or b > 0x1F:
                size = 5
            b &= 0x1F
        out.append(_B62[b])
        pos -= size
    return "".join(out)


def turn_credentials(
    api_key: str, api_secret: str, participant_id: str = "PA_explicit", ttl: int = 300
) -> tuple[str, str]:
    """Credentials livekit-server's embedded TURN server accepts (its
    ``TURNAuthHandler``): username ``base62("<api key>|<participant id>|<expiry>")``,
    password ``base62(sha256("<api secret>|<participant id>|<expiry>"))``. The
    participant id is not checked against the rooms."""
    expiry = int(time.time()) + ttl
    username = base62(f"{api_key}|{participant_id}|{expiry}".encode())
    password = base62(hashlib.sha256(f"{api_secret}|{participant_id}|{expiry}".encode()).digest())
    return username, password


def candidate_type(value: Any) -> str:
    """``"relay"``, ``"host"``... from the report's value (the proto enum's
    number, or a name)."""
    name: Any = getattr(value, "name", value)
    if isinstance(name, int):
        name = stats_pb2.IceCandidateType.Name(value)
    return str(name).lower()


def selected_paths(stats: Sequence[lk.RtcStat]) -> list[dict[str, Mapping[str, Any]]]:
    """For each transport with a selected candidate pair: that transport, the
    pair and its local and remote candidates."""
    by_id = {s.values.get("rtc.id"): s for s in stats}
    paths = []
    for transport in (s for s in stats if s.type == "transport"):
        pair_id = transport.values.get("transport.selected_candidate_pair_id")
        if not pair_id:
            continue
        pair = by_id[pair_id]
        assert pair.type == "candidate_pair"
        local = by_id[pair.values["candidate_pair.local_candidate_id"]]
        remote = by_id[pair.values["candidate_pair.remote_candidate_id"]]
        assert (local.type, remote.type) == ("local_candidate", "remote_candidate")
        paths.append(
            {
                "transport": transport.values,
                "pair": pair.values,
                "local": local.values,
                "remote": remote.values,
            }
        )
    return paths


def assert_relayed(
    stats: Sequence[lk.RtcStat], turn: TurnServer, rtp: str, byte_key: str
) -> list[dict[str, Mapping[str, Any]]]:
    """Every selected pair of ``stats`` goes through ``turn`` to the SFU, and
    the audio ``rtp`` stream (``outbound_rtp``/``inbound_rtp``) rides on one
    of them, which carried at least as many bytes (``byte_key``) as the stream.
    Returns the selected paths."""
    paths = selected_paths(stats)
    assert paths, [s.type for s in stats]
    for path in paths:
        local, remote, pair = path["local"], path["remote"], path["pair"]
        assert candidate_type(local["candidate.candidate_type"]) == "relay", path
        assert local["candidate.url"] == turn.turn_url, path
        assert local["candidate.address"] == turn.info.host, path
        assert local["candidate.port"] in turn.relay_ports, path
        assert local["candidate.protocol"] == "udp", path
        # The far end is the SFU's own UDP port, reached from the relay.
        assert candidate_type(remote["candidate.candidate_type"]) == "host", path
        assert (remote["candidate.address"], remote["candidate.port"]) == (
            turn.info.host,
            turn.info.udp_port,
        ), path
        assert pair["candidate_pair.nominated"] is True, path
        assert stats_pb2.IceCandidatePairState.Name(pair["candidate_pair.state"]) == (
            "PAIR_SUCCEEDED"
        ), path
    audio = [s.values for s in stats if s.type == rtp and s.values.get("stream.kind") == "audio"]
    assert audio, [s.type for s in stats]
    for stream in audio:
        (path,) = [p for p in paths if p["transport"]["rtc.id"] == stream["stream.transport_id"]]
        rtp_bytes = stream["sent.bytes_sent" if rtp == "outbound_rtp" else "inbound.bytes_received"]
        assert rtp_bytes > 10_000, stream
        assert path["pair"][byte_key] >= rtp_bytes, (path, stream)
    return paths


async def listen(events: lk.EventSubscription) -> float:
    """Waits for an audio track, then returns the frequency of its first
    1.5 s of sound (the first 0.5 s of which is skipped)."""
    with anyio.fail_after(15):
        async for event in events:
            if isinstance(event, lk.TrackSubscribed) and event.track.kind == (
                lk.TrackKind.KIND_AUDIO
            ):
                break
        else:
            raise AssertionError("room ended")
        stream = lk.AudioStream(event.track, sample_rate=RATE, num_channels=1, capacity=1000)
        chunks: list[np.ndarray] = []
        try:
            async for frame in stream:
                samples = frame.to_numpy()[:, 0]
                if chunks or np.abs(samples).max() > 1000:  # from the first audible one
                    chunks.append(samples.copy())
                if sum(map(len, chunks)) >= RATE * 1.5:
                    break
        finally:
            stream.close()
    return dominant(np.concatenate(chunks)[RATE // 2 :])


async def hear_tone(pub: lk.Room, *subs: lk.Room) -> list[float]:
    """``pub`` publishes 440 Hz; returns the frequency each of ``subs`` hears."""
    heard: list[float] = [0.0] * len(subs)
    async with lk.AudioSource(RATE, 1) as source:
        track = lk.LocalAudioTrack.create_audio_track("tone", source)
        with contextlib.ExitStack() as stack:
            subscriptions = [stack.enter_context(sub.events()) for sub in subs]

            async def one(i: int) -> None:
                heard[i] = await listen(subscriptions[i])

            await pub.local_participant.publish_track(
                track, lk.TrackPublishOptions(source=lk.TrackSource.SOURCE_MICROPHONE)
            )
            async with anyio.create_task_group() as nursery:
                nursery.start_soon(play, source, [(440, 10.0)])
                async with anyio.create_task_group() as listeners:
                    for i in range(len(subs)):
                        listeners.start_soon(one, i)
                nursery.cancel_scope.cancel()
        await pub.local_participant.unpublish_track(track.sid)
        track.close()
    return heard


def active_records(turn: TurnServer, room: str) -> dict[str, dict[str, Any]]:
    """The server's "participant active" lines of ``room``, by identity."""
    return {
        r["participant"]: r
        for r in turn.log_records()
        if r["msg"] == "participant active" and r.get("room") == room
    }


def server_relay_ports(turn: TurnServer, room: str, identity: str) -> set[int]:
    """Ports of the relay candidates the server's selected pairs reached
    ``identity`` on (its "selected ICE candidate pair changed" lines)."""
    return {
        r["pair"]["remotePort"]
        for r in turn.log_records()
        if r["msg"] == "selected ICE candidate pair changed"
        and r.get("room") == room
        and r.get("participant") == identity
        and r["pair"].get("remoteCandidateType") == "relay"
    }


# --------------------------------------------------------------------------- unit


def test_ice_server_rejects_non_stun_turn_urls() -> None:
    with pytest.raises(ValueError, match="not a STUN/TURN url"):
        lk.IceServer(urls=["http://x"])
    with pytest.raises(ValueError):
        lk.IceServer(urls=[])
    with pytest.raises(TypeError):
        lk.IceServer(urls=["turn:x:3478"], username=1)  # type: ignore[arg-type]
    server = lk.IceServer(urls="turn:x:3478?transport=udp", username="u", password="p")
    assert server.urls == ("turn:x:3478?transport=udp",)


def test_rtc_configuration_rejects_non_ice_servers() -> None:
    with pytest.raises(TypeError, match="IceServer"):
        lk.RtcConfiguration(ice_servers=[object()])  # type: ignore[list-item]
    with pytest.raises(TypeError):
        lk.RoomOptions(rtc_config=object())  # type: ignore[arg-type]


def test_base62_matches_livekit_server() -> None:
    # Values printed by github.com/jxskiss/base62 v1.1.0 (what the server uses).
    assert base62(b"devkey|PA_abc|1795997295") == "1kjM3kTO1kzNxw3YiF2XBBFfyrs1srMyA"
    assert base62(b"\xff\xff\xff") == "ffffP"
    assert base62(b"hello world") == "kxmcvdHIvxGblhG"
    assert (
        base62(hashlib.sha256(b"secret|PA_abc|1795997295").digest())
        == "HipXHPBk47s4NTwv6omDj7JFV6eBbgJIW14MOprPqTO"
    )


# --------------------------------------------------------------------------- integration


async def wait_active(turn: TurnServer, room: str, identities: set[str]) -> dict[str, Any]:
    """The server's "participant active" lines of ``identities`` in ``room``."""
    with anyio.fail_after(5):
        while set(active := active_records(turn, room)) != identities:
            await anyio.sleep(0.1)
    return active


@integration
async def test_relay_only_tone_goes_through_turn(turn_server: TurnServer) -> None:
    """A relay-only publisher, a relay-only and a plain listener: both hear
    440 Hz; the relay-only peers' media went through the TURN server, the
    plain one's did not."""
    room = f"turn-tone-{time.monotonic_ns()}"
    url = turn_server.info.url
    relay = lk.RoomOptions(rtc_config=RELAY_ONLY)
    async with (
        lk.open_room(url, turn_server.token("pub", room), options=relay) as pub,
        lk.open_room(url, turn_server.token("sub", room), options=relay) as sub,
        lk.open_room(url, turn_server.token("plain", room)) as plain,
    ):
        heard = await hear_tone(pub, sub, plain)
        assert all(abs(f - 440) <= 15 for f in heard), heard
        pub_stats, sub_stats, plain_stats = [await r.get_rtc_stats() for r in (pub, sub, plain)]
        sent = assert_relayed(
            pub_stats.publisher_stats, turn_server, "outbound_rtp", "candidate_pair.bytes_sent"
        )
        received = assert_relayed(
            [*sub_stats.subscriber_stats, *sub_stats.publisher_stats],
            turn_server,
            "inbound_rtp",
            "candidate_pair.bytes_received",
        )
        # The plain participant takes the direct path: host candidates only.
        direct = selected_paths([*plain_stats.subscriber_stats, *plain_stats.publisher_stats])
        assert direct
        assert {candidate_type(p["local"]["candidate.candidate_type"]) for p in direct} == {
            "host"
        }, direct
        # Server side: the relay-only peers joined over TURN, the plain one
        # over UDP, and the server's selected pairs end on the very relay
        # ports the clients report.
        active = await wait_active(turn_server, room, {"pub", "sub", "plain"})
        # (the server logs its connection type at the first packet it sees:
        # now and then "unknown", never a direct one for relay-only peers)
        connection_types = {k: v["connectionType"] for k, v in active.items()}
        assert connection_types["pub"] in ("turn", "unknown"), active
        assert connection_types["sub"] in ("turn", "unknown"), active
        assert "turn" in (connection_types["pub"], connection_types["sub"]), active
        for identity, paths in (("pub", sent), ("sub", received)):
            ports = {p["local"]["candidate.port"] for p in paths}
            assert ports <= server_relay_ports(turn_server, room, identity), (identity, ports)
    await wait_released()


@integration
async def test_explicit_turn_server_with_derived_credentials(turn_server: TurnServer) -> None:
    """``ice_servers`` given by the client, with credentials derived from the
    API key and secret the way livekit-server's TURN server checks them."""
    room = f"turn-explicit-{time.monotonic_ns()}"
    username, password = turn_credentials(turn_server.info.api_key, turn_server.info.api_secret)
    explicit = lk.RtcConfiguration(
        ice_transport_type=lk.IceTransportType.TRANSPORT_RELAY,
        ice_servers=[
            lk.IceServer(urls=[turn_server.turn_url], username=username, password=password)
        ],
    )
    url = turn_server.info.url
    async with (
        lk.open_room(
            url, turn_server.token("pub", room), options=lk.RoomOptions(rtc_config=explicit)
        ) as pub,
        lk.open_room(url, turn_server.token("sub", room)) as sub,
    ):
        (heard,) = await hear_tone(pub, sub)
        assert abs(heard - 440) <= 15, heard
        sent = assert_relayed(
            (await pub.get_rtc_stats()).publisher_stats,
            turn_server,
            "outbound_rtp",
            "candidate_pair.bytes_sent",
        )
        active = await wait_active(turn_server, room, {"pub", "sub"})
        assert active["pub"]["connectionType"] in ("turn", "unknown"), active
        ports = {p["local"]["candidate.port"] for p in sent}
        assert ports <= server_relay_ports(turn_server, room, "pub"), ports
    await wait_released()


@integration
async def test_relay_only_connects_fail_without_a_usable_turn_server(
    turn_server: TurnServer, livekit_server: ServerInfo, livekit_token: TokenFactory
) -> None:
    """Negative controls, run side by side (each costs the native core's
    fixed 15 s ICE wait before its handles are released):

    * relay-only against a server without TURN: no relay candidate can be
      gathered, ICE never connects; lkrtc_trio's deadline
      (``connect_timeout`` + 2 s) raises ConnectError;
    * relay-only with explicit ``ice_servers`` whose credentials are signed
      with the wrong secret: the TURN server refuses the allocation. These
      replace the server's own (valid) TURN credentials, so the connect fails;
      without an lkrtc_trio deadline, the native core gives up by itself after
      its 15 s ICE wait (``join_retries=0``: no retry) and ConnectError carries
      its reason.
    """
    # Signed with the wrong secret.
    username, password = turn_credentials(turn_server.info.api_key, "not-the-secret")
    bad_credentials = lk.RtcConfiguration(
        ice_transport_type=lk.IceTransportType.TRANSPORT_RELAY,
        ice_servers=[
            lk.IceServer(urls=[turn_server.turn_url], username=username, password=password)
        ],
    )
    failures: dict[str, tuple[float, lk.ConnectError]] = {}

    async def must_fail(name: str, url: str, token: str, options: lk.RoomOptions) -> None:
        started = time.monotonic()
        with pytest.raises(lk.ConnectError) as caught:
            async with lk.open_room(url, token, options=options):
                pass
        failures[name] = (time.monotonic() - started, caught.value)

    no_turn_room = f"turn-none-{time.monotonic_ns()}"
    seen_by_server: dict[str, int] = {}

    async def server_sees_alone() -> None:
        view = await wait_server(livekit_server, no_turn_room, lambda v: "alone" in v)
        seen_by_server.update(view)

    with anyio.fail_after(NATIVE_ICE_WAIT + 10):
        async with anyio.create_task_group() as nursery:
            nursery.start_soon(server_sees_alone)
            nursery.start_soon(
                must_fail,
                "no turn",
                livekit_server.url,
                livekit_token("alone", no_turn_room),
                lk.RoomOptions(
                    rtc_config=RELAY_ONLY, connect_timeout=FAIL_CONNECT_TIMEOUT, join_retries=0
                ),
            )
            nursery.start_soon(
                must_fail,
                "bad credentials",
                turn_server.info.url,
                turn_server.token("bad", f"turn-bad-{time.monotonic_ns()}"),
                lk.RoomOptions(rtc_config=bad_credentials, connect_timeout=None, join_retries=0),
            )
        print({k: (round(t, 2), e.reason) for k, (t, e) in failures.items()})
        elapsed, error = failures["no turn"]
        deadline = FAIL_CONNECT_TIMEOUT + 2.0
        assert deadline - 0.2 <= elapsed <= deadline + 1.5, failures
        assert "did not finish" in error.reason, failures
        elapsed, error = failures["bad credentials"]
        assert NATIVE_ICE_WAIT - 1 <= elapsed <= NATIVE_ICE_WAIT + 3, failures
        assert "wait_pc_connection timed out" in error.reason, failures
        # The signalling part worked: the server had the participant.
        assert "alone" in seen_by_server, seen_by_server
        await wait_released(limit=NATIVE_ICE_WAIT + 5)
