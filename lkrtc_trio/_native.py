"""The native library: find it, open it once per process, initialize it, call it.

This is the only module that touches cffi. Everything above it sees a
:class:`NativeBackend`: serialized request bytes in, serialized response bytes
out, plus ``drop_handle``. Events from native threads go to the single sink set
with :func:`set_event_sink` (the bridge, see ``_bridge.py``).
"""

from __future__ import annotations

import enum
import importlib.metadata
import importlib.resources
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, final

from ._errors import ForkError, NativeError, NativeLoadError

__all__ = [
    "FFI_MODE_ENV",
    "TESTED_LIVEKIT",
    "FfiMode",
    "NativeBackend",
    "NativeInfo",
    "NativeLib",
    "find_library",
    "load_native",
    "native_info",
]

log = logging.getLogger("lkrtc_trio.native")

#: livekit wheel versions this release was tested with (library + schema).
TESTED_LIVEKIT = ("1.2.0", "1.2.1")
_SDK_NAME = b"python"


class NativeBackend(Protocol):
    """What the runtime needs from the native core (real or fake)."""

    def request(self, data: bytes) -> bytes:
        """Sends one serialized ``FfiRequest``; returns the ``FfiResponse`` bytes."""
        ...

    def drop_handle(self, handle: int) -> bool:
        """Releases a native handle; False if it was unknown."""
        ...

    def set_quiet_logs(self, wanted: bool) -> None:
        """Whether debug/trace-only native log batches reach the event sink
        (if not, they are dropped on the native thread)."""
        ...

    def pin(self, data: Any) -> tuple[Any, int]:
        """Lends a contiguous bytes-like object to native code without copying
        it; returns (pin, address). The address stays valid until
        :meth:`unpin` releases the pin."""
        ...

    def unpin(self, pin: Any) -> None:
        """Releases a pin from :meth:`pin` at once (the buffer export ends)."""
        ...

    def read(self, address: int, length: int) -> bytes:
        """Copies ``length`` bytes of native memory at ``address``."""
        ...

    def read_into_bytearray(self, address: int, length: int) -> bytearray:
        """Copies ``length`` bytes of native memory into a new (writable) bytearray."""
        ...


class FfiMode(enum.IntEnum):
    """How lkrtc_trio calls the native core (see :func:`native_info`)."""

    #: The compiled cffi module ``lkrtc_trio._lkffi`` (built at install time
    #: with a C compiler): the fast path.
    API = 1
    #: cffi's ABI mode (the library is opened with ``dlopen`` and called
    #: through libffi; no compiler is needed). Same behaviour, slower calls.
    ABI = 2


#: Environment variable that chooses the mode: ``auto`` (the default: API mode
#: when the compiled module imports, else ABI mode), ``api`` or ``abi``. Read
#: once, when ``lkrtc_trio`` is imported.
FFI_MODE_ENV = "LKRTC_TRIO_FFI_MODE"


@final
@dataclass(frozen=True, slots=True)
class NativeInfo:
    """Which binding is in use, why, and what it loaded.

    Attributes:
        mode: :attr:`FfiMode.API` or :attr:`FfiMode.ABI`.
        reason: Why that mode was chosen, in words.
        library_path: The ``liblivekit_ffi`` file, once loaded (else None).
        livekit_version: The ``livekit`` wheel's version (the native core's).
        loaded: Whether the native core is loaded in this process yet (it is
            loaded by the first room, stream or request).
    """

    mode: FfiMode
    reason: str
    library_path: Path | None
    livekit_version: str
    loaded: bool


# The ABI-mode declarations: the library's four exported functions, with bytes
# declared as `char` (as in native/livekit_ffi.cdef.h) so ffi.unpack() gives bytes.
_ABI_CDEF = """
uint64_t livekit_ffi_request(const char *data, size_t len,
                             const char **res_ptr, size_t *res_len);
bool livekit_ffi_drop_handle(uint64_t handle);
void livekit_ffi_initialize(void (*cb)(const char *, size_t), bool capture_logs,
                            const char *sdk, const char *sdk_version);
void livekit_ffi_dispose(void);
"""


def _choose_binding() -> tuple[FfiMode, str, Any]:
    """(mode, reason, compiled module or None), from FFI_MODE_ENV and whether
    the compiled module imports. Never raises: a forced ``api`` without the
    module fails later, at load, with :class:`NativeLoadError`."""
    wanted = os.environ.get(FFI_MODE_ENV, "").strip().lower() or "auto"
    if wanted == "abi":
        return FfiMode.ABI, f"{FFI_MODE_ENV}=abi", None
    try:
        from . import _lkffi  # compiled from native/build_ffi.py at install time
    except ImportError as exc:
        if wanted == "api":
            return FfiMode.API, f"{FFI_MODE_ENV}=api, but the compiled module: {exc}", None
        return (
            FfiMode.ABI,
            f"the compiled module lkrtc_trio._lkffi is not available ({exc}); "
            "it is built at install time when a C compiler is present",
            None,
        )
    if wanted not in ("auto", "api"):
        return FfiMode.API, f"{FFI_MODE_ENV}={wanted!r} is not auto|api|abi; using auto", _lkffi
    reason = f"{FFI_MODE_ENV}=api" if wanted == "api" else "the compiled module lkrtc_trio._lkffi"
    return FfiMode.API, reason, _lkffi


_MODE, _MODE_REASON, _COMPILED = _choose_binding()


def native_info() -> NativeInfo:
    """Says how lkrtc_trio drives the native core in this process: API mode
    (the compiled cffi module, the fast path) or ABI mode (the fallback for an
    install without a C compiler), why, and which library it loaded.

    Never loads the library and never raises.
    """
    lib = _native
    return NativeInfo(
        mode=_MODE,
        reason=_MODE_REASON,
        library_path=None if lib is None else lib.path,
        livekit_version=_livekit_version(),
        loaded=lib is not None,
    )


def find_library() -> Path:
    """Locates ``liblivekit_ffi``: ``LIVEKIT_LIB_PATH``, then the livekit wheel.

    Raises:
        NativeLoadError: neither exists.
    """
    override = os.environ.get("LIVEKIT_LIB_PATH", "").strip()
    if override:
        path = Path(override)
        if not path.is_file():
            raise NativeLoadError(f"LIVEKIT_LIB_PATH={override!r} is not a file")
        return path
    name = {"darwin": "liblivekit_ffi.dylib", "win32": "livekit_ffi.dll"}.get(
        sys.platform, "liblivekit_ffi.so"
    )
    try:
        res = importlib.resources.files("livekit.rtc.resources") / name
    except ModuleNotFoundError as exc:
        raise NativeLoadError(
            "the livekit wheel is not installed (pip install 'livekit>=1.2,<1.3'), "
            "and LIVEKIT_LIB_PATH is not set"
        ) from exc
    path = Path(str(res))
    if not path.is_file():
        raise NativeLoadError(f"{name} is missing from the livekit wheel at {path}")
    return path


_event_sink: Callable[[bytes], None] | None = None

#: Seconds :meth:`NativeLib.dispose` waits at exit for native threads already
#: waiting for the GIL (see there).
_EXIT_DRAIN = 0.02


def set_event_sink(sink: Callable[[bytes], None] | None) -> None:
    """Sets the one function that receives every native event's bytes.

    It is called on native threads; it must not block and must not raise.
    """
    global _event_sink
    _event_sink = sink


class NativeLib:
    """The loaded and initialized native core. One per process: use
    :func:`load_native`."""

    def __init__(
        self, path: Path, *, capture_logs: bool = True, mode: FfiMode | None = None
    ) -> None:
        self.mode = _MODE if mode is None else mode
        self.path = path
        self._pid = os.getpid()
        self._forked = False
        self._tls = threading.local()
        version = _livekit_version()
        if self.mode is FfiMode.API:
            self._ffi, self._lib = self._open_api(path)
        else:
            self._ffi, self._lib = self._open_abi(path)
        self._lib.lk_initialize(capture_logs, _SDK_NAME, version.encode())
        self.livekit_version = version
        os.register_at_fork(after_in_child=self._after_fork_in_child)

    @staticmethod
    def _open_api(path: Path) -> tuple[Any, Any]:
        if _COMPILED is None:
            raise NativeLoadError(f"API mode is not available: {_MODE_REASON}")
        ffi: Any = _COMPILED.ffi
        lib: Any = _COMPILED.lib
        err = lib.lk_open(str(path).encode())
        if err != ffi.NULL:
            raise NativeLoadError(f"cannot open {path}: {ffi.string(err).decode()}")

        @ffi.def_extern(onerror=_on_callback_error)  # type: ignore[untyped-decorator]
        def lk_on_event(data: Any, length: int) -> None:
            # Native thread: copy the bytes, hand them on, never raise.
            sink = _event_sink
            if sink is not None:
                sink(ffi.unpack(data, length))

        return ffi, lib

    @staticmethod
    def _open_abi(path: Path) -> tuple[Any, Any]:
        from cffi import FFI

        ffi = FFI()
        ffi.cdef(_ABI_CDEF)
        try:
            dl = ffi.dlopen(str(path))
        except OSError as exc:
            raise NativeLoadError(f"cannot open {path}: {exc}") from exc
        try:
            return ffi, _AbiLib(ffi, dl)
        except AttributeError as exc:
            raise NativeLoadError(f"a livekit_ffi_* symbol is missing from {path}: {exc}") from exc

    def _after_fork_in_child(self) -> None:
        self._forked = True

    def _new_out_params(self) -> tuple[Any, Any]:
        tl = self._tls
        tl.out = self._ffi.new("const char **"), self._ffi.new("size_t *")
        return tl.out  # type: ignore[no-any-return]

    def request(self, data: bytes) -> bytes:
        """Sends one serialized request; returns the serialized response.

        Raises:
            ForkError: used in a child process after ``fork()``.
            NativeError: the native core rejected the request (it logs why).
        """
        if self._forked:
            raise ForkError("the native core cannot be used after fork() in the child process")
        try:
            res_ptr, res_len = self._tls.out  # one pair of out-parameters per thread
        except AttributeError:
            res_ptr, res_len = self._new_out_params()
        lib = self._lib
        handle = lib.lk_request(data, len(data), res_ptr, res_len)
        if not handle:
            raise NativeError(
                "the native core rejected the request (see the lkrtc_trio.native log)"
            )
        out: bytes = self._ffi.unpack(res_ptr[0], res_len[0])
        lib.lk_drop_handle(handle)
        return out

    def set_quiet_logs(self, wanted: bool) -> None:
        """See :meth:`NativeBackend.set_quiet_logs`."""
        self._lib.lk_set_quiet_logs(wanted)

    def quiet_logs_dropped(self) -> int:
        """Debug/trace log batches the C shim dropped so far."""
        return int(self._lib.lk_quiet_logs_dropped_count())

    def is_quiet_log(self, data: bytes) -> bool:
        """The C shim's test (for the parity test with ``_bridge.is_quiet_log``)."""
        return bool(self._lib.lk_is_quiet_log(data, len(data)))

    def drop_handle(self, handle: int) -> bool:
        """Releases a native handle (no-op after fork)."""
        if self._forked:
            return False
        return bool(self._lib.lk_drop_handle(handle))

    def pin(self, data: Any) -> tuple[Any, int]:
        """See :meth:`NativeBackend.pin` (``ffi.from_buffer``: no copy).

        The pin holds a buffer export on ``data``. It must be released with
        :meth:`unpin`, never left to the garbage collector: on CPython before
        3.13 the collector clears a memoryview in a reference cycle even while
        an export on it is held, and the later release then crashes.
        """
        ffi = self._ffi
        pin = ffi.from_buffer(data)
        return pin, int(ffi.cast("uintptr_t", pin))

    def unpin(self, pin: Any) -> None:
        """See :meth:`NativeBackend.unpin`."""
        self._ffi.release(pin)

    def read(self, address: int, length: int) -> bytes:
        """See :meth:`NativeBackend.read`."""
        if not length:
            return b""
        ffi = self._ffi
        out: bytes = ffi.unpack(ffi.cast("const char *", address), length)
        return out

    def read_into_bytearray(self, address: int, length: int) -> bytearray:
        """See :meth:`NativeBackend.read_into_bytearray` (one copy)."""
        if not length:
            return bytearray()
        ffi = self._ffi
        return bytearray(ffi.buffer(ffi.cast("const char *", address), length))

    def dispose(self) -> None:
        """Shuts the native core down (at interpreter exit, from ``atexit``).

        First no event may enter Python any more (the C shim drops them), then
        a short sleep lets a native thread that was already waiting for the
        GIL through while the interpreter still runs: one that asked for the
        GIL of a finalizing interpreter would be ended by CPython (before 3.14)
        with ``pthread_exit()``, and that unwind through the native core's
        Rust frames aborts the process. In ABI mode the check runs in Python,
        so only the second half of this protection applies.
        """
        if self._forked or os.getpid() != self._pid:
            return
        self._lib.lk_close_events()
        time.sleep(_EXIT_DRAIN)
        self._lib.lk_dispose()


class _AbiLib:
    """ABI mode's stand-in for the compiled module's ``lib``: the same ``lk_*``
    calls as native/lk_shim.c, on the functions ``dlopen`` found. The debug/trace
    log filter the shim runs in C runs here in Python, on the native thread,
    before the event reaches the sink (same test: ``_bridge.is_quiet_log``)."""

    def __init__(self, ffi: Any, dl: Any) -> None:
        # bound once: the request path calls the library's functions directly
        self.lk_request = dl.livekit_ffi_request
        self.lk_drop_handle = dl.livekit_ffi_drop_handle
        self.lk_dispose = dl.livekit_ffi_dispose
        self._init = dl.livekit_ffi_initialize
        self._ffi = ffi
        self._quiet_wanted = False
        self._quiet_dropped = 0
        self._closed = False
        from ._bridge import is_quiet_log

        self.lk_is_quiet_log = lambda data, length: is_quiet_log(bytes(data[:length]))
        unpack = ffi.unpack

        def on_event(data: Any, length: int) -> None:
            # Native thread: copy the bytes, drop debug logs, hand on, never raise.
            if self._closed:
                return
            event: bytes = unpack(data, length)
            if not self._quiet_wanted and is_quiet_log(event):
                self._quiet_dropped += 1
                return
            sink = _event_sink
            if sink is not None:
                sink(event)

        # Kept for the life of the process: the native core calls it until exit.
        self._callback = ffi.callback(
            "void(const char *, size_t)", on_event, onerror=_on_callback_error
        )

    def lk_initialize(self, capture_logs: bool, sdk: bytes, sdk_version: bytes) -> None:
        self._init(self._callback, capture_logs, sdk, sdk_version)

    def lk_set_quiet_logs(self, wanted: bool) -> None:
        self._quiet_wanted = bool(wanted)

    def lk_close_events(self) -> None:
        self._closed = True

    def lk_quiet_logs_dropped_count(self) -> int:
        return self._quiet_dropped


def _on_callback_error(exc_type: Any, exc: Any, tb: Any) -> None:
    # Never let an exception escape into native code; report it once.
    log.error("error in the native event callback", exc_info=(exc_type, exc, tb))


def _livekit_version() -> str:
    try:
        return importlib.metadata.version("livekit")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


_native: NativeLib | None = None
_native_lock = threading.Lock()


def load_native() -> NativeLib:
    """Returns the process's native core, loading and initializing it once.

    Raises:
        NativeLoadError: the library cannot be found or opened, or its responses
            do not match the installed protobuf schema.
        ForkError: it was initialized in a parent process before ``fork()``.
    """
    global _native
    native = _native
    if native is not None:
        if native._forked:
            raise ForkError("the native core cannot be used after fork() in the child process")
        return native
    with _native_lock:
        if _native is None:
            import atexit

            lib = NativeLib(find_library())
            _check_schema(lib)
            if lib.livekit_version not in TESTED_LIVEKIT:
                log.warning(
                    "livekit %s is installed; lkrtc_trio was tested with %s",
                    lib.livekit_version,
                    ", ".join(TESTED_LIVEKIT),
                )
            atexit.register(lib.dispose)
            _native = lib
        return _native


def _check_schema(lib: NativeLib) -> None:
    """Sends one harmless request and checks that the answer decodes as the
    matching response: a library built from another schema answers in another
    field (or with bytes that do not parse)."""
    from google.protobuf.message import DecodeError

    from ._proto import ffi_pb2

    req = ffi_pb2.FfiRequest()
    req.new_audio_resampler.SetInParent()
    try:
        resp = ffi_pb2.FfiResponse.FromString(lib.request(req.SerializeToString()))
    except (NativeError, DecodeError) as exc:
        raise NativeLoadError(
            f"{lib.path} does not speak the protobuf schema of livekit {lib.livekit_version}: {exc}"
        ) from exc
    if resp.WhichOneof("message") != "new_audio_resampler":
        raise NativeLoadError(
            f"{lib.path} does not match the protobuf schema of livekit {lib.livekit_version}"
            f" (asked for new_audio_resampler, got {resp.WhichOneof('message')})"
        )
    lib.drop_handle(resp.new_audio_resampler.resampler.handle.id)
