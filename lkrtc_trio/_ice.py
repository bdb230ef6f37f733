"""ICE configuration of a room's peer connections (``RoomOptions.rtc_config``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, final

from ._types import _Open

__all__ = ["ContinualGatheringPolicy", "IceServer", "IceTransportType", "RtcConfiguration"]


class IceTransportType(_Open):
    """Which ICE candidates may be used: relayed only (through TURN), all but
    host candidates, or all."""

    TRANSPORT_RELAY = 0
    TRANSPORT_NOHOST = 1
    TRANSPORT_ALL = 2


class ContinualGatheringPolicy(_Open):
    GATHER_ONCE = 0
    GATHER_CONTINUALLY = 1


@final
@dataclass(frozen=True, kw_only=True)
class IceServer:
    """A STUN or TURN server: ``urls`` such as ``"turn:host:3478?transport=udp"``,
    with the TURN ``username`` and ``password``."""

    urls: Sequence[str]
    username: str = ""
    password: str = ""

    def __post_init__(self) -> None:
        if isinstance(self.urls, str):
            object.__setattr__(self, "urls", (self.urls,))
        else:
            object.__setattr__(self, "urls", tuple(self.urls))
        if not self.urls or not all(isinstance(u, str) and u for u in self.urls):
            raise ValueError("urls must be one or more non-empty str")
        for url in self.urls:
            if not url.startswith(("stun:", "stuns:", "turn:", "turns:")):
                raise ValueError(f"not a STUN/TURN url: {url!r}")
        if not isinstance(self.username, str) or not isinstance(self.password, str):
            raise TypeError("username and password must be str")

    def _fill(self, msg: Any) -> None:
        msg.urls.extend(self.urls)
        msg.username = self.username
        msg.password = self.password


@final
@dataclass(frozen=True, kw_only=True)
class RtcConfiguration:
    """``RoomOptions.rtc_config``: the peer connections' ICE settings.

    Attributes:
        ice_transport_type: ``TRANSPORT_RELAY`` to send everything through a
            TURN server, ``TRANSPORT_NOHOST`` or ``TRANSPORT_ALL`` (default).
        continual_gathering_policy: keep gathering candidates as the network
            changes (default) or gather once.
        ice_servers: STUN/TURN servers to use instead of those the LiveKit
            server hands out (empty: the server's, including its embedded TURN).
    """

    ice_transport_type: IceTransportType = IceTransportType.TRANSPORT_ALL
    continual_gathering_policy: ContinualGatheringPolicy = (
        ContinualGatheringPolicy.GATHER_CONTINUALLY
    )
    ice_servers: Sequence[IceServer] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "ice_servers", tuple(self.ice_servers))
        if self.ice_transport_type not in IceTransportType._value2member_map_:
            raise ValueError(f"unknown ice_transport_type {self.ice_transport_type!r}")
        if self.continual_gathering_policy not in ContinualGatheringPolicy._value2member_map_:
            raise ValueError(
                f"unknown continual_gathering_policy {self.continual_gathering_policy!r}"
            )
        if not all(isinstance(s, IceServer) for s in self.ice_servers):
            raise TypeError("ice_servers must be IceServer values")

    def _fill(self, msg: Any) -> None:
        msg.ice_transport_type = int(self.ice_transport_type)
        msg.continual_gathering_policy = int(self.continual_gathering_policy)
        for server in self.ice_servers:
            server._fill(msg.ice_servers.add())
