"""A real livekit-server for tests: install, run, and mint tokens for it.

Everything here is synchronous (the standard library, plus ``lkrtc_trio.api``'s
``AccessToken`` for tokens), so it works in plain pytest fixtures, in trio or
asyncio test suites, and in scripts.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import fcntl
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from types import TracebackType
from typing import IO, Literal, Protocol, cast

import jwt

from ..api._token import AccessToken, ParticipantKind, VideoGrants

__all__ = [
    "DEFAULT_API_KEY",
    "DEFAULT_API_SECRET",
    "FALLBACK_VERSIONS",
    "NETNS_HOST",
    "SERVER_VERSION",
    "LocalServer",
    "ServerInfo",
    "ServerInstallError",
    "ServerStartError",
    "cache_dir",
    "free_port",
    "free_ports",
    "in_test_netns",
    "install_server",
    "mint_token",
    "server_binary_path",
    "test_host",
]

SERVER_VERSION = "v1.13.5"
"""The livekit-server release the tests are written against."""

FALLBACK_VERSIONS: tuple[str, ...] = ("v1.13.4", "v1.13.3", "v1.13.2", "v1.12.0")
"""Tried in order when :data:`SERVER_VERSION` cannot be installed.

Only tags whose ``go.mod`` has no ``replace`` directive can be built with
``go install pkg@version``.
"""

NETNS_HOST = "10.213.0.1"
"""The test address that ``python -m lkrtc_trio.testing.netns`` puts on ``lkv0``."""

DEFAULT_API_KEY = "devkey"
DEFAULT_API_SECRET = "secret"

_GO_PACKAGE = "github.com/livekit/livekit-server/cmd/server"
_LOG_TAIL_BYTES = 4000
# Relay ports of LocalServer(turn=True): one allocation per peer connection
# (two per participant) and a few spares, as livekit-server retries random
# ports of the range when one is taken.
_TURN_RELAY_PORTS = 32


class ServerInstallError(RuntimeError):
    """livekit-server could not be found or built."""


class ServerStartError(RuntimeError):
    """livekit-server did not start, or did not become ready in time."""


def _log(message: str) -> None:
    print(f"lkrtc-trio: {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- paths


def cache_dir() -> Path:
    """Return the directory where lkrtc-trio caches the server binary.

    Order: ``$LKRTC_CACHE_DIR``, then ``$XDG_CACHE_HOME/lkrtc-trio``, then
    ``~/.cache/lkrtc-trio``. The directory is not created.

    Returns:
        The cache directory.
    """
    explicit = os.environ.get("LKRTC_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return Path(xdg).expanduser() / "lkrtc-trio"
    return Path.home() / ".cache" / "lkrtc-trio"


def server_binary_path(version: str = SERVER_VERSION) -> Path:
    """Return where the cached binary for ``version`` lives (it may not exist yet).

    Args:
        version: A livekit-server git tag such as ``"v1.13.5"``.

    Returns:
        ``cache_dir()/bin/livekit-server-<version>/server``.
    """
    return cache_dir() / "bin" / f"livekit-server-{version}" / "server"


def _is_executable_file(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _find_go() -> str | None:
    found = shutil.which("go")
    if found:
        return found
    for candidate in ("/usr/local/go/bin/go", str(Path.home() / "go" / "bin" / "go")):
        if _is_executable_file(Path(candidate)):
            return candidate
    return None


def _tail(text: str, limit: int = _LOG_TAIL_BYTES) -> str:
    text = text.strip()
    return text if len(text) <= limit else "..." + text[-limit:]


# --------------------------------------------------------------------------- install


def install_server(version: str | None = None) -> Path:
    """Return a livekit-server binary, building and caching it if needed.

    ``$LKRTC_SERVER_BIN``, when set, names a binary to use as is. Otherwise the
    binary is looked up in :func:`cache_dir`; when missing it is built with
    ``go install`` into a temporary directory beside its final place and renamed
    there atomically. A file lock keeps concurrent installers (e.g. pytest-xdist
    workers) from building twice. A build takes minutes; progress goes to stderr.

    With ``version=None``, :data:`SERVER_VERSION` is used, and the
    :data:`FALLBACK_VERSIONS` are tried in order if it cannot be built. An
    explicit ``version`` is tried alone.

    Args:
        version: A livekit-server git tag, or None for the default chain.

    Returns:
        The path of an executable ``server`` binary.

    Raises:
        ServerInstallError: ``$LKRTC_SERVER_BIN`` is not an executable file,
            ``go`` is not installed, or every version failed to build (the
            message carries the tail of go's stderr).
    """
    override = os.environ.get("LKRTC_SERVER_BIN")
    if override:
        path = Path(override).expanduser()
        if not _is_executable_file(path):
            raise ServerInstallError(f"LKRTC_SERVER_BIN={override!r} is not an executable file")
        return path

    versions = [version] if version is not None else [SERVER_VERSION, *FALLBACK_VERSIONS]
    for candidate in versions:
        cached = server_binary_path(candidate)
        if _is_executable_file(cached):
            return cached

    bin_root = cache_dir() / "bin"
    try:
        bin_root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ServerInstallError(f"cannot create cache directory {bin_root}: {exc}") from exc

    with open(bin_root / ".install.lock", "a+b") as lock_file:
        _log(f"waiting for the install lock {lock_file.name} ...")
        fcntl.flock(lock_file.fileno(), fcntl.LOCK_EX)
        try:
            # Another process may have finished the build while we waited.
            for candidate in versions:
                cached = server_binary_path(candidate)
                if _is_executable_file(cached):
                    return cached
            return _build_first_that_works(versions, bin_root)
        finally:
            fcntl.flock(lock_file.fileno(), fcntl.LOCK_UN)


def _build_first_that_works(versions: list[str], bin_root: Path) -> Path:
    go = _find_go()
    if go is None:
        raise ServerInstallError(
            "cannot build livekit-server: the `go` toolchain is not on PATH "
            "(install Go, or set LKRTC_SERVER_BIN to an existing livekit-server binary)"
        )
    failures: list[str] = []
    for candidate in versions:
        try:
            return _build_one(go, candidate, bin_root)
        except ServerInstallError as exc:
            failures.append(str(exc))
            _log(f"livekit-server {candidate} failed to build; trying the next version")
    raise ServerInstallError(
        "could not install livekit-server; tried "
        + ", ".join(versions)
        + ":\n\n"
        + "\n\n".join(failures)
    )


def _build_one(go: str, version: str, bin_root: Path) -> Path:
    final_dir = bin_root / f"livekit-server-{version}"
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".livekit-server-{version}-", dir=bin_root))
    try:
        env = dict(os.environ)
        env["GOBIN"] = str(tmp_dir)
        _log(
            f"building livekit-server {version} with `go install` "
            f"(this takes a few minutes; cached at {final_dir})"
        )
        started = time.monotonic()
        try:
            result = subprocess.run(
                [go, "install", f"{_GO_PACKAGE}@{version}"],
                env=env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                errors="replace",
                check=False,
            )
        except OSError as exc:
            raise ServerInstallError(f"{version}: cannot run {go}: {exc}") from exc
        built = tmp_dir / "server"
        if result.returncode != 0 or not _is_executable_file(built):
            raise ServerInstallError(
                f"{version}: `go install` exited with {result.returncode}:\n"
                + _tail(result.stderr or result.stdout or "(no output)")
            )
        if final_dir.exists():
            # Left over without a usable binary (e.g. an interrupted manual copy).
            shutil.rmtree(final_dir, ignore_errors=True)
        os.rename(tmp_dir, final_dir)
        _log(f"built livekit-server {version} in {time.monotonic() - started:.0f} s")
        return final_dir / "server"
    finally:
        if tmp_dir.exists():
            shutil.rmtree(tmp_dir, ignore_errors=True)


# --------------------------------------------------------------------------- network


def test_host() -> str:
    """Return the address test servers and clients should use.

    ``$LKRTC_TEST_HOST`` when set (``python -m lkrtc_trio.testing.netns`` sets it),
    else ``"127.0.0.1"``.

    Returns:
        An IP address literal.
    """
    return os.environ.get("LKRTC_TEST_HOST") or "127.0.0.1"


def in_test_netns() -> bool:
    """Tell whether this process runs inside ``python -m lkrtc_trio.testing.netns``.

    True when ``$LKRTC_TEST_HOST`` is :data:`NETNS_HOST` and that address is
    assigned to an interface of the current network namespace.

    Returns:
        Whether the test namespace is in effect.
    """
    if os.environ.get("LKRTC_TEST_HOST") != NETNS_HOST:
        return False
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind((NETNS_HOST, 0))
    except OSError:
        return False
    return True


# Not a test, despite the name, when pytest collects `from ... import *`.
test_host.__test__ = False  # type: ignore[attr-defined]


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def free_ports(host: str, count: int, kind: Literal["tcp", "udp"] = "tcp") -> list[int]:
    """Return ``count`` distinct ports that are free on ``host`` right now.

    All sockets are held open until every port is picked, so the ports differ.
    Another process may still take one before you bind it.

    Args:
        host: The local address to bind.
        count: How many ports.
        kind: ``"tcp"`` or ``"udp"``.

    Returns:
        The port numbers.

    Raises:
        ValueError: ``kind`` is neither ``"tcp"`` nor ``"udp"``, or ``count`` < 0.
        OSError: ``host`` cannot be bound.
    """
    if kind not in ("tcp", "udp"):
        raise ValueError(f"kind must be 'tcp' or 'udp', not {kind!r}")
    if count < 0:
        raise ValueError("count must be >= 0")
    sock_type = socket.SOCK_STREAM if kind == "tcp" else socket.SOCK_DGRAM
    with contextlib.ExitStack() as stack:
        ports: list[int] = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(_family(host), sock_type))
            sock.bind((host, 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def _free_udp_range(host: str, count: int, avoid: Sequence[int] = ()) -> tuple[int, int]:
    """Return ``(first, last)`` of ``count`` consecutive UDP ports free on
    ``host`` right now (and not in ``avoid``), for the TURN relays.

    Raises:
        OSError: No free range found.
    """
    rng = random.Random()
    for _ in range(50):
        # Below Linux's default ephemeral range (32768-60999), where clients'
        # sockets would otherwise take relay ports.
        first = rng.randrange(10000, 32768 - count)
        if any(first <= p < first + count for p in avoid):
            continue
        try:
            with contextlib.ExitStack() as stack:
                for port in range(first, first + count):
                    sock = stack.enter_context(socket.socket(_family(host), socket.SOCK_DGRAM))
                    sock.bind((host, port))
        except OSError:
            continue
        return first, first + count - 1
    raise OSError(f"no {count} consecutive free UDP ports on {host}")


def free_port(host: str, kind: Literal["tcp", "udp"] = "tcp") -> int:
    """Return a port that is free on ``host`` right now (bind to port 0).

    Args:
        host: The local address to bind.
        kind: ``"tcp"`` or ``"udp"``.

    Returns:
        The port number.

    Raises:
        ValueError: ``kind`` is neither ``"tcp"`` nor ``"udp"``.
        OSError: ``host`` cannot be bound.
    """
    return free_ports(host, 1, kind)[0]


# --------------------------------------------------------------------------- server


@dataclass(frozen=True)
class ServerInfo:
    """Where a running test server listens, and its API credentials."""

    host: str
    http_port: int
    tcp_port: int
    udp_port: int
    api_key: str = DEFAULT_API_KEY
    api_secret: str = DEFAULT_API_SECRET
    turn_port: int | None = None
    """UDP port of the embedded TURN server (``LocalServer(turn=True)``), else None."""
    turn_relay_ports: tuple[int, int] | None = None
    """First and last UDP port the TURN server allocates relays from, else None."""
    node_id: str | None = None
    """The node's id (``ND_...``, as livekit-server logged it at start), or
    None when it could not be read. ``CreateRoomRequest(node_id=...)`` places
    a room on this node in a cluster."""

    @property
    def _netloc(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.http_port}"

    @property
    def url(self) -> str:
        """The signalling URL for clients, ``ws://host:port``."""
        return f"ws://{self._netloc}"

    @property
    def http_url(self) -> str:
        """The HTTP (Twirp API) URL, ``http://host:port``."""
        return f"http://{self._netloc}"

    @property
    def turn_url(self) -> str | None:
        """The embedded TURN server's URL, ``turn:host:port?transport=udp``
        (what the server hands to clients in its join response), or None."""
        if self.turn_port is None:
            return None
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"turn:{host}:{self.turn_port}?transport=udp"


class _Stoppable(Protocol):
    def stop(self) -> None: ...


# Servers and Redis instances of this process still running: stopped at exit.
_RUNNING: set[_Stoppable] = set()


@atexit.register
def _stop_leftovers() -> None:
    for server in list(_RUNNING):
        server.stop()


def _die_with_parent() -> None:
    """In the server child, before exec: SIGKILL it when its parent dies (Linux).

    The kernel means the parent *thread*: a server started from a worker
    thread (``anyio.to_thread.run_sync``) dies when that thread exits, which
    a thread pool does after a few idle seconds. Start it from a thread that
    outlives it (the main thread, or the event loop's)."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


def _terminate(process: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM, a second SIGTERM after a short grace, SIGKILL after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    for grace in (_FORCE_AFTER, None):
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        remaining = max(0.0, deadline - time.monotonic())
        try:
            process.wait(timeout=remaining if grace is None else min(grace, remaining))
            return
        except subprocess.TimeoutExpired:
            pass
    with contextlib.suppress(ProcessLookupError):
        process.kill()
    process.wait()


# livekit-server's first SIGTERM starts a graceful drain that can take many
# seconds even with no participants; a second SIGTERM forces the shutdown
# (participants are still sent a leave).
_FORCE_AFTER = 0.5

_NODE_ID = re.compile(r'"nodeID": "(ND_[A-Za-z0-9]+)"')

_NO_PROXY_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class _ManagedProcess:
    """A child process whose output goes to a log file, which dies with the
    thread that started it and is stopped at exit if still running.

    Shared by :class:`LocalServer` and :class:`~lkrtc_trio.testing.LocalRedis`.
    Subclasses start it with :meth:`_open_log` and :meth:`_spawn`, and may
    extend :meth:`_stop` to forget their addresses.
    """

    _TMP_PREFIX = "lkrtc-"

    def __init__(self, *, stop_timeout: float, log_dir: Path | str | None) -> None:
        self.stop_timeout = stop_timeout
        self._log_dir = Path(log_dir) if log_dir is not None else None
        self._tmp_dir: Path | None = None
        self._log_file: IO[bytes] | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self.log_path: Path | None = None
        """Path of the process's combined stdout/stderr, once started."""

    @property
    def process(self) -> subprocess.Popen[bytes] | None:
        """The subprocess, or None before :meth:`start` and after :meth:`stop`."""
        return self._process

    @property
    def running(self) -> bool:
        """Whether the process is alive."""
        return self._process is not None and self._process.poll() is None

    def log_tail(self, limit: int = _LOG_TAIL_BYTES) -> str:
        """Return the end of the log, or "" if there is none.

        Args:
            limit: Maximum number of characters.

        Returns:
            The last ``limit`` characters of the log.
        """
        if self.log_path is None:
            return ""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                size = f.tell()
                f.seek(max(0, size - limit))
                return _tail(f.read().decode("utf-8", "replace"), limit)
        except OSError:
            return ""

    def _open_log(self, name: str) -> Path:
        """Opens ``name`` in ``log_dir`` (or a new temporary directory) as the
        log; returns the directory."""
        if self._log_dir is not None:
            self._log_dir.mkdir(parents=True, exist_ok=True)
            log_dir = self._log_dir
        else:
            self._tmp_dir = Path(tempfile.mkdtemp(prefix=self._TMP_PREFIX))
            log_dir = self._tmp_dir
        self.log_path = log_dir / name
        self._log_file = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        return log_dir

    def _spawn(self, argv: Sequence[str]) -> None:
        """Runs ``argv`` with its output to the log, in a session of its own
        (a terminal's Ctrl-C reaches us, and we stop it cleanly), killed by
        the kernel if the starting thread dies first (no orphans).

        Raises:
            ServerStartError: It could not be run.
        """
        try:
            self._process = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=self._log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        except OSError as exc:
            self._cleanup(keep_log=False)
            raise ServerStartError(f"cannot run {argv[0]}: {exc}") from exc
        _RUNNING.add(self)

    def _poll_ready(
        self,
        what: str,
        where: str,
        timeout: float,
        interval: float,
        probe: Callable[[], str | None],
    ) -> None:
        """Calls ``probe`` every ``interval`` s until it returns None (ready);
        otherwise it returns why not yet.

        Raises:
            ServerStartError: The process exited, or was not ready within ``timeout`` s.
        """
        assert self._process is not None
        deadline = time.monotonic() + timeout
        while True:
            code = self._process.poll()
            if code is not None:
                raise ServerStartError(f"{what} exited with code {code} during startup")
            last_error = probe()
            if last_error is None:
                return
            if time.monotonic() >= deadline:
                raise ServerStartError(
                    f"{what} {where} not ready after {timeout:g} s ({last_error})"
                )
            time.sleep(interval)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop the process: SIGTERM (twice), then SIGKILL after ``stop_timeout`` s.

        Idempotent; safe to call when never started. A temporary log directory
        is removed (a ``log_dir`` given to the constructor is kept).
        """
        self._stop(keep_log=False)

    def _stop(self, *, keep_log: bool) -> None:
        process, self._process = self._process, None
        _RUNNING.discard(self)
        if process is not None:
            if process.poll() is None:
                _terminate(process, self.stop_timeout)
            else:
                process.wait()
        self._cleanup(keep_log=keep_log)

    def _cleanup(self, *, keep_log: bool) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        if self._tmp_dir is not None:
            if not keep_log:
                shutil.rmtree(self._tmp_dir, ignore_errors=True)
            self._tmp_dir = None


class LocalServer(_ManagedProcess):
    """A livekit-server subprocess on free ports of :func:`test_host`.

    Use it as ``with LocalServer() as info: ...`` or call :meth:`start` and
    :meth:`stop`. Several can run side by side. Output goes to :attr:`log_path`.
    The server is killed when the thread that started it exits (so that no
    server outlives a crashed test process): call :meth:`start` and
    :meth:`restart` from a long-lived thread, not from a worker thread.

    Args:
        binary: The server binary; None means :func:`install_server`.
        host: Address to bind and advertise; None means :func:`test_host`.
        extra_config: YAML appended to the generated ``--config-body``.
        turn: Also run livekit-server's embedded TURN server, UDP only (no
            TLS, so no certificate), on a free UDP port of the host, relaying
            from a free range of UDP ports of the host, and allowed to relay
            to the host's own (private or loopback) address; its URL and
            per-participant credentials go to every client in the join
            response. See :attr:`ServerInfo.turn_port`.
        start_timeout: Seconds to wait for ``GET /`` to answer 200.
        stop_timeout: Seconds to wait after SIGTERM before SIGKILL (a second
            SIGTERM, which livekit-server takes as "force", goes after 0.5 s).
        log_dir: Directory for ``livekit-server-<port>.log``; kept after :meth:`stop`.
            None means a temporary directory that :meth:`stop` removes.
        http_port: The HTTP/WebSocket port (the URL's); None means a free
            port. The RTC ports are always free ones.
    """

    _TMP_PREFIX = "lkrtc-server-"

    def __init__(
        self,
        *,
        binary: Path | str | None = None,
        host: str | None = None,
        extra_config: str | None = None,
        turn: bool = False,
        start_timeout: float = 30.0,
        stop_timeout: float = 5.0,
        log_dir: Path | str | None = None,
        http_port: int | None = None,
    ) -> None:
        if http_port is not None and not 0 < http_port < 65536:
            raise ValueError(f"http_port must be in 1..65535, got {http_port}")
        super().__init__(stop_timeout=stop_timeout, log_dir=log_dir)
        self.http_port = http_port
        self._binary = Path(binary) if binary is not None else None
        self._host = host
        self.extra_config = extra_config
        self.turn = turn
        self.start_timeout = start_timeout
        self._info: ServerInfo | None = None
        self._last_info: ServerInfo | None = None

    # -- properties

    @property
    def info(self) -> ServerInfo:
        """Where the server listens.

        Raises:
            RuntimeError: The server is not running.
        """
        if self._info is None:
            raise RuntimeError("LocalServer is not running")
        return self._info

    def config_body(self, info: ServerInfo) -> str:
        """Return the YAML passed as ``--config-body`` for ``info``.

        Args:
            info: The ports and address to use.

        Returns:
            The YAML text.
        """
        lines = [
            f"port: {info.http_port}",
            "rtc:",
            f"  tcp_port: {info.tcp_port}",
            f"  udp_port: {info.udp_port}",
            "  use_external_ip: false",
        ]
        if info.host in ("127.0.0.1", "::1"):
            lines.append("  enable_loopback_candidate: true")
        if info.turn_port is not None and info.turn_relay_ports is not None:
            # UDP only: a tls_port (0 = none) would need a domain and a
            # certificate. The relays send to the SFU on the host's own
            # address, a "restricted" (private/loopback) peer that the TURN
            # server refuses unless allowed. Clients get
            # turn:<node ip>:<udp_port>?transport=udp with credentials
            # derived from the API key and secret.
            prefix = 128 if ":" in info.host else 32
            lines += [
                "turn:",
                "  enabled: true",
                f"  udp_port: {info.turn_port}",
                "  tls_port: 0",
                "  bind_addresses:",
                f"    - {info.host}",
                f"  relay_range_start: {info.turn_relay_ports[0]}",
                f"  relay_range_end: {info.turn_relay_ports[1]}",
                "  allow_restricted_peer_cidrs:",
                f"    - {info.host}/{prefix}",
            ]
        body = "\n".join(lines) + "\n"
        if self.extra_config:
            body += self.extra_config.rstrip("\n") + "\n"
        return body

    # -- lifecycle

    def start(self) -> ServerInfo:
        """Start the server and wait until it answers HTTP.

        Returns:
            Where the server listens.

        Raises:
            RuntimeError: Already started.
            ServerInstallError: No binary was given and :func:`install_server` failed.
            ServerStartError: The process could not be run, exited early, or was
                not ready within ``start_timeout`` (the message has the log tail;
                the log file is kept).
        """
        if self._process is not None:
            raise RuntimeError("LocalServer is already started")
        binary = self._binary if self._binary is not None else install_server()
        host = self._host or test_host()
        attempts = 3
        for attempt in range(1, attempts + 1):
            try:
                return self._start_once(binary, host)
            except ServerStartError as exc:
                # Another process may have grabbed a picked port in the meantime.
                clash = "address already in use" in str(exc).lower()
                if attempt == attempts or not clash or self.http_port is not None:
                    raise
                _log(f"livekit-server port clash; retrying ({attempt}/{attempts})")
        raise AssertionError("unreachable")  # pragma: no cover

    def kill(self) -> ServerInfo:
        """SIGKILL the server at once, as a crash would (no goodbye to any
        client), and return where it listened, for :meth:`restart`.

        Raises:
            RuntimeError: The server is not running.
        """
        info = self.info
        process, self._process = self._process, None
        self._info = None
        _RUNNING.discard(self)
        assert process is not None
        process.kill()
        process.wait()
        self._cleanup(keep_log=False)
        self._last_info = info
        return info

    def restart(self) -> ServerInfo:
        """Start the server again on the ports it had before :meth:`kill` or
        :meth:`stop` (a fresh server: no rooms, no participants).

        Raises:
            RuntimeError: Still running, or never started.
            ServerStartError: As :meth:`start` (a port taken in the meantime
                is not retried on another port).
        """
        if self._process is not None:
            raise RuntimeError("LocalServer is already started")
        if self._last_info is None:
            raise RuntimeError("LocalServer was never started")
        binary = self._binary if self._binary is not None else install_server()
        return self._start_once(binary, self._last_info.host, self._last_info)

    def _start_once(self, binary: Path, host: str, info: ServerInfo | None = None) -> ServerInfo:
        if info is None:
            tcp_ports = free_ports(host, 2, "tcp")
            udp_ports = free_ports(host, 2 if self.turn else 1, "udp")
            if self.http_port is not None:
                tcp_ports = [self.http_port, next(p for p in tcp_ports if p != self.http_port)]
            info = ServerInfo(
                host=host, http_port=tcp_ports[0], tcp_port=tcp_ports[1], udp_port=udp_ports[0]
            )
            if self.turn:
                relay = _free_udp_range(host, _TURN_RELAY_PORTS, avoid=udp_ports)
                info = dataclasses.replace(info, turn_port=udp_ports[1], turn_relay_ports=relay)
        self._open_log(f"livekit-server-{info.http_port}.log")
        assert self._log_file is not None
        argv = [
            str(binary),
            "--dev",
            "--bind",
            host,
            "--node-ip",
            host,
            "--config-body",
            self.config_body(info),
        ]
        self._log_file.write(("$ " + " ".join(argv[:-1]) + " <config-body>\n").encode())
        self._log_file.write(self.config_body(info).encode() + b"\n")
        self._log_file.flush()
        self._spawn(argv)
        try:
            self._wait_ready(info)
        except ServerStartError as exc:
            tail = self.log_tail()
            self._stop(keep_log=True)
            raise ServerStartError(f"{exc}\n--- tail of {self.log_path} ---\n{tail}") from None
        except BaseException:
            self._stop(keep_log=False)
            raise
        info = dataclasses.replace(info, node_id=self._read_node_id())
        self._info = info
        self._last_info = info
        return info

    def _read_node_id(self) -> str | None:
        # livekit-server logs `starting LiveKit server {..., "nodeID": "ND_..."}`
        # before it listens, so the line is there once it answers HTTP.
        match = _NODE_ID.search(self.log_tail(1 << 16)) if self._log_file is not None else None
        return match.group(1) if match else None

    def _wait_ready(self, info: ServerInfo) -> None:
        def probe() -> str | None:
            try:
                with _NO_PROXY_OPENER.open(info.http_url + "/", timeout=1.0) as response:
                    return None if response.status == 200 else f"HTTP {response.status}"
            except urllib.error.HTTPError as exc:
                return f"HTTP {exc.code}"
            except (OSError, ValueError) as exc:
                return str(exc)

        self._poll_ready("livekit-server", f"at {info.http_url}", self.start_timeout, 0.05, probe)

    def _stop(self, *, keep_log: bool) -> None:
        self._info = None
        super()._stop(keep_log=keep_log)

    def __enter__(self) -> ServerInfo:
        return self.start()

    def __repr__(self) -> str:
        state = self._info.url if self._info is not None else "stopped"
        return f"<LocalServer {state} log={self.log_path}>"


# --------------------------------------------------------------------------- tokens


def mint_token(
    identity: str,
    room: str,
    *,
    api_key: str = DEFAULT_API_KEY,
    api_secret: str = DEFAULT_API_SECRET,
    name: str | None = None,
    metadata: str | None = None,
    attributes: dict[str, str] | None = None,
    ttl: float = 3600.0,
    can_publish: bool = True,
    can_subscribe: bool = True,
    can_publish_data: bool = True,
    can_update_own_metadata: bool = True,
    hidden: bool = False,
    kind: str | None = None,
    room_admin: bool = False,
) -> str:
    """Return an HS256 access token that lets ``identity`` join ``room``.

    Made with ``lkrtc_trio.api.AccessToken`` (PyJWT): ``iss`` (API key),
    ``sub`` (identity), ``nbf`` (now - 10 s, for clock skew), ``exp``,
    optional ``name``, ``metadata``, ``attributes``, ``kind``, and a ``video``
    grant. PyJWT's warning about a short secret (the dev server's ``secret``)
    is silenced here.

    Args:
        identity: Participant identity.
        room: Room name.
        api_key: API key (the JWT issuer).
        api_secret: API secret (the HMAC key).
        name: Display name.
        metadata: Participant metadata.
        attributes: Participant attributes.
        ttl: Lifetime in seconds.
        can_publish: Grant ``canPublish``.
        can_subscribe: Grant ``canSubscribe``.
        can_publish_data: Grant ``canPublishData``.
        can_update_own_metadata: Grant ``canUpdateOwnMetadata``.
        hidden: Grant ``hidden``.
        kind: Participant kind, e.g. ``"standard"`` or ``"agent"``.
        room_admin: Grant ``roomAdmin`` for ``room`` (the server API's room
            calls, such as listing or removing participants).

    Returns:
        The compact JWT.

    Raises:
        ValueError: ``identity``, ``room``, ``api_key`` or ``api_secret`` is
            empty, or ``ttl`` is not positive.
    """
    if not identity:
        raise ValueError("identity must not be empty")
    if not room:
        raise ValueError("room must not be empty")
    if not api_key or not api_secret:
        raise ValueError("api_key and api_secret must not be empty")
    if not ttl > 0:
        raise ValueError("ttl must be positive")
    token = (
        AccessToken(api_key, api_secret)
        .with_identity(identity)
        .with_ttl(timedelta(seconds=ttl))
        .with_grants(
            VideoGrants(
                room_join=True,
                room=room,
                can_publish=can_publish,
                can_subscribe=can_subscribe,
                can_publish_data=can_publish_data,
                can_update_own_metadata=can_update_own_metadata,
                hidden=hidden,
                room_admin=True if room_admin else None,
            )
        )
    )
    if name is not None:
        token.with_name(name)
    if metadata is not None:
        token.with_metadata(metadata)
    if attributes is not None:
        token.with_attributes(attributes)
    if kind is not None:
        token.with_kind(cast(ParticipantKind, kind))
    short_secret = getattr(jwt, "InsecureKeyLengthWarning", None)  # PyJWT >= 2.10
    with warnings.catch_warnings():
        if short_secret is not None:
            warnings.simplefilter("ignore", short_secret)
        return token._to_jwt(backdate=10)
