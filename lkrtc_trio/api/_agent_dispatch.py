"""AgentDispatchService: explicit dispatches of named agents to rooms.

A dispatch asks the agent workers registered under ``agent_name`` to join a
room. livekit-server keeps the dispatch with the room (creating the room if
needed) whether or not a worker is connected. Each call is signed with a
short-lived token with ``room_admin`` for the dispatch's room, like the
official ``livekit-api``.

Cancelled (or timed out) mid-flight, the HTTP request is abandoned and its
connection closed: nothing stays pending locally, but the server may or may
not have applied the call. The calls are not retried.
"""

from __future__ import annotations

from typing import Final, final

from livekit.protocol.agent_dispatch import (
    AgentDispatch,
    CreateAgentDispatchRequest,
    DeleteAgentDispatchRequest,
    ListAgentDispatchRequest,
    ListAgentDispatchResponse,
)

from .._errors import NoPublicConstructor
from ._twirp import TwirpTransport

__all__ = ["AgentDispatchService"]

_SERVICE: Final = "AgentDispatchService"


@final
class AgentDispatchService(metaclass=NoPublicConstructor):
    """LiveKit's AgentDispatchService: ``lkapi.agent_dispatch`` of a
    :class:`LiveKitAPI`, which makes it (it has no public constructor)."""

    def __init__(self, transport: TwirpTransport) -> None:
        self._transport = transport

    async def create_dispatch(self, req: CreateAgentDispatchRequest) -> AgentDispatch:
        """Dispatch the agent ``req.agent_name`` to ``req.room`` with ``req.metadata``.

        Returns:
            The dispatch (its ``id`` names it in the other calls).

        Raises:
            TwirpError: The server refused (the subclass for its code).
            ApiConnectionError: No answer (``ApiTimeoutError`` after the timeout).
            ResourceClosedError: The ``LiveKitAPI`` is closed.

        Cancellation: nothing stays pending locally; the dispatch may or may
        not have been created.
        """
        return await self._transport.call(
            _SERVICE,
            "CreateDispatch",
            req,
            AgentDispatch,
            token=self._transport.admin_token(req.room),
        )

    async def delete_dispatch(self, dispatch_id: str, room_name: str) -> AgentDispatch:
        """Delete a dispatch of a room.

        Returns:
            The deleted dispatch.

        Raises:
            NotFoundError: No such dispatch in the room.
            UnavailableError: livekit-server answers so, after about 3 s,
                when no node hosts the room.
            TwirpError: The server refused otherwise (the subclass for its code).
            ApiConnectionError: No answer (``ApiTimeoutError`` after the timeout).
            ResourceClosedError: The ``LiveKitAPI`` is closed.

        Cancellation: nothing stays pending locally; the dispatch may or may
        not have been deleted.
        """
        request = DeleteAgentDispatchRequest(dispatch_id=dispatch_id, room=room_name)
        return await self._transport.call(
            _SERVICE,
            "DeleteDispatch",
            request,
            AgentDispatch,
            token=self._transport.admin_token(room_name),
        )

    async def list_dispatch(self, room_name: str) -> list[AgentDispatch]:
        """List the dispatches of a room.

        Returns:
            The dispatches.

        Raises:
            UnavailableError: livekit-server answers so, after about 3 s,
                when no node hosts the room (it does not exist).
            TwirpError: The server refused otherwise (the subclass for its code).
            ApiConnectionError: No answer (``ApiTimeoutError`` after the timeout).
            ResourceClosedError: The ``LiveKitAPI`` is closed.

        Cancellation: nothing stays pending locally (the call changes nothing).
        """
        return await self._list(room_name)

    async def get_dispatch(self, dispatch_id: str, room_name: str) -> AgentDispatch | None:
        """One dispatch of a room.

        Returns:
            The dispatch, or None when the room has no such dispatch.

        Raises:
            UnavailableError: livekit-server answers so, after about 3 s,
                when no node hosts the room (it does not exist).
            TwirpError: The server refused otherwise (the subclass for its code).
            ApiConnectionError: No answer (``ApiTimeoutError`` after the timeout).
            ResourceClosedError: The ``LiveKitAPI`` is closed.

        Cancellation: nothing stays pending locally (the call changes nothing).
        """
        found = await self._list(room_name, dispatch_id)
        return found[0] if found else None

    async def _list(self, room_name: str, dispatch_id: str = "") -> list[AgentDispatch]:
        response = await self._transport.call(
            _SERVICE,
            "ListDispatch",
            ListAgentDispatchRequest(dispatch_id=dispatch_id, room=room_name),
            ListAgentDispatchResponse,
            token=self._transport.admin_token(room_name),
        )
        return list(response.agent_dispatches)
