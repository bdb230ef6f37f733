"""The room's state mirror: sans-I/O, like h11's state machine.

:meth:`RoomState.apply` takes one decoded native ``RoomEvent`` (its field name
and message), updates plain state (room info, participant and publication
records) and returns the public event to deliver, or None. It does no I/O, no
waiting and needs no event loop: native handles are adopted and released
through the runtime's handle ledger, which is also how a data packet's
payload is read; tests give it a runtime over a fake backend, so they drive
it with protobuf messages alone.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from . import _events as ev
from ._dispatch import owned_handle_ids
from ._participant import (
    LocalParticipant,
    LocalTrackPublication,
    Participant,
    RemoteParticipant,
    RemoteTrackPublication,
    TranscriptionSegment,
    expect_subscription,
)
from ._records import (
    ParticipantRecord,
    PublicationRecord,
    copy_message,
    release_participant,
    release_publication,
)
from ._runtime import Runtime
from ._track import RemoteTrack, remote_track
from ._types import (
    ChatMessage,
    ConnectionQuality,
    ConnectionState,
    DataPacketKind,
    DisconnectReason,
    EncryptionState,
    ParticipantPermission,
    RoomInfo,
    plain_fields,
)

__all__ = ["RoomState"]

log = logging.getLogger("lkrtc_trio.room")


class RoomState:
    """Room info, the local participant, remote participants by identity, and
    the connection state, as the native events describe them."""

    def __init__(
        self,
        ledger: Runtime,
        result: Any,
        local: LocalParticipant,
        *,
        auto_subscribe: bool | None = None,
    ) -> None:
        """Args:
        ledger: the runtime: adopts and releases handles, reads payloads.
        result: the ``connect`` completion's result (room info, remotes).
        local: the local participant (built on ``result.local_participant``).
        auto_subscribe: the room's ``RoomOptions.auto_subscribe``, or None
            when not known: then a remote track counts as asked for only once
            ``set_subscribed(True)`` asked for it or it arrived (with True,
            from its ``TrackPublished`` on, and its arrival is watched).
        """
        self._ledger = ledger
        #: the room's session (a stand-in in sans-I/O tests), for the views' calls
        self._session: Any = local._session
        self.auto_subscribe = auto_subscribe
        self.info = copy_message(result.room.info)
        self.local: LocalParticipant = local
        self._local_rec: ParticipantRecord = local._rec
        self.remote: dict[str, ParticipantRecord] = {}
        self.connection_state: ConnectionState = ConnectionState.CONN_CONNECTED
        for pt in result.participants:
            rec = self._new_remote(pt.participant)
            for owned in pt.publications:
                pub = self._new_publication(owned, str(rec.info.identity))
                rec.publications[pub.info.sid] = pub
        self._handlers: dict[str, Callable[[Any], ev.RoomEvent | None]] = {
            "participant_connected": self._participant_connected,
            "participant_disconnected": self._participant_disconnected,
            "track_published": self._track_published,
            "track_unpublished": self._track_unpublished,
            "track_muted": lambda m: self._track_muted(m, muted=True),
            "track_unmuted": lambda m: self._track_muted(m, muted=False),
            "connection_state_changed": self._connection_state,
            "reconnecting": lambda _m: ev.Reconnecting(),
            "reconnected": lambda _m: ev.Reconnected(),
            "disconnected": self._disconnected,
            "room_metadata_changed": self._room_metadata,
            "room_sid_changed": self._room_sid,
            "participant_metadata_changed": self._participant_metadata,
            "participant_name_changed": self._participant_name,
            "participant_attributes_changed": self._participant_attributes,
            "active_speakers_changed": self._active_speakers,
            "connection_quality_changed": self._connection_quality,
            "local_track_published": self._local_track_published,
            "local_track_unpublished": self._local_track_unpublished,
            "track_subscribed": self._track_subscribed,
            "track_unsubscribed": self._track_unsubscribed,
            "data_packet_received": self._data_packet,
            "transcription_received": self._transcription,
            "local_track_subscribed": self._local_track_subscribed,
            "e2ee_state_changed": lambda m: ev.E2eeStateChanged(
                participant=self.participant(m.participant_identity),
                state=EncryptionState(m.state),
            ),
            "chat_message": lambda m: ev.ChatMessageReceived(
                message=ChatMessage._from_proto(m.message),
                participant=self.participant(m.participant_identity),
            ),
            "data_channel_low_threshold_changed": lambda m: (
                ev.DataChannelBufferedAmountLowThresholdChanged(
                    kind=DataPacketKind(m.kind), threshold=int(m.threshold)
                )
            ),
            # the legacy stream packets (the native core handles streams and
            # announces them as *_stream_opened, which the room hands to its
            # StreamRouter before they would reach this table)
            "stream_header_received": self._ignored,
            "stream_chunk_received": self._ignored,
            "stream_trailer_received": self._ignored,
            "room_updated": self._room_updated,
            "moved": self._room_moved,
            "participants_updated": self._participants_updated,
            "participant_encryption_status_changed": self._encryption_status,
            "participant_permission_changed": self._permission,
            "token_refreshed": lambda m: ev.TokenRefreshed(token=str(m.token)),
            "track_subscription_failed": self._subscription_failed,
            "participant_active": self._participant_active,
            "data_track_published": self._data_track_published,
            "data_track_unpublished": lambda m: ev.DataTrackUnpublished(sid=str(m.sid)),
            "local_track_republished": self._local_republished,
        }

    # -- the one entry point ----------------------------------------------------------
    def apply(self, kind: str, msg: Any) -> ev.RoomEvent | None:
        """Applies one native room event (``RoomEvent`` field ``kind``, its
        message ``msg``); returns the public event, or None when there is
        nothing to report. Handles the event carries are adopted or released."""
        handler = self._handlers.get(kind)
        if handler is None:
            self.release_unadopted(msg)
            return ev.NativeRoomEvent(name=kind, fields=plain_fields(msg))
        return handler(msg)

    # -- queries ------------------------------------------------------------------------
    def participant(self, identity: str) -> Participant | None:
        if identity == self.local.identity:
            return self.local
        rec = self.remote.get(identity)
        return None if rec is None else rec.view

    def remote_participants(self) -> dict[str, RemoteParticipant]:
        return {identity: rec.view for identity, rec in self.remote.items()}

    def remote_participant(self, identity: str) -> RemoteParticipant | None:
        rec = self.remote.get(identity)
        return None if rec is None else rec.view

    # -- releasing ---------------------------------------------------------------------
    def release_unadopted(self, msg: Any) -> None:
        """Releases every handle in ``msg`` (an event nobody keeps)."""
        for h in owned_handle_ids(msg):
            self._ledger._release(h)

    def release_all(self) -> None:
        """Releases every participant's and publication's handle (the room is
        gone); the connection state becomes disconnected."""
        self.connection_state = ConnectionState.CONN_DISCONNECTED
        for rec in self.remote.values():
            release_participant(rec, remote=True)
        release_participant(self._local_rec, remote=False)

    # -- construction ----------------------------------------------------------------------
    def _new_remote(self, owned: Any) -> ParticipantRecord:
        handle = self._ledger.own(owned.handle.id, "participant")
        rec = ParticipantRecord(handle, copy_message(owned.info))
        RemoteParticipant(rec)
        self.remote[str(rec.info.identity)] = rec
        return rec

    def _new_publication(self, owned: Any, owner: str) -> PublicationRecord:
        handle = self._ledger.own(owned.handle.id, "publication")
        rec = PublicationRecord(
            handle,
            copy_message(owned.info),
            session=self._session,
            owner=owner,
            desired=self.auto_subscribe is True,
        )
        RemoteTrackPublication(rec)
        if rec.desired:
            expect_subscription(rec)
        return rec

    def _record(self, identity: str) -> ParticipantRecord | None:
        if identity == self.local.identity:
            return self._local_rec
        return self.remote.get(identity)

    # -- translators ---------------------------------------------------------------------
    def _participant_connected(self, m: Any) -> ev.RoomEvent | None:
        old = self.remote.pop(m.info.info.identity, None)
        if old is not None:  # same identity joined again: replace
            release_participant(old, remote=True)
        rec = self._new_remote(m.info)
        return ev.ParticipantConnected(participant=rec.view)

    def _participant_disconnected(self, m: Any) -> ev.RoomEvent | None:
        rec = self.remote.pop(m.participant_identity, None)
        if rec is None:
            return None
        rec.info.disconnect_reason = m.disconnect_reason
        release_participant(rec, remote=True)
        return ev.ParticipantDisconnected(
            participant=rec.view, reason=DisconnectReason(m.disconnect_reason)
        )

    def _track_published(self, m: Any) -> ev.RoomEvent | None:
        rec = self.remote.get(m.participant_identity)
        if rec is None:
            self.release_unadopted(m)
            return None
        pub = self._new_publication(m.publication, str(m.participant_identity))
        old = rec.publications.pop(pub.info.sid, None)
        if old is not None:
            release_publication(old, remote=True)
        rec.publications[pub.info.sid] = pub
        return ev.TrackPublished(publication=pub.view, participant=rec.view)

    def _track_unpublished(self, m: Any) -> ev.RoomEvent | None:
        rec = self.remote.get(m.participant_identity)
        pub = rec.publications.pop(m.publication_sid, None) if rec else None
        if rec is None or pub is None:
            return None
        release_publication(pub, remote=True)
        return ev.TrackUnpublished(publication=pub.view, participant=rec.view)

    def _track_muted(self, m: Any, *, muted: bool) -> ev.RoomEvent | None:
        rec = self._record(m.participant_identity)
        pub = rec.publications.get(m.track_sid) if rec else None
        if rec is None or pub is None:
            return None
        pub.info.muted = muted
        if pub.track is not None:
            pub.track._muted_by_event(muted)
        event = ev.TrackMuted if muted else ev.TrackUnmuted
        return event(participant=rec.view, publication=pub.view)

    def _connection_state(self, m: Any) -> ev.RoomEvent | None:
        self.connection_state = ConnectionState(m.state)
        return ev.ConnectionStateChanged(state=self.connection_state)

    def _disconnected(self, m: Any) -> ev.RoomEvent | None:
        self.connection_state = ConnectionState.CONN_DISCONNECTED
        self._local_rec.info.disconnect_reason = m.reason
        return ev.Disconnected(reason=DisconnectReason(m.reason))

    def _room_metadata(self, m: Any) -> ev.RoomEvent | None:
        old = str(self.info.metadata)
        self.info.metadata = m.metadata
        return ev.RoomMetadataChanged(old_metadata=old, metadata=str(m.metadata))

    def _room_sid(self, m: Any) -> ev.RoomEvent | None:
        self.info.sid = m.sid
        return ev.RoomSidChanged(sid=str(m.sid))

    def _participant_metadata(self, m: Any) -> ev.RoomEvent | None:
        rec = self._record(m.participant_identity)
        if rec is None:
            return None
        old = str(rec.info.metadata)
        rec.info.metadata = m.metadata
        if rec is self._local_rec:
            self.local._server_updated("metadata")
        return ev.ParticipantMetadataChanged(
            participant=rec.view, old_metadata=old, metadata=str(m.metadata)
        )

    def _participant_name(self, m: Any) -> ev.RoomEvent | None:
        rec = self._record(m.participant_identity)
        if rec is None:
            return None
        old = str(rec.info.name)
        rec.info.name = m.name
        if rec is self._local_rec:
            self.local._server_updated("name")
        return ev.ParticipantNameChanged(participant=rec.view, old_name=old, name=str(m.name))

    def _participant_attributes(self, m: Any) -> ev.RoomEvent | None:
        rec = self._record(m.participant_identity)
        if rec is None:
            return None
        rec.info.attributes.clear()
        for entry in m.attributes:
            rec.info.attributes[entry.key] = entry.value
        changed = {entry.key: entry.value for entry in m.changed_attributes}
        if rec is self._local_rec:
            self.local._server_updated("attributes")
        return ev.ParticipantAttributesChanged(participant=rec.view, changed_attributes=changed)

    def _active_speakers(self, m: Any) -> ev.RoomEvent | None:
        speakers = [p for i in m.participant_identities if (p := self.participant(i))]
        return ev.ActiveSpeakersChanged(speakers=speakers)

    def _connection_quality(self, m: Any) -> ev.RoomEvent | None:
        rec = self._record(m.participant_identity)
        if rec is None:
            return None
        rec.quality = ConnectionQuality(m.quality)
        return ev.ConnectionQualityChanged(participant=rec.view, quality=rec.quality)

    def _data_packet(self, m: Any) -> ev.RoomEvent | None:
        rec = self.remote.get(m.participant_identity)
        sender = None if rec is None else rec.view
        if m.HasField("user"):
            buf = m.user.data
            try:
                payload = self._ledger.backend.read(buf.data.data_ptr, buf.data.data_len)
            finally:
                self._ledger._release(buf.handle.id)
            return ev.DataReceived(
                payload=payload,
                participant=sender,
                topic=str(m.user.topic),
                kind=DataPacketKind(m.kind),
                participant_identity=str(m.participant_identity),
            )
        if m.HasField("sip_dtmf"):
            return ev.SipDTMFReceived(
                code=int(m.sip_dtmf.code),
                digit=str(m.sip_dtmf.digit),
                participant=sender,
                participant_identity=str(m.participant_identity),
            )
        return None

    def _transcription(self, m: Any) -> ev.RoomEvent | None:
        rec = self._record(m.participant_identity)
        pub = rec.publications.get(m.track_sid) if rec else None
        segments = tuple(
            TranscriptionSegment(
                id=str(s.id),
                text=str(s.text),
                start_time=int(s.start_time),
                end_time=int(s.end_time),
                final=bool(s.final),
                language=str(s.language),
            )
            for s in m.segments
        )
        return ev.TranscriptionReceived(
            segments=segments,
            participant=None if rec is None else rec.view,
            publication=None if pub is None else pub.view,
            participant_identity=str(m.participant_identity),
        )

    def _local_track_published(self, m: Any) -> ev.RoomEvent | None:
        pub: LocalTrackPublication | None = self.local._track_published(str(m.track_sid))
        if pub is None:  # publish_track has not seen its completion yet: it reports
            return None
        return ev.LocalTrackPublished(publication=pub, participant=self.local)

    def _local_track_subscribed(self, m: Any) -> ev.RoomEvent | None:
        self.local._track_subscribed(str(m.track_sid))
        return ev.LocalTrackSubscribed(track_sid=str(m.track_sid))

    def _local_track_unpublished(self, m: Any) -> ev.RoomEvent | None:
        pub = self.local._track_unpublished(str(m.publication_sid))
        if pub is None:
            return None
        return ev.LocalTrackUnpublished(publication=pub, participant=self.local)

    def _track_subscribed(self, m: Any) -> ev.RoomEvent | None:
        rec = self.remote.get(m.participant_identity)
        pub = rec.publications.get(m.track.info.sid) if rec else None
        if rec is None or pub is None:
            log.debug("track %s subscribed for an unknown publication", m.track.info.sid)
            self.release_unadopted(m)
            return None
        if pub.track is not None:
            pub.track._release()
        track = remote_track(self._ledger, m.track)
        pub.track = track
        # it arrived: asked for (auto-subscription), allowed, enabled (the
        # native core enables every track it adds)
        pub.desired = pub.allowed = pub.enabled = True
        pub.deadline = None
        return ev.TrackSubscribed(track=track, publication=pub.view, participant=rec.view)

    def _track_unsubscribed(self, m: Any) -> ev.RoomEvent | None:
        rec = self.remote.get(m.participant_identity)
        pub = rec.publications.get(m.track_sid) if rec else None
        if rec is None or pub is None or pub.track is None:
            return None
        track, pub.track = pub.track, None
        track._release()  # ends its streams
        assert isinstance(track, RemoteTrack)
        return ev.TrackUnsubscribed(track=track, publication=pub.view, participant=rec.view)

    def _ignored(self, m: Any) -> ev.RoomEvent | None:
        self.release_unadopted(m)
        return None

    def _room_updated(self, m: Any) -> ev.RoomEvent | None:
        self.info.CopyFrom(m)
        return ev.RoomUpdated(info=RoomInfo._from_proto(m))

    def _room_moved(self, m: Any) -> ev.RoomEvent | None:
        self.info.CopyFrom(m)
        return ev.RoomUpdated(info=RoomInfo._from_proto(m), moved=True)

    def _participants_updated(self, m: Any) -> ev.RoomEvent | None:
        updated: list[Participant] = []
        for info in m.participants:
            rec = self._record(info.identity)
            if rec is not None:
                rec.info.CopyFrom(info)
                updated.append(rec.view)
        return ev.ParticipantsUpdated(participants=updated) if updated else None

    def _encryption_status(self, m: Any) -> ev.RoomEvent | None:
        p = self.participant(m.participant_identity)
        if p is None:
            return None
        return ev.ParticipantEncryptionStatusChanged(participant=p, is_encrypted=m.is_encrypted)

    def _permission(self, m: Any) -> ev.RoomEvent | None:
        rec = self._record(m.participant_identity)
        if rec is None:
            return None
        rec.info.permission.CopyFrom(m.permission)
        return ev.ParticipantPermissionChanged(
            participant=rec.view, permission=ParticipantPermission._from_proto(m.permission)
        )

    def _subscription_failed(self, m: Any) -> ev.RoomEvent | None:
        """A native failure, or lkrtc_trio's own (a track asked for did not
        arrive in time: see ``_participant._watch_subscription``, which
        marked the publication not allowed before sending it this way)."""
        rec = self.remote.get(m.participant_identity)
        if rec is None:
            return None
        pub = rec.publications.get(m.track_sid)
        return ev.TrackSubscriptionFailed(
            participant=rec.view,
            track_sid=str(m.track_sid),
            error=str(m.error),
            publication=None if pub is None else pub.view,
        )

    def _participant_active(self, m: Any) -> ev.RoomEvent | None:
        p = self.participant(m.participant_identity)
        return None if p is None else ev.ParticipantActive(participant=p)

    def _data_track_published(self, m: Any) -> ev.RoomEvent | None:
        self.release_unadopted(m)  # data tracks: not supported yet
        return ev.DataTrackPublished(info=plain_fields(m.track.info))

    def _local_republished(self, m: Any) -> ev.RoomEvent | None:
        self.release_unadopted(m)
        return ev.LocalTrackRepublished(previous_sid=str(m.previous_sid), sid=str(m.info.sid))
