"""The send ledger (sans-I/O): which reliable packets a reconnection may have
lost. Property: for any interleaving of sends, reconnections and settling,
each report covers exactly the packets accepted from ``lookback`` seconds
before the episode's first ``Reconnecting`` until it settled, and memory stays
bounded while connected."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from lkrtc_trio._ledger import SendLedger

LOOKBACK = 20.0

# (gap in seconds before the step, what happens)
steps = st.lists(
    st.tuples(
        st.floats(min_value=0, max_value=15, allow_nan=False),
        st.sampled_from(["send", "send", "send", "reconnecting", "settled"]),
    ),
    max_size=200,
)


@given(steps)
def test_reports_cover_exactly_the_window(script: list[tuple[float, str]]) -> None:
    ledger = SendLedger(LOOKBACK)
    now = 0.0
    accepted: list[tuple[float, int]] = []
    since: float | None = None
    reported: set[int] = set()  # a packet is reported at most once
    for gap, what in script:
        now += gap
        if what == "send":
            seq = ledger.begin()
            assert seq == len(accepted) + 1
            ledger.accepted(seq, now)
            accepted.append((now, seq))
        elif what == "reconnecting":
            ledger.reconnecting(now)
            since = now if since is None else since
        else:
            report = ledger.settled(now)
            expected = [
                s for t, s in accepted if since is not None and since - LOOKBACK <= t <= now
            ]
            expected = [s for s in expected if s not in reported]
            if not expected:
                assert report is None
            else:
                assert report is not None
                assert (report.first_sequence, report.last_sequence) == (
                    min(expected),
                    max(expected),
                )
                assert report.count == len(expected)
                assert report.since == since - LOOKBACK  # type: ignore[operator]
                assert report.until == now
                reported |= set(expected)
            since = None
        if since is None:  # connected: only the last `lookback` seconds are kept
            assert all(t >= now - LOOKBACK - 15 for t, _ in ledger._accepted)
