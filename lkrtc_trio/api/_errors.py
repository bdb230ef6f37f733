"""The server API's exceptions, rooted at :class:`lkrtc_trio.LiveKitError`.

::

    LiveKitError
    ├── ApiError                       any failure of a server API call
    │   ├── ApiConnectionError         no answer: unreachable, refused, broken
    │   │   └── ApiTimeoutError        no answer within the timeout
    │   └── TwirpError                 the server answered with an error
    │       ├── NotFoundError              not_found
    │       ├── AlreadyExistsError         already_exists
    │       ├── InvalidArgumentError       invalid_argument, malformed, out_of_range
    │       ├── UnauthenticatedError       unauthenticated
    │       ├── PermissionDeniedError      permission_denied
    │       ├── FailedPreconditionError    failed_precondition
    │       ├── ResourceExhaustedError     resource_exhausted
    │       ├── DeadlineExceededError      deadline_exceeded
    │       ├── UnavailableError           unavailable
    │       └── UnimplementedError         unimplemented, bad_route
    └── TokenError                     TokenVerifier.verify refused a token

The class of a :class:`TwirpError` follows the Twirp error code the server
sent; every other code (``internal``, ``unknown``, ...) raises a plain
:class:`TwirpError`. Texts from the server are redacted: an access token in
them (livekit-server echoes a rejected token) is replaced by
``<token redacted>``.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import final

from .._errors import LiveKitError, redact

__all__ = [
    "AlreadyExistsError",
    "ApiConnectionError",
    "ApiError",
    "ApiTimeoutError",
    "DeadlineExceededError",
    "FailedPreconditionError",
    "InvalidArgumentError",
    "NotFoundError",
    "PermissionDeniedError",
    "ResourceExhaustedError",
    "ServerError",
    "ServerErrorCode",
    "TokenError",
    "TokenErrorReason",
    "TwirpError",
    "TwirpErrorCode",
    "UnauthenticatedError",
    "UnavailableError",
    "UnimplementedError",
    "twirp_error",
]


class ApiError(LiveKitError):
    """A server API call failed. The base of the server API's errors; raised
    as is only when the server's answer could not be understood (a success
    status with a body that is not the expected protobuf message)."""


class ApiConnectionError(ApiError):
    """The server could not be reached or the connection broke before a
    complete answer arrived (the ``httpx`` error is in ``__cause__``).

    A request whose connection broke after it was sent may or may not have
    been applied by the server.
    """


@final
class ApiTimeoutError(ApiConnectionError):
    """No complete answer within the call's timeout (``LiveKitAPI(timeout=...)``).
    The request may or may not have been applied by the server."""


class TwirpErrorCode(str, enum.Enum):
    """Twirp's error codes (https://twitchtv.github.io/twirp/docs/spec_v7.html)."""

    CANCELED = "canceled"
    UNKNOWN = "unknown"
    INVALID_ARGUMENT = "invalid_argument"
    MALFORMED = "malformed"
    DEADLINE_EXCEEDED = "deadline_exceeded"
    NOT_FOUND = "not_found"
    BAD_ROUTE = "bad_route"
    ALREADY_EXISTS = "already_exists"
    PERMISSION_DENIED = "permission_denied"
    UNAUTHENTICATED = "unauthenticated"
    RESOURCE_EXHAUSTED = "resource_exhausted"
    FAILED_PRECONDITION = "failed_precondition"
    ABORTED = "aborted"
    OUT_OF_RANGE = "out_of_range"
    UNIMPLEMENTED = "unimplemented"
    INTERNAL = "internal"
    UNAVAILABLE = "unavailable"
    DATA_LOSS = "dataloss"


class TwirpError(ApiError):
    """The server answered a call with an error.

    Attributes:
        code: The Twirp error code. When the body was not a Twirp error (a
            proxy's page, or livekit-server's plain-text answer to a token it
            rejected), the code derived from the HTTP status the way Twirp
            clients do (401 unauthenticated, 403 permission_denied, 404
            bad_route, 429/502/503/504 unavailable, 3xx internal, else
            unknown), and ``meta["http_error_from_intermediary"] == "true"``.
        status: The HTTP status code.
        message: The server's message (tokens redacted).
        meta: The server's metadata (tokens redacted).
    """

    def __init__(
        self,
        code: TwirpErrorCode,
        message: str,
        status: int,
        meta: Mapping[str, str] | None = None,
    ) -> None:
        message = redact(message)
        super().__init__(f"{message} ({code.value}, HTTP {status})")
        self.code = code
        self.message = message
        self.status = status
        self.meta: dict[str, str] = {k: redact(v) for k, v in (meta or {}).items()}

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.code, self.message, self.status, self.meta))


@final
class NotFoundError(TwirpError):
    """``not_found``: the room, participant, track or dispatch does not exist."""


@final
class AlreadyExistsError(TwirpError):
    """``already_exists``."""


@final
class InvalidArgumentError(TwirpError):
    """``invalid_argument``, ``malformed`` or ``out_of_range``: the request
    was refused as invalid."""


@final
class UnauthenticatedError(TwirpError):
    """``unauthenticated``: the server did not accept the credentials.

    livekit-server sends it for a token it cannot verify (wrong secret,
    unknown API key, expired) *and* for a valid token without the grant the
    call needs (message ``"permissions denied"``): it does not use
    ``permission_denied`` for missing grants.
    """


@final
class PermissionDeniedError(TwirpError):
    """``permission_denied``: the credentials were accepted, the call is not
    allowed."""


@final
class FailedPreconditionError(TwirpError):
    """``failed_precondition``: the system is not in a state that allows the call."""


@final
class ResourceExhaustedError(TwirpError):
    """``resource_exhausted``: a quota or limit was reached."""


@final
class DeadlineExceededError(TwirpError):
    """``deadline_exceeded``: the server gave up waiting for an internal step.
    The call may or may not have taken effect."""


@final
class UnavailableError(TwirpError):
    """``unavailable``: the server (or a node behind it) could not serve the
    call right now. livekit-server also answers so, after about 3 s, when a
    call addresses a room or participant that no node hosts."""


@final
class UnimplementedError(TwirpError):
    """``unimplemented`` or ``bad_route``: the server does not know this call
    (an older server, or a service this deployment does not run)."""


_CLASS_BY_CODE: dict[TwirpErrorCode, type[TwirpError]] = {
    TwirpErrorCode.NOT_FOUND: NotFoundError,
    TwirpErrorCode.ALREADY_EXISTS: AlreadyExistsError,
    TwirpErrorCode.INVALID_ARGUMENT: InvalidArgumentError,
    TwirpErrorCode.MALFORMED: InvalidArgumentError,
    TwirpErrorCode.OUT_OF_RANGE: InvalidArgumentError,
    TwirpErrorCode.UNAUTHENTICATED: UnauthenticatedError,
    TwirpErrorCode.PERMISSION_DENIED: PermissionDeniedError,
    TwirpErrorCode.FAILED_PRECONDITION: FailedPreconditionError,
    TwirpErrorCode.RESOURCE_EXHAUSTED: ResourceExhaustedError,
    TwirpErrorCode.DEADLINE_EXCEEDED: DeadlineExceededError,
    TwirpErrorCode.UNAVAILABLE: UnavailableError,
    TwirpErrorCode.UNIMPLEMENTED: UnimplementedError,
    TwirpErrorCode.BAD_ROUTE: UnimplementedError,
}


def twirp_error(
    code: TwirpErrorCode, message: str, status: int, meta: Mapping[str, str] | None = None
) -> TwirpError:
    """The :class:`TwirpError` (subclass) for ``code``."""
    return _CLASS_BY_CODE.get(code, TwirpError)(code, message, status, meta)


ServerError = TwirpError
"""The official ``livekit-api``'s name of :class:`TwirpError`."""

ServerErrorCode = TwirpErrorCode
"""The official ``livekit-api``'s name of :class:`TwirpErrorCode`."""


class TokenErrorReason(str, enum.Enum):
    """Why :meth:`TokenVerifier.verify` refused a token."""

    MALFORMED = "malformed"
    """Not a JWT, not HS256, or a claim of the wrong type."""
    BAD_SIGNATURE = "bad_signature"
    """Not signed with this verifier's API secret."""
    EXPIRED = "expired"
    """``exp`` is in the past (beyond the leeway)."""
    NOT_YET_VALID = "not_yet_valid"
    """``nbf`` is in the future (beyond the leeway)."""
    WRONG_ISSUER = "wrong_issuer"
    """``iss`` is not this verifier's API key."""
    MISSING_CLAIM = "missing_claim"
    """``exp`` or ``iss`` is missing."""


@final
class TokenError(LiveKitError):
    """:meth:`TokenVerifier.verify` refused a token; ``reason`` says why (the
    PyJWT error, if any, is in ``__cause__``). The message never contains the
    token."""

    def __init__(self, message: str, reason: TokenErrorReason) -> None:
        message = redact(message)
        super().__init__(message)
        self.reason = reason

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (str(self), self.reason))
