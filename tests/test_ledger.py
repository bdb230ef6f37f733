"""The send ledger (sans-I/O): which reliable packets may not have arrived.
Property: for any interleaving of sends, our own reconnections, settling, and
receivers leaving and coming back, each report covers exactly the packets a
reference model (every send kept for ever) puts in its window, although the
ledger forgets old sends; and memory stays bounded."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from lkrtc_trio._ledger import SendLedger

LOOKBACK, ABSENCE = 20.0, 60.0
WHO = ("x", "y")

steps = st.lists(
    st.tuples(
        st.floats(min_value=0, max_value=25, allow_nan=False),
        st.sampled_from(
            ["send"] * 4
            + ["reconnecting", "settled", "settled-missing-x"]
            + [f"{op}-{w}" for op in ("left", "back") for w in WHO]
        ),
    ),
    max_size=150,
)


@settings(max_examples=300)
@given(steps)
def test_reports_cover_exactly_the_window(script: list[tuple[float, str]]) -> None:
    ledger = SendLedger(LOOKBACK, ABSENCE)
    now = 0.0
    accepted: list[tuple[float, int]] = []  # the model keeps everything
    own: float | None = None
    absent: dict[str, float] = {}

    def expire() -> None:
        for w in [w for w, t in absent.items() if t < now - ABSENCE]:
            del absent[w]

    def window(since: float) -> list[int]:
        return [s for t, s in accepted if since - LOOKBACK <= t <= now]

    def check(report: object, since: float, seqs: list[int], who: tuple[str, ...]) -> None:
        if not seqs:
            assert report is None
            return
        assert report is not None
        assert (report.first_sequence, report.last_sequence, report.count) == (  # type: ignore[attr-defined]
            min(seqs),
            max(seqs),
            len(seqs),
        )
        assert (report.since, report.until, report.identities) == (since - LOOKBACK, now, who)  # type: ignore[attr-defined]

    for gap, what in script:
        now += gap
        if what == "send":
            seq = ledger.begin()
            assert seq == len(accepted) + 1
            ledger.accepted(seq, now)
            accepted.append((now, seq))
            expire()
            starts = [now, *absent.values()] + ([own] if own is not None else [])
            # memory: only what an open window or the lookback can still need
            assert all(t >= min(starts) - LOOKBACK for t, _ in ledger._accepted)
        elif what == "reconnecting":
            ledger.reconnecting(now)
            if own is None:
                expire()
                own = min([now, *absent.values()])
            absent.clear()
        elif what.startswith("settled"):
            missing = ("x",) if what.endswith("x") else ()
            report = ledger.settled(now, missing)
            if own is None:
                assert report is None
            else:
                check(report, own, window(own), ())
                for m in missing:
                    absent.setdefault(m, own)
                own = None
            expire()
        else:
            op, w = what.split("-")
            if op == "left":
                ledger.participant_left(w, now)
                if own is None:
                    expire()  # an absence too old to count is a new one
                    absent.setdefault(w, now)
            else:
                report = ledger.participant_back(w, now)
                expire()
                since = absent.pop(w, None)
                if since is None:
                    assert report is None
                else:
                    check(report, since, window(since), (w,))
