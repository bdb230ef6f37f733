"""A multi-node LiveKit cluster for tests: one Redis, N livekit-server nodes.

Production LiveKit runs several nodes that share a Redis: a room lives on one
node, and a participant's signal connection may land on another node, which
relays it. :class:`LocalCluster` runs that on one machine (inside the test
network namespace when there is one), with the cleanup guarantees of
:class:`~lkrtc_trio.testing.LocalServer`: every process dies with the thread
that started it, and whatever is still running at exit is stopped.

Synchronous, like the rest of :mod:`lkrtc_trio.testing`.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from ._server import (
    LocalServer,
    ServerInfo,
    ServerInstallError,
    ServerStartError,
    _ManagedProcess,
    free_ports,
    install_server,
    test_host,
)

__all__ = ["ClusterInfo", "LocalCluster", "LocalRedis", "find_redis_server"]

REDIS_INSTALL_HINT = (
    "redis-server not found on PATH: install Redis (Debian/Ubuntu: "
    "`apt-get install redis-server`; `make setup` does it when run as root)"
)


def find_redis_server() -> Path:
    """Return the path of the ``redis-server`` binary on ``PATH``.

    Raises:
        ServerInstallError: There is none (the message says how to install it).
    """
    found = shutil.which("redis-server")
    if found is None:
        raise ServerInstallError(REDIS_INSTALL_HINT)
    return Path(found)


class LocalRedis(_ManagedProcess):
    """A throwaway ``redis-server``: no persistence, on a free port of :func:`test_host`.

    Protected mode is off (livekit-server nodes connect from the namespace's
    address, not loopback) and nothing is written to disk. Like
    :class:`~lkrtc_trio.testing.LocalServer`, it is killed when the thread
    that started it exits.

    Args:
        binary: The ``redis-server`` binary; None means :func:`find_redis_server`.
        host: Address to bind; None means :func:`test_host`.
        start_timeout: Seconds to wait for it to answer ``PING``.
        stop_timeout: Seconds to wait after SIGTERM before SIGKILL.
        log_dir: Directory for ``redis-<port>.log``, kept after :meth:`stop`;
            None means a temporary directory that :meth:`stop` removes.
    """

    _TMP_PREFIX = "lkrtc-redis-"

    def __init__(
        self,
        *,
        binary: Path | str | None = None,
        host: str | None = None,
        start_timeout: float = 10.0,
        stop_timeout: float = 5.0,
        log_dir: Path | str | None = None,
    ) -> None:
        super().__init__(stop_timeout=stop_timeout, log_dir=log_dir)
        self._binary = Path(binary) if binary is not None else None
        self._host = host
        self.start_timeout = start_timeout
        self._address: tuple[str, int] | None = None

    @property
    def address(self) -> str:
        """``host:port``, as livekit-server's ``redis.address`` wants it.

        Raises:
            RuntimeError: Not running.
        """
        if self._address is None:
            raise RuntimeError("LocalRedis is not running")
        host, port = self._address
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def start(self) -> str:
        """Start Redis and wait until it answers ``PING``.

        Returns:
            Its :attr:`address`.

        Raises:
            RuntimeError: Already started.
            ServerInstallError: No binary was given and none is on ``PATH``.
            ServerStartError: It exited or did not answer within ``start_timeout``
                (the message has the end of its log).
        """
        if self._process is not None:
            raise RuntimeError("LocalRedis is already started")
        binary = self._binary if self._binary is not None else find_redis_server()
        host = self._host or test_host()
        for attempt in range(3):
            try:
                return self._start_once(binary, host)
            except ServerStartError as exc:
                if attempt == 2 or "address already in use" not in str(exc).lower():
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _start_once(self, binary: Path, host: str) -> str:
        port = free_ports(host, 1, "tcp")[0]
        log_dir = self._open_log(f"redis-{port}.log")
        argv = [
            str(binary),
            "--bind", host,
            "--port", str(port),
            "--save", "",
            "--appendonly", "no",
            "--protected-mode", "no",
            "--dir", str(log_dir),
        ]  # fmt: skip
        self._spawn(argv)
        try:
            self._wait_ready(host, port)
        except ServerStartError as exc:
            tail = self.log_tail()
            self._stop(keep_log=True)
            raise ServerStartError(f"{exc}\n--- tail of {self.log_path} ---\n{tail}") from None
        except BaseException:
            self._stop(keep_log=False)
            raise
        self._address = (host, port)
        return self.address

    def _wait_ready(self, host: str, port: int) -> None:
        def probe() -> str | None:
            try:
                with socket.create_connection((host, port), timeout=1.0) as sock:
                    sock.sendall(b"PING\r\n")
                    return None if sock.recv(64).startswith(b"+PONG") else "no PONG"
            except OSError as exc:
                return str(exc)

        self._poll_ready("redis-server", f"on {host}:{port}", self.start_timeout, 0.02, probe)

    def _stop(self, *, keep_log: bool) -> None:
        self._address = None
        super()._stop(keep_log=keep_log)

    def __enter__(self) -> str:
        return self.start()

    def __repr__(self) -> str:
        state = self.address if self._address is not None else "stopped"
        return f"<LocalRedis {state}>"


@dataclass(frozen=True)
class ClusterInfo:
    """Where a running :class:`LocalCluster` listens.

    Every node has the same API key and secret, so a token minted for one
    node is good on all of them, and the server API of any node manages every
    room of the cluster.
    """

    nodes: tuple[ServerInfo, ...]
    """Each node's :class:`~lkrtc_trio.testing.ServerInfo`, in start order."""
    redis_address: str
    """``host:port`` of the shared Redis."""

    @property
    def urls(self) -> tuple[str, ...]:
        """Each node's signalling URL (``ws://host:port``)."""
        return tuple(node.url for node in self.nodes)

    @property
    def api_key(self) -> str:
        """The API key all nodes share."""
        return self.nodes[0].api_key

    @property
    def api_secret(self) -> str:
        """The API secret all nodes share."""
        return self.nodes[0].api_secret


class LocalCluster:
    """A Redis and ``nodes`` livekit-server nodes sharing it, on free ports.

    Each node is a :class:`~lkrtc_trio.testing.LocalServer` (``--dev`` keys,
    its own HTTP, TCP and UDP ports) whose config has ``redis.address`` of
    the shared :class:`LocalRedis`. A participant may join any room through
    any node's URL: a room is hosted by one node (chosen when it is created,
    or set with ``CreateRoomRequest(node_id=...)``; see
    :attr:`ServerInfo.node_id <lkrtc_trio.testing.ServerInfo.node_id>`), and
    a signal connection that lands on another node is relayed to it.

    Use it as ``with LocalCluster(nodes=2) as info: ...`` or call
    :meth:`start` and :meth:`stop`; call them from a long-lived thread (the
    processes die with the thread that started them).

    Args:
        nodes: How many livekit-server nodes (at least 1).
        binary: The livekit-server binary; None means
            :func:`~lkrtc_trio.testing.install_server`.
        redis_binary: The ``redis-server`` binary; None means :func:`find_redis_server`.
        host: Address for every process; None means :func:`test_host`.
        extra_config: YAML appended to every node's config.
        start_timeout: Seconds each process has to become ready.
        stop_timeout: Seconds each process has after SIGTERM before SIGKILL.
        log_dir: Directory for all logs, kept; None means temporary directories.

    Raises:
        ValueError: ``nodes`` is less than 1.
    """

    def __init__(
        self,
        nodes: int = 2,
        *,
        binary: Path | str | None = None,
        redis_binary: Path | str | None = None,
        host: str | None = None,
        extra_config: str | None = None,
        start_timeout: float = 30.0,
        stop_timeout: float = 5.0,
        log_dir: Path | str | None = None,
    ) -> None:
        if nodes < 1:
            raise ValueError(f"a cluster needs at least one node, got {nodes}")
        self._count = nodes
        self._binary = binary
        self._host = host
        self.extra_config = extra_config
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self._log_dir = log_dir
        self.redis = LocalRedis(
            binary=redis_binary,
            host=host,
            start_timeout=min(start_timeout, 10.0),
            stop_timeout=stop_timeout,
            log_dir=log_dir,
        )
        """The shared :class:`LocalRedis`."""
        self._nodes: tuple[LocalServer, ...] = ()

    @property
    def nodes(self) -> tuple[LocalServer, ...]:
        """The nodes' :class:`~lkrtc_trio.testing.LocalServer` objects (empty before
        :meth:`start`). ``cluster.nodes[i].stop()`` is a SIGTERM shutdown of one
        node, ``.kill()`` a crash; :meth:`~lkrtc_trio.testing.LocalServer.restart`
        brings it back on its ports (with a new node id)."""
        return self._nodes

    @property
    def info(self) -> ClusterInfo:
        """Where the cluster listens (every node, running or not, as last started).

        Raises:
            RuntimeError: The cluster is not started.
        """
        if not self._nodes:
            raise RuntimeError("LocalCluster is not running")
        infos: list[ServerInfo] = []
        for node in self._nodes:
            last = node.info if node.running else node._last_info
            assert last is not None, "a started node always has its last info"
            infos.append(last)
        return ClusterInfo(nodes=tuple(infos), redis_address=self.redis.address)

    def node_config(self) -> str:
        """Return the YAML every node gets on top of :class:`LocalServer`'s own.

        Raises:
            RuntimeError: Redis is not running.
        """
        body = f"redis:\n  address: {self.redis.address}\n"
        if self.extra_config:
            body += self.extra_config.rstrip("\n") + "\n"
        return body

    def start(self) -> ClusterInfo:
        """Start Redis, then every node; wait until each is ready.

        On any failure, whatever was started is stopped again.

        Returns:
            Where the cluster listens.

        Raises:
            RuntimeError: Already started.
            ServerInstallError: A binary is missing and could not be found or built.
            ServerStartError: A process did not start (the message has its log tail).
        """
        if self._nodes:
            raise RuntimeError("LocalCluster is already started")
        binary = self._binary if self._binary is not None else install_server()
        started: list[LocalServer] = []
        try:
            self.redis.start()
            config = self.node_config()
            for _ in range(self._count):
                node = LocalServer(
                    binary=binary,
                    host=self._host,
                    extra_config=config,
                    start_timeout=self.start_timeout,
                    stop_timeout=self.stop_timeout,
                    log_dir=self._log_dir,
                )
                node.start()
                started.append(node)
        except BaseException:
            for node in started:
                node.stop()
            self.redis.stop()
            raise
        self._nodes = tuple(started)
        return self.info

    def stop(self) -> None:
        """Stop every node (SIGTERM, as :meth:`LocalServer.stop
        <lkrtc_trio.testing.LocalServer.stop>`), then Redis. Idempotent."""
        nodes, self._nodes = self._nodes, ()
        try:
            for node in nodes:
                with contextlib.suppress(Exception):
                    node.stop()
        finally:
            self.redis.stop()

    def __enter__(self) -> ClusterInfo:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        if not self._nodes:
            return f"<LocalCluster nodes={self._count} stopped>"
        urls: Sequence[str] = [n.info.url if n.running else "down" for n in self._nodes]
        return f"<LocalCluster redis={self.redis.address} nodes={list(urls)}>"
