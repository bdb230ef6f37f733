"""Typed WebRTC statistics: the protobuf -> dataclass conversion (every kind,
every field, absent fields, the flattened ``values``), the summaries,
``Track.get_stats()`` over a fake runtime (routing, errors, cancellation), and
end to end on a real server: counters that grow while a tone plays, typed
room statistics."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from enum import IntEnum
from typing import Any, TypeVar

import anyio
import pytest
from google.protobuf.message import Message

import lkrtc_trio as lk
from lkrtc_trio._proto import stats_pb2, track_pb2
from lkrtc_trio._stats import _plan
from lkrtc_trio._types import plain_fields
from lkrtc_trio.testing import ServerInfo
from lkrtc_trio.testing.pytest_plugin import TokenFactory

from .fakes import deliver, event_bytes, fake_runtime
from .helpers import next_event, wait_released
from .tones import RATE, play

R = TypeVar("R", bound=lk.RtcStat)

KINDS = [f.name for f in stats_pb2.RtcStats.DESCRIPTOR.oneofs_by_name["stats"].fields]

EXPECTED_CLASS: dict[str, type[lk.RtcStat]] = {
    "codec": lk.CodecStats,
    "inbound_rtp": lk.InboundRtpStats,
    "outbound_rtp": lk.OutboundRtpStats,
    "remote_inbound_rtp": lk.RemoteInboundRtpStats,
    "remote_outbound_rtp": lk.RemoteOutboundRtpStats,
    "media_source": lk.MediaSourceStats,
    "media_playout": lk.AudioPlayoutStats,
    "peer_connection": lk.PeerConnectionStats,
    "data_channel": lk.DataChannelStats,
    "transport": lk.TransportStats,
    "candidate_pair": lk.CandidatePairStats,
    "local_candidate": lk.IceCandidateStats,
    "remote_candidate": lk.IceCandidateStats,
    "certificate": lk.CertificateStats,
    "stream": lk.RtcStat,  # generic: no class of its own
    "track": lk.RtcStat,
}

ENUMS: list[type[IntEnum]] = [
    lk.DataChannelState,
    lk.QualityLimitationReason,
    lk.IceRole,
    lk.DtlsTransportState,
    lk.IceTransportState,
    lk.DtlsRole,
    lk.IceCandidatePairState,
    lk.IceCandidateType,
    lk.IceServerTransportProtocol,
    lk.IceTcpCandidateType,
]

BASE_FIELDS = {f.name for f in dataclasses.fields(lk.RtcStat)}


def typed_fields(report: lk.RtcStat) -> dict[str, Any]:
    return {
        f.name: getattr(report, f.name)
        for f in dataclasses.fields(report)
        if f.name not in BASE_FIELDS
    }


def fill(msg: Any, seed: int = 7) -> None:
    """Sets every field of ``msg`` (recursively) to a value that is not the default."""
    for desc in msg.DESCRIPTOR.fields:
        if desc.message_type is not None:
            if desc.message_type.GetOptions().map_entry:
                getattr(msg, desc.name)["cpu"] = 2.5
            else:
                fill(getattr(msg, desc.name), seed)
        elif desc.enum_type is not None:
            setattr(msg, desc.name, desc.enum_type.values[-1].number)
        elif desc.type == desc.TYPE_STRING:
            setattr(msg, desc.name, f"{desc.name}-{seed}")
        elif desc.type == desc.TYPE_BOOL:
            setattr(msg, desc.name, True)
        elif desc.type in (desc.TYPE_DOUBLE, desc.TYPE_FLOAT):
            setattr(msg, desc.name, seed + 0.5)
        else:
            setattr(msg, desc.name, seed)


def full_stats(kind: str, seed: int = 7) -> Any:
    msg = stats_pb2.RtcStats()
    getattr(msg, kind).SetInParent()  # "track" has no field to set
    fill(getattr(msg, kind), seed)
    return msg


def leaf_names(kind: str) -> set[str]:
    """The schema's field names of ``kind``, without its ``rtc`` part."""
    desc = stats_pb2.RtcStats.DESCRIPTOR.fields_by_name[kind].message_type
    assert desc is not None
    return {
        leaf.name
        for part in desc.fields
        if part.name != "rtc" and part.message_type is not None
        for leaf in part.message_type.fields
    }


# -- conversion --------------------------------------------------------------------


@pytest.mark.parametrize("ours", ENUMS, ids=[e.__name__ for e in ENUMS])
def test_stat_enums_match_the_installed_schema(ours: type[IntEnum]) -> None:
    native = stats_pb2.DESCRIPTOR.enum_types_by_name[ours.__name__]
    assert {m.name: m.value for m in ours} == {v.name: v.number for v in native.values}


def test_every_kind_of_the_schema_has_an_expected_class() -> None:
    assert sorted(KINDS) == sorted(EXPECTED_CLASS)


@pytest.mark.parametrize("kind", KINDS)
def test_every_field_of_every_kind_is_typed_and_kept_in_values(kind: str) -> None:
    msg = full_stats(kind)
    report = lk.RtcStat._from_proto(msg)
    assert type(report) is EXPECTED_CLASS[kind]
    assert report.type == kind
    if kind != "track":  # the only kind without an id
        assert report.id == "id-7" and report.timestamp == 7
    # values: the whole report, flattened exactly as before typed stats
    assert report.values == plain_fields(getattr(msg, kind))
    typed = typed_fields(report)
    if type(report) is not lk.RtcStat:
        # every field of the schema has its typed field, and nothing else
        assert set(typed) == leaf_names(kind)
    for name, value in typed.items():
        (key,) = [k for k in report.values if k.split(".")[-1] == name]
        assert value == report.values[key], name
        assert value is not None and not isinstance(value, Message), name
        assert type(value) in (int, float, str, bool, dict) or isinstance(value, IntEnum), name


def test_enum_fields_are_our_intenums() -> None:
    pair = lk.RtcStat._from_proto(full_stats("candidate_pair"))
    assert isinstance(pair, lk.CandidatePairStats)
    assert pair.state is lk.IceCandidatePairState.PAIR_SUCCEEDED
    cand = lk.RtcStat._from_proto(full_stats("remote_candidate"))
    assert isinstance(cand, lk.IceCandidateStats) and cand.is_remote
    assert cand.candidate_type is lk.IceCandidateType.RELAY
    assert cand.candidate_type.name.lower() == "relay"
    assert cand.relay_protocol is lk.IceServerTransportProtocol.TRANSPORT_TLS
    assert cand.tcp_type is lk.IceTcpCandidateType.CANDIDATE_SO
    transport = lk.RtcStat._from_proto(full_stats("transport"))
    assert isinstance(transport, lk.TransportStats)
    assert transport.ice_role is lk.IceRole.ICE_CONTROLLED
    assert transport.dtls_state is lk.DtlsTransportState.DTLS_TRANSPORT_FAILED
    assert transport.ice_state is lk.IceTransportState.ICE_TRANSPORT_CLOSED
    assert transport.dtls_role is lk.DtlsRole.DTLS_UNKNOWN
    dc = lk.RtcStat._from_proto(full_stats("data_channel"))
    assert isinstance(dc, lk.DataChannelStats) and dc.state is lk.DataChannelState.DC_CLOSED
    out = lk.RtcStat._from_proto(full_stats("outbound_rtp"))
    assert isinstance(out, lk.OutboundRtpStats)
    assert out.quality_limitation_reason is lk.QualityLimitationReason.LIMITATION_OTHER


def test_an_enum_value_of_a_newer_native_core_is_no_error() -> None:
    # local_candidate { candidate { candidate_type: 42 } }, on the wire: the
    # schema is proto2, so an unknown value is parsed as an absent field
    inner = bytes([5 << 3, 42])
    candidate = bytes([2 << 3 | 2, len(inner)]) + inner
    msg = stats_pb2.RtcStats.FromString(bytes([14 << 3 | 2, len(candidate)]) + candidate)
    cand = lk.RtcStat._from_proto(msg)
    assert isinstance(cand, lk.IceCandidateStats) and not cand.is_remote
    assert cand.candidate_type is None
    # and our enums keep values they do not know, should one get through
    assert lk.IceCandidateType(42).name == "UNKNOWN_42"
    assert isinstance(lk.IceCandidateType(42), lk.IceCandidateType)


def test_absent_fields_are_none() -> None:
    msg = stats_pb2.RtcStats()
    msg.inbound_rtp.rtc.id = "IT01A1"
    msg.inbound_rtp.rtc.timestamp = 1_700_000_000_000_000
    msg.inbound_rtp.stream.kind = "audio"
    msg.inbound_rtp.received.jitter = 0.0  # set to zero: present, not None
    msg.inbound_rtp.inbound.bytes_received = 1234
    report = lk.RtcStat._from_proto(msg)
    assert isinstance(report, lk.InboundRtpStats)
    assert (report.id, report.timestamp) == ("IT01A1", 1_700_000_000_000_000)
    assert (report.kind, report.jitter, report.bytes_received) == ("audio", 0.0, 1234)
    unset = {k for k, v in typed_fields(report).items() if v is None}
    assert unset == leaf_names("inbound_rtp") - {"kind", "jitter", "bytes_received"}
    # the values keep exactly the flattened keys of what was set
    assert report.values == {
        "rtc.id": "IT01A1",
        "rtc.timestamp": 1_700_000_000_000_000,
        "stream.kind": "audio",
        "received.jitter": 0.0,
        "inbound.bytes_received": 1234,
    }


def test_a_field_the_installed_schema_lacks_is_none() -> None:
    @dataclasses.dataclass(frozen=True, slots=True, kw_only=True, repr=False)
    class NewerCodecStats(lk.RtcStat):
        mime_type: str | None = None
        from_a_newer_schema: int | None = None

    plan = _plan(NewerCodecStats, "codec")
    assert plan == (("mime_type", "codec.mime_type", None), ("from_a_newer_schema", "", None))
    assert _plan(lk.CandidatePairStats, "candidate_pair")[3] == (
        "state",
        "candidate_pair.state",
        lk.IceCandidatePairState,
    )


def test_an_empty_report_and_a_kind_without_a_class() -> None:
    empty = lk.RtcStat._from_proto(stats_pb2.RtcStats())
    assert type(empty) is lk.RtcStat
    assert (empty.type, empty.id, empty.timestamp, dict(empty.values)) == ("", "", 0, {})
    msg = stats_pb2.RtcStats()
    msg.stream.rtc.id = "S1"
    msg.stream.stream.stream_identifier = "stream-x"
    stream = lk.RtcStat._from_proto(msg)
    assert type(stream) is lk.RtcStat and stream.type == "stream" and stream.id == "S1"
    assert stream.values["stream.stream_identifier"] == "stream-x"


def test_the_map_field_is_a_dict_under_its_flattened_key() -> None:
    msg = stats_pb2.RtcStats()
    out = msg.outbound_rtp.outbound
    out.quality_limitation_durations["none"] = 9.5
    out.quality_limitation_durations["bandwidth"] = 0.5
    report = lk.RtcStat._from_proto(msg)
    assert isinstance(report, lk.OutboundRtpStats)
    expected = {"none": 9.5, "bandwidth": 0.5}
    assert report.quality_limitation_durations == expected
    assert report.values["outbound.quality_limitation_durations"] == expected


def test_reports_are_frozen_hashable_and_short_to_print() -> None:
    report = lk.RtcStat._from_proto(full_stats("codec"))
    assert isinstance(report, lk.CodecStats)
    with pytest.raises(dataclasses.FrozenInstanceError):
        report.mime_type = "x"  # type: ignore[misc]
    assert hash(report) == hash(lk.RtcStat._from_proto(full_stats("codec")))
    assert report == lk.RtcStat._from_proto(full_stats("codec"))
    assert report != lk.RtcStat._from_proto(full_stats("codec", seed=8))
    msg = stats_pb2.RtcStats()
    msg.codec.rtc.id = "C1"
    msg.codec.codec.mime_type = "audio/opus"
    assert repr(lk.RtcStat._from_proto(msg)) == (
        "CodecStats(type='codec', id='C1', timestamp=0, mime_type='audio/opus')"
    )
    out = lk.RtcStat._from_proto(full_stats("outbound_rtp"))
    assert out.values is not None and hash(out)  # the dict fields do not take part


# -- summaries ---------------------------------------------------------------------


def codec(cid: str, mime: str) -> lk.CodecStats:
    return lk.CodecStats(type="codec", id=cid, timestamp=10, mime_type=mime)


def test_summary_sums_layers_and_prefers_the_rtcp_round_trip() -> None:
    reports = lk.StatsReports(
        [
            codec("C1", "video/VP8"),
            codec("C2", "audio/opus"),  # not used by a stream here
            lk.OutboundRtpStats(
                type="outbound_rtp",
                id="O1",
                timestamp=2_000_000,
                codec_id="C1",
                bytes_sent=1000,
                packets_sent=10,
                rid="f",
            ),
            lk.OutboundRtpStats(
                type="outbound_rtp",
                id="O2",
                timestamp=2_000_000,
                codec_id="C1",
                bytes_sent=500,
                packets_sent=5,
                rid="h",
            ),
            lk.RemoteInboundRtpStats(
                type="remote_inbound_rtp",
                id="R1",
                timestamp=1_000_000,
                packets_lost=3,
                jitter=0.004,
                fraction_lost=0.1,
                round_trip_time=0.05,
                round_trip_time_measurements=4,
            ),
            lk.RemoteInboundRtpStats(
                type="remote_inbound_rtp",
                id="R2",
                timestamp=1_500_000,
                packets_lost=1,
                jitter=0.002,
                fraction_lost=0.0,
                round_trip_time=0.0,
                round_trip_time_measurements=0,  # no measurement yet: not an RTT
            ),
            lk.CandidatePairStats(
                type="candidate_pair",
                id="P",
                timestamp=2_000_000,
                nominated=True,
                current_round_trip_time=0.9,
            ),
        ]
    )
    summary = reports.summary()
    assert summary == lk.StatsSummary(
        codecs=("video/VP8",),
        bytes_sent=1500,
        packets_sent=15,
        packets_lost=4,
        fraction_lost=0.1,
        jitter=0.004,
        round_trip_time=0.05,
        timestamp=2_000_000,
    )
    assert len(reports.of_type(lk.OutboundRtpStats)) == 2
    assert len(reports.of_type(lk.RtpStreamStats)) == 4
    assert reports.of_type(lk.InboundRtpStats) == ()


def test_summary_of_a_receiver_falls_back_to_the_selected_pair() -> None:
    reports = lk.StatsReports(
        [
            codec("C", "audio/opus"),
            lk.InboundRtpStats(
                type="inbound_rtp",
                id="I",
                timestamp=5_000_000,
                codec_id="C",
                bytes_received=4000,
                packets_received=40,
                packets_lost=2,
                jitter=0.01,
            ),
            lk.CandidatePairStats(
                type="candidate_pair",
                id="P1",
                timestamp=5_000_000,
                nominated=True,
                current_round_trip_time=0.5,
            ),
            lk.CandidatePairStats(
                type="candidate_pair", id="P2", timestamp=5_000_000, current_round_trip_time=0.02
            ),
            lk.TransportStats(type="transport", id="T", selected_candidate_pair_id="P2"),
        ]
    )
    later = lk.StatsReports(
        [lk.InboundRtpStats(type="inbound_rtp", id="I", timestamp=7_000_000, bytes_received=14000)]
    )
    first, second = reports.summary(), later.summary()
    assert first.codecs == ("audio/opus",) and first.bytes_sent is None
    assert (first.bytes_received, first.packets_received) == (4000, 40)
    assert (first.packets_lost, first.jitter) == (2, 0.01)
    assert first.round_trip_time == 0.02  # the transport's selected pair, not the nominated one
    assert second.bitrate_since(first) == (None, 40_000.0)  # 10 kB in 2 s
    assert first.bitrate_since(first) == (None, None)  # no time passed
    assert lk.StatsReports().summary() == lk.StatsSummary()


def test_room_stats_helpers() -> None:
    pair = lk.CandidatePairStats(type="candidate_pair", id="P")
    inbound = lk.InboundRtpStats(type="inbound_rtp", id="I")
    stats = lk.RtcStats(publisher_stats=(pair,), subscriber_stats=(pair, inbound))  # type: ignore[arg-type]
    assert isinstance(stats.publisher_stats, lk.StatsReports)  # a plain tuple is converted
    assert stats.of_type(lk.CandidatePairStats) == (pair, pair)
    assert stats.of_type(lk.InboundRtpStats) == (inbound,)
    assert stats.subscriber_stats.summary().packets_received is None
    assert stats.all_stats == (pair, pair, inbound)
    assert isinstance(stats.all_stats, lk.StatsReports)
    assert lk.RtcStats().of_type(lk.RtcStat) == ()


# -- Track.get_stats over a fake runtime ----------------------------------------


def stats_callback(async_id: int, *reports: Any, error: str | None = None) -> bytes:
    def fill_event(ev: Any) -> None:
        ev.get_stats.async_id = async_id
        if error is not None:
            ev.get_stats.error = error
        for r in reports:
            ev.get_stats.stats.add().CopyFrom(r)

    return event_bytes(fill_event)


def fake_track(handle: int = 77) -> tuple[lk.RemoteAudioTrack, Any, Any]:
    rt, backend = fake_runtime()
    track = lk.RemoteAudioTrack(rt, rt.own(handle, "remote_track"), track_pb2.TrackInfo())
    return track, rt, backend


async def test_get_stats_sends_the_track_handle_and_types_its_own_answer() -> None:
    track, rt, backend = fake_track()
    got: list[lk.StatsReports] = []
    async with anyio.create_task_group() as nursery:

        async def call() -> None:
            got.append(await track.get_stats())

        nursery.start_soon(call)
        await anyio.wait_all_tasks_blocked()
        [(which, async_id)] = backend.sent
        assert which == "get_stats"
        assert backend.requests[-1].get_stats.track_handle == 77
        deliver(rt, stats_callback(async_id + 1000, full_stats("codec")))  # not ours: dropped
        await anyio.wait_all_tasks_blocked()
        assert not got
        deliver(rt, stats_callback(async_id, full_stats("inbound_rtp"), full_stats("codec")))
    [reports] = got
    assert isinstance(reports, lk.StatsReports) and isinstance(reports, tuple)
    assert [type(r) for r in reports] == [lk.InboundRtpStats, lk.CodecStats]
    assert rt.dispatcher.pending() == 0 and rt.dispatcher.stray_count == 1
    track._release()


async def test_get_stats_raises_native_errors_and_closed_tracks() -> None:
    track, rt, backend = fake_track()
    with anyio.fail_after(5):
        async with anyio.create_task_group() as nursery:

            async def deliver_error() -> None:
                await anyio.wait_all_tasks_blocked()
                deliver(rt, stats_callback(backend.sent[-1][1], error="no transceiver"))

            nursery.start_soon(deliver_error)
            with pytest.raises(lk.NativeError, match="no transceiver"):
                await track.get_stats()
    backend.reject_next = True  # the native core refuses the request itself
    with pytest.raises(lk.NativeError):
        await track.get_stats()
    assert rt.dispatcher.pending() == 0
    track._release()
    sent = len(backend.sent)
    with pytest.raises(lk.ResourceClosedError):
        await track.get_stats()
    assert len(backend.sent) == sent  # nothing was sent for a closed track


async def test_a_cancelled_get_stats_returns_at_once_and_drops_the_late_answer() -> None:
    track, rt, backend = fake_track()
    with anyio.CancelScope() as scope:
        scope.cancel()
        await track.get_stats()
    assert scope.cancelled_caught
    [(which, async_id)] = backend.sent  # it was sent before the cancel took effect
    assert which == "get_stats"
    assert rt.dispatcher.pending() == 0  # not waiting for the answer
    deliver(rt, stats_callback(async_id, full_stats("codec")))
    assert rt.dispatcher.stray_count == 1 and rt.dispatcher.pending() == 0
    # and the next call gets its own answer
    async with anyio.create_task_group() as nursery:
        got: list[lk.StatsReports] = []

        async def call() -> None:
            got.append(await track.get_stats())

        nursery.start_soon(call)
        await anyio.wait_all_tasks_blocked()
        deliver(rt, stats_callback(backend.sent[-1][1], full_stats("transport")))
    assert [r.type for r in got[0]] == ["transport"]
    # the answer arrives, then the cancel, before the caller resumes: either
    # outcome is fine, nothing stays pending and the answer is no stray
    outcome: list[str] = []
    scope = anyio.CancelScope()

    async def racing() -> None:
        with scope:
            reports = await track.get_stats()
            outcome.append(reports[0].type)
        if scope.cancelled_caught:
            outcome.append("cancelled")

    async with anyio.create_task_group() as nursery:
        nursery.start_soon(racing)
        await anyio.wait_all_tasks_blocked()
        deliver(rt, stats_callback(backend.sent[-1][1], full_stats("codec")))
        scope.cancel()
    assert outcome in (["codec"], ["cancelled"])
    assert rt.dispatcher.pending() == 0 and rt.dispatcher.stray_count == 1
    track._release()


# -- the real native core ------------------------------------------------------------


async def test_an_unpublished_or_closed_local_track_has_no_stats() -> None:
    async with lk.AudioSource(RATE, 1) as source:
        track = lk.LocalAudioTrack.create_audio_track("idle", source)
        with pytest.raises(lk.NativeError, match="transceiver"):
            await track.get_stats()
        track.close()
        with pytest.raises(lk.ResourceClosedError):
            await track.get_stats()
    await wait_released()


@asynccontextmanager
async def two_rooms(
    server: ServerInfo, token: TokenFactory, sub_options: lk.RoomOptions | None = None
) -> AsyncIterator[tuple[lk.Room, lk.Room]]:
    async with (
        lk.open_room(server.url, token("pub")) as pub,
        lk.open_room(server.url, token("sub"), options=sub_options) as sub,
    ):
        yield pub, sub
    await wait_released()


def by_id(reports: lk.StatsReports) -> dict[str, lk.RtcStat]:
    return {r.id: r for r in reports}


def only(reports: lk.StatsReports, cls: type[R], kind: str = "audio") -> R:
    found = [r for r in reports.of_type(cls) if getattr(r, "kind", kind) == kind]
    assert len(found) == 1, reports
    return found[0]


@pytest.mark.integration
async def test_track_stats_grow_while_a_tone_plays(
    livekit_server: ServerInfo, livekit_token: TokenFactory
) -> None:
    async with two_rooms(livekit_server, livekit_token) as (pub, sub):
        with sub.events() as events:
            async with lk.AudioSource(RATE, 1) as source:
                track = lk.LocalAudioTrack.create_audio_track("tone", source)
                await pub.local_participant.publish_track(
                    track, lk.TrackPublishOptions(source=lk.TrackSource.SOURCE_MICROPHONE)
                )
                got = await next_event(events, lk.TrackSubscribed, limit=15)
                remote = got.track
                async with anyio.create_task_group() as nursery:
                    nursery.start_soon(play, source, [(440.0, 10.0)])
                    with anyio.fail_after(10):  # until media arrives (no report at first)
                        while not any(
                            i.bytes_received
                            for i in (await remote.get_stats()).of_type(lk.InboundRtpStats)
                        ):
                            await anyio.sleep(0.05)
                    out1, in1 = await track.get_stats(), await remote.get_stats()
                    await anyio.sleep(1.0)
                    out2, in2 = await track.get_stats(), await remote.get_stats()
                    nursery.cancel_scope.cancel()

                # sender: payload and packets grow at Opus's pace (50 packets/s)
                o1, o2 = only(out1, lk.OutboundRtpStats), only(out2, lk.OutboundRtpStats)
                assert o1.ssrc == o2.ssrc and o1.ssrc
                seconds = (o2.timestamp - o1.timestamp) / 1e6
                assert 0.9 < seconds < 3, seconds
                assert o1.bytes_sent is not None and o2.bytes_sent is not None
                assert o1.packets_sent is not None and o2.packets_sent is not None
                assert 20 < (o2.packets_sent - o1.packets_sent) / seconds < 100
                sent_bps, _ = out2.summary().bitrate_since(out1.summary())
                assert sent_bps is not None and 8_000 < sent_bps < 200_000, sent_bps
                codec = by_id(out2)[o2.codec_id or ""]
                assert isinstance(codec, lk.CodecStats) and codec.mime_type == "audio/opus"
                assert codec.clock_rate == 48000
                assert out2.summary().codecs == ("audio/opus",)
                assert o2.values["stream.ssrc"] == o2.ssrc  # the flattened view is kept
                source_stats = by_id(out2)[o2.media_source_id or ""]
                assert isinstance(source_stats, lk.MediaSourceStats)
                assert source_stats.audio_level is not None
                assert 0.3 < source_stats.audio_level < 0.7  # our tone, at half scale

                # receiver: the same stream arrives, with jitter and loss counted
                i1, i2 = only(in1, lk.InboundRtpStats), only(in2, lk.InboundRtpStats)
                assert i1.bytes_received is not None and i2.bytes_received is not None
                assert i1.packets_received is not None and i2.packets_received is not None
                assert i2.bytes_received > i1.bytes_received
                assert i2.packets_received - i1.packets_received > 20
                assert i2.jitter is not None and 0 <= i2.jitter < 1
                assert i2.packets_lost is not None and i2.packets_lost >= 0
                assert in2.summary().codecs == ("audio/opus",)
                _, received_bps = in2.summary().bitrate_since(in1.summary())
                assert received_bps is not None and 8_000 < received_bps < 200_000
                assert in2.of_type(lk.CandidatePairStats)

                # a cancelled call returns at once and leaves nothing pending
                with anyio.fail_after(5):
                    while lk.pending_requests():  # the tone's last captures
                        await anyio.sleep(0.01)
                with anyio.CancelScope() as scope:
                    scope.cancel()
                    await remote.get_stats()
                assert scope.cancelled_caught and lk.pending_requests() == 0
                await anyio.sleep(0.3)  # its answer came (before or after): dropped
                assert lk.pending_requests() == 0
                assert only(await remote.get_stats(), lk.InboundRtpStats).ssrc == i2.ssrc

                # released tracks have no stats
                await pub.local_participant.unpublish_track(track.sid)
                await next_event(events, lk.TrackUnsubscribed)
                assert remote.closed
                with pytest.raises(lk.ResourceClosedError):
                    await remote.get_stats()
                track.close()
                with pytest.raises(lk.ResourceClosedError):
                    await track.get_stats()


@pytest.mark.integration
async def test_room_stats_are_typed(
    livekit_server: ServerInfo, livekit_token: TokenFactory
) -> None:
    width, height = 160, 120
    # the publisher has one peer connection (the default), the subscriber two:
    # its subscriber_stats are those of its receiving peer connection
    two_pcs = lk.RoomOptions(single_peer_connection=False)
    async with two_rooms(livekit_server, livekit_token, two_pcs) as (pub, sub):
        with sub.events() as events:
            async with lk.AudioSource(RATE, 1) as audio, lk.VideoSource(width, height) as video:
                mic = lk.LocalAudioTrack.create_audio_track("mic", audio)
                cam = lk.LocalVideoTrack.create_video_track("cam", video)
                await pub.local_participant.publish_track(mic)
                await pub.local_participant.publish_track(
                    cam,
                    lk.TrackPublishOptions(source=lk.TrackSource.SOURCE_CAMERA, simulcast=False),
                )

                async def frames() -> None:
                    frame = lk.VideoFrame.create(width, height, lk.VideoBufferType.RGBA)
                    pixels = frame.to_numpy()
                    for i in range(1000):
                        pixels[:] = (i * 7 % 256, 64, 128, 255)
                        video.capture_frame(frame)
                        await anyio.sleep(1 / 15)

                async with anyio.create_task_group() as nursery:
                    nursery.start_soon(play, audio, [(440.0, 10.0)])
                    nursery.start_soon(frames)
                    kinds: set[lk.TrackKind] = set()
                    while len(kinds) < 2:
                        got = await next_event(events, lk.TrackSubscribed, limit=15)
                        kinds.add(got.track.kind)
                    with anyio.fail_after(10):  # until both streams arrive
                        while True:
                            theirs = await sub.get_rtc_stats()
                            inbound = theirs.subscriber_stats.of_type(lk.InboundRtpStats)
                            decoded = [i for i in inbound if i.kind == "video" and i.frames_decoded]
                            if len([i for i in inbound if i.bytes_received]) >= 2 and decoded:
                                break
                            await anyio.sleep(0.1)
                    mine = await pub.get_rtc_stats()
                    nursery.cancel_scope.cancel()

                for stats in (mine, theirs):
                    for report in (*stats.publisher_stats, *stats.subscriber_stats):
                        assert isinstance(report, lk.RtcStat) and report.type and report.values
                        assert type(report) is EXPECTED_CLASS[report.type]
                        for value in typed_fields(report).values():
                            assert not isinstance(value, Message)

                # the publisher: both tracks sent, over a nominated candidate pair
                sent = mine.publisher_stats
                video_out = only(sent, lk.OutboundRtpStats, "video")
                assert video_out.frames_encoded and video_out.bytes_sent
                assert video_out.frame_width and video_out.frame_height
                durations = video_out.quality_limitation_durations  # a map in the schema
                assert durations is not None and "none" in durations
                assert all(
                    isinstance(k, str) and isinstance(v, float) for k, v in durations.items()
                )
                assert video_out.values["outbound.quality_limitation_durations"] == durations
                assert only(sent, lk.OutboundRtpStats, "audio").packets_sent
                summary = sent.summary()
                assert "audio/opus" in summary.codecs and len(summary.codecs) == 2
                assert summary.bytes_sent and summary.packets_sent
                assert summary.round_trip_time is not None and summary.round_trip_time >= 0

                pairs = mine.of_type(lk.CandidatePairStats)
                [transport] = sent.of_type(lk.TransportStats)
                assert transport.dtls_state is lk.DtlsTransportState.DTLS_TRANSPORT_CONNECTED
                selected = by_id(sent)[transport.selected_candidate_pair_id or ""]
                assert isinstance(selected, lk.CandidatePairStats) and selected in pairs
                assert selected.state is lk.IceCandidatePairState.PAIR_SUCCEEDED
                assert selected.nominated and selected.bytes_sent
                # the dict view an existing caller reads, unchanged
                assert selected.type == "candidate_pair"
                assert selected.values["candidate_pair.bytes_sent"] == selected.bytes_sent
                local = by_id(sent)[selected.local_candidate_id or ""]
                remote = by_id(sent)[selected.remote_candidate_id or ""]
                assert isinstance(local, lk.IceCandidateStats) and local.type == "local_candidate"
                assert isinstance(remote, lk.IceCandidateStats) and remote.is_remote
                for cand in (local, remote):
                    assert isinstance(cand.candidate_type, lk.IceCandidateType)
                    assert cand.address and cand.port and cand.protocol in ("udp", "tcp")
                    assert cand.values["candidate.port"] == cand.port

                # the subscriber: both tracks received
                received = theirs.subscriber_stats
                audio_in = only(received, lk.InboundRtpStats, "audio")
                video_in = only(received, lk.InboundRtpStats, "video")
                assert audio_in.jitter is not None and audio_in.packets_received
                assert video_in.frames_decoded and video_in.bytes_received
                assert (video_in.frame_width, video_in.frame_height) == (width, height)
                assert received.summary().bytes_received == (
                    (audio_in.bytes_received or 0) + (video_in.bytes_received or 0)
                )
                assert theirs.of_type(lk.CandidatePairStats)

                for t in (mic, cam):
                    await pub.local_participant.unpublish_track(t.sid)
                    t.close()
