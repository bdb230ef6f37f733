"""Participants and track publications: read-only views over native state.

Each object owns its native handle (released when the participant leaves or
the room closes). Properties return copies, so callers cannot change room
state by accident.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, final

if TYPE_CHECKING:
    from ._runtime import OwnedHandle

__all__ = ["LocalParticipant", "Participant", "RemoteParticipant", "TrackPublication"]


class TrackPublication:
    """A published track (local or remote): its sid, name, kind, source, mute
    state and codec."""

    __slots__ = ("_handle", "_info")

    def __init__(self, handle: OwnedHandle, info: Any) -> None:
        self._handle = handle
        self._info = info

    @property
    def sid(self) -> str:
        return str(self._info.sid)

    @property
    def name(self) -> str:
        return str(self._info.name)

    @property
    def kind(self) -> int:
        """``TrackKind`` value (1 audio, 2 video)."""
        return int(self._info.kind)

    @property
    def source(self) -> int:
        """``TrackSource`` value."""
        return int(self._info.source)

    @property
    def muted(self) -> bool:
        return bool(self._info.muted)

    @property
    def mime_type(self) -> str:
        return str(self._info.mime_type)

    @property
    def simulcasted(self) -> bool:
        return bool(self._info.simulcasted)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.sid} {self.name!r}>"


class Participant:
    """What local and remote participants share. Not instantiated by users."""

    __slots__ = ("_handle", "_info", "_publications")

    def __init__(self, handle: OwnedHandle, info: Any) -> None:
        self._handle = handle
        self._info = info
        self._publications: dict[str, TrackPublication] = {}

    @property
    def sid(self) -> str:
        return str(self._info.sid)

    @property
    def identity(self) -> str:
        return str(self._info.identity)

    @property
    def name(self) -> str:
        return str(self._info.name)

    @property
    def metadata(self) -> str:
        return str(self._info.metadata)

    @property
    def attributes(self) -> dict[str, str]:
        """A copy of the participant's attributes."""
        return dict(self._info.attributes)

    @property
    def kind(self) -> int:
        """``ParticipantKind`` value (0 standard, 1 ingress, 2 egress, 3 SIP, 4 agent...)."""
        return int(self._info.kind)

    @property
    def disconnect_reason(self) -> int:
        """``DisconnectReason`` value once the participant has left, else 0."""
        return int(self._info.disconnect_reason)

    @property
    def track_publications(self) -> Mapping[str, TrackPublication]:
        """A copy of the participant's publications, by track sid."""
        return dict(self._publications)

    def _release(self) -> None:
        for pub in self._publications.values():
            pub._handle.close()
        self._handle.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.identity!r} {self.sid}>"


@final
class RemoteParticipant(Participant):
    """Another participant of the room."""

    __slots__ = ()


@final
class LocalParticipant(Participant):
    """This client's participant in the room."""

    __slots__ = ()
