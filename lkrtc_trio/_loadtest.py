"""The engine of ``lkrtc load-test``: R rooms x P participants, in one process.

Every participant joins its room (the URLs taken round-robin, so each node of
a cluster gets its share), answers an echo RPC method, and reads the room's
data packets. Once everyone sees everyone (and every audio subscriber hears
its room's tone), traffic runs for ``duration`` seconds:

* RPC: each participant calls the echo method ``rpc_rate`` times a second,
  open loop (a call does not wait for the previous one), on the other
  participants of its room in turn, starting with the next one;
* data: each participant sends ``data_rate`` reliable packets a second to its
  whole room, each carrying its sender's identity and a sequence number, so
  that each receiver can count, per sender, what was lost, reordered or
  duplicated;
* audio: the first participant of each room publishes a 440 Hz tone (48 kHz
  mono, 10 ms frames, in real time); every other participant subscribes and
  counts the frames that arrive during the traffic window.

Then sending stops, in-flight RPC calls finish (each is bounded by
``rpc_timeout``), data still in flight gets up to ``grace`` seconds to
arrive, and everyone leaves. :func:`run_load_test` returns a
:class:`LoadTestReport`; the statistics (:func:`percentile`,
:class:`SequenceTracker`, :func:`account_delivery`) are pure functions and
classes, tested without a server.

Runs on trio (``lkrtc`` is a trio program), through lkrtc_trio's public API.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import math
import os
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import final

import trio

import lkrtc_trio as lk

from . import api

__all__ = [
    "AudioStats",
    "ConnectFailedError",
    "CpuStats",
    "DataStats",
    "JoinError",
    "JoinStats",
    "LoadTestConfig",
    "LoadTestError",
    "LoadTestReport",
    "RpcStats",
    "Seat",
    "SequenceTracker",
    "account_delivery",
    "decode_packet",
    "encode_packet",
    "format_report",
    "latency_summary",
    "percentile",
    "plan_seats",
    "run_load_test",
]

log = logging.getLogger("lkrtc_trio.cli")

#: Topic of the load test's data packets.
DATA_TOPIC = "lkrtc.load-test"
#: The echo method every participant serves.
RPC_METHOD = "lkrtc.load-test.echo"
SAMPLE_RATE = 48000
FRAME_SAMPLES = SAMPLE_RATE // 100  # 10 ms
FRAMES_PER_SECOND = 100
TONE_HZ = 440.0
TONE_AMPLITUDE = 9830  # 0.3 of full scale
#: A received frame whose peak is above this carries the tone (silence and
#: the receiver's concealment noise stay far below it).
AUDIBLE_PEAK = 1000
#: Room events buffered per participant before it counts as fallen behind.
EVENTS_BUFFER = 10_000
#: Seconds a room created for the run stays open empty (before anyone joins, after all left).
ROOM_EMPTY_TIMEOUT = 60
#: Extra seconds beyond ``rpc_timeout`` before a call is abandoned locally.
RPC_SLACK = 2.0
_PACKET_MAGIC = b"LT1"


class LoadTestError(Exception):
    """The load test could not run to the end (not a loss: losses are reported)."""


class ConnectFailedError(LoadTestError):
    """The server could not be reached, or refused the key and secret."""


@final
class JoinError(ConnectFailedError):
    """A participant could not join (connect or authentication failed)."""

    def __init__(self, identity: str, room: str, url: str, reason: str) -> None:
        super().__init__(f"{identity} could not join room {room!r} at {url}: {reason}")
        self.identity = identity
        self.room = room
        self.url = url
        self.reason = reason


# --------------------------------------------------------------------------- configuration


@final
@dataclasses.dataclass(frozen=True)
class LoadTestConfig:
    """What to run. Rates are per participant; times in seconds.

    Raises:
        ValueError: a value out of range (no URL, fewer than 2 participants
            per room, a non-positive duration or timeout, a negative rate...).
    """

    urls: tuple[str, ...]
    api_key: str
    api_secret: str
    rooms: int = 2
    participants: int = 2
    duration: float = 10.0
    rpc_rate: float = 2.0
    data_rate: float = 5.0
    data_size: int = 64
    audio: bool = True
    room_prefix: str = "lkrtc-load"
    connect_timeout: float = 10.0
    ready_timeout: float = 20.0
    rpc_timeout: float = 5.0
    grace: float = 2.0
    join_concurrency: int = 8

    def __post_init__(self) -> None:
        problems = []
        if not self.urls:
            problems.append("at least one URL is needed")
        if self.rooms < 1:
            problems.append("rooms must be at least 1")
        if self.participants < 2:
            problems.append("participants must be at least 2 per room")
        for name in ("duration", "connect_timeout", "ready_timeout", "rpc_timeout"):
            value = float(getattr(self, name))
            if not (math.isfinite(value) and value > 0):
                problems.append(f"{name} must be positive")
        for name in ("rpc_rate", "data_rate", "grace"):
            value = float(getattr(self, name))
            if not (math.isfinite(value) and value >= 0):
                problems.append(f"{name} must be >= 0")
        if not 0 < self.data_size <= lk.MAX_DATA_BYTES:
            problems.append(f"data_size must be between 1 and {lk.MAX_DATA_BYTES}")
        if self.join_concurrency < 1:
            problems.append("join_concurrency must be at least 1")
        if problems:
            raise ValueError("; ".join(problems))


@final
@dataclasses.dataclass(frozen=True)
class Seat:
    """One participant of the plan: its room, identity, URL and position."""

    room: str
    identity: str
    url: str
    index: int
    """Position in its room (0: the audio publisher)."""
    number: int
    """Position among all participants (0 .. rooms x participants - 1)."""

    @property
    def publishes_audio(self) -> bool:
        """The first participant of each room publishes the tone."""
        return self.index == 0


def plan_seats(config: LoadTestConfig) -> list[Seat]:
    """Every participant of the run, room by room; participant number ``n``
    joins through ``urls[n % len(urls)]``."""
    seats = []
    for r in range(config.rooms):
        room = f"{config.room_prefix}-{r}"
        for p in range(config.participants):
            n = r * config.participants + p
            identity = f"load-{r}-{p}"
            seats.append(Seat(room, identity, config.urls[n % len(config.urls)], p, n))
    return seats


def _token(config: LoadTestConfig, seat: Seat) -> str:
    grants = api.VideoGrants(room_join=True, room=seat.room)
    token = api.AccessToken(config.api_key, config.api_secret).with_identity(seat.identity)
    return token.with_grants(grants).to_jwt()


# --------------------------------------------------------------------------- pure statistics


def percentile(values: Iterable[float], q: float) -> float | None:
    """The ``q``-th percentile (0 < q <= 100) of ``values`` by the nearest-rank
    method: the smallest value with at least ``q`` % of the values at or
    below it. None when there are no values.

    Raises:
        ValueError: ``q`` is not in (0, 100].
    """
    if not 0 < q <= 100:
        raise ValueError(f"q must be in (0, 100], not {q!r}")
    ordered = sorted(values)
    if not ordered:
        return None
    rank = math.ceil(q * len(ordered) / 100)
    return ordered[max(rank, 1) - 1]


def latency_summary(seconds: Iterable[float]) -> dict[str, float | None]:
    """p50, p90, p99 and max of latencies in seconds, as milliseconds
    (rounded to 0.01 ms; None when there are none)."""
    values = sorted(seconds)

    def ms(value: float | None) -> float | None:
        return None if value is None else round(value * 1000, 2)

    return {
        "p50": ms(percentile(values, 50)),
        "p90": ms(percentile(values, 90)),
        "p99": ms(percentile(values, 99)),
        "max": ms(values[-1] if values else None),
    }


@final
class SequenceTracker:
    """What one receiver got from one sender, whose packets are numbered 0, 1, 2...

    * ``arrivals``: every packet that arrived, duplicates included;
    * ``duplicated``: arrivals of a number already seen;
    * ``reordered``: arrivals of a new number lower than the highest seen so
      far (0, 2, 1: one; 0, 3, 1, 2: two);
    * :meth:`received` and :meth:`lost` count distinct numbers against what
      the sender says it sent.
    """

    __slots__ = ("_seen", "arrivals", "duplicated", "highest", "reordered")

    def __init__(self) -> None:
        self._seen: set[int] = set()
        self.arrivals = 0
        self.duplicated = 0
        self.reordered = 0
        self.highest = -1

    def record(self, seq: int) -> None:
        """One packet numbered ``seq`` arrived.

        Raises:
            ValueError: ``seq`` is negative.
        """
        if seq < 0:
            raise ValueError(f"sequence numbers start at 0, not {seq}")
        self.arrivals += 1
        if seq in self._seen:
            self.duplicated += 1
            return
        self._seen.add(seq)
        if seq < self.highest:
            self.reordered += 1
        else:
            self.highest = seq

    @property
    def distinct(self) -> int:
        """How many different numbers arrived."""
        return len(self._seen)

    def received(self, attempted: int, failed: Iterable[int] = ()) -> int:
        """Distinct numbers received among the ``attempted`` first ones,
        leaving out the ``failed`` sends."""
        skip = set(failed)
        if not skip and self.highest < attempted:
            return len(self._seen)
        return sum(1 for s in self._seen if s < attempted and s not in skip)

    def missing(self, attempted: int, failed: Iterable[int] = ()) -> list[int]:
        """The numbers below ``attempted`` (but for ``failed``) that never arrived."""
        skip = set(failed)
        return [s for s in range(attempted) if s not in self._seen and s not in skip]

    def lost(self, attempted: int, failed: Iterable[int] = ()) -> int:
        """How many successfully sent packets never arrived."""
        return len(self.missing(attempted, failed))

    def unexpected(self, attempted: int) -> int:
        """Distinct numbers at or above ``attempted`` (never sent): a bug if not 0."""
        return sum(1 for s in self._seen if s >= attempted)


@final
@dataclasses.dataclass(frozen=True)
class SenderLog:
    """What one participant sent: ``attempted`` packets numbered from 0, of
    which the ``failed`` numbers raised; ``behind`` more were due in the
    window but did not go out before it ended (sending was slower than the
    rate)."""

    attempted: int
    failed: frozenset[int] = frozenset()
    behind: int = 0

    @property
    def sent(self) -> int:
        """Packets sent successfully."""
        return self.attempted - len(self.failed)


@final
@dataclasses.dataclass(frozen=True)
class DataStats:
    """Data delivery over every (receiver, sender) pair of every room."""

    sent: int
    expected: int
    received: int
    lost: int
    reordered: int
    duplicated: int
    send_errors: int = 0
    unexpected: int = 0
    """Packets with an unknown sender, a number never sent, or a bad format."""
    behind: int = 0
    """Sends due in the window that did not go out before it ended: the
    senders could not keep up with ``data_rate`` (not counted in ``sent``)."""

    def as_dict(self) -> dict[str, int]:
        """The fields, for JSON."""
        return dataclasses.asdict(self)


def account_delivery(
    rooms: Mapping[str, Sequence[str]],
    senders: Mapping[str, SenderLog],
    trackers: Mapping[tuple[str, str], SequenceTracker],
    *,
    malformed: int = 0,
) -> DataStats:
    """Totals of data delivery.

    Args:
        rooms: each room's participant identities.
        senders: what each identity sent (absent: nothing).
        trackers: ``(receiver, sender)`` -> what the receiver got from the sender.
        malformed: packets on the load test's topic that could not be decoded.

    Every packet sent successfully should reach each other participant of
    its room: ``expected`` = sum over senders of sent x (room size - 1);
    ``received`` counts distinct packets that arrived among those,
    ``lost`` = ``expected`` - ``received``.
    """
    sent = expected = received = reordered = duplicated = errors = behind = 0
    unexpected = malformed
    members: dict[str, str] = {}
    for name, identities in rooms.items():
        for identity in identities:
            members[identity] = name
    for identities in rooms.values():
        for sender in identities:
            log_ = senders.get(sender, SenderLog(0))
            sent += log_.sent
            errors += len(log_.failed)
            behind += log_.behind
            expected += log_.sent * (len(identities) - 1)
            for receiver in identities:
                if receiver == sender:
                    continue
                tracker = trackers.get((receiver, sender))
                if tracker is None:
                    continue
                received += tracker.received(log_.attempted, log_.failed)
                reordered += tracker.reordered
                duplicated += tracker.duplicated
                unexpected += tracker.unexpected(log_.attempted)
    for (receiver, sender), tracker in trackers.items():
        if members.get(receiver) is None or members.get(receiver) != members.get(sender):
            unexpected += tracker.arrivals  # from outside the receiver's room
    return DataStats(
        sent=sent,
        expected=expected,
        received=received,
        lost=expected - received,
        reordered=reordered,
        duplicated=duplicated,
        send_errors=errors,
        unexpected=unexpected,
        behind=behind,
    )


def encode_packet(sender: str, seq: int, size: int) -> bytes:
    """The payload of data packet ``seq`` of ``sender``, padded to ``size``
    bytes (longer when the header alone is longer)."""
    head = b"%s|%s|%d|" % (_PACKET_MAGIC, sender.encode(), seq)
    return head + b"." * max(0, size - len(head))


def decode_packet(payload: bytes) -> tuple[str, int] | None:
    """``(sender, seq)`` of a payload made by :func:`encode_packet`; None if it is not one."""
    parts = payload.split(b"|", 3)
    if len(parts) != 4 or parts[0] != _PACKET_MAGIC or not parts[2].isdigit():
        return None
    try:
        return parts[1].decode(), int(parts[2])
    except UnicodeDecodeError:
        return None


# --------------------------------------------------------------------------- the report


@final
@dataclasses.dataclass(frozen=True)
class JoinStats:
    """How joining went. Times in milliseconds."""

    participants: int
    joined: int
    p50_ms: float | None
    max_ms: float | None
    all_in_ms: float | None
    """From the start of the run until the last participant had joined."""
    ready_ms: float | None
    """From the start of the run until everyone saw everyone (and heard the tone)."""
    by_url: dict[str, int]
    """Participants joined through each URL."""

    def as_dict(self) -> dict[str, object]:
        """The fields, for JSON."""
        return dataclasses.asdict(self)


@final
@dataclasses.dataclass(frozen=True)
class RpcStats:
    """RPC calls made during the traffic window."""

    calls: int
    ok: int
    errors: dict[str, int]
    """Failed calls by kind: an RPC error code's name (``RESPONSE_TIMEOUT``...),
    ``WRONG_RESPONSE``, ``LOCAL_TIMEOUT`` or an exception's class name."""
    latency_ms: dict[str, float | None]
    """p50, p90, p99 and max of the successful calls."""

    @property
    def failed(self) -> int:
        """All failed calls."""
        return sum(self.errors.values())

    def as_dict(self) -> dict[str, object]:
        """The fields, for JSON."""
        return {**dataclasses.asdict(self), "failed": self.failed}


@final
@dataclasses.dataclass(frozen=True)
class AudioStats:
    """Audio frames received by the subscribers during the traffic window."""

    enabled: bool
    publishers: int
    subscriptions: int
    expected_frames: int
    """100 frames a second per subscription, over the window."""
    received_frames: int
    audible_frames: int
    """Received frames that carried the tone (not silence)."""
    dropped_frames: int
    """Frames the subscribers' streams dropped for falling behind."""

    @property
    def received_ratio(self) -> float | None:
        """received / expected (None without audio)."""
        if not self.expected_frames:
            return None
        return round(self.received_frames / self.expected_frames, 4)

    def as_dict(self) -> dict[str, object]:
        """The fields, for JSON."""
        return {**dataclasses.asdict(self), "received_ratio": self.received_ratio}


@final
@dataclasses.dataclass(frozen=True)
class CpuStats:
    """CPU time of this process (every thread, the native core's too)."""

    user_s: float
    system_s: float
    wall_s: float
    """The whole run: joining, traffic, draining, leaving."""
    window_s: float
    """CPU seconds (user + system) during the traffic window."""
    window_wall_s: float

    @property
    def total_s(self) -> float:
        """User + system seconds over the whole run."""
        return self.user_s + self.system_s

    @property
    def per_wall_s(self) -> float:
        """CPU seconds per wall second over the whole run (1.0: one core busy)."""
        return self.total_s / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def window_per_wall_s(self) -> float:
        """CPU seconds per wall second during the traffic window."""
        return self.window_s / self.window_wall_s if self.window_wall_s > 0 else 0.0

    def as_dict(self) -> dict[str, float]:
        """The fields, for JSON (rounded)."""
        fields = {
            **dataclasses.asdict(self),
            "total_s": self.total_s,
            "per_wall_s": self.per_wall_s,
            "window_per_wall_s": self.window_per_wall_s,
        }
        return {k: round(v, 3) for k, v in fields.items()}


@final
@dataclasses.dataclass(frozen=True)
class LoadTestReport:
    """Everything :func:`run_load_test` measured."""

    config: LoadTestConfig
    window_s: float
    """The traffic window as it ran (``duration``, give or take a scheduler tick)."""
    join: JoinStats
    rpc: RpcStats
    data: DataStats
    audio: AudioStats
    cpu: CpuStats

    def as_dict(self) -> dict[str, object]:
        """The report as one JSON-ready dict (no API key or secret)."""
        c = self.config
        return {
            "config": {
                "urls": list(c.urls),
                "rooms": c.rooms,
                "participants": c.participants,
                "duration_s": c.duration,
                "rpc_rate": c.rpc_rate,
                "data_rate": c.data_rate,
                "data_size": c.data_size,
                "audio": c.audio,
                "room_prefix": c.room_prefix,
            },
            "window_s": round(self.window_s, 3),
            "join": self.join.as_dict(),
            "rpc": self.rpc.as_dict(),
            "data": self.data.as_dict(),
            "audio": self.audio.as_dict(),
            "cpu": self.cpu.as_dict(),
        }


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


def format_report(report: LoadTestReport) -> str:
    """The report as text: a heading, then one line per section
    (join, rpc, data, audio, cpu)."""
    c, j, r, d, a, u = (
        report.config,
        report.join,
        report.rpc,
        report.data,
        report.audio,
        report.cpu,
    )
    lines = [
        f"load test: {_n(c.rooms, 'room')} x {c.participants} participants over "
        f"{_n(len(c.urls), 'URL')}, "
        f"{report.window_s:.1f} s of traffic",
        f"join    {j.joined}/{j.participants} joined   p50 {_ms(j.p50_ms)}   "
        f"max {_ms(j.max_ms)}   all in {_ms(j.all_in_ms)}   ready {_ms(j.ready_ms)}",
    ]
    errors = ", ".join(f"{k}={v}" for k, v in sorted(r.errors.items())) or "none"
    lat = r.latency_ms
    lines.append(
        f"rpc     {r.calls} calls   ok {r.ok}   errors {r.failed} ({errors})   "
        f"latency p50 {_ms(lat['p50'])}  p90 {_ms(lat['p90'])}  p99 {_ms(lat['p99'])}  "
        f"max {_ms(lat['max'])}"
    )
    data = (
        f"data    sent {d.sent}   received {d.received}/{d.expected}   lost {d.lost}   "
        f"reordered {d.reordered}   duplicated {d.duplicated}"
    )
    if d.behind:
        data += f"   behind {d.behind} (sending slower than the rate)"
    if d.send_errors or d.unexpected:
        data += f"   send errors {d.send_errors}   unexpected {d.unexpected}"
    lines.append(data)
    if a.enabled:
        ratio = a.received_ratio
        pct = "-" if ratio is None else f"{ratio * 100:.1f}%"
        lines.append(
            f"audio   frames {a.received_frames}/{a.expected_frames} ({pct})   "
            f"audible {a.audible_frames}   dropped {a.dropped_frames}   "
            f"({_n(a.publishers, 'publisher')}, {_n(a.subscriptions, 'subscription')})"
        )
    else:
        lines.append("audio   off")
    lines.append(
        f"cpu     {u.total_s:.2f} s (user {u.user_s:.2f} + sys {u.system_s:.2f}) in "
        f"{u.wall_s:.1f} s: {u.per_wall_s:.2f} per wall second; traffic window "
        f"{u.window_s:.2f} s: {u.window_per_wall_s:.2f} per wall second"
    )
    return "\n".join(lines)


# --------------------------------------------------------------------------- the run


def _cpu() -> tuple[float, float]:
    t = os.times()
    return t.user, t.system


@final
class _Peer:
    """One participant's state while the run goes."""

    def __init__(self, seat: Seat, token: str) -> None:
        self.seat = seat
        self.token = token
        self.room: lk.Room | None = None
        self.join_s: float | None = None
        self.stream: lk.AudioStream | None = None
        self.heard = trio.Event()  # first audible frame
        self.ready = False
        self.audible = 0
        self.attempted = 0
        self.behind = 0  # data sends due in the window that did not go out in time
        self.failed: set[int] = set()
        # (received_frames, dropped_frames, audible) at window start and end
        self.audio_start = (0, 0, 0)
        self.audio_end = (0, 0, 0)

    def audio_now(self) -> tuple[int, int, int]:
        s = self.stream
        return (0, 0, 0) if s is None else (s.received_frames, s.dropped_frames, self.audible)

    def waiting_for(self, others: Sequence[str], publisher: str | None) -> list[str]:
        """What this participant still waits for (for the ready timeout's message)."""
        if self.room is None:
            return ["its own join"]
        present = self.room.remote_participants
        waits = [f"participant {o}" for o in others if o not in present]
        if publisher is not None and not waits and not self.heard.is_set():
            waits.append(f"audio of {publisher}")
        return waits


@final
class _Run:
    def __init__(self, config: LoadTestConfig, seats: Sequence[Seat]) -> None:
        self.config = config
        self.peers = [_Peer(seat, _token(config, seat)) for seat in seats]
        self.by_room: dict[str, list[_Peer]] = {}
        for peer in self.peers:
            self.by_room.setdefault(peer.seat.room, []).append(peer)
        self.limiter = trio.CapacityLimiter(config.join_concurrency)
        self.all_joined = trio.Event()
        self.all_ready = trio.Event()
        self.go = trio.Event()
        self.stop = trio.Event()
        self.leave = trio.Event()
        self.joined = self.ready = self.finished = self.settled = 0
        self.all_settled = trio.Event()  # every connect succeeded or failed
        self.all_finished = trio.Event()
        self.draining = False  # sending stopped: each packet may complete the data
        self.data_complete = trio.Event()
        self.started = 0.0
        self.all_in_s: float | None = None
        self.ready_s: float | None = None
        self.window_start = self.window_end = self.planned_end = 0.0
        self.failures: list[Exception] = []
        self.trackers: dict[tuple[str, str], SequenceTracker] = {}
        self.malformed = 0
        self.rpc_latencies: list[float] = []
        self.rpc_calls = 0
        self.rpc_errors: Counter[str] = Counter()

    # -- orchestration ------------------------------------------------------------

    async def main(self) -> LoadTestReport:
        cpu0 = _cpu()
        await self._create_rooms()
        self.started = trio.current_time()
        cpu_window = (0.0, 0.0)
        async with trio.open_nursery() as nursery:

            async def guard(body: Callable[[], Awaitable[object]]) -> None:
                try:
                    await body()
                except JoinError as exc:
                    # the others' connects are left to finish (the conductor
                    # then stops the run): a connect cancelled in flight has
                    # the native core log its outcome after this process has
                    # stopped listening, and that line has the token in it
                    self.failures.append(exc)
                except Exception as exc:
                    self.failures.append(exc)
                    nursery.cancel_scope.cancel()

            async def conduct() -> None:
                nonlocal cpu_window
                cpu_window = await self._conduct()

            for peer in self.peers:
                nursery.start_soon(guard, functools.partial(self._participant, peer))
            nursery.start_soon(guard, conduct)
        if self.failures:
            joins = [f for f in self.failures if isinstance(f, JoinError)]
            raise (joins or self.failures)[0]
        cpu1 = _cpu()
        wall = trio.current_time() - self.started
        return self._report(cpu1[0] - cpu0[0], cpu1[1] - cpu0[1], wall, cpu_window)

    async def _create_rooms(self) -> None:
        """Creates every room through the server API before anyone joins.

        On a cluster, participants joining a room that does not exist yet
        through different nodes at the same moment can end up in two
        instances of it (each unable to see the others); a room created
        first has one node, which every node relays to.

        Raises:
            ConnectFailedError: the server API is unreachable, or refused the
                key and secret.
            LoadTestError: the server refused to create a room, or did not
                answer within ``connect_timeout``.
        """
        c = self.config
        names = sorted(self.by_room)
        url = c.urls[0]
        refused: list[tuple[str, BaseException]] = []
        with trio.move_on_after(c.connect_timeout) as scope:
            async with (
                api.LiveKitAPI(url, c.api_key, c.api_secret, timeout=c.connect_timeout) as lkapi,
                trio.open_nursery() as nursery,
            ):

                async def create(name: str) -> None:
                    try:
                        await lkapi.room.create_room(
                            api.CreateRoomRequest(name=name, empty_timeout=ROOM_EMPTY_TIMEOUT)
                        )
                    except api.ApiError as exc:
                        refused.append((name, exc))
                        nursery.cancel_scope.cancel()

                for name in names:
                    nursery.start_soon(create, name)
        if refused:
            name, exc = refused[0]
            what = f"could not create room {name!r} at {url}: {exc}"
            if isinstance(
                exc, (api.ApiConnectionError, api.UnauthenticatedError, api.PermissionDeniedError)
            ):
                raise ConnectFailedError(what) from None
            raise LoadTestError(what) from None
        if scope.cancelled_caught:
            raise ConnectFailedError(
                f"the server API at {url} did not create the rooms within {c.connect_timeout:g} s"
            )

    async def _conduct(self) -> tuple[float, float]:
        """Moves everyone through the phases; returns (window CPU s, window wall s).

        Raises:
            LoadTestError: joining or getting ready took too long.
        """
        c = self.config
        waves = math.ceil(len(self.peers) / c.join_concurrency)
        join_limit = waves * (c.connect_timeout + 5) + 5
        with trio.move_on_after(join_limit):
            await self.all_settled.wait()
            if any(isinstance(f, JoinError) for f in self.failures):
                # main() raises that JoinError; this stops everyone
                raise LoadTestError("a participant could not join")
            await self.all_joined.wait()
        if not self.all_joined.is_set():
            raise LoadTestError(
                f"only {self.joined} of {len(self.peers)} participants joined "
                f"within {join_limit:g} s"
            )
        with trio.move_on_after(c.ready_timeout):
            await self.all_ready.wait()
        if not self.all_ready.is_set():
            raise LoadTestError(self._not_ready_message())
        self.ready_s = trio.current_time() - self.started
        log.info("everyone is ready after %.2f s; traffic for %g s", self.ready_s, c.duration)

        self.window_start = trio.current_time()
        self.window_end = self.planned_end = self.window_start + c.duration
        for peer in self.peers:
            peer.audio_start = peer.audio_now()
        cpu_a = _cpu()
        self.go.set()
        await trio.sleep_until(self.window_end)
        cpu_b = _cpu()
        actual_end = trio.current_time()
        for peer in self.peers:
            peer.audio_end = peer.audio_now()
        self.window_end = actual_end
        self.stop.set()

        # drain: in-flight calls end on their own (bounded by rpc_timeout);
        # in-flight data gets up to `grace` seconds to arrive
        with trio.move_on_after(c.rpc_timeout + RPC_SLACK + 1):
            await self.all_finished.wait()
        self.draining = True
        if self._data_complete():
            self.data_complete.set()
        with trio.move_on_at(max(actual_end + c.grace, trio.current_time())):
            await self.data_complete.wait()
        self.leave.set()
        return (cpu_b[0] + cpu_b[1]) - (cpu_a[0] + cpu_a[1]), actual_end - self.window_start

    def _not_ready_message(self) -> str:
        waits = []
        for room, peers in self.by_room.items():
            identities = [p.seat.identity for p in peers]
            publisher = identities[0] if self.config.audio else None
            for peer in peers:
                if peer.ready:
                    continue
                others = [i for i in identities if i != peer.seat.identity]
                pub = publisher if publisher != peer.seat.identity else None
                missing = ", ".join(peer.waiting_for(others, pub)) or "?"
                waits.append(f"{peer.seat.identity} ({room}) waits for {missing}")
        shown = "; ".join(waits[:5]) + ("; ..." if len(waits) > 5 else "")
        return (
            f"not everyone was ready within {self.config.ready_timeout:g} s "
            f"({len(waits)} of {len(self.peers)} not ready: {shown})"
        )

    def _data_complete(self) -> bool:
        for peers in self.by_room.values():
            for sender in peers:
                want = sender.attempted - len(sender.failed)
                for receiver in peers:
                    if receiver is sender:
                        continue
                    tracker = self.trackers.get((receiver.seat.identity, sender.seat.identity))
                    got = 0 if tracker is None else tracker.distinct
                    if got < want:
                        return False
        return True

    # -- one participant -----------------------------------------------------------

    async def _participant(self, peer: _Peer) -> None:
        """Joins, gets ready, sends, drains and leaves, in step with the others.

        Raises:
            JoinError: the participant could not join.
            lkrtc_trio.LiveKitError: the room failed under it (disconnected,
                event overflow...).
        """
        c, seat = self.config, peer.seat
        options = lk.RoomOptions(connect_timeout=c.connect_timeout)
        async with contextlib.AsyncExitStack() as stack:
            async with self.limiter:
                if self.failures:  # someone could not join: do not even try
                    self._settled()
                    return
                t0 = trio.current_time()
                try:
                    room = await stack.enter_async_context(
                        lk.open_room(seat.url, peer.token, options=options)
                    )
                except lk.ConnectError as exc:
                    raise JoinError(seat.identity, seat.room, seat.url, exc.reason) from None
                finally:
                    self._settled()
                peer.join_s = trio.current_time() - t0
            peer.room = room
            events = stack.enter_context(room.events(max_buffer=EVENTS_BUFFER))
            lp = room.local_participant

            async def echo(data: lk.RpcInvocationData) -> str:
                return data.payload

            lp.register_rpc_method(RPC_METHOD, echo)
            async with trio.open_nursery() as background:
                background.start_soon(self._read_data, peer, events)
                if c.audio and seat.publishes_audio:
                    await self._publish_tone(peer, stack, background)
                self._joined()
                await self._get_ready(peer, stack, background)
                await self.go.wait()
                await self._traffic(peer)
                self._finished()
                await self.leave.wait()
                background.cancel_scope.cancel()

    def _settled(self) -> None:
        self.settled += 1
        if self.settled == len(self.peers):
            self.all_settled.set()

    def _joined(self) -> None:
        self.joined += 1
        if self.joined == len(self.peers):
            self.all_in_s = trio.current_time() - self.started
            self.all_joined.set()

    def _finished(self) -> None:
        self.finished += 1
        if self.finished == len(self.peers):
            self.all_finished.set()

    async def _get_ready(
        self, peer: _Peer, stack: contextlib.AsyncExitStack, background: trio.Nursery
    ) -> None:
        assert peer.room is not None
        room, seat = peer.room, peer.seat
        mates = self.by_room[seat.room]
        for other in mates:
            if other is not peer:
                await room.wait_for_participant(other.seat.identity)
        if self.config.audio and not seat.publishes_audio:
            publisher = room.remote_participants[mates[0].seat.identity]
            stream = lk.AudioStream.from_participant(
                participant=publisher,
                track_source=lk.TrackSource.SOURCE_MICROPHONE,
                sample_rate=SAMPLE_RATE,
                num_channels=1,
            )
            stack.callback(stream.close)
            peer.stream = stream
            background.start_soon(self._listen, peer, stream)
            await peer.heard.wait()
        peer.ready = True
        self.ready += 1
        if self.ready == len(self.peers):
            self.all_ready.set()

    async def _read_data(self, peer: _Peer, events: lk.EventSubscription) -> None:
        me = peer.seat.identity
        async for event in events:
            if not isinstance(event, lk.DataReceived) or event.topic != DATA_TOPIC:
                continue
            decoded = decode_packet(event.payload)
            if decoded is None:
                self.malformed += 1
                continue
            key = (me, decoded[0])
            tracker = self.trackers.get(key)
            if tracker is None:
                tracker = self.trackers[key] = SequenceTracker()
            tracker.record(decoded[1])
            if self.draining and self._data_complete():
                self.data_complete.set()

    async def _listen(self, peer: _Peer, stream: lk.AudioStream) -> None:
        import numpy as np

        async for frame in stream:
            samples = np.frombuffer(frame.data, dtype=np.int16)
            if samples.size and int(np.abs(samples.astype(np.int32)).max()) > AUDIBLE_PEAK:
                peer.audible += 1
                if not peer.heard.is_set():
                    peer.heard.set()

    async def _publish_tone(
        self, peer: _Peer, stack: contextlib.AsyncExitStack, background: trio.Nursery
    ) -> None:
        import numpy as np

        assert peer.room is not None
        source = lk.AudioSource(SAMPLE_RATE, 1, queue_size_ms=200)
        stack.callback(source.close)
        track = lk.LocalAudioTrack.create_audio_track("load-test-tone", source)
        stack.callback(track.close)
        options = lk.TrackPublishOptions(source=lk.TrackSource.SOURCE_MICROPHONE)
        await peer.room.local_participant.publish_track(track, options)
        # a second of tone (440 Hz fits a second exactly) and one frame more
        step = 2 * math.pi * TONE_HZ / SAMPLE_RATE
        n = np.arange(SAMPLE_RATE + FRAME_SAMPLES)
        tone = (TONE_AMPLITUDE * np.sin(step * n)).astype(np.int16)

        async def play() -> None:
            offset = 0
            while True:
                chunk = tone[offset : offset + FRAME_SAMPLES].copy()
                await source.capture_frame(lk.AudioFrame.from_numpy(chunk, SAMPLE_RATE))
                offset = (offset + FRAME_SAMPLES) % SAMPLE_RATE

        background.start_soon(play)

    async def _traffic(self, peer: _Peer) -> None:
        """RPC calls and data packets until the window ends; then waits for
        the calls still in flight (each bounded by ``rpc_timeout``)."""
        async with trio.open_nursery() as calls, trio.open_nursery() as loops:
            if self.config.rpc_rate > 0:
                loops.start_soon(self._call_loop, peer, calls)
            if self.config.data_rate > 0:
                loops.start_soon(self._data_loop, peer)

    def _due(self, first: float, interval: float) -> int:
        """How many sends at ``first``, ``first + interval``... fall in the window."""
        return max(0, math.ceil((self.planned_end - first) / interval - 1e-9))

    def _phase(self, peer: _Peer, interval: float) -> float:
        """Spreads the participants' first sends over one interval."""
        return interval * peer.seat.number / len(self.peers)

    async def _call_loop(self, peer: _Peer, calls: trio.Nursery) -> None:
        mates = self.by_room[peer.seat.room]
        i = peer.seat.index
        targets = [mates[(i + k) % len(mates)].seat.identity for k in range(1, len(mates))]
        interval = 1 / self.config.rpc_rate
        first = self.window_start + self._phase(peer, interval)
        planned = self._due(first, interval)
        for k in range(planned):
            await trio.sleep_until(first + k * interval)
            if self.stop.is_set():
                break
            calls.start_soon(self._call, peer, targets[k % len(targets)], k)

    async def _call(self, peer: _Peer, target: str, k: int) -> None:
        assert peer.room is not None
        c = self.config
        payload = f"{peer.seat.identity}:{k}"
        self.rpc_calls += 1
        t0 = trio.current_time()
        try:
            with trio.fail_after(c.rpc_timeout + RPC_SLACK):
                reply = await peer.room.local_participant.perform_rpc(
                    destination_identity=target,
                    method=RPC_METHOD,
                    payload=payload,
                    response_timeout=c.rpc_timeout,
                )
        except lk.RpcError as exc:
            self.rpc_errors[_rpc_error_name(exc.code)] += 1
            return
        except trio.TooSlowError:
            self.rpc_errors["LOCAL_TIMEOUT"] += 1
            return
        except lk.LiveKitError as exc:
            self.rpc_errors[type(exc).__name__] += 1
            return
        if reply != payload:
            self.rpc_errors["WRONG_RESPONSE"] += 1
            return
        self.rpc_latencies.append(trio.current_time() - t0)

    async def _data_loop(self, peer: _Peer) -> None:
        assert peer.room is not None
        lp = peer.room.local_participant
        c = self.config
        interval = 1 / c.data_rate
        first = self.window_start + self._phase(peer, interval)
        planned = self._due(first, interval)
        for k in range(planned):
            await trio.sleep_until(first + k * interval)
            if self.stop.is_set():
                break
            seq = peer.attempted
            peer.attempted += 1
            try:
                await lp.publish_data(
                    encode_packet(peer.seat.identity, seq, c.data_size),
                    reliable=True,
                    topic=DATA_TOPIC,
                )
            except lk.LiveKitError as exc:
                peer.failed.add(seq)
                log.warning("%s: sending packet %d failed: %s", peer.seat.identity, seq, exc)
        peer.behind = planned - peer.attempted

    # -- the report -----------------------------------------------------------------

    def _report(
        self, user: float, system: float, wall: float, window: tuple[float, float]
    ) -> LoadTestReport:
        c = self.config
        joins = [p.join_s for p in self.peers if p.join_s is not None]
        by_url: Counter[str] = Counter(p.seat.url for p in self.peers if p.join_s is not None)

        def ms(seconds: float | None) -> float | None:
            return None if seconds is None else round(seconds * 1000, 1)

        join = JoinStats(
            participants=len(self.peers),
            joined=len(joins),
            p50_ms=ms(percentile(joins, 50)),
            max_ms=ms(max(joins, default=None)),
            all_in_ms=ms(self.all_in_s),
            ready_ms=ms(self.ready_s),
            by_url=dict(sorted(by_url.items())),
        )
        rpc = RpcStats(
            calls=self.rpc_calls,
            ok=len(self.rpc_latencies),
            errors=dict(sorted(self.rpc_errors.items())),
            latency_ms=latency_summary(self.rpc_latencies),
        )
        data = account_delivery(
            {room: [p.seat.identity for p in peers] for room, peers in self.by_room.items()},
            {
                p.seat.identity: SenderLog(p.attempted, frozenset(p.failed), p.behind)
                for p in self.peers
            },
            self.trackers,
            malformed=self.malformed,
        )
        window_s = window[1]
        subscribers = [p for p in self.peers if p.stream is not None]
        audio = AudioStats(
            enabled=c.audio,
            publishers=len(self.by_room) if c.audio else 0,
            subscriptions=len(subscribers),
            expected_frames=round(FRAMES_PER_SECOND * window_s * len(subscribers)),
            received_frames=sum(p.audio_end[0] - p.audio_start[0] for p in subscribers),
            audible_frames=sum(p.audio_end[2] - p.audio_start[2] for p in subscribers),
            dropped_frames=sum(p.audio_end[1] - p.audio_start[1] for p in subscribers),
        )
        cpu = CpuStats(
            user_s=user, system_s=system, wall_s=wall, window_s=window[0], window_wall_s=window_s
        )
        return LoadTestReport(c, window_s, join, rpc, data, audio, cpu)


def _rpc_error_name(code: int) -> str:
    try:
        return lk.RpcError.ErrorCode(code).name
    except ValueError:
        return f"CODE_{code}"


async def run_load_test(config: LoadTestConfig) -> LoadTestReport:
    """Runs the load test described by ``config`` (on trio) and reports.

    Losses, RPC errors and missing audio are reported, not raised. Every
    participant leaves its room before this returns or raises (also when
    cancelled).

    Raises:
        JoinError: a participant could not join (connect or authentication
            failed, or the connect timed out).
        ConnectFailedError: the server API, which creates the rooms first,
            is unreachable or refused the key and secret.
        LoadTestError: not everyone joined, or was ready (saw everyone, heard
            the tone), within the configured bounds.
        lkrtc_trio.LiveKitError: the room failed under a participant during
            the run (disconnected by the server, ...).
    """
    run = _Run(config, plan_seats(config))
    log.info(
        "load test: %d rooms x %d participants over %d URLs",
        config.rooms,
        config.participants,
        len(config.urls),
    )
    return await run.main()
