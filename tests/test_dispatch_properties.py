"""Property tests: request/response pairing under any interleaving.

Over a fake native backend, hypothesis chooses how many requests run at once,
which are cancelled (before or after their completion arrives), and the order
in which completions are delivered, including duplicates, completions that
arrive late after cancellation, and completions for ids nobody asked for.
Each run uses trio's autojump clock, so nothing sleeps for real; ``fail_after``
turns a deadlock into a failure.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import anyio
import hypothesis.strategies as st
import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings

from lkrtc_trio._runtime import Runtime

from .fakes import FakeBackend, completion, publish_data_request

EXAMPLES = settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@dataclass
class Plan:
    n: int
    #: per request: "wait" | "cancel_early" (before its completion) | "cancel_late"
    fates: list[str]
    #: delivery order of request indexes (each once), before dupes/strays
    order: list[int]
    dupes: list[int]
    strays: list[int]
    use_reaper: bool
    use_pin: bool


@st.composite
def plans(draw: Any) -> Plan:
    n = draw(st.integers(min_value=1, max_value=24))
    fates = draw(
        st.lists(
            st.sampled_from(["wait", "wait", "cancel_early", "cancel_late"]),
            min_size=n,
            max_size=n,
        )
    )
    order = draw(st.permutations(list(range(n))))
    dupes = draw(st.lists(st.integers(0, n - 1), max_size=n))
    strays = draw(st.lists(st.integers(10_000, 10_050), max_size=5, unique=True))
    return Plan(n, fates, list(order), dupes, strays, draw(st.booleans()), draw(st.booleans()))


async def _run_plan(plan: Plan) -> None:
    backend = FakeBackend()
    rt = Runtime(backend)
    results: dict[int, str] = {}
    cancelled: set[int] = set()
    reaped: dict[int, list[int]] = {}
    scopes: dict[int, trio.CancelScope] = {}
    reqs: dict[int, Any] = {}
    payloads = [bytearray(b"payload %d" % i) for i in range(plan.n)]

    def held(i: int) -> bool:
        return any(p is payloads[i] for p in backend.pinned)

    async def caller(i: int) -> None:
        with trio.CancelScope() as scope:
            scopes[i] = scope
            req = reqs[i] = publish_data_request()

            def reaper(msg: Any, i: int = i) -> None:
                reaped.setdefault(i, []).append(int(msg.async_id))

            pin = None
            if plan.use_pin:
                pin, req.publish_data.data_ptr = rt.pin(payloads[i])
            msg = await rt.request_async(
                req, "publish_data", reaper=reaper if plan.use_reaper else None, pin=pin
            )
            # The completion's tag names the id it was sent for.
            results[i] = msg.error
            assert msg.async_id == req.publish_data.request_async_id
        if scope.cancelled_caught:
            cancelled.add(i)

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            for i in range(plan.n):
                nursery.start_soon(caller, i)
            await trio.testing.wait_all_tasks_blocked()
            # Every request has been sent, each with its own id.
            id_of = {i: int(reqs[i].publish_data.request_async_id) for i in range(plan.n)}
            assert sorted(id_of.values()) == sorted(aid for _, aid in backend.sent)
            assert len(set(id_of.values())) == plan.n

            for i in range(plan.n):
                if plan.fates[i] == "cancel_early":
                    scopes[i].cancel()
            await trio.testing.wait_all_tasks_blocked()

            for i in plan.order:
                # A lent buffer stays pinned until its own completion, whether
                # or not its caller still waits; then it is released at once.
                assert held(i) == plan.use_pin
                rt.bridge.push(completion(id_of[i], f"tag-{id_of[i]}"))
                rt.bridge.drain_now()
                assert not held(i)
                if plan.fates[i] == "cancel_late":
                    # Completion delivered, caller not yet resumed: cancel now.
                    scopes[i].cancel()
                await trio.testing.wait_all_tasks_blocked()
            for i in plan.dupes:
                rt.bridge.push(completion(id_of[i], "dupe"))
            for stray in plan.strays:
                rt.bridge.push(completion(stray, "stray"))
            rt.bridge.drain_now()

    _check(plan, rt, backend, id_of, results, reaped, cancelled, late_cancel_wins=False)


def _check(
    plan: Plan,
    rt: Runtime,
    backend: FakeBackend,
    id_of: dict[int, int],
    results: dict[int, str],
    reaped: dict[int, list[int]],
    cancelled: set[int],
    *,
    late_cancel_wins: bool,
) -> None:
    """The outcome of a plan. ``late_cancel_wins``: whether a cancel that lands
    after the completion was delivered, before the caller resumed, wins (asyncio
    task.cancel(): the caller is cancelled and its reaper gets the completion)
    or loses (trio: the wake-up is delivered, the caller returns the result)."""
    for i in range(plan.n):
        aid = id_of[i]
        if plan.fates[i] == "cancel_early":
            assert i not in results
            assert i in cancelled
            # The late completion went to this caller's reaper, exactly once.
            assert reaped.get(i, []) == ([aid] if plan.use_reaper else [])
        elif plan.fates[i] == "wait":
            assert results[i] == f"tag-{aid}", "a waiter got another request's completion"
            assert i not in reaped
        elif late_cancel_wins:
            assert i not in results and i in cancelled
            # the completion had arrived: the reaper ran on it at once
            assert reaped.get(i, []) == ([aid] if plan.use_reaper else [])
        else:
            assert results[i] == f"tag-{aid}" and i not in reaped
    # Nothing pending, nothing pinned, nothing bound to the loop.
    assert backend.pinned == [] and rt.dispatcher.pinned() == 0
    assert rt.dispatcher.pending() == 0
    assert not rt.dispatcher.busy()
    # Strays: duplicates, unknown ids, and cancel-early completions nobody awaits
    # (a late-cancelled call's completion had arrived: never a stray).
    unreaped_late = sum(
        1
        for i in range(plan.n)
        if plan.fates[i] == "cancel_early"
        and not plan.use_reaper
        and not plan.use_pin  # a pinned request's late completion is expected
    )
    assert rt.dispatcher.stray_count == len(plan.dupes) + len(plan.strays) + unreaped_late


async def _run_plan_asyncio(plan: Plan) -> None:
    """The same plan on asyncio, cancelling with ``task.cancel()``."""
    import asyncio

    backend = FakeBackend()
    rt = Runtime(backend)
    results: dict[int, str] = {}
    cancelled: set[int] = set()
    reaped: dict[int, list[int]] = {}
    reqs = {i: publish_data_request() for i in range(plan.n)}
    payloads = [bytearray(b"payload %d" % i) for i in range(plan.n)]

    async def caller(i: int) -> None:
        req = reqs[i]

        def reaper(msg: Any, i: int = i) -> None:
            reaped.setdefault(i, []).append(int(msg.async_id))

        pin = None
        if plan.use_pin:
            pin, req.publish_data.data_ptr = rt.pin(payloads[i])
        try:
            msg = await rt.request_async(
                req, "publish_data", reaper=reaper if plan.use_reaper else None, pin=pin
            )
        except asyncio.CancelledError:
            cancelled.add(i)
            return
        results[i] = msg.error

    async def settle() -> None:
        for _ in range(5):
            await asyncio.sleep(0)

    tasks = {i: asyncio.ensure_future(caller(i)) for i in range(plan.n)}
    await settle()
    id_of = {i: int(reqs[i].publish_data.request_async_id) for i in range(plan.n)}
    for i in range(plan.n):
        if plan.fates[i] == "cancel_early":
            tasks[i].cancel()
    await settle()
    for i in plan.order:
        rt.bridge.push(completion(id_of[i], f"tag-{id_of[i]}"))
        rt.bridge.drain_now()
        if plan.fates[i] == "cancel_late":
            tasks[i].cancel()  # completion delivered, caller not yet resumed
        await settle()
    for i in plan.dupes:
        rt.bridge.push(completion(id_of[i], "dupe"))
    for stray in plan.strays:
        rt.bridge.push(completion(stray, "stray"))
    rt.bridge.drain_now()
    await asyncio.wait_for(asyncio.gather(*tasks.values()), 30)
    _check(plan, rt, backend, id_of, results, reaped, cancelled, late_cancel_wins=True)


@EXAMPLES
@given(plan=plans())
def test_each_waiter_gets_only_its_own_completion(plan: Plan) -> None:
    trio.run(_run_plan, plan, clock=trio.testing.MockClock(autojump_threshold=0))


@EXAMPLES
@given(plan=plans())
def test_each_waiter_gets_only_its_own_completion_on_asyncio(plan: Plan) -> None:
    import asyncio

    asyncio.run(_run_plan_asyncio(plan))


@st.composite
def threaded_orders(draw: Any) -> tuple[int, int]:
    return draw(st.integers(1, 4)), draw(st.integers(1, 60))


@settings(max_examples=200, deadline=None)
@given(shape=threaded_orders())
def test_completions_from_native_threads(shape: tuple[int, int]) -> None:
    """Completions pushed from several foreign threads at once all reach their
    own waiter."""
    threads, per_thread = shape
    n = threads * per_thread

    async def main() -> None:
        rt = Runtime(FakeBackend())
        got: dict[int, str] = {}

        async def call() -> None:
            req = publish_data_request()
            msg = await rt.request_async(req, "publish_data")
            assert msg.async_id == req.publish_data.request_async_id
            got[int(msg.async_id)] = msg.error

        with anyio.fail_after(20):
            async with anyio.create_task_group() as nursery:
                for _ in range(n):
                    nursery.start_soon(call)
                await anyio.wait_all_tasks_blocked()
                ids = [aid for _, aid in rt.backend.sent]  # type: ignore[attr-defined]

                def pump(chunk: list[int]) -> None:
                    for aid in chunk:
                        rt.bridge.push(completion(aid, f"t{aid}"))

                chunks = [ids[k::threads] for k in range(threads)]
                async with anyio.create_task_group() as pumps:
                    for chunk in chunks:
                        pumps.start_soon(anyio.to_thread.run_sync, pump, chunk)
        assert got == {aid: f"t{aid}" for aid in ids}
        assert rt.dispatcher.pending() == 0

    # the wake-up path differs: run_sync_soon on trio, call_soon_threadsafe on asyncio
    for backend in ("trio", "asyncio"):
        anyio.run(main, backend=backend)


@settings(max_examples=200, deadline=None)
@given(
    handles=st.lists(st.integers(1, 50), min_size=1, max_size=10, unique=True),
    events=st.lists(st.integers(1, 60), max_size=40),
)
def test_keyed_events_reach_only_their_sink(handles: list[int], events: list[int]) -> None:
    """Room/stream events go to the one sink of their handle; events for an
    unknown handle are dropped and their owned handles released."""
    from lkrtc_trio._proto import ffi_pb2

    backend = FakeBackend()
    rt = Runtime(backend)

    class Sink:
        def __init__(self, key: int) -> None:
            self.key = key
            self.got: list[int] = []

        def on_native_event(self, event: Any) -> None:
            assert event.room_event.room_handle == self.key
            self.got.append(event.room_event.participant_connected.info.handle.id)

        def on_native_failure(self, exc: BaseException) -> None:
            raise AssertionError("no failure expected")

    sinks = {h: Sink(h) for h in handles}
    for h, sink in sinks.items():
        rt.dispatcher.add_sink(h, sink)
    expected: dict[int, list[int]] = {h: [] for h in handles}
    released: list[int] = []
    for seq, key in enumerate(events):
        ev = ffi_pb2.FfiEvent()
        ev.room_event.room_handle = key
        ev.room_event.participant_connected.info.handle.id = 1000 + seq
        rt.bridge.push(ev.SerializePartialToString())
        if key in sinks:
            expected[key].append(1000 + seq)
        else:
            released.append(1000 + seq)
    rt.bridge.drain_now()
    assert {h: s.got for h, s in sinks.items()} == expected
    assert backend.dropped == released


def test_panic_fails_every_waiter_and_sink_and_later_calls() -> None:
    from lkrtc_trio import NativePanicError
    from lkrtc_trio._proto import ffi_pb2

    async def main() -> None:
        rt = Runtime(FakeBackend())
        failures: list[BaseException] = []

        class Sink:
            def on_native_event(self, event: Any) -> None:
                raise AssertionError

            def on_native_failure(self, exc: BaseException) -> None:
                failures.append(exc)

        rt.dispatcher.add_sink(7, Sink())
        errors: list[BaseException] = []

        async def call() -> None:
            pin, _ = rt.pin(bytearray(8))
            try:
                await rt.request_async(publish_data_request(), "publish_data", pin=pin)
            except NativePanicError as exc:
                errors.append(exc)

        async with trio.open_nursery() as nursery:
            for _ in range(5):
                nursery.start_soon(call)
            await trio.testing.wait_all_tasks_blocked()
            ev = ffi_pb2.FfiEvent()
            ev.panic.message = "boom"
            rt.bridge.push(ev.SerializeToString())
            rt.bridge.drain_now()
        assert len(errors) == 5 and all("boom" in str(e) for e in errors)
        # each caller its own error (a shared one would collect every
        # caller's traceback), chained to the panic
        assert len({id(e) for e in errors}) == 5
        assert all(e.__cause__ is rt.dispatcher.panic for e in errors)
        assert len(failures) == 1
        # Native threads may still read what was lent: kept for good.
        assert rt.dispatcher.pinned() == 5 and len(rt.backend.pinned) == 5  # type: ignore[attr-defined]
        pin, _ = rt.pin(bytearray(8))
        with pytest.raises(NativePanicError):
            await rt.request_async(publish_data_request(), "publish_data", pin=pin)
        assert rt.dispatcher.pinned() == 5 and len(rt.backend.pinned) == 5  # type: ignore[attr-defined]
        with pytest.raises(NativePanicError):
            await rt.request_async(publish_data_request(), "publish_data")
        assert rt.dispatcher.pending() == 0

    trio.run(main)


def test_rejected_request_leaves_no_waiter() -> None:
    from lkrtc_trio import NativeError

    async def main() -> None:
        backend = FakeBackend(reject_next=True)
        rt = Runtime(backend)
        pin, _ = rt.pin(bytearray(8))
        with pytest.raises(NativeError):
            await rt.request_async(publish_data_request(), "publish_data", pin=pin)
        assert rt.dispatcher.pending() == 0 and not rt.dispatcher.busy()
        assert backend.pinned == [] and rt.dispatcher.pinned() == 0

    trio.run(main)


def test_native_logs_reach_logging_with_target_and_level(caplog: pytest.LogCaptureFixture) -> None:
    from lkrtc_trio._proto import ffi_pb2

    rt = Runtime(FakeBackend())
    ev = ffi_pb2.FfiEvent()
    for level, target, message in [
        (ffi_pb2.LogLevel.LOG_WARN, "livekit::rtc_engine", "careful"),
        (ffi_pb2.LogLevel.LOG_ERROR, "livekit_ffi::server", "broken"),
        (ffi_pb2.LogLevel.LOG_DEBUG, "libwebrtc", "chatty"),
    ]:
        rec = ev.logs.records.add()
        rec.level = level
        rec.target = target
        rec.message = message
        rec.module_path = target
        rec.line = 7
    with caplog.at_level(logging.INFO, logger="lkrtc_trio.native"):
        rt.bridge.push(ev.SerializePartialToString())
        rt.bridge.drain_now()
    got = [(r.name, r.levelno, r.getMessage()) for r in caplog.records]
    assert got == [
        ("lkrtc_trio.native.livekit.rtc_engine", logging.WARNING, "careful"),
        ("lkrtc_trio.native.livekit_ffi.server", logging.ERROR, "broken"),
    ]
    assert caplog.records[0].native_target == "livekit::rtc_engine"  # type: ignore[attr-defined]


def test_owned_handles_are_found_in_nested_messages() -> None:
    from lkrtc_trio._dispatch import owned_handle_ids
    from lkrtc_trio._proto import ffi_pb2

    from .fakes import connect_completion

    ev = ffi_pb2.FfiEvent.FromString(connect_completion(3, room=11, local=12, remotes=[13, 14]))
    assert sorted(owned_handle_ids(ev)) == [11, 12, 13, 14]
    empty = ffi_pb2.FfiEvent()
    empty.publish_data.async_id = 1
    assert owned_handle_ids(empty) == []


def test_stray_completion_is_logged_and_its_handles_released(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from .fakes import connect_completion

    backend = FakeBackend()
    rt = Runtime(backend)
    with caplog.at_level(logging.DEBUG, logger="lkrtc_trio.dispatch"):
        rt.bridge.push(connect_completion(99, room=5, local=6, remotes=[7]))
        rt.bridge.drain_now()
    assert rt.dispatcher.stray_count == 1
    assert sorted(backend.dropped) == [5, 6, 7]
    assert any("unknown id 99" in r.getMessage() for r in caplog.records)


def test_a_failing_reaper_never_replaces_the_callers_cancellation(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The completion arrived, then the caller was cancelled before it resumed
    (an asyncio task woken by its waiter can still be cancelled, by
    ``asyncio.timeout`` for instance; trio and anyio scopes deliver the wake-up
    instead): the reaper runs on the spot, and if it raises, that is logged;
    the caller still sees its own cancellation."""
    import asyncio

    async def main() -> None:
        rt = Runtime(FakeBackend())

        def reaper(msg: Any) -> None:
            raise RuntimeError("reaper bug")

        task = asyncio.ensure_future(
            rt.request_async(publish_data_request(), "publish_data", reaper=reaper)
        )
        for _ in range(3):
            await asyncio.sleep(0)
        aid = rt.backend.sent[-1][1]  # type: ignore[attr-defined]
        rt.bridge.push(completion(aid))
        rt.bridge.drain_now()  # the waiter is set: the caller is due to resume...
        task.cancel()  # ...but is cancelled first
        with pytest.raises(asyncio.CancelledError):
            await task
        assert rt.dispatcher.pending() == 0

    with caplog.at_level(logging.ERROR, logger="lkrtc_trio.dispatch"):
        asyncio.run(main())
    assert "reaper bug" in caplog.text
