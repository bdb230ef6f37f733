"""Drive an official-SDK (``livekit.rtc``, asyncio) participant in a subprocess from anyio/trio.

One process cannot initialise the native library twice, so interop tests run the official
participant as ``official_peer.py`` in a child process and talk to it in JSON lines::

    async with open_official_peer(url, token) as peer:
        await peer.wait_for("participant_connected", identity="alice")
        reply = await peer.call("publish_data", payload_b64="aGk=", topic="t")
        assert reply["ok"]
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import anyio
import anyio.abc

__all__ = [
    "PEER_SCRIPT",
    "OfficialPeer",
    "OfficialPeerError",
    "OfficialPeerExited",
    "open_official_peer",
]

log = logging.getLogger(__name__)

PEER_SCRIPT = Path(__file__).with_name("official_peer.py")

Event = dict[str, Any]


class OfficialPeerError(RuntimeError):
    """The official peer failed to start (connect error, crash) or misbehaved."""


class OfficialPeerExited(OfficialPeerError):
    """The peer's stdout closed (process exited) before the awaited event arrived."""


def _matches(event: Event, name: str, fields: Mapping[str, Any]) -> bool:
    if event.get("event") != name:
        return False
    for key, want in fields.items():
        have = event.get(key)
        if callable(want):
            if not want(have):
                return False
        elif have != want:
            return False
    return True


class OfficialPeer:
    """Handle on a running ``official_peer.py``; build it with :func:`open_official_peer`."""

    def __init__(self, process: anyio.abc.Process, stderr_path: Path) -> None:
        self.process = process
        self.stderr_path = stderr_path
        self.events: list[Event] = []
        self.connected: Event = {}
        self.eof = False
        self._cond = anyio.Condition()
        self._send_lock = anyio.Lock()
        self._ids = itertools.count(1)

    # -- info ------------------------------------------------------------------------------

    @property
    def returncode(self) -> int | None:
        return self.process.returncode

    @property
    def identity(self) -> str:
        return str(self.connected.get("identity", ""))

    def mark(self) -> int:
        """Index of the next event; pass as ``since=`` to ignore everything before now."""
        return len(self.events)

    def stderr_tail(self, max_bytes: int = 4000) -> str:
        try:
            with open(self.stderr_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - max_bytes))
                return f.read().decode("utf-8", "replace")
        except OSError as e:
            return f"<stderr unavailable: {e}>"

    def describe(self, n_events: int = 20) -> str:
        lines = [json.dumps(e) for e in self.events[-n_events:]]
        return (
            f"official peer {self.identity or '?'} (pid {self.process.pid}, "
            f"returncode {self.returncode}, {len(self.events)} events)\n"
            "recent events:\n  " + ("\n  ".join(lines) or "<none>") + "\n"
            "stderr tail:\n" + self.stderr_tail()
        )

    # -- events ----------------------------------------------------------------------------

    def find(self, event: str, *, since: int = 0, **fields: Any) -> Event | None:
        """First event already received at index >= ``since`` matching, or None."""
        for ev in self.events[since:]:
            if _matches(ev, event, fields):
                return ev
        return None

    async def wait_for(
        self,
        event: str,
        timeout: float = 10.0,  # noqa: ASYNC109 - part of this helper's API
        *,
        since: int = 0,
        **fields: Any,
    ) -> Event:
        """Return the first event named ``event`` at index >= ``since`` (already received or
        future) whose fields equal ``fields`` (a callable field value is used as a predicate).

        Raises TimeoutError (with the recent event log) or OfficialPeerExited.
        """
        checked = since
        with anyio.move_on_after(timeout):
            async with self._cond:
                while True:
                    for ev in self.events[checked:]:
                        if _matches(ev, event, fields):
                            return ev
                    checked = max(checked, len(self.events))
                    if self.eof:
                        raise OfficialPeerExited(
                            f"peer exited while waiting for {event!r} {fields!r}\n"
                            + self.describe()
                        )
                    await self._cond.wait()
        raise TimeoutError(
            f"no {event!r} event matching {fields!r} (since={since}) within {timeout}s\n"
            + self.describe()
        )

    async def _read_loop(self) -> None:
        stdout = self.process.stdout
        assert stdout is not None
        buf = b""
        try:
            async for chunk in stdout:
                buf += chunk
                *lines, buf = buf.split(b"\n")
                new = [self._parse(line) for line in lines if line.strip()]
                if new:
                    async with self._cond:
                        self.events.extend(new)
                        self._cond.notify_all()
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as e:
            log.debug("peer stdout read ended: %r", e)
        finally:
            with anyio.CancelScope(shield=True):
                async with self._cond:
                    if buf.strip():
                        self.events.append(self._parse(buf))
                    self.eof = True
                    self._cond.notify_all()

    @staticmethod
    def _parse(line: bytes) -> Event:
        try:
            ev = json.loads(line)
        except ValueError:
            ev = None
        if not isinstance(ev, dict):
            log.warning("unparsable line from official peer: %r", line)
            ev = {"event": "_unparsable", "line": line.decode("utf-8", "replace")}
        ev["_received_at"] = anyio.current_time()  # when this side read it
        return ev

    # -- commands --------------------------------------------------------------------------

    async def send(self, cmd: str, **args: Any) -> int:
        """Send a command without waiting for its reply; returns its id."""
        cmd_id = next(self._ids)
        line = json.dumps({**args, "cmd": cmd, "id": cmd_id}).encode() + b"\n"
        stdin = self.process.stdin
        assert stdin is not None
        try:
            async with self._send_lock:
                await stdin.send(line)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as e:
            raise OfficialPeerExited(f"cannot send {cmd!r}: {e!r}\n" + self.describe()) from e
        return cmd_id

    async def call(
        self,
        cmd: str,
        timeout: float = 10.0,  # noqa: ASYNC109 - part of this helper's API
        **args: Any,
    ) -> Event:
        """Send a command and return its reply event (``ok``, ``result``, ``error``, ``code``)."""
        since = self.mark()
        cmd_id = await self.send(cmd, **args)
        return await self.wait_for("reply", timeout, since=since, id=cmd_id)

    async def _shutdown(self, grace: float = 5.0) -> None:
        """Ask the peer to disconnect, wait up to ``grace`` seconds, then kill it."""
        if self.returncode is None and not self.eof:
            with suppress(OfficialPeerError):
                await self.send("disconnect")
        if self.process.stdin is not None:
            with suppress(anyio.BrokenResourceError, OSError):
                await self.process.stdin.aclose()  # EOF also means "disconnect and exit"
        with anyio.move_on_after(grace):
            await self.process.wait()
        if self.returncode is None:
            log.warning(
                "official peer pid %s did not exit in %ss; killing", self.process.pid, grace
            )
            self.process.kill()
            await self.process.wait()


@asynccontextmanager
async def open_official_peer(
    url: str,
    token: str,
    *,
    connect_timeout: float = 20.0,
    env: Mapping[str, str] | None = None,
) -> AsyncIterator[OfficialPeer]:
    """Start ``official_peer.py URL TOKEN`` and yield an :class:`OfficialPeer` once connected.

    Raises OfficialPeerError (with the error event and the stderr tail) when the process
    exits or reports ``error`` before ``connected``, or does not connect in time. On exit
    the peer is told to disconnect, given 5 s to exit, then killed.
    """
    fd, name = tempfile.mkstemp(prefix="official-peer-", suffix=".stderr")
    stderr_path = Path(name)
    failure: Exception | None = None
    started = False
    try:
        process = await anyio.open_process(
            [sys.executable, str(PEER_SCRIPT), url, token],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=fd,
            env={**os.environ, **env} if env is not None else None,
        )
        peer = OfficialPeer(process, stderr_path)
        async with anyio.create_task_group() as tg:
            tg.start_soon(peer._read_loop)
            # Exceptions are carried out of the task group by hand so that callers see them
            # unwrapped (trio's strict exception groups would wrap them otherwise).
            try:
                started = await _wait_started(peer, connect_timeout)
                if started:
                    yield peer
            except Exception as e:
                failure = e
            finally:
                with anyio.CancelScope(shield=True):
                    await peer._shutdown()
                tg.cancel_scope.cancel()
        if failure is None and not started:
            failure = OfficialPeerError(_start_failure_message(peer, url))
    finally:
        os.close(fd)
        if failure is None or os.environ.get("OFFICIAL_PEER_KEEP_STDERR") is None:
            _remove(stderr_path)
    if failure is not None:
        raise failure


def _remove(path: Path) -> None:
    path.unlink(missing_ok=True)


async def _wait_started(peer: OfficialPeer, limit: float) -> bool:
    def first_of(ev: Event) -> bool:
        return ev.get("event") in ("connected", "error")

    try:
        with anyio.fail_after(limit):
            async with peer._cond:
                while True:
                    ev = next((e for e in peer.events if first_of(e)), None)
                    if ev is not None:
                        if ev["event"] == "connected":
                            peer.connected = ev
                            return True
                        return False
                    if peer.eof:
                        return False
                    await peer._cond.wait()
    except TimeoutError:
        return False


def _start_failure_message(peer: OfficialPeer, url: str) -> str:
    err = peer.find("error")
    what = f"error event: {err.get('message')!r}" if err else "no connected/error event"
    return f"official peer failed to connect to {url} ({what})\n" + peer.describe()


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _dev_token(
    identity: str,
    room: str,
    *,
    api_key: str = "devkey",
    api_secret: str = "secret",
    ttl: int = 3600,
    name: str | None = None,
    metadata: str | None = None,
    attributes: Mapping[str, str] | None = None,
    grants: Mapping[str, Any] | None = None,
) -> str:
    """HS256 access token for a ``livekit-server --dev`` (devkey/secret). Tests only."""
    now = int(time.time())
    video: dict[str, Any] = {
        "roomJoin": True,
        "room": room,
        "canPublish": True,
        "canSubscribe": True,
        "canPublishData": True,
        "canUpdateOwnMetadata": True,
        **(grants or {}),
    }
    claims: dict[str, Any] = {
        "iss": api_key,
        "sub": identity,
        "nbf": now - 10,
        "exp": now + ttl,
        "video": video,
    }
    if name is not None:
        claims["name"] = name
    if metadata is not None:
        claims["metadata"] = metadata
    if attributes is not None:
        claims["attributes"] = dict(attributes)
    header = {"alg": "HS256", "typ": "JWT"}
    signing_input = ".".join(
        _b64url(json.dumps(part, separators=(",", ":")).encode()) for part in (header, claims)
    )
    sig = hmac.new(api_secret.encode(), signing_input.encode("ascii"), hashlib.sha256).digest()
    return signing_input + "." + _b64url(sig)
