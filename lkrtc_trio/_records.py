"""Plain state records behind the public participant and publication objects.

Like trio's ``MemoryChannelState`` behind its channel endpoints: a record is
plain data; the public classes (``RemoteParticipant``, ``TrackPublication``...)
are thin read-only views over one record each (``record.view`` is that
object, so events always carry the same one), and the room's state mirror
(``_state.py``) is what updates the records when native events arrive. No
object writes into another object's private fields: the mirror owns the
records it updates, and the views only read theirs.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import Any

from ._runtime import OwnedHandle
from ._types import ConnectionQuality

__all__ = [
    "ParticipantRecord",
    "PublicationRecord",
    "copy_message",
    "release_participant",
    "release_publication",
]


@dataclass(eq=False, slots=True)
class PublicationRecord:
    """A track publication: its native handle, its ``TrackPublicationInfo``,
    its track (a remote one once subscribed; a local one from the start), its
    public view, and its room's session (for the view's requests).

    A remote one also keeps its publisher's identity (``owner``) and its
    subscription state: ``desired`` (wanted, as far as lkrtc_trio knows),
    ``allowed`` (False once a wanted subscription did not arrive in time: not
    allowed), ``enabled`` (the subscribed track's, as last set), ``deadline``
    (the ``time.monotonic()`` by which a wanted track counts as not allowed;
    None: nothing awaited) and ``watching`` (a task watches that deadline).

    A local one keeps whether a remote participant ever subscribed to it
    (``subscribed_once``) and, while ``wait_for_subscription`` calls wait,
    their event and their count (``first_subscription``, ``waiters``).
    """

    handle: OwnedHandle
    info: Any
    track: Any = None
    view: Any = None
    session: Any = None
    # remote publications
    owner: str = ""  # the publishing participant's identity
    desired: bool = False
    allowed: bool = True
    enabled: bool = True
    deadline: float | None = None
    watching: bool = False
    # local publications
    subscribed_once: bool = False
    first_subscription: Any = None
    waiters: int = 0


@dataclass(eq=False, slots=True)
class ParticipantRecord:
    """A participant: its native handle, its ``ParticipantInfo``, its
    publications by sid, the last connection quality the server reported, and
    its public view."""

    handle: OwnedHandle
    info: Any
    publications: dict[str, PublicationRecord] = field(default_factory=dict)
    quality: ConnectionQuality = ConnectionQuality.QUALITY_EXCELLENT
    view: Any = None
    #: media streams created with ``from_participant`` (ended when it leaves)
    streams: weakref.WeakSet[Any] = field(default_factory=weakref.WeakSet)


def release_publication(rec: PublicationRecord, *, remote: bool) -> None:
    """Releases a publication's handle, and a remote publication's track (its
    streams end). A local track stays its owner's to close. Wakes the
    ``wait_for_subscription`` calls of a local one (they raise)."""
    if remote:
        track, rec.track = rec.track, None
        if track is not None:
            track._release()
    rec.deadline = None
    rec.handle.close()
    if rec.first_subscription is not None:
        rec.first_subscription.set()


def release_participant(rec: ParticipantRecord, *, remote: bool) -> None:
    for pub in rec.publications.values():
        release_publication(pub, remote=remote)
    for stream in list(rec.streams):
        stream._end()
    rec.handle.close()


def copy_message(msg: Any) -> Any:
    """A private copy of a protobuf message (records never share the native
    event's messages)."""
    out = type(msg)()
    out.CopyFrom(msg)
    return out
