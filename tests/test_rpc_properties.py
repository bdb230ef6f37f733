"""Property test: concurrent RPCs in both directions between two real clients,
with random handler delays, outcomes and caller cancellations. Each caller must
get exactly its own answer (or its own error), and nothing stays pending.

The two rooms live on an event loop in a background thread for the whole
module, once per backend (connecting takes ~3 s until both sides see each
other); hypothesis examples are sent to it through an anyio blocking portal.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import ExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio
import hypothesis.strategies as st
import pytest
from anyio.from_thread import start_blocking_portal
from hypothesis import HealthCheck, given, settings

import lkrtc_trio as lk
from lkrtc_trio.testing import ServerInfo, mint_token

pytestmark = pytest.mark.integration
T = TypeVar("T")
Code = lk.RpcError.ErrorCode


class RoomPair:
    """Two connected rooms on an event loop of their own thread (an anyio
    blocking portal on the chosen backend)."""

    def __init__(self, url: str, room: str, backend: str) -> None:
        self.url = url
        self.room = room
        self.rooms: dict[str, lk.Room] = {}
        self._stack = ExitStack()
        self._portal_cm = start_blocking_portal(backend)

    def start(self) -> None:
        portal = self._stack.enter_context(self._portal_cm)
        self.portal = portal
        self._stack.enter_context(portal.wrap_async_context_manager(self._rooms()))

    def run(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        return self.portal.call(fn, *args)

    def close(self) -> None:
        self._stack.close()

    @asynccontextmanager
    async def _rooms(self) -> AsyncIterator[None]:
        async with (
            lk.open_room(self.url, mint_token("a", self.room)) as a,
            lk.open_room(self.url, mint_token("b", self.room)) as b,
        ):
            self.rooms = {"a": a, "b": b}
            with anyio.fail_after(20):
                await a.wait_for_participant("b")
                await b.wait_for_participant("a")
            for room in (a, b):
                room.local_participant.register_rpc_method("work", work)
            yield


async def work(data: lk.RpcInvocationData) -> str:
    spec = json.loads(data.payload)
    await anyio.sleep(spec["delay"])
    if spec["mode"] == "rpc_error":
        raise lk.RpcError(3000 + spec["id"] % 100, f"err-{spec['id']}", data.caller_identity)
    if spec["mode"] == "raise":
        raise KeyError(spec["id"])
    return f"{spec['id']}:{data.caller_identity}"


@dataclass(frozen=True)
class Call:
    caller: str
    mode: str
    delay: float
    cancel_after: float | None


calls = st.builds(
    Call,
    caller=st.sampled_from(["a", "b"]),
    mode=st.sampled_from(["ok", "ok", "rpc_error", "raise"]),
    delay=st.sampled_from([0.0, 0.01, 0.05, 0.2]),
    cancel_after=st.one_of(st.none(), st.none(), st.sampled_from([0.0, 0.02, 0.1])),
)


async def run_calls(pair: RoomPair, plan: list[Call]) -> list[str]:
    outcomes: list[str] = [""] * len(plan)

    async def one(i: int, call: Call) -> None:
        callee = "b" if call.caller == "a" else "a"
        payload = json.dumps({"id": i, "mode": call.mode, "delay": call.delay})
        lp = pair.rooms[call.caller].local_participant
        with anyio.CancelScope() as scope:
            if call.cancel_after is not None:
                scope.deadline = anyio.current_time() + call.cancel_after
            try:
                got = await lp.perform_rpc(
                    destination_identity=callee, method="work", payload=payload, response_timeout=10
                )
                assert got == f"{i}:{call.caller}", f"call {i} got another call's answer {got!r}"
                outcomes[i] = "ok"
            except lk.RpcError as exc:
                if call.mode == "rpc_error":
                    assert (exc.code, exc.message, exc.data) == (
                        3000 + i % 100,
                        f"err-{i}",
                        call.caller,
                    ), f"call {i} got another call's error"
                    outcomes[i] = "rpc_error"
                else:
                    assert call.mode == "raise" and exc.code == Code.APPLICATION_ERROR
                    outcomes[i] = "raise"
        if scope.cancelled_caught:
            outcomes[i] = "cancelled"

    with anyio.fail_after(30):
        async with anyio.create_task_group() as nursery:
            for i, call in enumerate(plan):
                nursery.start_soon(one, i, call)
    # cancelled callers left nothing pending; their late answers are dropped
    assert lk.pending_requests() == 0
    return outcomes


@pytest.fixture(scope="module", params=["trio", "asyncio"])
def room_pair(livekit_server: ServerInfo, request: pytest.FixtureRequest) -> Iterator[RoomPair]:
    pair = RoomPair(livekit_server.url, f"rpc-properties-{request.param}", request.param)
    pair.start()
    try:
        yield pair
    finally:
        pair.close()


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(plan=st.lists(calls, min_size=1, max_size=16))
def test_concurrent_rpcs_each_get_their_own_answer(room_pair: RoomPair, plan: list[Call]) -> None:
    outcomes = room_pair.run(run_calls, room_pair, plan)
    for call, outcome in zip(plan, outcomes, strict=True):
        if call.cancel_after is None:
            assert outcome == call.mode
        else:
            assert outcome in (call.mode, "cancelled")
