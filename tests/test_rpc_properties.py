"""Property test: concurrent RPCs in both directions between two real clients,
with random handler delays, outcomes and caller cancellations. Each caller must
get exactly its own answer (or its own error), and nothing stays pending.

The two rooms live in one trio run on a background thread for the whole module
(connecting takes ~3 s until both sides see each other); hypothesis examples
are sent to it with ``trio.from_thread.run``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import hypothesis.strategies as st
import pytest
import trio
from hypothesis import HealthCheck, given, settings

import lkrtc_trio as lk
from lkrtc_trio.testing import ServerInfo, mint_token

pytestmark = pytest.mark.integration
T = TypeVar("T")
Code = lk.RpcError.ErrorCode


class RoomPair:
    """Two connected rooms on a trio loop of their own thread."""

    def __init__(self, url: str, room: str) -> None:
        self.url = url
        self.room = room
        self.rooms: dict[str, lk.Room] = {}
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._stop: trio.Event | None = None
        self._thread = threading.Thread(target=self._thread_main, daemon=True)

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(60) or self._error is not None:
            raise RuntimeError(f"rooms did not start: {self._error!r}")

    def run(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        return trio.from_thread.run(fn, *args, trio_token=self._token)

    def close(self) -> None:
        if self._token is not None and self._stop is not None:
            self._token.run_sync_soon(self._stop.set)
        self._thread.join(30)
        assert not self._thread.is_alive()

    def _thread_main(self) -> None:
        try:
            trio.run(self._main)
        except BaseException as exc:  # reported by start()/close()
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._stop = trio.Event()
        async with (
            lk.open_room(self.url, mint_token("a", self.room)) as a,
            lk.open_room(self.url, mint_token("b", self.room)) as b,
        ):
            self.rooms = {"a": a, "b": b}
            with trio.fail_after(20):
                await a.wait_for_participant("b")
                await b.wait_for_participant("a")
            for room in (a, b):
                room.local_participant.register_rpc_method("work", work)
            self._ready.set()
            await self._stop.wait()


async def work(data: lk.RpcInvocationData) -> str:
    spec = json.loads(data.payload)
    await trio.sleep(spec["delay"])
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
        with trio.CancelScope() as scope:
            if call.cancel_after is not None:
                scope.deadline = trio.current_time() + call.cancel_after
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

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            for i, call in enumerate(plan):
                nursery.start_soon(one, i, call)
    # cancelled callers left nothing pending; their late answers are dropped
    assert lk.pending_requests() == 0
    return outcomes


@pytest.fixture(scope="module")
def room_pair(livekit_server: ServerInfo) -> Iterator[RoomPair]:
    pair = RoomPair(livekit_server.url, "rpc-properties")
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
