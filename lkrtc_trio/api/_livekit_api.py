"""LiveKitAPI: the entry point, owning one HTTP client and the services on it."""

from __future__ import annotations

import warnings
from types import TracebackType
from typing import final

import anyio.lowlevel
import httpx

from .._errors import ResourceClosedError
from ._agent_dispatch import AgentDispatchService
from ._room import RoomService
from ._token import credential_or_env
from ._twirp import TwirpTransport, http_url

__all__ = ["LiveKitAPI"]


@final
class LiveKitAPI:
    """A client of a LiveKit server's API, on trio or asyncio.

    ::

        async with LiveKitAPI(url, api_key, api_secret) as lkapi:
            rooms = await lkapi.room.list_rooms(ListRoomsRequest())

    It owns one ``httpx.AsyncClient`` (a connection pool), closed by
    :meth:`aclose` or at the end of the ``async with`` block. Each call is
    signed with a token of its own, valid for 10 minutes, carrying just the
    grant it needs. Calls are not retried.

    Args:
        url: The server's URL: ``wss://``, ``ws://``, ``https://`` or
            ``http://`` (a ``ws`` scheme is turned into ``http``); defaults to
            the ``LIVEKIT_URL`` environment variable.
        api_key: Defaults to ``LIVEKIT_API_KEY``.
        api_secret: Defaults to ``LIVEKIT_API_SECRET``.
        timeout: Seconds each call may take in total (connect, send, answer)
            before it fails with :class:`ApiTimeoutError`.
        http_client: An ``httpx.AsyncClient`` to send the calls with (for
            proxies, TLS settings, or a mock transport in tests) instead of
            one of its own. It is not closed by :meth:`aclose`. By default the
            client is httpx's default one, which honours the ``HTTPS_PROXY``
            family of environment variables.

    Raises:
        ValueError: No url, api_key or api_secret (neither passed nor in the
            environment), a url that is not http(s)/ws(s), or a timeout that
            is not positive.
    """

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        api_secret: str | None = None,
        *,
        timeout: float = 10.0,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        base_url = http_url(credential_or_env(url, "LIVEKIT_URL", "url"))
        key = credential_or_env(api_key, "LIVEKIT_API_KEY", "api_key")
        secret = credential_or_env(api_secret, "LIVEKIT_API_SECRET", "api_secret")
        if not timeout > 0:
            raise ValueError(f"timeout must be positive, got {timeout!r}")
        self._transport = TwirpTransport(
            base_url, key, secret, timeout=float(timeout), client=http_client
        )
        self._room = RoomService._create(self._transport)
        self._agent_dispatch = AgentDispatchService._create(self._transport)

    @property
    def url(self) -> str:
        """The HTTP(S) base URL the calls go to."""
        return self._transport.base_url

    @property
    def room(self) -> RoomService:
        """Rooms, participants, tracks, data and metadata."""
        return self._room

    @property
    def agent_dispatch(self) -> AgentDispatchService:
        """Explicit dispatches of agents to rooms."""
        return self._agent_dispatch

    @property
    def closed(self) -> bool:
        """Whether :meth:`aclose` was called."""
        return self._transport.closed

    async def aclose(self) -> None:
        """Close the HTTP client (unless it was passed in). Calls made after
        it raise :class:`~lkrtc_trio.ResourceClosedError`. Idempotent.

        Cancellation: the connections are closed all the same (abruptly).
        """
        await self._transport.aclose()

    async def __aenter__(self) -> LiveKitAPI:
        await anyio.lowlevel.checkpoint()
        if self._transport.closed:
            raise ResourceClosedError("this LiveKitAPI is closed")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<LiveKitAPI {self.url} {state}>"

    def __del__(self) -> None:
        # Only warns: closing needs the event loop (trio's rule for __del__).
        transport = getattr(self, "_transport", None)
        if transport is not None and transport.owns_client and not transport.closed:
            warnings.warn(
                f"{self!r} was never closed: use `async with` or `await aclose()`",
                ResourceWarning,
                stacklevel=1,
                source=self,
            )
