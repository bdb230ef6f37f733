"""LiveKit's server API on trio and asyncio: tokens, RoomService, AgentDispatchService.

The names are those of the official ``livekit-api`` package (which is built on
aiohttp and cannot run under trio)::

    from lkrtc_trio import api

    token = (
        api.AccessToken(api_key, api_secret)
        .with_identity("alice")
        .with_grants(api.VideoGrants(room_join=True, room="my-room"))
        .to_jwt()
    )
    async with api.LiveKitAPI(url, api_key, api_secret) as lkapi:
        room = await lkapi.room.create_room(api.CreateRoomRequest(name="my-room"))

Requests and responses are the ``livekit-protocol`` messages, re-exported here.
HTTP is httpx's, so the same code runs on trio and on asyncio.

Left out: the Egress, Ingress and SIP services. livekit-server serves them
only with Redis and the separate egress/ingress/SIP processes (a plain
``livekit-server --dev`` answers ``internal: ... not connected (redis
required)``), so they cannot be tested here. ForwardParticipant and
MoveParticipant (LiveKit Cloud only), PerformRpc and webhooks are not
wrapped either.
"""

from livekit.protocol.agent_dispatch import AgentDispatch as AgentDispatch
from livekit.protocol.agent_dispatch import AgentDispatchState as AgentDispatchState
from livekit.protocol.agent_dispatch import CreateAgentDispatchRequest as CreateAgentDispatchRequest
from livekit.protocol.agent_dispatch import DeleteAgentDispatchRequest as DeleteAgentDispatchRequest
from livekit.protocol.agent_dispatch import ListAgentDispatchRequest as ListAgentDispatchRequest
from livekit.protocol.agent_dispatch import ListAgentDispatchResponse as ListAgentDispatchResponse
from livekit.protocol.agent_dispatch import RoomAgentDispatch as RoomAgentDispatch
from livekit.protocol.models import DataPacket as DataPacket
from livekit.protocol.models import ParticipantInfo as ParticipantInfo
from livekit.protocol.models import ParticipantPermission as ParticipantPermission
from livekit.protocol.models import ParticipantTracks as ParticipantTracks
from livekit.protocol.models import Room as Room
from livekit.protocol.models import TrackInfo as TrackInfo
from livekit.protocol.models import TrackSource as TrackSource
from livekit.protocol.models import TrackType as TrackType
from livekit.protocol.room import CreateRoomRequest as CreateRoomRequest
from livekit.protocol.room import DeleteRoomRequest as DeleteRoomRequest
from livekit.protocol.room import DeleteRoomResponse as DeleteRoomResponse
from livekit.protocol.room import ListParticipantsRequest as ListParticipantsRequest
from livekit.protocol.room import ListParticipantsResponse as ListParticipantsResponse
from livekit.protocol.room import ListRoomsRequest as ListRoomsRequest
from livekit.protocol.room import ListRoomsResponse as ListRoomsResponse
from livekit.protocol.room import MuteRoomTrackRequest as MuteRoomTrackRequest
from livekit.protocol.room import MuteRoomTrackResponse as MuteRoomTrackResponse
from livekit.protocol.room import RemoveParticipantResponse as RemoveParticipantResponse
from livekit.protocol.room import RoomAgent as RoomAgent
from livekit.protocol.room import RoomConfiguration as RoomConfiguration
from livekit.protocol.room import RoomParticipantIdentity as RoomParticipantIdentity
from livekit.protocol.room import SendDataRequest as SendDataRequest
from livekit.protocol.room import SendDataResponse as SendDataResponse
from livekit.protocol.room import UpdateParticipantRequest as UpdateParticipantRequest
from livekit.protocol.room import UpdateRoomMetadataRequest as UpdateRoomMetadataRequest
from livekit.protocol.room import UpdateSubscriptionsRequest as UpdateSubscriptionsRequest
from livekit.protocol.room import UpdateSubscriptionsResponse as UpdateSubscriptionsResponse

from ._agent_dispatch import AgentDispatchService as AgentDispatchService
from ._errors import AlreadyExistsError as AlreadyExistsError
from ._errors import ApiConnectionError as ApiConnectionError
from ._errors import ApiError as ApiError
from ._errors import ApiTimeoutError as ApiTimeoutError
from ._errors import DeadlineExceededError as DeadlineExceededError
from ._errors import FailedPreconditionError as FailedPreconditionError
from ._errors import InvalidArgumentError as InvalidArgumentError
from ._errors import NotFoundError as NotFoundError
from ._errors import PermissionDeniedError as PermissionDeniedError
from ._errors import ResourceExhaustedError as ResourceExhaustedError
from ._errors import ServerError as ServerError
from ._errors import ServerErrorCode as ServerErrorCode
from ._errors import TokenError as TokenError
from ._errors import TokenErrorReason as TokenErrorReason
from ._errors import TwirpError as TwirpError
from ._errors import TwirpErrorCode as TwirpErrorCode
from ._errors import UnauthenticatedError as UnauthenticatedError
from ._errors import UnavailableError as UnavailableError
from ._errors import UnimplementedError as UnimplementedError
from ._livekit_api import LiveKitAPI as LiveKitAPI
from ._room import RoomService as RoomService
from ._token import DEFAULT_LEEWAY as DEFAULT_LEEWAY
from ._token import DEFAULT_TTL as DEFAULT_TTL
from ._token import AccessToken as AccessToken
from ._token import AgentGrants as AgentGrants
from ._token import Claims as Claims
from ._token import InferenceGrants as InferenceGrants
from ._token import ObservabilityGrants as ObservabilityGrants
from ._token import ParticipantKind as ParticipantKind
from ._token import SIPGrants as SIPGrants
from ._token import TokenVerifier as TokenVerifier
from ._token import VideoGrants as VideoGrants
