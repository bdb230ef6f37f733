"""Fault injection against the real native core, each in a subprocess (a
native fault may take the whole process down)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from lkrtc_trio.testing import ServerInfo
from lkrtc_trio.testing.pytest_plugin import TokenFactory

FAULTS = Path(__file__).parent / "faults"


def run_py(
    args: list[str], *, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


@pytest.mark.integration
@pytest.mark.parametrize("backend", ["trio", "asyncio"])
def test_native_panic_fails_rooms_and_calls_and_process_survives(
    livekit_server: ServerInfo, livekit_token: TokenFactory, backend: str
) -> None:
    proc = run_py(
        [
            str(FAULTS / "panic_no_ready.py"),
            livekit_server.url,
            livekit_token("panic-a"),
            livekit_token("panic-b"),
            backend,
        ],
        timeout=90,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["alive"] is True
    assert "ReadyForRoomEvent" in report["panic"]
    # every pending call and the open room fail with the internal error
    assert report["request_outcome"] == "NativePanicError"
    assert report["wait_error"] == "NativePanicError"
    assert report["events"] == "NativePanicError"
    assert report["after_panic"] == "NativePanicError"


def test_bad_library_path_is_a_clear_load_error(tmp_path: Path) -> None:
    bogus = tmp_path / "liblivekit_ffi.so"
    bogus.write_bytes(b"not a shared object")
    code = textwrap.dedent(
        """
        import lkrtc_trio as lk
        from lkrtc_trio._runtime import get_runtime
        try:
            get_runtime()
        except lk.NativeLoadError as exc:
            print("NativeLoadError:", exc)
        """
    )
    proc = run_py(["-c", code], env={"LIVEKIT_LIB_PATH": str(bogus)})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("NativeLoadError:") and str(bogus) in proc.stdout
    proc = run_py(["-c", code], env={"LIVEKIT_LIB_PATH": str(tmp_path / "missing.so")})
    assert "is not a file" in proc.stdout


def test_library_path_override_is_used(tmp_path: Path) -> None:
    from lkrtc_trio._native import find_library

    real = find_library()
    code = "from lkrtc_trio._runtime import get_runtime; print(get_runtime().backend.path)"
    proc = run_py(["-c", code], env={"LIVEKIT_LIB_PATH": str(real)})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(real)


def test_use_after_fork_is_a_clear_error() -> None:
    code = textwrap.dedent(
        """
        import os, sys
        import lkrtc_trio as lk
        from lkrtc_trio._runtime import get_runtime
        from lkrtc_trio._proto import ffi_pb2
        rt = get_runtime()
        req = ffi_pb2.FfiRequest(); req.new_audio_resampler.SetInParent()
        rt.backend.drop_handle(rt.request(req).new_audio_resampler.resampler.handle.id)
        pid = os.fork()
        if pid == 0:
            try:
                rt.request(req)
            except lk.ForkError:
                os._exit(42)
            os._exit(1)
        _, status = os.waitpid(pid, 0)
        print("child", os.waitstatus_to_exitcode(status))
        rt.backend.drop_handle(rt.request(req).new_audio_resampler.resampler.handle.id)
        print("parent ok")
        """
    )
    proc = run_py(["-c", code])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["child", "42", "parent", "ok"]


def test_library_is_loaded_once_and_schema_checked() -> None:
    code = textwrap.dedent(
        """
        from lkrtc_trio._native import load_native, TESTED_LIVEKIT
        a = load_native(); b = load_native()
        print(a is b, a.livekit_version in TESTED_LIVEKIT)
        """
    )
    proc = run_py(["-c", code])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["True", "True"]


@pytest.mark.integration
@pytest.mark.matrix
@pytest.mark.parametrize("backend", ["trio", "asyncio"])
def test_lent_buffers_survive_cancellation_exceptions_and_gc(
    livekit_server: ServerInfo, livekit_room_name: str, backend: str
) -> None:
    """The crash regression: 20 rounds in one process of audio capture, video
    capture and memoryview ``publish_data`` cancelled by an exception leaving
    the rooms, tracebacks kept in reference cycles, ``gc.collect()``, new rooms.
    Before buffers were released explicitly this died with SIGSEGV on CPython
    3.10-3.12."""
    rounds = 20
    proc = run_py(
        [str(FAULTS / "buffer_gc.py"), livekit_server.url, livekit_room_name, str(rounds), backend],
        timeout=240,
    )
    assert proc.returncode == 0, f"exit {proc.returncode}: {proc.stderr[-3000:]}"
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["alive"] is True and report["rounds"] == rounds
    # every path was exercised, many times
    counts = report["counts"]
    assert counts["audio"] > 10 * rounds
    assert counts["video"] > 10 * rounds
    assert counts["data"] > 10 * rounds
    # nothing left behind: no handle, no pending request, no pinned buffer
    assert report["leftover"] == {"handles": {}, "pending": 0}
    assert report["pinned"] == 0


_REJECTED_THEN_EXIT = """
import sys
import anyio
import lkrtc_trio as lk

async def main() -> None:
    try:
        async with lk.open_room(sys.argv[1], "not-a-token"):
            raise AssertionError("connected with a bad token")
    except lk.ConnectError:
        pass

anyio.run(main, backend=sys.argv[2])
print("exiting")
"""


@pytest.mark.integration
@pytest.mark.parametrize("backend", ["trio", "asyncio"])
def test_the_process_exits_cleanly_right_after_a_rejected_connect(
    livekit_server: ServerInfo, backend: str
) -> None:
    """A rejected connect leaves native threads that still send events while
    the interpreter exits. One that asked for the GIL of a finalizing
    interpreter was ended with pthread_exit(), and that unwind through the
    native core's Rust frames aborted the process (SIGABRT, about 1 exit in
    25). The C shim now stops events at exit before the interpreter finalizes:
    24 processes per backend, 4 at a time, must all exit 0."""
    codes: list[int] = []
    for _ in range(6):
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", _REJECTED_THEN_EXIT, livekit_server.url, backend],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(4)
        ]
        for proc in procs:
            out, err = proc.communicate(timeout=60)
            codes.append(proc.returncode)
            assert proc.returncode == 0 and out.strip() == "exiting", err[-2000:]
    assert codes == [0] * 24
