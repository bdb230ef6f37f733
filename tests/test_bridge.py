"""The native-thread handoff: wake-ups, quiet debug logs, ordering."""

from __future__ import annotations

import logging
from collections.abc import Callable

import hypothesis.strategies as st
import pytest
from hypothesis import given, settings

from lkrtc_trio._bridge import MAX_QUIET_BACKLOG, Bridge, is_quiet_log
from lkrtc_trio._proto import ffi_pb2


def log_batch(*levels: int) -> bytes:
    ev = ffi_pb2.FfiEvent()
    for i, level in enumerate(levels):
        rec = ev.logs.records.add()
        rec.level = level  # type: ignore[assignment]
        rec.target = "libwebrtc"
        rec.message = f"record {i} " + "x" * 200  # multi-byte lengths
    return ev.SerializePartialToString()


def test_quiet_log_detection() -> None:
    L = ffi_pb2.LogLevel
    assert is_quiet_log(log_batch(L.LOG_DEBUG))
    assert is_quiet_log(log_batch(L.LOG_TRACE, L.LOG_DEBUG, L.LOG_DEBUG))
    assert not is_quiet_log(log_batch(L.LOG_DEBUG, L.LOG_WARN))
    assert not is_quiet_log(log_batch(L.LOG_ERROR))
    assert not is_quiet_log(log_batch(L.LOG_INFO))
    done = ffi_pb2.FfiEvent()
    done.publish_data.async_id = 5
    assert not is_quiet_log(done.SerializeToString())
    assert not is_quiet_log(b"\x92\x01")  # truncated: not quiet


def test_quiet_logs_ride_along_without_waking_the_loop() -> None:
    delivered: list[bytes] = []
    scheduled: list[Callable[[], None]] = []
    bridge = Bridge(delivered.append, busy=lambda: False)
    bridge._schedule = scheduled.append  # an attached loop that records wake-ups
    debug = log_batch(ffi_pb2.LogLevel.LOG_DEBUG)
    for _ in range(10):
        bridge.push(debug)
    assert scheduled == []  # no wake-up for debug-only logs
    done = ffi_pb2.FfiEvent()
    done.publish_data.async_id = 1
    bridge.push(done.SerializeToString())
    assert len(scheduled) == 1
    scheduled.pop()()
    # all delivered: the event someone waits for first, then the logs in order
    assert delivered == [done.SerializeToString()] + [debug] * 10
    # a long run of quiet logs still wakes the loop eventually: nothing piles up
    for _ in range(MAX_QUIET_BACKLOG):
        bridge.push(debug)
    assert len(scheduled) == 1
    warn = log_batch(ffi_pb2.LogLevel.LOG_WARN)
    bridge.push(warn)  # already scheduled: no second wake-up
    assert len(scheduled) == 1
    scheduled.pop()()
    assert delivered[-(MAX_QUIET_BACKLOG + 1) :] == [warn] + [debug] * MAX_QUIET_BACKLOG


def test_a_drain_stranded_on_a_closed_loop_does_not_block_the_next_loop() -> None:
    """A drain queued with call_soon_threadsafe on a loop that closes before
    running it must not leave the bridge believing a drain is scheduled:
    every later request would hang."""
    import asyncio

    import anyio

    from lkrtc_trio._runtime import Runtime

    from .fakes import FakeBackend, completion, publish_data_request

    rt = Runtime(FakeBackend())
    done = ffi_pb2.FfiEvent()
    done.publish_data.async_id = 10_000  # nobody waits for it: a stray

    loop = asyncio.new_event_loop()

    async def attach() -> None:
        rt.bridge.attach()

    loop.run_until_complete(attach())
    # an event arrives after the loop stopped, before it closes: a drain is
    # scheduled on it...
    rt.bridge.push(done.SerializeToString())
    loop.close()  # ...and never runs
    assert rt.bridge._scheduled

    async def request() -> str:
        req = publish_data_request()

        async def complete_later() -> None:
            await anyio.wait_all_tasks_blocked()
            aid = req.publish_data.request_async_id
            # from a foreign thread, the way the native core delivers it
            await anyio.to_thread.run_sync(rt.bridge.push, completion(aid, "answered"))

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(complete_later)
                cb = await rt.request_async(req, "publish_data")
        return str(cb.error)

    for backend in ("asyncio", "trio", "asyncio"):
        assert anyio.run(request, backend=backend) == "answered"
    assert rt.dispatcher.stray_count == 1  # the stranded event was delivered too
    assert rt.dispatcher.pending() == 0


def test_a_stalled_loop_loses_only_media_frames_and_debug_logs_and_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from lkrtc_trio._bridge import MAX_ATTACHED_BACKLOG, is_media_frame

    def frame(handle: int) -> bytes:
        ev = ffi_pb2.FfiEvent()
        ev.video_stream_event.stream_handle = handle
        ev.video_stream_event.frame_received.buffer.handle.id = 5
        return ev.SerializePartialToString()

    def eos(handle: int) -> bytes:
        ev = ffi_pb2.FfiEvent()
        ev.audio_stream_event.stream_handle = handle
        ev.audio_stream_event.eos.SetInParent()
        return ev.SerializePartialToString()

    def done(aid: int) -> bytes:
        ev = ffi_pb2.FfiEvent()
        ev.publish_data.async_id = aid
        return ev.SerializeToString()

    assert is_media_frame(frame(300)) and not is_media_frame(eos(300))
    assert not is_media_frame(done(7)) and not is_media_frame(log_batch(3))

    delivered: list[bytes] = []
    scheduled: list[Callable[[], None]] = []
    bridge = Bridge(delivered.append, busy=lambda: False)
    bridge._schedule = scheduled.append  # an attached loop that is stuck
    for i in range(MAX_ATTACHED_BACKLOG):
        bridge.push(done(i + 1))
    # over the limit: frames and debug logs go, the rest stays
    extra = [frame(300), eos(300), done(10**6), frame(301), log_batch(ffi_pb2.LogLevel.LOG_WARN)]
    for data in extra:
        bridge.push(data)
    for _ in range(MAX_ATTACHED_BACKLOG + 10):
        bridge.push(log_batch(ffi_pb2.LogLevel.LOG_DEBUG))
    with caplog.at_level(logging.WARNING, logger="lkrtc_trio.bridge"):
        scheduled.pop()()
    kept = [d for d in delivered if d in extra]
    assert kept == [eos(300), done(10**6), log_batch(ffi_pb2.LogLevel.LOG_WARN)]
    assert len([d for d in delivered if d.startswith(b"\x92")]) == MAX_ATTACHED_BACKLOG + 1
    assert (bridge.dropped_frames, bridge.dropped_logs) == (2, 10)
    assert "dropped 2 media frames and 10 debug log batches" in caplog.text
    assert delivered[:MAX_ATTACHED_BACKLOG] == [done(i + 1) for i in range(MAX_ATTACHED_BACKLOG)]


_LEVELS = st.sampled_from([0, 1, 2, 3, 4])


@st.composite
def event_bytes_near_log_batches(draw: st.DrawFn) -> bytes:
    """Well-formed log batches of any levels, other events, and mangled
    versions of both (truncated, extended, one byte changed)."""
    kind = draw(st.sampled_from(["batch", "batch", "other", "random"]))
    if kind == "random":
        return draw(st.binary(max_size=64))
    if kind == "other":
        ev = ffi_pb2.FfiEvent()
        ev.publish_data.async_id = draw(st.integers(0, 2**40))
        data = ev.SerializeToString()
    else:
        ev = ffi_pb2.FfiEvent()
        for level in draw(st.lists(_LEVELS, max_size=4)):
            rec = ev.logs.records.add()
            rec.level = level  # type: ignore[assignment]
            rec.target = draw(st.text(max_size=8))
            rec.message = draw(st.text(max_size=300))
        data = ev.SerializePartialToString()
    mangle = draw(st.sampled_from(["none", "none", "cut", "extend", "flip"]))
    if mangle == "cut" and data:
        data = data[: draw(st.integers(0, len(data) - 1))]
    elif mangle == "extend":
        data += draw(st.binary(min_size=1, max_size=8))
    elif mangle == "flip" and data:
        i = draw(st.integers(0, len(data) - 1))
        data = data[:i] + bytes([draw(st.integers(0, 255))]) + data[i + 1 :]
    return data


@settings(max_examples=2000, deadline=None)
@given(event_bytes_near_log_batches())
def test_the_c_shim_and_python_agree_on_quiet_log_batches(data: bytes) -> None:
    """The C shim drops debug/trace-only batches on the native thread with
    its own copy of ``is_quiet_log``: both must classify every input alike."""
    from lkrtc_trio._native import load_native

    assert load_native().is_quiet_log(data) == is_quiet_log(data)


def test_debug_logs_are_dropped_natively_unless_wanted() -> None:
    """With ``lkrtc_trio.native`` below DEBUG the runtime tells the C shim to
    drop debug/trace batches; enabling DEBUG there asks for them again at the
    next drain."""
    from .fakes import fake_runtime

    native = logging.getLogger("lkrtc_trio.native")
    old = native.level
    try:
        native.setLevel(logging.INFO)
        rt, backend = fake_runtime()
        assert backend.quiet_logs_wanted is False
        native.setLevel(logging.DEBUG)
        rt.bridge.drain_now()
        assert backend.quiet_logs_wanted is True
        native.setLevel(logging.INFO)
        rt.bridge.drain_now()
        assert backend.quiet_logs_wanted is False
    finally:
        native.setLevel(old)
