"""The fault suite: server crashes and restarts, network partitions (both
sides, and one side only), every ``simulate_scenario`` kind, against a real
server of each scenario's own.

Each scenario runs in a subprocess (``tests/faults/scenarios.py``) in a
network namespace of its own, with a server of its own, once per backend,
trio and asyncio side by side, and prints what it saw; the tests assert on
that:

- the connection events, in order, and when they came;
- how long pending calls took to fail, and with which typed error;
- that no native handle, pending request, lent buffer or server-side
  participant is left;
- that data arrived in order without duplicates, and that every packet that
  did not arrive either failed its call or is inside a ``ReliableDataMayBeLost``
  range.

Partitions need root, nftables and a private network namespace (what
``make test`` sets up); without them the partition tests fail, saying why.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from lkrtc_trio.testing import ServerInfo
from tests.faults import netcut

pytestmark = pytest.mark.integration

BACKENDS = ("trio", "asyncio")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# each scenario in a network namespace of its own (its server, its nftables)
OWN_NETNS = [sys.executable, "-m", "lkrtc_trio.testing.netns", "--"]


@pytest.fixture(scope="module", autouse=True)
def _server_built(livekit_server: ServerInfo) -> None:
    """The server binary is built before any scenario starts its own server."""


@pytest.fixture
def partitions() -> None:
    """Partitions need nftables and a network namespace of their own (root):
    what ``make test`` sets up. Without them the test fails, saying why."""
    ok, why = netcut.available()
    if not ok:
        pytest.fail(f"network partitions cannot be made here: {why}")


def scenario(*args: str, limit: float = 150) -> dict[str, dict[str, Any]]:
    """Runs a scenario on both backends at once; their outputs by backend."""

    def one(backend: str) -> dict[str, Any]:
        argv = [*OWN_NETNS, sys.executable, "-m", "tests.faults.scenarios", args[0], args[1]]
        argv.append(backend)
        proc = subprocess.run(
            [*argv, *args[2:]], capture_output=True, text=True, timeout=limit, cwd=ROOT, check=False
        )
        assert proc.returncode == 0, f"{backend}: exit {proc.returncode}\n{proc.stderr[-4000:]}"
        out: dict[str, Any] = json.loads(proc.stdout)
        out["stderr"] = proc.stderr
        return out

    with ThreadPoolExecutor(len(BACKENDS)) as pool:
        return dict(zip(BACKENDS, pool.map(one, BACKENDS), strict=True))


def events(out: dict[str, Any], who: str) -> list[tuple[float, str, dict[str, Any]]]:
    return [(t, name, d) for t, w, name, d in out["events"] if w == who]


def names(out: dict[str, Any], who: str, *keep: str) -> list[str]:
    return [name for _, name, _ in events(out, who) if name in keep]


def first(out: dict[str, Any], who: str, name: str) -> float:
    return next(t for t, n, _ in events(out, who) if n == name)


CONNECTION = ("Reconnecting", "Reconnected", "Disconnected", "ReliableDataMayBeLost")


def recovered(seen: list[str]) -> bool:
    """One or more reconnections, each completed, and no Disconnected: the
    native core sometimes needs a second one right after the first."""
    cycles = [n for n in seen if n in ("Reconnecting", "Reconnected", "Disconnected")]
    return (
        len(cycles) >= 2
        and len(cycles) % 2 == 0
        and cycles == ["Reconnecting", "Reconnected"] * (len(cycles) // 2)
    )


def check_data(out: dict[str, Any]) -> None:
    """In order, no duplicates, and nothing lost without a word."""
    received = out["received"]
    assert received == sorted(received), "reordered"
    assert len(received) == len(set(received)), "duplicated"
    sent = out["sent"]
    assert all(outcome != "pending" for _, _, outcome, _ in sent)
    reports = [d for _, name, d in events(out, "sender") if name == "ReliableDataMayBeLost"]
    got = set(received)
    silent = [
        i
        for i, (_, seq, outcome, _) in enumerate(sent)
        if i not in got
        and outcome == "ok"
        and not any(r["first_sequence"] <= seq <= r["last_sequence"] for r in reports)
    ]
    assert not silent, f"lost without an error or a report: {silent[:20]} of {len(silent)}"
    for r in reports:
        assert r["count"] == r["last_sequence"] - r["first_sequence"] + 1
        assert r["since"] < r["until"]


def check_nothing_left(out: dict[str, Any], server_alive: bool = True) -> None:
    end = out["end"]
    assert end["handles"] == 0 and end["pending"] == 0, end
    assert end.get("pinned", 0) == 0, end
    if server_alive:
        assert end["server_participants"] == 0, end


def test_server_killed_every_call_fails_within_the_reconnect_timeout() -> None:
    """SIGKILL: Reconnecting at once; with ``reconnect_timeout=5`` every call
    made during the outage (publish_data, set_metadata, perform_rpc) raises
    RoomDisconnectedError at 5 s, and Disconnected(CONNECTION_TIMEOUT)
    arrives then (the native core alone took 25-30 s)."""
    for backend, out in scenario("kill", "-").items():
        # the sender's packets of the last 20 s may be lost: said before the end
        assert names(out, "sender", *CONNECTION) == [
            "Reconnecting",
            "ReliableDataMayBeLost",
            "Disconnected",
        ], backend
        for who in ("sender", "receiver"):
            assert names(out, who, "Reconnecting", "Disconnected") == [
                "Reconnecting",
                "Disconnected",
            ], backend
            assert first(out, who, "Reconnecting") < 1.0
            gone = first(out, who, "Disconnected")
            assert 4.9 < gone < 6.5, (backend, who, gone)
            [(_, _, reason)] = [e for e in events(out, who) if e[1] == "Disconnected"]
            assert reason == {"value": "CONNECTION_TIMEOUT"}
        for call, (outcome, at) in out["calls"].items():
            assert outcome == "RoomDisconnectedError", (backend, call, outcome)
            assert 4.9 < at < 6.5, (backend, call, at)
        assert len(out["calls"]) == 3
        # every packet sent after the kill failed loudly, within the bound
        late = [s for s in out["sent"] if s[0] > 0.05]
        assert late and all(o == "RoomDisconnectedError" and d < 6.5 for _, _, o, d in late)
        check_data(out)
        check_nothing_left(out, server_alive=False)


def test_server_restarted_on_the_same_port_the_rooms_come_back() -> None:
    """SIGKILL, then a fresh server on the same ports 2 s later: both rooms
    rejoin (a full reconnect: the sender's sid changes), the calls held while
    reconnecting are sent then, and nothing is lost without a report."""
    for backend, out in scenario("restart", "-").items():
        assert out["end"]["reconnected"], backend
        assert out["end"]["sender_sid_changed"], backend
        for who in ("sender", "receiver"):
            seen = names(out, who, "Reconnecting", "Reconnected", "Disconnected")
            assert recovered(seen), (backend, who, seen)
            assert 2.0 < first(out, who, "Reconnected") < 20.0
        check_data(out)
        check_nothing_left(out)


@pytest.mark.parametrize("seconds", [3, 10, 20, 30])
def test_partition(seconds: int, partitions: None) -> None:
    """Every packet to or from the server dropped for ``seconds``. Short
    partitions are ridden out (SCTP retransmits: all arrive, no event);
    from 20 s the native core notices within the server's 15 s ping timeout
    and reconnects once the network is back."""
    for backend, out in scenario("partition", str(seconds)).items():
        sender = names(out, "sender", *CONNECTION)
        if seconds <= 10:
            assert sender == [], (backend, sender)
            assert len(set(out["received"])) == len(out["sent"]), backend
        else:
            assert recovered(sender), (backend, sender)
            assert 8.0 < first(out, "sender", "Reconnecting") < 17.0
            assert seconds < first(out, "sender", "Reconnected") < seconds + 20
        assert out["end"]["reconnected"], backend
        assert all(o == "ok" for _, _, o, _ in out["sent"]), backend
        # no call waited longer than the outage and the reconnect
        assert max(d for _, _, _, d in out["sent"]) < seconds + 20
        check_data(out)
        check_nothing_left(out)


def test_a_stream_cut_by_a_full_reconnect_fails_at_the_reader(partitions: None) -> None:
    """A text stream written through a 20 s partition (both rooms reconnect):
    its reader gets ``StreamError``, never a complete stream; the writer's
    block raises ``StreamError`` too. Streams before and after the fault
    complete whole."""
    for backend, out in scenario("stream-partition", "20", limit=200).items():
        end = out["end"]
        readers, writers = end["readers"], end["writers"]
        assert end["reconnected"], backend
        assert readers["before"] == {**readers["before"], "outcome": "complete", "parts": 20}
        assert readers["after"] == {**readers["after"], "outcome": "complete", "parts": 20}
        assert writers["before"]["outcome"] == writers["after"]["outcome"] == "closed"
        cut = readers["through"]
        assert cut["outcome"].startswith("StreamError"), (backend, cut)
        assert cut["parts"] < writers["through"]["written"] or "reconnected" in cut["outcome"]
        assert writers["through"]["outcome"].startswith("StreamError"), (backend, writers)
        assert end["open"] == [[0, 0], [0, 0]], (backend, end["open"])
        check_nothing_left(out)


def test_one_sided_partition_only_the_sender_is_cut_off(partitions: None) -> None:
    """Only the sender's traffic is dropped (20 s): the sender reconnects and
    reports what may be lost; the receiver keeps its connection (no
    Reconnecting) and sees the sender leave and rejoin."""
    for backend, out in scenario("one-sided", "20", limit=200).items():
        sender = names(out, "sender", *CONNECTION)
        assert recovered(sender), (backend, sender)
        assert names(out, "receiver", "Reconnecting", "Disconnected") == [], backend
        assert out["end"]["reconnected"], backend
        assert out["end"]["receiver_handles"] == 0 and out["end"]["receiver_pending"] == 0
        check_data(out)
        check_nothing_left(out)


RECOVERING = [
    "SIMULATE_SIGNAL_RECONNECT",
    "SIMULATE_NODE_FAILURE",
    "SIMULATE_MIGRATION",
    "SIMULATE_FORCE_TCP",
    "SIMULATE_FULL_RECONNECT",
    "SIMULATE_DISCONNECT_SIGNAL_ON_RESUME",
]


@pytest.mark.parametrize("kind", RECOVERING)
def test_simulated_faults_recover(kind: str) -> None:
    """Each reconnecting ``simulate_scenario`` kind: Reconnecting, then
    Reconnected within seconds, the room usable again, nothing lost silently."""
    for backend, out in scenario("simulate", kind).items():
        sender = names(out, "sender", "Reconnecting", "Reconnected", "Disconnected")
        assert recovered(sender), (backend, sender)
        assert first(out, "sender", "Reconnected") < 20.0  # seen up to 15.4 s
        assert out["end"]["reconnected"], backend
        # Only a packet the native core had in flight at the fault may fail
        # (its first reconnect attempt failed, and the later packets it held
        # went out: sending it again would reorder them); never silently.
        failed = [s for s in out["sent"] if s[2] != "ok"]
        why = [line for line in out["stderr"].splitlines() if line.startswith("call ")]
        assert len(failed) <= 1, (backend, failed, why)
        assert all(o == "PublishDataError" and abs(t) < 0.5 for t, _, o, _ in failed), why
        check_data(out)
        check_nothing_left(out)


def test_simulated_speaker_changes_nothing_else() -> None:
    for backend, out in scenario("simulate", "SIMULATE_SPEAKER").items():
        assert names(out, "sender", *CONNECTION) == [], backend
        assert "ActiveSpeakersChanged" in names(out, "sender", "ActiveSpeakersChanged")
        assert len(set(out["received"])) == len(out["sent"]), backend
        check_data(out)
        check_nothing_left(out)


def test_simulated_server_leave_ends_the_room() -> None:
    """The server says goodbye: Disconnected(SERVER_SHUTDOWN) at once; calls
    made afterwards raise RoomDisconnectedError at once."""
    for backend, out in scenario("simulate", "SIMULATE_SERVER_LEAVE").items():
        # what the sender sent in its last 20 s may not have arrived: said first
        assert names(out, "sender", *CONNECTION) in (
            ["Disconnected"],
            ["ReliableDataMayBeLost", "Disconnected"],
        ), backend
        assert first(out, "sender", "Disconnected") < 1.0
        [(_, _, reason)] = [e for e in events(out, "sender") if e[1] == "Disconnected"]
        assert reason == {"value": "SERVER_SHUTDOWN"}
        after = [s for s in out["sent"] if s[0] > 0.5]
        assert after and all(o == "RoomDisconnectedError" and d < 0.5 for _, _, o, d in after)
        check_data(out)
        check_nothing_left(out)


def test_simulated_force_tls_without_tls_gives_up_at_the_reconnect_timeout() -> None:
    """A reconnect that cannot succeed (the local server has no TLS): the room
    gives up after ``reconnect_timeout`` (8 s here): Disconnected
    (CONNECTION_TIMEOUT), every call held meanwhile raises
    RoomDisconnectedError then."""
    for backend, out in scenario("simulate", "SIMULATE_FORCE_TLS").items():
        sender = names(out, "sender", *CONNECTION)
        assert sender == ["Reconnecting", "ReliableDataMayBeLost", "Disconnected"], sender
        gone = first(out, "sender", "Disconnected") - first(out, "sender", "Reconnecting")
        assert 7.9 < gone < 9.5, (backend, gone)
        held = [s for s in out["sent"] if s[2] != "ok"]
        assert held and all(o == "RoomDisconnectedError" for _, _, o, _ in held)
        check_data(out)
        check_nothing_left(out)
