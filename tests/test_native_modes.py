"""The two bindings of the native core: API mode (the compiled cffi module) and
ABI mode (``dlopen`` + libffi, for installs without a C compiler), and
``native_info()``, which says which one is in use and why.

ABI mode runs in subprocesses (the binding is chosen once per process, at
import): a real room round trip on both backends, the debug-log filter, and the
fallback when the compiled module does not import.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import lkrtc_trio as lk
from lkrtc_trio._native import FFI_MODE_ENV
from lkrtc_trio._runtime import get_runtime
from lkrtc_trio.testing import ServerInfo
from lkrtc_trio.testing.pytest_plugin import TokenFactory

ROUNDTRIP = Path(__file__).parent / "peers" / "roundtrip.py"
REPO = Path(__file__).resolve().parent.parent

#: Makes ``import lkrtc_trio._lkffi`` fail, as in an install built without a compiler.
_NO_COMPILED_MODULE = """
import importlib.abc, sys
class _Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "lkrtc_trio._lkffi":
            raise ImportError("No module named 'lkrtc_trio._lkffi' (blocked by the test)")
        return None
sys.meta_path.insert(0, _Block())
"""


def _run(code: str, *, mode: str | None = None, timeout: float = 60) -> dict[str, object]:
    env = dict(os.environ)
    env.pop(FFI_MODE_ENV, None)
    if mode is not None:
        env[FFI_MODE_ENV] = mode
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


_INFO = """
import json, lkrtc_trio as lk
before = lk.native_info()
err = None
try:
    from lkrtc_trio._runtime import get_runtime
    get_runtime()
except lk.NativeLoadError as exc:
    err = str(exc)
after = lk.native_info()
print(json.dumps({"mode": after.mode.name, "reason": after.reason, "loaded_before": before.loaded,
                  "loaded": after.loaded, "library": str(after.library_path), "error": err}))
"""


def test_native_info_in_this_process_is_api_mode() -> None:
    """The suite's own process uses the compiled module (the install has a compiler)."""
    get_runtime()
    info = lk.native_info()
    assert info.mode is lk.FfiMode.API
    assert "compiled module" in info.reason
    assert info.loaded and info.library_path is not None and info.library_path.is_file()
    assert info.livekit_version == lk.livekit_version()
    with pytest.raises(AttributeError):
        info.mode = lk.FfiMode.ABI  # type: ignore[misc]


@pytest.mark.parametrize(
    ("prelude", "mode", "want_mode", "want_reason", "want_error"),
    [
        ("", None, "API", "the compiled module", None),
        ("", "abi", "ABI", f"{FFI_MODE_ENV}=abi", None),
        ("", "api", "API", f"{FFI_MODE_ENV}=api", None),
        ("", "fast", "API", "is not auto|api|abi", None),
        (_NO_COMPILED_MODULE, None, "ABI", "is not available", None),
        (_NO_COMPILED_MODULE, "api", "API", "blocked by the test", "API mode is not available"),
    ],
    ids=["auto", "abi", "api", "bad-value", "fallback", "api-without-module"],
)
def test_mode_choice_and_reason(
    prelude: str, mode: str | None, want_mode: str, want_reason: str, want_error: str | None
) -> None:
    """The mode follows the environment variable and whether the compiled module
    imports; the reason says which; forcing API mode without the module fails
    at load with a typed error. ``native_info()`` never loads the library."""
    got = _run(prelude + _INFO, mode=mode)
    assert got["mode"] == want_mode
    assert want_reason in str(got["reason"])
    assert got["loaded_before"] is False
    if want_error is None:
        assert got["error"] is None and got["loaded"] is True
        assert str(got["library"]).endswith("liblivekit_ffi.so")
    else:
        assert want_error in str(got["error"]) and got["loaded"] is False


def test_abi_mode_filters_debug_logs_like_the_c_shim() -> None:
    """ABI mode has no C shim: its Python-side filter must classify every log
    batch as the shim does, and count what it drops."""
    code = """
import json
from lkrtc_trio._native import load_native
from lkrtc_trio._proto import ffi_pb2
lib = load_native()
L = ffi_pb2.LogLevel
def batch(*levels):
    ev = ffi_pb2.FfiEvent()
    for lv in levels:
        ev.logs.records.add(level=lv, target="t", message="m")
    return ev.SerializeToString()
cases = [batch(L.LOG_DEBUG), batch(L.LOG_TRACE, L.LOG_DEBUG), batch(L.LOG_DEBUG, L.LOG_WARN),
         batch(L.LOG_ERROR), b"\\x92\\x01", b""]
print(json.dumps({"mode": lib.mode.name, "quiet": [lib.is_quiet_log(c) for c in cases]}))
"""
    api = _run(code)
    abi = _run(code, mode="abi")
    assert api["mode"] == "API" and abi["mode"] == "ABI"
    assert abi["quiet"] == api["quiet"] == [True, True, False, False, False, False]


@pytest.mark.integration
@pytest.mark.parametrize("mode", ["abi", "api"])
@pytest.mark.parametrize("backend", ["trio", "asyncio"])
def test_room_round_trip_in_each_mode(
    livekit_server: ServerInfo, livekit_token: TokenFactory, mode: str, backend: str
) -> None:
    """RPC and a data packet between two participants, on each backend, in each
    mode: the same behaviour, nothing left behind, debug logs filtered."""
    env = dict(os.environ, **{FFI_MODE_ENV: mode})
    proc = subprocess.run(
        [
            sys.executable,
            str(ROUNDTRIP),
            livekit_server.url,
            livekit_token("a"),
            livekit_token("b"),
            backend,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["mode"] == mode.upper()
    assert got["rpc"] == "echo:hi"
    assert got["data"] == "ping"
    assert got["handles"] == 0
    # libwebrtc logs debug batches during any connect; the filter dropped them
    assert got["quiet_logs_dropped"] > 0
