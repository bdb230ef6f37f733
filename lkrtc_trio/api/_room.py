"""RoomService: rooms and their participants, tracks, data and metadata.

Every method takes the livekit-protocol request message and returns the
response message, like the official ``livekit-api``; each call is signed with
a short-lived token carrying just the grant it needs (``room_create``,
``room_list``, or ``room_admin`` for the request's room).

Every method raises the same way and behaves the same way when cancelled:

* :class:`~lkrtc_trio.api.TwirpError` (the subclass for the server's code,
  e.g. :class:`~lkrtc_trio.api.NotFoundError`) when the server refuses the call;
* :class:`~lkrtc_trio.api.ApiConnectionError` when it cannot be reached or
  the connection breaks (:class:`~lkrtc_trio.api.ApiTimeoutError` when no
  complete answer arrives within ``LiveKitAPI(timeout=...)``);
* :class:`~lkrtc_trio.api.ApiError` for a success answer that is not the
  expected message;
* :class:`~lkrtc_trio.ResourceClosedError` after the ``LiveKitAPI`` was closed.

Cancelled (or timed out) mid-flight, the HTTP request is abandoned and its
connection closed: nothing stays pending locally, but the server may or may
not have applied the call. The calls are not retried.
"""

from __future__ import annotations

import uuid
from typing import Final, final

from livekit.protocol.models import ParticipantInfo, Room
from livekit.protocol.room import (
    CreateRoomRequest,
    DeleteRoomRequest,
    DeleteRoomResponse,
    ListParticipantsRequest,
    ListParticipantsResponse,
    ListRoomsRequest,
    ListRoomsResponse,
    MuteRoomTrackRequest,
    MuteRoomTrackResponse,
    RemoveParticipantResponse,
    RoomParticipantIdentity,
    SendDataRequest,
    SendDataResponse,
    UpdateParticipantRequest,
    UpdateRoomMetadataRequest,
    UpdateSubscriptionsRequest,
    UpdateSubscriptionsResponse,
)

from .._errors import NoPublicConstructor
from ._token import VideoGrants
from ._twirp import TwirpTransport

__all__ = ["RoomService"]

_SERVICE: Final = "RoomService"


@final
class RoomService(metaclass=NoPublicConstructor):
    """LiveKit's RoomService: ``lkapi.room`` of a :class:`LiveKitAPI`, which
    makes it (it has no public constructor)."""

    def __init__(self, transport: TwirpTransport) -> None:
        self._transport = transport

    async def create_room(self, create: CreateRoomRequest) -> Room:
        """Create a room (or return the existing room of that name) with the
        request's options: ``empty_timeout``, ``departure_timeout``,
        ``max_participants``, ``metadata``, ``agents``, ...

        Needs ``room_create``.

        Returns:
            The room.

        Raises:
            TwirpError: The server refused (the subclass for its code).
            ApiConnectionError: No answer (``ApiTimeoutError`` after the timeout).
            ResourceClosedError: The ``LiveKitAPI`` is closed.

        Cancellation: nothing stays pending locally; the room may or may not
        have been created.
        """
        token = self._transport.token(VideoGrants(room_create=True))
        return await self._transport.call(_SERVICE, "CreateRoom", create, Room, token=token)

    async def list_rooms(self, list: ListRoomsRequest) -> ListRoomsResponse:
        """List the active rooms, or those named in ``list.names``.

        Needs ``room_list``.

        Returns:
            The rooms (``.rooms``).

        Raises:
            TwirpError: The server refused (the subclass for its code).
            ApiConnectionError: No answer (``ApiTimeoutError`` after the timeout).
            ResourceClosedError: The ``LiveKitAPI`` is closed.

        Cancellation: nothing stays pending locally (the call changes nothing).
        """
        token = self._transport.token(VideoGrants(room_list=True))
        return await self._transport.call(
            _SERVICE, "ListRooms", list, ListRoomsResponse, token=token
        )

    async def delete_room(self, delete: DeleteRoomRequest) -> DeleteRoomResponse:
        """Close a room: every participant is disconnected (reason ``ROOM_DELETED``).

        Needs ``room_create``.

        Returns:
            An empty response.

        Raises:
            NotFoundError: No such room.
            TwirpError: The server refused otherwise (the subclass for its code).
            ApiConnectionError: No answer (``ApiTimeoutError`` after the timeout).
            ResourceClosedError: The ``LiveKitAPI`` is closed.

        Cancellation: nothing stays pending locally; the room may or may not
        have been deleted.
        """
        token = self._transport.token(VideoGrants(room_create=True))
        return await self._transport.call(
            _SERVICE, "DeleteRoom", delete, DeleteRoomResponse, token=token
        )

    async def update_room_metadata(self, update: UpdateRoomMetadataRequest) -> Room:
        """Set a room's metadata; its participants get ``RoomMetadataChanged``.

        Needs ``room_admin`` for the room.

        Returns:
            The updated room.

        Raises:
            NotFoundError: No such room.
            TwirpError: The server refused otherwise (the subclass for its code).
            ApiConnectionError: No answer (``ApiTimeoutError`` after the timeout).
            ResourceClosedError: The ``LiveKitAPI`` is closed.

        Cancellation: nothing stays pending locally; the metadata may or may
        not have been set.
        """
        return await self._transport.call(
            _SERVICE,
            "UpdateRoomMetadata",
            update,
            Room,
            token=self._transport.admin_token(update.room),
        )

    async def list_participants(
        self,
        list: ListParticipantsRequest,
    ) -> ListParticipantsResponse:
        """List the participants of a room (none for a room that does not exist).

        Needs ``room_admin`` for the room.

        Returns:
            The participants (``.participants``).

        Raises:
            TwirpError: The server refused (the subclass for its code).
            ApiConnectionError: No answer (``ApiTimeoutError`` after the timeout).
            ResourceClosedError: The ``LiveKitAPI`` is closed.

        Cancellation: nothing stays pending locally (the call changes nothing).
        """
        return await self._transport.call(
            _SERVICE,
            "ListParticipants",
            list,
            ListParticipantsResponse,
            token=self._transport.admin_token(list.room),
        )

    async def get_participant(self, get: RoomParticipantIdentity) -> ParticipantInfo:
        """Describe one participant of a room.

        Needs ``room_admin`` for the room.

        Returns:
            The participant.

        Raises:
            NotFoundError: No such participant (or room).
            TwirpError: The server refused otherwise (the subclass for its code).
            ApiConnectionError: No answer (``ApiTimeoutError`` after the timeout).
            ResourceClosedError: The ``LiveKitAPI`` is closed.

        Cancellation: nothing stays pending locally (the call changes nothing).
        """
        return await self._transport.call(
            _SERVICE,
            "GetParticipant",
            get,
            ParticipantInfo,
            token=self._transport.admin_token(get.room),
        )

    async def remove_participant(
        self, remove: RoomParticipantIdentity
    ) -> RemoveParticipantResponse:
        """Disconnect a participant (reason ``PARTICIPANT_REMOVED``). It may
        rejoin unless its token is no longer valid.

        Needs ``room_admin`` for the room.

        Returns:
            An empty response.

        Raises:
            NotFoundError: No such participant (or room).
            TwirpError: The server refused otherwise (the subclass for its code).
            ApiConnectionError: No answer (``ApiTimeoutError`` after the timeout).
            ResourceClosedError: The ``LiveKitAPI`` is closed.

        Cancellation: nothing stays pending locally; the participant may or
        may not have been removed.
        """
        return await self._transport.call(
            _SERVICE,
            "RemoveParticipant",
            remove,
            RemoveParticipantResponse,
            token=self._transport.admin_token(remove.room),
        )

    async def mute_published_track(self, update: MuteRoomTrackRequest) -> MuteRoomTrackResponse:
        """Mute (or unmute) a participant's published track; the room sees
        ``TrackMuted``. Unmuting needs the server's ``enable_remote_unmute``
        setting.

        Needs ``room_admin`` for the room.

        Returns:
            The track (``.track``).

        Raises:
            NotFoundError: No such participant or track.
            UnavailableError: livekit-server answers so, after about 3 s,
                when no node hosts the room.
            TwirpError: The server refused otherwise (the subclass for its code).
            ApiConnectionError: No answer (``ApiTimeoutError`` after the timeout).
            ResourceClosedError: The ``LiveKitAPI`` is closed.

        Cancellation: nothing stays pending locally; the track may or may not
        have been muted.
        """
        return await self._transport.call(
            _SERVICE,
            "MutePublishedTrack",
            update,
            MuteRoomTrackResponse,
            token=self._transport.admin_token(update.room),
        )

    async def update_participant(self, update: UpdateParticipantRequest) -> ParticipantInfo:
        """Change a participant's ``metadata``, ``name``, ``attributes``
        (merged; an empty value deletes a key) and/or ``permission``; the
        room sees the matching ``Participant...Changed`` events.

        Needs ``room_admin`` for the room.

        Returns:
            The updated participant.

        Raises:
            NotFoundError: No such participant (or room).
            TwirpError: The server refused otherwise (the subclass for its code).
            ApiConnectionError: No answer (``ApiTimeoutError`` after the timeout).
            ResourceClosedError: The ``LiveKitAPI`` is closed.

        Cancellation: nothing stays pending locally; the change may or may
        not have been applied.
        """
        return await self._transport.call(
            _SERVICE,
            "UpdateParticipant",
            update,
            ParticipantInfo,
            token=self._transport.admin_token(update.room),
        )

    async def update_subscriptions(
        self, update: UpdateSubscriptionsRequest
    ) -> UpdateSubscriptionsResponse:
        """Subscribe (or unsubscribe) a participant to tracks
        (``track_sids`` or ``participant_tracks``).

        Needs ``room_admin`` for the room.

        Returns:
            An empty response.

        Raises:
            UnavailableError: livekit-server answers so, after about 3 s,
                when no node hosts the participant.
            TwirpError: The server refused otherwise (the subclass for its code).
            ApiConnectionError: No answer (``ApiTimeoutError`` after the timeout).
            ResourceClosedError: The ``LiveKitAPI`` is closed.

        Cancellation: nothing stays pending locally; the subscriptions may or
        may not have changed.
        """
        return await self._transport.call(
            _SERVICE,
            "UpdateSubscriptions",
            update,
            UpdateSubscriptionsResponse,
            token=self._transport.admin_token(update.room),
        )

    async def send_data(self, send: SendDataRequest) -> SendDataResponse:
        """Send a data packet to a room's participants (all of them, or
        ``destination_identities``), on ``topic``; they get ``DataReceived``.

        The request is not changed: a copy gets a random ``nonce`` (when it
        has none) that lets the server drop a duplicate.

        Needs ``room_admin`` for the room.

        Returns:
            An empty response.

        Raises:
            UnavailableError: livekit-server answers so, after about 3 s,
                when no node hosts the room.
            TwirpError: The server refused otherwise (the subclass for its code).
            ApiConnectionError: No answer (``ApiTimeoutError`` after the timeout).
            ResourceClosedError: The ``LiveKitAPI`` is closed.

        Cancellation: nothing stays pending locally; the packet may or may
        not have been sent.
        """
        request = SendDataRequest()
        request.CopyFrom(send)
        if not request.nonce:
            request.nonce = uuid.uuid4().bytes
        return await self._transport.call(
            _SERVICE,
            "SendData",
            request,
            SendDataResponse,
            token=self._transport.admin_token(send.room),
        )
