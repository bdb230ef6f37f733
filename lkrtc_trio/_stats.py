"""Typed WebRTC statistics: one frozen dataclass per report kind.

The native core sends each report as an ``RtcStats`` protobuf, a oneof of
sixteen kinds. :meth:`RtcStat._from_proto` turns one into the class of its kind
(:class:`InboundRtpStats`, :class:`CandidatePairStats`...), or into a plain
:class:`RtcStat` for the kinds without a class of their own (``stream``,
``track``, kinds a newer native core adds).

Every report has its ``type`` (the oneof name: ``"inbound_rtp"``,
``"local_candidate"``...), its ``id`` and ``timestamp``, and ``values``: all
of its content flattened to dotted keys (``"inbound.bytes_received"``,
``"received.jitter"``...), as :class:`RtcStat` always had. The typed fields
carry the W3C names (``webrtc-stats``), plain Python values, IntEnums for the
native enums, and ``None`` for what the native core did not report.

Units are the W3C ones: times and durations (``jitter``,
``round_trip_time``, ``total_*_time``) in seconds, bitrates in bits per
second, ``last_packet_*_timestamp`` in milliseconds since the Unix epoch;
except the report's own ``timestamp``: microseconds since the Unix epoch, as
the native core gives it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, TypeVar, final

from ._proto import stats_pb2
from ._types import _Open, plain_fields

__all__ = [
    "AudioPlayoutStats",
    "CandidatePairStats",
    "CertificateStats",
    "CodecStats",
    "DataChannelState",
    "DataChannelStats",
    "DtlsRole",
    "DtlsTransportState",
    "IceCandidatePairState",
    "IceCandidateStats",
    "IceCandidateType",
    "IceRole",
    "IceServerTransportProtocol",
    "IceTcpCandidateType",
    "IceTransportState",
    "InboundRtpStats",
    "MediaSourceStats",
    "OutboundRtpStats",
    "PeerConnectionStats",
    "QualityLimitationReason",
    "RemoteInboundRtpStats",
    "RemoteOutboundRtpStats",
    "RtcStat",
    "RtcStats",
    "RtpStreamStats",
    "StatsReports",
    "StatsSummary",
    "TransportStats",
]

S = TypeVar("S", bound="RtcStat")


# -- enums (names and values are the native schema's) ------------------------------


class DataChannelState(_Open):
    DC_CONNECTING = 0
    DC_OPEN = 1
    DC_CLOSING = 2
    DC_CLOSED = 3


class QualityLimitationReason(_Open):
    LIMITATION_NONE = 0
    LIMITATION_CPU = 1
    LIMITATION_BANDWIDTH = 2
    LIMITATION_OTHER = 3


class IceRole(_Open):
    ICE_UNKNOWN = 0
    ICE_CONTROLLING = 1
    ICE_CONTROLLED = 2


class DtlsTransportState(_Open):
    DTLS_TRANSPORT_NEW = 0
    DTLS_TRANSPORT_CONNECTING = 1
    DTLS_TRANSPORT_CONNECTED = 2
    DTLS_TRANSPORT_CLOSED = 3
    DTLS_TRANSPORT_FAILED = 4


class IceTransportState(_Open):
    ICE_TRANSPORT_NEW = 0
    ICE_TRANSPORT_CHECKING = 1
    ICE_TRANSPORT_CONNECTED = 2
    ICE_TRANSPORT_COMPLETED = 3
    ICE_TRANSPORT_DISCONNECTED = 4
    ICE_TRANSPORT_FAILED = 5
    ICE_TRANSPORT_CLOSED = 6


class DtlsRole(_Open):
    DTLS_CLIENT = 0
    DTLS_SERVER = 1
    DTLS_UNKNOWN = 2


class IceCandidatePairState(_Open):
    PAIR_FROZEN = 0
    PAIR_WAITING = 1
    PAIR_IN_PROGRESS = 2
    PAIR_FAILED = 3
    PAIR_SUCCEEDED = 4


class IceCandidateType(_Open):
    """``str(t)`` is not the W3C spelling; ``t.name.lower()`` is (``"host"``,
    ``"srflx"``, ``"prflx"``, ``"relay"``)."""

    HOST = 0
    SRFLX = 1
    PRFLX = 2
    RELAY = 3


class IceServerTransportProtocol(_Open):
    TRANSPORT_UDP = 0
    TRANSPORT_TCP = 1
    TRANSPORT_TLS = 2


class IceTcpCandidateType(_Open):
    CANDIDATE_ACTIVE = 0
    CANDIDATE_PASSIVE = 1
    CANDIDATE_SO = 2


#: the native enum (full protobuf name) -> ours
_ENUMS: dict[str, type[IntEnum]] = {
    "livekit.proto." + cls.__name__: cls
    for cls in (
        DataChannelState,
        QualityLimitationReason,
        IceRole,
        DtlsTransportState,
        IceTransportState,
        DtlsRole,
        IceCandidatePairState,
        IceCandidateType,
        IceServerTransportProtocol,
        IceTcpCandidateType,
    )
}


# -- reports ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class RtcStat:
    """One WebRTC statistics report. Its class depends on its kind; a plain
    ``RtcStat`` is a kind without a class of its own (``"stream"``,
    ``"track"``, or one a newer native core adds).

    Attributes:
        type: the report's kind, the native oneof name: ``"codec"``,
            ``"inbound_rtp"``, ``"outbound_rtp"``, ``"remote_inbound_rtp"``,
            ``"remote_outbound_rtp"``, ``"media_source"``, ``"media_playout"``,
            ``"peer_connection"``, ``"data_channel"``, ``"transport"``,
            ``"candidate_pair"``, ``"local_candidate"``, ``"remote_candidate"``,
            ``"certificate"``, ``"stream"``, ``"track"``.
        id: the report's id; other reports refer to it (``codec_id``,
            ``local_candidate_id``...).
        timestamp: when it was taken, in microseconds since the Unix epoch.
        values: all of the report, flattened to plain Python values under
            dotted keys (``"inbound.packets_received"``, ``"rtc.id"``...).
    """

    type: str
    id: str = ""
    timestamp: int = 0
    values: Mapping[str, Any] = field(default_factory=dict, repr=False, hash=False)

    def __repr__(self) -> str:
        """The kind, id, timestamp and the typed fields that are set."""
        shown = [f"type={self.type!r}", f"id={self.id!r}", f"timestamp={self.timestamp!r}"]
        for f in dataclasses.fields(self):
            if f.name not in _BASE_FIELDS and (value := getattr(self, f.name)) is not None:
                shown.append(f"{f.name}={value!r}")
        return f"{type(self).__name__}({', '.join(shown)})"

    @classmethod
    def _from_proto(cls, msg: Any) -> RtcStat:
        """The typed report of an ``RtcStats`` protobuf (any ``cls``: the
        class is chosen by the message's kind)."""
        kind = msg.WhichOneof("stats") or ""
        values: dict[str, Any] = plain_fields(getattr(msg, kind)) if kind else {}
        report_cls = _CLASSES.get(kind, RtcStat)
        typed: dict[str, Any] = {}
        for name, key, enum in _plan(report_cls, kind):
            value = values.get(key)
            if value is not None and enum is not None:
                value = enum(value)
            typed[name] = value
        return report_cls(
            type=kind,
            id=str(values.get("rtc.id", "")),
            timestamp=int(values.get("rtc.timestamp", 0)),
            values=values,
            **typed,
        )


@final
@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class CodecStats(RtcStat):
    """A codec in use (``type == "codec"``); RTP streams refer to it by ``codec_id``."""

    payload_type: int | None = None
    transport_id: str | None = None
    mime_type: str | None = None
    """``"audio/opus"``, ``"video/VP8"``..."""
    clock_rate: int | None = None
    channels: int | None = None
    sdp_fmtp_line: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class RtpStreamStats(RtcStat):
    """What every RTP stream report has (the base of the four RTP kinds)."""

    ssrc: int | None = None
    kind: str | None = None
    """``"audio"`` or ``"video"``."""
    transport_id: str | None = None
    codec_id: str | None = None


@final
@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class InboundRtpStats(RtpStreamStats):
    """A stream this side receives (``type == "inbound_rtp"``)."""

    packets_received: int | None = None
    packets_lost: int | None = None
    jitter: float | None = None
    """Seconds."""
    track_identifier: str | None = None
    mid: str | None = None
    remote_id: str | None = None
    frames_decoded: int | None = None
    key_frames_decoded: int | None = None
    frames_rendered: int | None = None
    frames_dropped: int | None = None
    frame_width: int | None = None
    frame_height: int | None = None
    frames_per_second: float | None = None
    qp_sum: int | None = None
    total_decode_time: float | None = None
    total_inter_frame_delay: float | None = None
    total_squared_inter_frame_delay: float | None = None
    pause_count: int | None = None
    total_pause_duration: float | None = None
    freeze_count: int | None = None
    total_freeze_duration: float | None = None
    last_packet_received_timestamp: float | None = None
    header_bytes_received: int | None = None
    packets_discarded: int | None = None
    fec_bytes_received: int | None = None
    fec_packets_received: int | None = None
    fec_packets_discarded: int | None = None
    bytes_received: int | None = None
    """Payload bytes (without RTP headers; see ``header_bytes_received``)."""
    nack_count: int | None = None
    fir_count: int | None = None
    pli_count: int | None = None
    total_processing_delay: float | None = None
    estimated_playout_timestamp: float | None = None
    jitter_buffer_delay: float | None = None
    jitter_buffer_target_delay: float | None = None
    jitter_buffer_emitted_count: int | None = None
    jitter_buffer_minimum_delay: float | None = None
    total_samples_received: int | None = None
    concealed_samples: int | None = None
    silent_concealed_samples: int | None = None
    concealment_events: int | None = None
    inserted_samples_for_deceleration: int | None = None
    removed_samples_for_acceleration: int | None = None
    audio_level: float | None = None
    """0..1, linear."""
    total_audio_energy: float | None = None
    total_samples_duration: float | None = None
    frames_received: int | None = None
    decoder_implementation: str | None = None
    playout_id: str | None = None
    power_efficient_decoder: bool | None = None
    frames_assembled_from_multiple_packets: int | None = None
    total_assembly_time: float | None = None
    retransmitted_packets_received: int | None = None
    retransmitted_bytes_received: int | None = None
    rtx_ssrc: int | None = None
    fec_ssrc: int | None = None


@final
@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class OutboundRtpStats(RtpStreamStats):
    """A stream this side sends (``type == "outbound_rtp"``); a simulcast
    video track has one per layer (``rid``)."""

    packets_sent: int | None = None
    bytes_sent: int | None = None
    """Payload bytes (without RTP headers; see ``header_bytes_sent``)."""
    mid: str | None = None
    media_source_id: str | None = None
    remote_id: str | None = None
    rid: str | None = None
    header_bytes_sent: int | None = None
    retransmitted_packets_sent: int | None = None
    retransmitted_bytes_sent: int | None = None
    rtx_ssrc: int | None = None
    target_bitrate: float | None = None
    """Bits per second."""
    total_encoded_bytes_target: int | None = None
    frame_width: int | None = None
    frame_height: int | None = None
    frames_per_second: float | None = None
    frames_sent: int | None = None
    huge_frames_sent: int | None = None
    frames_encoded: int | None = None
    key_frames_encoded: int | None = None
    qp_sum: int | None = None
    total_encode_time: float | None = None
    total_packet_send_delay: float | None = None
    quality_limitation_reason: QualityLimitationReason | None = None
    quality_limitation_durations: Mapping[str, float] | None = field(default=None, hash=False)
    """Seconds spent in each limitation (``"none"``, ``"cpu"``, ``"bandwidth"``...)."""
    quality_limitation_resolution_changes: int | None = None
    nack_count: int | None = None
    fir_count: int | None = None
    pli_count: int | None = None
    encoder_implementation: str | None = None
    power_efficient_encoder: bool | None = None
    active: bool | None = None
    scalability_mode: str | None = None


@final
@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class RemoteInboundRtpStats(RtpStreamStats):
    """What the receiver of a stream this side sends reports about it (RTCP
    receiver reports; ``type == "remote_inbound_rtp"``)."""

    packets_received: int | None = None
    packets_lost: int | None = None
    jitter: float | None = None
    """Seconds."""
    local_id: str | None = None
    """The id of the :class:`OutboundRtpStats` it is about."""
    round_trip_time: float | None = None
    """Seconds (the latest measurement)."""
    total_round_trip_time: float | None = None
    fraction_lost: float | None = None
    """0..1, over the last report interval."""
    round_trip_time_measurements: int | None = None


@final
@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class RemoteOutboundRtpStats(RtpStreamStats):
    """What the sender of a stream this side receives reports about it (RTCP
    sender reports; ``type == "remote_outbound_rtp"``)."""

    packets_sent: int | None = None
    bytes_sent: int | None = None
    local_id: str | None = None
    """The id of the :class:`InboundRtpStats` it is about."""
    remote_timestamp: float | None = None
    reports_sent: int | None = None
    round_trip_time: float | None = None
    """Seconds (the latest measurement)."""
    total_round_trip_time: float | None = None
    round_trip_time_measurements: int | None = None


@final
@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class MediaSourceStats(RtcStat):
    """A local source a track is fed from (``type == "media_source"``); the
    audio fields are set for audio, the video ones for video."""

    track_identifier: str | None = None
    kind: str | None = None
    audio_level: float | None = None
    total_audio_energy: float | None = None
    total_samples_duration: float | None = None
    echo_return_loss: float | None = None
    echo_return_loss_enhancement: float | None = None
    dropped_samples_duration: float | None = None
    dropped_samples_events: int | None = None
    total_capture_delay: float | None = None
    total_samples_captured: int | None = None
    width: int | None = None
    height: int | None = None
    frames: int | None = None
    frames_per_second: float | None = None


@final
@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class AudioPlayoutStats(RtcStat):
    """Audio playout (``type == "media_playout"``)."""

    kind: str | None = None
    synthesized_samples_duration: float | None = None
    synthesized_samples_events: int | None = None
    total_samples_duration: float | None = None
    total_playout_delay: float | None = None
    total_samples_count: int | None = None


@final
@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class PeerConnectionStats(RtcStat):
    """The peer connection itself (``type == "peer_connection"``)."""

    data_channels_opened: int | None = None
    data_channels_closed: int | None = None


@final
@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class DataChannelStats(RtcStat):
    """A data channel (``type == "data_channel"``)."""

    label: str | None = None
    protocol: str | None = None
    data_channel_identifier: int | None = None
    state: DataChannelState | None = None
    messages_sent: int | None = None
    bytes_sent: int | None = None
    messages_received: int | None = None
    bytes_received: int | None = None


@final
@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class TransportStats(RtcStat):
    """The ICE/DTLS transport (``type == "transport"``)."""

    packets_sent: int | None = None
    packets_received: int | None = None
    bytes_sent: int | None = None
    bytes_received: int | None = None
    ice_role: IceRole | None = None
    ice_local_username_fragment: str | None = None
    dtls_state: DtlsTransportState | None = None
    ice_state: IceTransportState | None = None
    selected_candidate_pair_id: str | None = None
    local_certificate_id: str | None = None
    remote_certificate_id: str | None = None
    tls_version: str | None = None
    dtls_cipher: str | None = None
    dtls_role: DtlsRole | None = None
    srtp_cipher: str | None = None
    selected_candidate_pair_changes: int | None = None


@final
@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class CandidatePairStats(RtcStat):
    """An ICE candidate pair (``type == "candidate_pair"``). The one in use is
    the transport's ``selected_candidate_pair_id`` (usually the nominated,
    succeeded one)."""

    transport_id: str | None = None
    local_candidate_id: str | None = None
    remote_candidate_id: str | None = None
    state: IceCandidatePairState | None = None
    nominated: bool | None = None
    packets_sent: int | None = None
    packets_received: int | None = None
    bytes_sent: int | None = None
    bytes_received: int | None = None
    last_packet_sent_timestamp: float | None = None
    last_packet_received_timestamp: float | None = None
    total_round_trip_time: float | None = None
    current_round_trip_time: float | None = None
    """Seconds (the latest STUN measurement)."""
    available_outgoing_bitrate: float | None = None
    """Bits per second (the bandwidth estimate)."""
    available_incoming_bitrate: float | None = None
    requests_received: int | None = None
    requests_sent: int | None = None
    responses_received: int | None = None
    responses_sent: int | None = None
    consent_requests_sent: int | None = None
    packets_discarded_on_send: int | None = None
    bytes_discarded_on_send: int | None = None


@final
@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class IceCandidateStats(RtcStat):
    """An ICE candidate, local (``type == "local_candidate"``) or remote
    (``type == "remote_candidate"``)."""

    transport_id: str | None = None
    address: str | None = None
    port: int | None = None
    protocol: str | None = None
    """``"udp"`` or ``"tcp"``."""
    candidate_type: IceCandidateType | None = None
    priority: int | None = None
    url: str | None = None
    """The STUN/TURN server a local srflx/relay candidate came from."""
    relay_protocol: IceServerTransportProtocol | None = None
    foundation: str | None = None
    related_address: str | None = None
    related_port: int | None = None
    username_fragment: str | None = None
    tcp_type: IceTcpCandidateType | None = None

    @property
    def is_remote(self) -> bool:
        return self.type == "remote_candidate"


@final
@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class CertificateStats(RtcStat):
    """A DTLS certificate (``type == "certificate"``)."""

    fingerprint: str | None = None
    fingerprint_algorithm: str | None = None
    base64_certificate: str | None = None
    issuer_certificate_id: str | None = None


#: native kind (oneof name) -> its class; the others are plain RtcStat
_CLASSES: dict[str, type[RtcStat]] = {
    "codec": CodecStats,
    "inbound_rtp": InboundRtpStats,
    "outbound_rtp": OutboundRtpStats,
    "remote_inbound_rtp": RemoteInboundRtpStats,
    "remote_outbound_rtp": RemoteOutboundRtpStats,
    "media_source": MediaSourceStats,
    "media_playout": AudioPlayoutStats,
    "peer_connection": PeerConnectionStats,
    "data_channel": DataChannelStats,
    "transport": TransportStats,
    "candidate_pair": CandidatePairStats,
    "local_candidate": IceCandidateStats,
    "remote_candidate": IceCandidateStats,
    "certificate": CertificateStats,
}

_BASE_FIELDS = frozenset(f.name for f in dataclasses.fields(RtcStat))
_Plan = tuple[tuple[str, str, type[IntEnum] | None], ...]
_plans: dict[tuple[type[RtcStat], str], _Plan] = {}


def _plan(cls: type[RtcStat], kind: str) -> _Plan:
    """For each typed field of ``cls``: (field, key in ``values``, enum or
    None), from the installed schema of ``kind`` (built once per kind). A
    field the schema does not have (an older ``livekit`` wheel) is always
    None; the tests check that the classes match the schema exactly."""
    plan = _plans.get((cls, kind))
    if plan is not None:
        return plan
    names = [f.name for f in dataclasses.fields(cls) if f.name not in _BASE_FIELDS]
    parts: list[Any] = []
    if names:
        kind_desc: Any = stats_pb2.RtcStats.DESCRIPTOR.fields_by_name[kind].message_type
        parts = [p for p in kind_desc.fields if p.name != "rtc" and p.message_type is not None]
    steps: list[tuple[str, str, type[IntEnum] | None]] = []
    for name in names:
        found = [p for p in parts if name in p.message_type.fields_by_name]
        if not found:
            steps.append((name, "", None))  # no such key in values: None
            continue
        desc = found[0].message_type.fields_by_name[name]
        enum = _ENUMS[desc.enum_type.full_name] if desc.enum_type is not None else None
        steps.append((name, f"{found[0].name}.{name}", enum))
    plan = _plans[(cls, kind)] = tuple(steps)
    return plan


# -- collections and summaries ---------------------------------------------------


class StatsReports(tuple[RtcStat, ...]):
    """A tuple of reports (what :meth:`~lkrtc_trio.Track.get_stats` returns,
    and each side of :class:`RtcStats`), with two helpers."""

    __slots__ = ()

    def of_type(self, cls: type[S]) -> tuple[S, ...]:
        """The reports of class ``cls`` (subclasses included), in order:
        ``reports.of_type(OutboundRtpStats)``."""
        return tuple(r for r in self if isinstance(r, cls))

    def summary(self) -> StatsSummary:
        """:meth:`StatsSummary.from_reports` of these reports."""
        return StatsSummary.from_reports(self)


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class RtcStats:
    """WebRTC statistics of the room's peer connections, as reports of the
    publisher (what this participant sends) and of the subscriber (what it
    receives). With a single peer connection for both directions (the native
    default when the server supports it: ``RoomOptions.single_peer_connection``)
    every report is in ``publisher_stats`` and ``subscriber_stats`` is empty;
    :attr:`all_stats` and :meth:`of_type` do not care which.
    ``stats.all_stats.summary()`` sums them up."""

    publisher_stats: StatsReports = field(default_factory=StatsReports)
    subscriber_stats: StatsReports = field(default_factory=StatsReports)

    def __post_init__(self) -> None:
        for name in ("publisher_stats", "subscriber_stats"):
            value = getattr(self, name)
            if not isinstance(value, StatsReports):
                object.__setattr__(self, name, StatsReports(value))

    @property
    def all_stats(self) -> StatsReports:
        """The reports of both peer connections (the publisher's first)."""
        return StatsReports(self.publisher_stats + self.subscriber_stats)

    def of_type(self, cls: type[S]) -> tuple[S, ...]:
        """The reports of class ``cls`` of both peer connections (the
        publisher's first): ``stats.of_type(CandidatePairStats)``."""
        return self.all_stats.of_type(cls)


def of_type(reports: Iterable[RtcStat], cls: type[S]) -> tuple[S, ...]:
    """The reports of class ``cls`` (subclasses included), in order."""
    return tuple(r for r in reports if isinstance(r, cls))


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class StatsSummary:
    """The numbers most people read, from a set of reports (a track's
    :meth:`~lkrtc_trio.Track.get_stats`, or one side of
    :meth:`~lkrtc_trio.Room.get_rtc_stats`): ``reports.summary()``.
    ``None``: not in the reports.

    Counters are totals since the stream started, summed over the RTP streams
    of the reports (every simulcast layer, every track of a peer connection):
    take two summaries and divide the difference by the time between them for
    a rate (see :meth:`bitrate_since`).

    Attributes:
        codecs: mime types of the codecs the RTP streams use (``"audio/opus"``).
        bytes_sent / packets_sent: outbound RTP payload bytes and packets.
        bytes_received / packets_received: inbound RTP payload bytes and packets.
        packets_lost: lost packets of inbound streams (this side counted
            them) plus those of outbound streams (the receivers reported them).
        fraction_lost: the worst fraction lost (0..1) the receivers of the
            outbound streams reported for their last interval.
        jitter: the largest jitter, in seconds, of the inbound streams and of
            what the receivers of outbound streams reported.
        round_trip_time: seconds: the latest RTCP round trip, else the
            transport's selected candidate pair's STUN one.
        timestamp: the newest report's, in microseconds since the Unix epoch.
    """

    codecs: tuple[str, ...] = ()
    bytes_sent: int | None = None
    packets_sent: int | None = None
    bytes_received: int | None = None
    packets_received: int | None = None
    packets_lost: int | None = None
    fraction_lost: float | None = None
    jitter: float | None = None
    round_trip_time: float | None = None
    timestamp: int = 0

    @classmethod
    def from_reports(cls, reports: Iterable[RtcStat]) -> StatsSummary:
        """Summarizes ``reports`` (any mix of kinds)."""
        reports = tuple(reports)
        outbound = of_type(reports, OutboundRtpStats)
        inbound = of_type(reports, InboundRtpStats)
        remote_in = of_type(reports, RemoteInboundRtpStats)
        remote_out = of_type(reports, RemoteOutboundRtpStats)
        codec_by_id = {c.id: c.mime_type for c in of_type(reports, CodecStats) if c.mime_type}
        codecs: list[str] = []
        for stream in (*outbound, *inbound):
            mime = codec_by_id.get(stream.codec_id or "")
            if mime is not None and mime not in codecs:
                codecs.append(mime)
        rtt = _rtcp_rtt(remote_in)
        if rtt is None:
            rtt = _rtcp_rtt(remote_out)
        if rtt is None:
            rtt = _selected_pair_rtt(reports)
        return cls(
            codecs=tuple(codecs),
            bytes_sent=_sum(outbound, "bytes_sent"),
            packets_sent=_sum(outbound, "packets_sent"),
            bytes_received=_sum(inbound, "bytes_received"),
            packets_received=_sum(inbound, "packets_received"),
            packets_lost=_sum((*inbound, *remote_in), "packets_lost"),
            fraction_lost=_max(remote_in, "fraction_lost"),
            jitter=_max((*inbound, *remote_in), "jitter"),
            round_trip_time=rtt,
            # the counters' own time (RTCP reports carry when they arrived)
            timestamp=max((r.timestamp for r in (*outbound, *inbound) or reports), default=0),
        )

    def bitrate_since(self, earlier: StatsSummary) -> tuple[float | None, float | None]:
        """(sent, received) bits per second between ``earlier`` and this
        summary, from payload bytes and report timestamps; ``None`` where a
        counter is missing or no time passed."""
        seconds = (self.timestamp - earlier.timestamp) / 1_000_000

        def rate(now: int | None, then: int | None) -> float | None:
            if now is None or then is None or seconds <= 0:
                return None
            return (now - then) * 8 / seconds

        return (
            rate(self.bytes_sent, earlier.bytes_sent),
            rate(self.bytes_received, earlier.bytes_received),
        )


def _sum(reports: Iterable[RtcStat], name: str) -> int | None:
    got = [v for r in reports if (v := getattr(r, name)) is not None]
    return sum(got) if got else None


def _max(reports: Iterable[RtcStat], name: str) -> float | None:
    got = [v for r in reports if (v := getattr(r, name)) is not None]
    return max(got) if got else None


def _rtcp_rtt(reports: Iterable[RemoteInboundRtpStats | RemoteOutboundRtpStats]) -> float | None:
    """The newest measured RTCP round trip time (a report without a
    measurement yet says 0: not a measurement)."""
    got = [
        (r.timestamp, r.round_trip_time)
        for r in reports
        if r.round_trip_time is not None and r.round_trip_time_measurements != 0
    ]
    return max(got)[1] if got else None


def _selected_pair_rtt(reports: tuple[RtcStat, ...]) -> float | None:
    pairs = {p.id: p for p in of_type(reports, CandidatePairStats)}
    for transport in of_type(reports, TransportStats):
        pair = pairs.get(transport.selected_candidate_pair_id or "")
        if pair is not None and pair.current_round_trip_time is not None:
            return pair.current_round_trip_time
    for pair in pairs.values():
        if pair.nominated and pair.current_round_trip_time is not None:
            return pair.current_round_trip_time
    return None
