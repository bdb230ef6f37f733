"""Twirp over httpx: one POST per call, protobuf both ways, errors mapped at the edge.

Twirp (https://twitchtv.github.io/twirp/docs/spec_v7.html) is LiveKit's server
API protocol: ``POST <base>/twirp/livekit.<Service>/<Method>`` with the
request message as the body and a bearer access token; a 200 answer carries
the response message, any other status a JSON error ``{"code", "msg",
"meta"}``. :func:`error_from_response` (no I/O) turns an error answer into
the :class:`TwirpError` subclass for its code; :class:`TwirpTransport` does
the HTTP with httpx, which runs on trio and asyncio alike.
"""

from __future__ import annotations

import json
import urllib.parse
from datetime import timedelta
from typing import Final, TypeVar, final

import anyio
import anyio.lowlevel
import httpx
from google.protobuf.message import DecodeError, Message

from .._errors import ResourceClosedError, redact
from .._version import __version__
from ._errors import (
    ApiConnectionError,
    ApiError,
    ApiTimeoutError,
    TwirpError,
    TwirpErrorCode,
    twirp_error,
)
from ._token import AccessToken, VideoGrants

__all__ = ["CALL_TOKEN_TTL", "TwirpTransport", "error_from_response", "http_url"]

M = TypeVar("M", bound=Message)

CALL_TOKEN_TTL: Final = timedelta(minutes=10)
"""Lifetime of the token minted for each call."""

_PREFIX: Final = "/twirp/livekit."
_PROTOBUF: Final = "application/protobuf"
_USER_AGENT: Final = f"lkrtc-trio/{__version__}"
_MAX_TEXT: Final = 1000
_SCHEMES: Final = {"http": "http", "https": "https", "ws": "http", "wss": "https"}


def http_url(url: str) -> str:
    """The HTTP base URL of a LiveKit server: ``ws://`` becomes ``http://``,
    ``wss://`` becomes ``https://``; a path prefix is kept, a trailing slash,
    query and fragment are dropped.

    Raises:
        ValueError: The scheme is not http, https, ws or wss, or there is no host.
    """
    parts = urllib.parse.urlsplit(url)
    scheme = _SCHEMES.get(parts.scheme.lower())
    if scheme is None or not parts.netloc:
        raise ValueError(
            f"url must look like wss://host[:port] or https://host[:port], got {redact(url)!r}"
        )
    return urllib.parse.urlunsplit((scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


def _code_from_status(status: int) -> TwirpErrorCode:
    """The code a Twirp client gives an answer that is not a Twirp error."""
    if 300 <= status < 400:
        return TwirpErrorCode.INTERNAL
    return {
        401: TwirpErrorCode.UNAUTHENTICATED,
        403: TwirpErrorCode.PERMISSION_DENIED,
        404: TwirpErrorCode.BAD_ROUTE,
        429: TwirpErrorCode.UNAVAILABLE,
        502: TwirpErrorCode.UNAVAILABLE,
        503: TwirpErrorCode.UNAVAILABLE,
        504: TwirpErrorCode.UNAVAILABLE,
    }.get(status, TwirpErrorCode.UNKNOWN)


def error_from_response(status: int, body: bytes, reason: str = "") -> TwirpError:
    """The error for a non-200 Twirp answer.

    A Twirp JSON error gives its code, message and metadata (an unknown code
    becomes ``unknown``). Anything else (a proxy's page, livekit-server's
    plain-text 401 for a token it cannot verify) gets the code of its HTTP
    status, its text (redacted, shortened) as message, and Twirp's
    ``http_error_from_intermediary`` metadata.

    Args:
        status: The HTTP status.
        body: The answer's body.
        reason: The HTTP reason phrase, for an empty body.

    Returns:
        The :class:`TwirpError` subclass for the code.
    """
    try:
        data = json.loads(body)
    except ValueError:  # not JSON, or not UTF-8
        data = None
    if isinstance(data, dict) and isinstance(data.get("code"), str):
        try:
            code = TwirpErrorCode(data["code"])
        except ValueError:
            code = TwirpErrorCode.UNKNOWN
        msg = data.get("msg")
        raw_meta = data.get("meta")
        meta = {str(k): str(v) for k, v in raw_meta.items()} if isinstance(raw_meta, dict) else {}
        return twirp_error(code, msg if isinstance(msg, str) else "", status, meta)
    text = redact(body.decode("utf-8", "replace").strip())
    if len(text) > _MAX_TEXT:
        text = text[:_MAX_TEXT] + "..."
    meta = {"http_error_from_intermediary": "true", "status_code": str(status)}
    if text:
        meta["body"] = text
    message = text or f"HTTP {status} {reason}".rstrip()
    return twirp_error(_code_from_status(status), message, status, meta)


@final
class TwirpTransport:
    """Sends Twirp calls to one server over one ``httpx.AsyncClient``.

    Private: :class:`LiveKitAPI` owns one and hands it to its services.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        api_secret: str,
        *,
        timeout: float,
        client: httpx.AsyncClient | None,
    ) -> None:
        self.base_url = base_url
        self._api_key = api_key
        self._api_secret = api_secret
        self._timeout = timeout
        self.owns_client = client is None
        self._client = client if client is not None else httpx.AsyncClient()
        self.closed = False

    def token(self, grants: VideoGrants) -> str:
        """A short-lived token with ``grants``, for one call."""
        return (
            AccessToken(self._api_key, self._api_secret)
            .with_grants(grants)
            .with_ttl(CALL_TOKEN_TTL)
            .to_jwt()
        )

    def admin_token(self, room: str) -> str:
        """A short-lived token with ``room_admin`` for ``room``, for one call."""
        return self.token(VideoGrants(room_admin=True, room=room))

    async def call(
        self,
        service: str,
        method: str,
        request: Message,
        response_type: type[M],
        *,
        token: str,
    ) -> M:
        """POST ``request`` to ``livekit.<service>/<method>``, return the answer.

        Raises:
            TwirpError: The server answered with an error (the subclass for its code).
            ApiTimeoutError: No complete answer within the timeout.
            ApiConnectionError: The server could not be reached, or the
                connection broke.
            ApiError: A 200 answer that is not a ``response_type`` message.
            ResourceClosedError: :meth:`aclose` was called.
        """
        what = f"{service}.{method}"
        if self.closed:
            await anyio.lowlevel.checkpoint()
            raise ResourceClosedError(f"{what}: this LiveKitAPI is closed")
        response: httpx.Response | None = None
        with anyio.move_on_after(self._timeout) as scope:
            try:
                response = await self._client.post(
                    f"{self.base_url}{_PREFIX}{service}/{method}",
                    content=request.SerializeToString(),
                    headers={
                        "Authorization": f"Bearer {token}",
                        "Content-Type": _PROTOBUF,
                        "User-Agent": _USER_AGENT,
                    },
                    timeout=self._timeout,
                )
            except httpx.TimeoutException as exc:
                raise self._timed_out(what) from exc
            except httpx.RequestError as exc:
                detail = redact(str(exc)) or type(exc).__name__
                raise ApiConnectionError(
                    f"{what}: no answer from {self.base_url}: {detail}"
                ) from exc
        if response is None or scope.cancelled_caught:
            raise self._timed_out(what)
        if response.status_code != 200:
            raise error_from_response(
                response.status_code, response.content, response.reason_phrase
            )
        content_type = response.headers.get("content-type", "")
        if not content_type.startswith(_PROTOBUF):
            raise ApiError(
                f"{what}: the server answered 200 with {content_type or 'no content type'!r}, "
                f"not {_PROTOBUF!r} (is {self.base_url} a LiveKit server?)"
            )
        try:
            return response_type.FromString(response.content)
        except DecodeError as exc:
            raise ApiError(f"{what}: the answer is not a {response_type.__name__} message") from exc

    def _timed_out(self, what: str) -> ApiTimeoutError:
        return ApiTimeoutError(
            f"{what}: no answer from {self.base_url} within {self._timeout:g} s "
            "(the server may or may not have applied the call)"
        )

    async def aclose(self) -> None:
        """Close the HTTP client if this transport made it. Idempotent."""
        if self.closed:
            await anyio.lowlevel.checkpoint()
            return
        self.closed = True
        if self.owns_client:
            await self._client.aclose()
        else:
            await anyio.lowlevel.checkpoint()
