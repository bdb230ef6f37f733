"""Helpers shared by the integration tests (anyio only: they run on both backends)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any, TypeVar

import anyio

import lkrtc_trio as lk
from lkrtc_trio.testing import ServerInfo, mint_token

from .peers._official import OfficialPeer

E = TypeVar("E")

#: Seconds to wait until participants see each other (the server batches
#: visibility updates of non-publishers every ~3 s).
SEE = 20


async def wait_handles(count: int = 0, limit: float = 10) -> None:
    """Waits until no request is pending and lkrtc-trio owns ``count`` native
    handles (0: everything was released)."""
    with anyio.fail_after(limit):
        while lk.pending_requests() or lk.live_native_handles() != count:
            await anyio.sleep(0.01)


async def wait_released(limit: float = 10) -> None:
    """Waits until no request is pending and no native handle is owned."""
    await wait_handles(0, limit)


async def next_event(
    events: lk.EventSubscription,
    kind: type[E],
    where: Callable[[E], bool] = lambda _e: True,
    limit: float = 10,
    seen: list[Any] | None = None,
) -> E:
    """The next event of ``kind`` matching ``where``; the others are skipped
    (and appended to ``seen`` when given)."""
    with anyio.fail_after(limit):
        async for event in events:
            if isinstance(event, kind) and where(event):
                return event
            if seen is not None:
                seen.append(event)
    raise AssertionError(f"no {kind.__name__} before the room ended")


def _server_participants(server: ServerInfo, room: str) -> dict[str, int]:
    token = mint_token(
        "lkrtc-test-admin",
        room,
        api_key=server.api_key,
        api_secret=server.api_secret,
        room_admin=True,
    )
    request = urllib.request.Request(
        f"{server.http_url}/twirp/livekit.RoomService/ListParticipants",
        data=json.dumps({"room": room}).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            body = json.load(response)
    except urllib.error.HTTPError as exc:
        if exc.code == 404:  # no such room (any more): nobody is in it
            return {}
        raise
    return {p["identity"]: len(p.get("tracks", [])) for p in body.get("participants", [])}


async def server_participants(server: ServerInfo, room: str) -> dict[str, int]:
    """The server's own view of ``room`` (its RoomService API): identity ->
    number of published tracks. The ground truth for "nothing left on the
    server", unlike another participant's view, which lags."""
    return await anyio.to_thread.run_sync(_server_participants, server, room)


async def wait_server(
    server: ServerInfo, room: str, ok: Callable[[dict[str, int]], bool], limit: float = 10
) -> dict[str, int]:
    """Polls the server's view of ``room`` until ``ok(view)``; returns it."""
    with anyio.fail_after(limit):
        while True:
            view = await server_participants(server, room)
            if ok(view):
                return view
            await anyio.sleep(0.1)


async def see_each_other(room: lk.Room, *peers: OfficialPeer) -> None:
    """Waits until the room sees every official peer, every peer sees the room,
    and the peers see each other."""
    me = room.local_participant.identity
    with anyio.fail_after(SEE):
        for peer in peers:
            await room.wait_for_participant(peer.identity)
            for other in [me, *(p.identity for p in peers if p is not peer)]:
                if other not in peer.connected["remote"]:
                    await peer.wait_for("participant_connected", SEE, identity=other)
