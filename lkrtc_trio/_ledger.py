"""Which reliable data packets a reconnection may have lost (sans-I/O).

The native core gives each reliable packet a sequence number and keeps a
resend queue, but only inside one connection: a *full* reconnect (new
participant, new peer connections) starts afresh, and packets the core handed
to the old data channel in the seconds before it noticed the link was dead are
gone, although their ``publish_data`` calls succeeded. Packets sent while a
receiver is itself rejoining (after a full reconnect, every participant
rejoins) are dropped by the server too. The core reports neither, and
``Reconnected`` does not say whether it resumed or rejoined.

So the ledger numbers this room's reliable ``publish_data`` calls (1, 2, ...),
notes when the native core accepted each one, and reports those accepted from
``lookback`` seconds before ``Reconnecting`` until the room has *settled*:
every participant that was there before is back (or a bounded wait passed).
A resume usually delivers them all (SCTP retransmits); a full reconnect loses
some. The native core notices a silent link within the server's ping timeout
(15 s on livekit-server), so ``lookback`` defaults to 20 s.
"""

from __future__ import annotations

from collections import deque
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


@final
class SendLedger:
    def __init__(self, lookback: float = 20.0) -> None:
        self.lookback = lookback
        self._next = 1
        self._accepted: deque[tuple[float, int]] = deque()  # (time, sequence)
        self._since: float | None = None  # the episode's first Reconnecting

    def begin(self) -> int:
        """A reliable packet is being sent: its sequence number."""
        seq = self._next
        self._next += 1
        return seq

    def accepted(self, seq: int, now: float) -> None:
        """The native core accepted packet ``seq`` (or its call was cancelled:
        it is sent anyway) at ``now``."""
        self._accepted.append((now, seq))
        if self._since is None:
            horizon = now - self.lookback
            while self._accepted and self._accepted[0][0] < horizon:
                self._accepted.popleft()

    def reconnecting(self, now: float) -> None:
        """``Reconnecting``: an episode starts (or goes on, if the last one had
        not settled yet)."""
        if self._since is None:
            self._since = now

    @property
    def in_episode(self) -> bool:
        return self._since is not None

    def settled(self, now: float) -> AtRisk | None:
        """The room is back and settled: the episode's report, if any."""
        since = self._since
        if since is None:
            return None
        self._since = None
        start = since - self.lookback
        seqs = [seq for t, seq in self._accepted if start <= t <= now]
        self._accepted.clear()
        if not seqs:
            return None
        return AtRisk(min(seqs), max(seqs), len(seqs), start, now)

    def pending(self) -> int:
        """Entries held (bounded by the sends of ``lookback`` seconds while
        connected)."""
        return len(self._accepted)
