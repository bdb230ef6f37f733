"""pytest fixtures for tests against a real livekit-server.

Installed with lkrtc-trio (``pip install 'lkrtc-trio[testing]'``), it is loaded
by its ``pytest11`` entry point: no ``pytest_plugins`` line is needed (an older
``pytest_plugins = ["lkrtc_trio.testing.pytest_plugin"]`` line still works).
Disable it with ``-p no:lkrtc_trio.testing.pytest_plugin``. The fixtures work
in sync tests, with pytest-trio (``@pytest.mark.trio``) and with anyio's plugin
(``@pytest.mark.anyio``, both backends).

Fixtures:

* ``livekit_server`` (session): a :class:`~lkrtc_trio.testing.ServerInfo` for a
  server started once per session on :func:`~lkrtc_trio.testing.test_host`
  (built on first use, which takes minutes; see
  :func:`~lkrtc_trio.testing.install_server`).
* ``livekit_cluster`` (session): a :class:`~lkrtc_trio.testing.ClusterInfo`
  for a :class:`~lkrtc_trio.testing.LocalCluster` of two nodes sharing one
  Redis, started once per session on first use (needs ``redis-server``; the
  nodes have the same keys as ``livekit_server``, so ``livekit_token`` tokens
  work on every node).
* ``livekit_room_name`` (function): a room name unique to the test.
* ``livekit_token`` (function): ``livekit_token(identity, room=None, **grants)``
  mints a token for that server's keys; ``room`` defaults to
  ``livekit_room_name`` and ``grants`` are keyword arguments of
  :func:`~lkrtc_trio.testing.mint_token`.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any, Protocol

import pytest

from ._cluster import ClusterInfo, LocalCluster
from ._server import LocalServer, ServerInfo, install_server, mint_token

__all__ = [
    "TokenFactory",
    "livekit_cluster",
    "livekit_room_name",
    "livekit_server",
    "livekit_token",
]


class TokenFactory(Protocol):
    """Type of the ``livekit_token`` fixture."""

    def __call__(self, identity: str, room: str | None = None, **grants: Any) -> str:
        """Mint a token; see :func:`~lkrtc_trio.testing.mint_token`.

        Raises:
            ValueError: Empty identity or room, or a non-positive ttl.
            TypeError: An unknown grant keyword.
        """
        ...


@pytest.fixture(scope="session")
def livekit_server() -> Iterator[ServerInfo]:
    """A livekit-server running for the whole session.

    Raises:
        ServerInstallError: The binary could not be found or built.
        ServerStartError: The server did not start.
    """
    binary = install_server()
    server = LocalServer(binary=binary)
    info = server.start()
    try:
        yield info
    finally:
        server.stop()


@pytest.fixture(scope="session")
def livekit_cluster() -> Iterator[ClusterInfo]:
    """A two-node :class:`~lkrtc_trio.testing.LocalCluster` for the whole session.

    Raises:
        ServerInstallError: A binary (livekit-server or redis-server) is missing.
        ServerStartError: A process did not start.
    """
    cluster = LocalCluster(nodes=2, binary=install_server())
    info = cluster.start()
    try:
        yield info
    finally:
        cluster.stop()


@pytest.fixture
def livekit_room_name(request: pytest.FixtureRequest) -> str:
    """A room name unique to the requesting test."""
    base = re.sub(r"[^A-Za-z0-9_-]+", "-", request.node.name).strip("-")[:40] or "room"
    return f"{base}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def livekit_token(livekit_server: ServerInfo, livekit_room_name: str) -> TokenFactory:
    """Factory minting tokens for ``livekit_server``'s keys."""

    def factory(identity: str, room: str | None = None, **grants: Any) -> str:
        return mint_token(
            identity,
            livekit_room_name if room is None else room,
            api_key=livekit_server.api_key,
            api_secret=livekit_server.api_secret,
            **grants,
        )

    return factory
