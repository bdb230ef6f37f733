"""lkrtc_trio: a LiveKit real-time client SDK for trio and anyio.

    async with lkrtc_trio.open_room(url, token) as room:
        ...

The public API is re-exported here from private modules; the guides and the
reference are in the repository's docs/ folder.
"""

from ._audio import AudioFrame as AudioFrame
from ._audio import AudioResampler as AudioResampler
from ._audio import AudioSource as AudioSource
from ._datastream import ByteStreamHandler as ByteStreamHandler
from ._datastream import ByteStreamInfo as ByteStreamInfo
from ._datastream import ByteStreamReader as ByteStreamReader
from ._datastream import ByteStreamWriter as ByteStreamWriter
from ._datastream import StreamSubscription as StreamSubscription
from ._datastream import TextStreamHandler as TextStreamHandler
from ._datastream import TextStreamInfo as TextStreamInfo
from ._datastream import TextStreamReader as TextStreamReader
from ._datastream import TextStreamWriter as TextStreamWriter
from ._errors import ConnectError as ConnectError
from ._errors import EventOverflowError as EventOverflowError
from ._errors import ForkError as ForkError
from ._errors import LiveKitError as LiveKitError
from ._errors import LoopConflictError as LoopConflictError
from ._errors import NativeError as NativeError
from ._errors import NativeLoadError as NativeLoadError
from ._errors import NativePanicError as NativePanicError
from ._errors import ParticipantUpdateError as ParticipantUpdateError
from ._errors import PublishDataError as PublishDataError
from ._errors import PublishDTMFError as PublishDTMFError
from ._errors import PublishTrackError as PublishTrackError
from ._errors import PublishTranscriptionError as PublishTranscriptionError
from ._errors import ResourceClosedError as ResourceClosedError
from ._errors import RoomClosedError as RoomClosedError
from ._errors import RoomDisconnectedError as RoomDisconnectedError
from ._errors import StreamError as StreamError
from ._errors import UnpublishTrackError as UnpublishTrackError
from ._events import ActiveSpeakersChanged as ActiveSpeakersChanged
from ._events import ChatMessageReceived as ChatMessageReceived
from ._events import ConnectionQualityChanged as ConnectionQualityChanged
from ._events import ConnectionStateChanged as ConnectionStateChanged
from ._events import (
    DataChannelBufferedAmountLowThresholdChanged as DataChannelBufferedAmountLowThresholdChanged,
)
from ._events import DataReceived as DataReceived
from ._events import DataTrackPublished as DataTrackPublished
from ._events import DataTrackUnpublished as DataTrackUnpublished
from ._events import Disconnected as Disconnected
from ._events import E2eeStateChanged as E2eeStateChanged
from ._events import LocalTrackPublished as LocalTrackPublished
from ._events import LocalTrackRepublished as LocalTrackRepublished
from ._events import LocalTrackSubscribed as LocalTrackSubscribed
from ._events import LocalTrackUnpublished as LocalTrackUnpublished
from ._events import NativeRoomEvent as NativeRoomEvent
from ._events import ParticipantActive as ParticipantActive
from ._events import ParticipantAttributesChanged as ParticipantAttributesChanged
from ._events import ParticipantConnected as ParticipantConnected
from ._events import ParticipantDisconnected as ParticipantDisconnected
from ._events import ParticipantEncryptionStatusChanged as ParticipantEncryptionStatusChanged
from ._events import ParticipantMetadataChanged as ParticipantMetadataChanged
from ._events import ParticipantNameChanged as ParticipantNameChanged
from ._events import ParticipantPermissionChanged as ParticipantPermissionChanged
from ._events import ParticipantsUpdated as ParticipantsUpdated
from ._events import Reconnected as Reconnected
from ._events import Reconnecting as Reconnecting
from ._events import ReliableDataMayBeLost as ReliableDataMayBeLost
from ._events import RoomEvent as RoomEvent
from ._events import RoomMetadataChanged as RoomMetadataChanged
from ._events import RoomSidChanged as RoomSidChanged
from ._events import RoomUpdated as RoomUpdated
from ._events import SipDTMFReceived as SipDTMFReceived
from ._events import TokenRefreshed as TokenRefreshed
from ._events import TrackMuted as TrackMuted
from ._events import TrackPublished as TrackPublished
from ._events import TrackSubscribed as TrackSubscribed
from ._events import TrackSubscriptionFailed as TrackSubscriptionFailed
from ._events import TrackUnmuted as TrackUnmuted
from ._events import TrackUnpublished as TrackUnpublished
from ._events import TrackUnsubscribed as TrackUnsubscribed
from ._events import TranscriptionReceived as TranscriptionReceived
from ._participant import DATA_PACKET_OVERHEAD as DATA_PACKET_OVERHEAD
from ._participant import MAX_DATA_BYTES as MAX_DATA_BYTES
from ._participant import LocalParticipant as LocalParticipant
from ._participant import LocalTrackPublication as LocalTrackPublication
from ._participant import Participant as Participant
from ._participant import RemoteParticipant as RemoteParticipant
from ._participant import RemoteTrackPublication as RemoteTrackPublication
from ._participant import RpcHandler as RpcHandler
from ._participant import TrackPublication as TrackPublication
from ._participant import Transcription as Transcription
from ._participant import TranscriptionSegment as TranscriptionSegment
from ._room import EventSubscription as EventSubscription
from ._room import Room as Room
from ._room import RoomOptions as RoomOptions
from ._room import open_room as open_room
from ._rpc import RpcError as RpcError
from ._rpc import RpcInvocationData as RpcInvocationData
from ._runtime import live_native_handles as live_native_handles
from ._runtime import pending_requests as pending_requests
from ._stream import AudioStream as AudioStream
from ._stream import VideoStream as VideoStream
from ._track import LocalAudioTrack as LocalAudioTrack
from ._track import LocalTrack as LocalTrack
from ._track import LocalVideoTrack as LocalVideoTrack
from ._track import RemoteAudioTrack as RemoteAudioTrack
from ._track import RemoteTrack as RemoteTrack
from ._track import RemoteVideoTrack as RemoteVideoTrack
from ._track import StreamState as StreamState
from ._track import Track as Track
from ._track import TrackKind as TrackKind
from ._track import TrackPublishOptions as TrackPublishOptions
from ._track import TrackSource as TrackSource
from ._track import VideoCodec as VideoCodec
from ._types import ChatMessage as ChatMessage
from ._types import ConnectionQuality as ConnectionQuality
from ._types import ConnectionState as ConnectionState
from ._types import DataPacketKind as DataPacketKind
from ._types import DisconnectReason as DisconnectReason
from ._types import EncryptionState as EncryptionState
from ._types import ParticipantKind as ParticipantKind
from ._types import ParticipantKindDetail as ParticipantKindDetail
from ._types import ParticipantPermission as ParticipantPermission
from ._types import ParticipantState as ParticipantState
from ._types import RoomInfo as RoomInfo
from ._types import RtcStat as RtcStat
from ._types import RtcStats as RtcStats
from ._types import SimulateScenario as SimulateScenario
from ._video import VideoBufferType as VideoBufferType
from ._video import VideoFrame as VideoFrame
from ._video import VideoRotation as VideoRotation
from ._video import VideoSource as VideoSource

__version__ = "0.1.0"
