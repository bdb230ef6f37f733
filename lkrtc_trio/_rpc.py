"""RPC types and limits (the values of the native core's RPC implementation,
livekit/rust-sdks ``room/rpc``)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any, ClassVar, final

from ._errors import LiveKitError

__all__ = [
    "MAX_ERROR_DATA_BYTES",
    "MAX_ERROR_MESSAGE_BYTES",
    "MAX_PAYLOAD_BYTES",
    "RpcError",
    "RpcInvocationData",
]

#: Request and response payload limit on the v1 transport (UTF-8 bytes).
MAX_PAYLOAD_BYTES = 15_360
MAX_ERROR_MESSAGE_BYTES = 256
MAX_ERROR_DATA_BYTES = 15_360


@final
@dataclass(frozen=True, slots=True)
class RpcInvocationData:
    """What an RPC handler receives.

    Attributes:
        request_id: the call's id, the same on both sides (for logs).
        caller_identity: identity of the participant that called.
        payload: the request payload.
        response_timeout: seconds the handler has before the caller gives up;
            the handler runs inside a cancel scope with this deadline.
        method: the method name.
    """

    request_id: str
    caller_identity: str
    payload: str
    response_timeout: float
    method: str = ""


def _truncate(text: str, limit: int) -> str:
    raw = text.encode()
    if len(raw) <= limit:
        return text
    return raw[:limit].decode(errors="ignore")


@final
class RpcError(LiveKitError):
    """An RPC failed. Raised by ``perform_rpc``; raise it from a handler to send
    a specific error to the caller (it arrives unchanged).

    Args:
        code: an application code (codes 1001-1999 are reserved for the
            built-in errors of :class:`RpcError.ErrorCode`).
        message: a short description (truncated to 256 UTF-8 bytes).
        data: optional details (truncated to 15360 UTF-8 bytes).
    """

    class ErrorCode(IntEnum):
        APPLICATION_ERROR = 1500
        CONNECTION_TIMEOUT = 1501
        RESPONSE_TIMEOUT = 1502
        RECIPIENT_DISCONNECTED = 1503
        RESPONSE_PAYLOAD_TOO_LARGE = 1504
        SEND_FAILED = 1505
        UNSUPPORTED_METHOD = 1400
        RECIPIENT_NOT_FOUND = 1401
        REQUEST_PAYLOAD_TOO_LARGE = 1402
        UNSUPPORTED_SERVER = 1403
        UNSUPPORTED_VERSION = 1404

    _MESSAGES: ClassVar[dict[int, str]] = {
        1500: "Application error in method handler",
        1501: "Connection timeout",
        1502: "Response timeout",
        1503: "Recipient disconnected",
        1504: "Response payload too large",
        1505: "Failed to send",
        1400: "Method not supported at destination",
        1401: "Recipient not found",
        1402: "Request payload too large",
        1403: "RPC not supported by server",
        1404: "Unsupported RPC version",
    }

    def __init__(self, code: int, message: str, data: str | None = None) -> None:
        if not isinstance(code, int) or isinstance(code, bool):
            raise TypeError("RpcError code must be an int")
        self.code = int(code)
        self.message = _truncate(str(message), MAX_ERROR_MESSAGE_BYTES)
        self.data = None if data is None else _truncate(str(data), MAX_ERROR_DATA_BYTES)
        super().__init__(f"RPC error {self.code}: {self.message}")

    @classmethod
    def built_in(cls, code: RpcError.ErrorCode, data: str | None = None) -> RpcError:
        """The standard error for a built-in code."""
        return cls(int(code), cls._MESSAGES.get(int(code), code.name), data)

    @classmethod
    def _from_proto(cls, err: Any) -> RpcError:
        # built-in errors answered by a remote core carry data "": same as None
        data = str(err.data) if err.HasField("data") and err.data else None
        return cls(int(err.code), str(err.message), data)

    def _to_proto(self, msg: Any) -> None:
        msg.code = self.code
        msg.message = self.message
        if self.data is not None:
            msg.data = self.data

    def __reduce__(self) -> tuple[Any, ...]:
        return (RpcError, (self.code, self.message, self.data))
