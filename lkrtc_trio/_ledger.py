"""Which reliable data packets may not have arrived (sans-I/O).

The native core gives each reliable packet a sequence number and keeps a
resend queue, but only inside one connection. Reliable packets whose
``publish_data`` calls succeeded can still be lost, and the core reports
nothing:

* **Our own link fails.** A *full* reconnect (new participant, new peer
  connections) starts afresh: packets the core handed to the old data channel
  between the link's failure and ``Reconnecting`` are gone. ``Reconnected``
  does not say whether it resumed or rejoined.
* **A receiver's link fails.** The server forwards packets to the receiver's
  dead connection until it notices, and drops packets for a participant that
  is not in the room while it rejoins.

So the ledger numbers this room's reliable ``publish_data`` calls (1, 2, ...),
notes when the native core accepted each one, and reports:

* for our own reconnection, those accepted from ``lookback`` seconds before
  ``Reconnecting`` until the room has settled (every participant that was
  there before is back, or a bounded wait passed): they may have reached
  nobody;
* for a participant that left and came back within ``absence_limit`` seconds
  (a receiver that reconnected), those accepted from ``lookback`` seconds
  before it left until it was back: they may not have reached it.

The native core notices a silent link within the server's ping timeout (15 s
on livekit-server), and the server notices a dead participant as fast, so
``lookback`` defaults to 20 s. Memory: the sends of ``lookback`` seconds, plus
those of any open episode or absence.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import final

__all__ = ["AtRisk", "SendLedger"]


@dataclass(frozen=True, slots=True)
class AtRisk:
    first_sequence: int
    last_sequence: int
    count: int
    since: float
    until: float
    #: who may have missed them; empty: everyone (our own link failed)
    identities: tuple[str, ...] = ()


@final
class SendLedger:
    def __init__(self, lookback: float = 20.0, absence_limit: float = 60.0) -> None:
        self.lookback = lookback
        self.absence_limit = absence_limit
        self._next = 1
        self._accepted: deque[tuple[float, int]] = deque()  # (time, sequence)
        self._since: float | None = None  # our episode's first Reconnecting
        self._absent: dict[str, float] = {}  # identity -> when it left

    def begin(self) -> int:
        """A reliable packet is being sent: its sequence number."""
        seq = self._next
        self._next += 1
        return seq

    def accepted(self, seq: int, now: float) -> None:
        """The native core accepted packet ``seq`` (or its call was cancelled:
        it is sent anyway) at ``now``."""
        self._accepted.append((now, seq))
        self._prune(now)

    def _prune(self, now: float) -> None:
        absent = self._absent
        if not absent and self._since is None:  # the common case, per send
            horizon = now - self.lookback
            accepted = self._accepted
            while accepted and accepted[0][0] < horizon:
                accepted.popleft()
            return
        if absent:
            too_old = now - self.absence_limit
            for who in [w for w, t in absent.items() if t < too_old]:
                del absent[who]  # gone for good: a later join is a new one
        starts = [now, *absent.values()]
        if self._since is not None:
            starts.append(self._since)
        horizon = min(starts) - self.lookback
        accepted = self._accepted
        while accepted and accepted[0][0] < horizon:
            accepted.popleft()

    def _report(self, since: float, now: float, identities: tuple[str, ...]) -> AtRisk | None:
        start = since - self.lookback
        seqs = [seq for t, seq in self._accepted if start <= t <= now]
        if not seqs:
            return None
        return AtRisk(min(seqs), max(seqs), len(seqs), start, now, identities)

    # -- our own link ----------------------------------------------------------------------
    def reconnecting(self, now: float) -> None:
        """``Reconnecting``: an episode starts (or goes on, if the last one had
        not settled yet). Participants already missing are folded into it
        (a full reconnect removes everyone right before ``Reconnecting``)."""
        if self._since is None:
            self._prune(now)  # absences too old to count are dropped first
            self._since = min([now, *self._absent.values()])
        self._absent.clear()

    @property
    def in_episode(self) -> bool:
        return self._since is not None

    def settled(self, now: float, missing: Iterable[str] = ()) -> AtRisk | None:
        """The room is back and settled, or ended: the episode's report. The
        ``missing`` participants (there before, not back yet) count as absent
        since the episode began."""
        since = self._since
        if since is None:
            return None
        self._since = None
        report = self._report(since, now, ())
        for who in missing:
            self._absent.setdefault(who, since)
        self._prune(now)
        return report

    # -- a receiver's link -----------------------------------------------------------------
    def participant_left(self, identity: str, now: float) -> None:
        if self._since is None:
            since = self._absent.get(identity)
            if since is None or since < now - self.absence_limit:
                # (an absence too old to count, not pruned yet, is a new one)
                self._absent[identity] = now

    def participant_back(self, identity: str, now: float) -> AtRisk | None:
        """``identity`` joined; if it had left within ``absence_limit``, what
        it may have missed."""
        self._prune(now)
        since = self._absent.pop(identity, None)
        if since is None:
            return None
        return self._report(since, now, (identity,))

    def pending(self) -> int:
        """Entries held."""
        return len(self._accepted)
