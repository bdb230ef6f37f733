"""One synchronous FFI request round trip, no server: us/op.

Every contender does the same work per operation: build/serialize an
``FfiRequest{new_audio_resampler}``, call ``livekit_ffi_request``, copy the
response, drop the response handle, parse the ``FfiResponse``, and drop the
resampler handle it returned.

* floor: the same calls written inline against the compiled cffi module
  (no lkrtc_trio code on the path);
* lkrtc-trio: ``Runtime.request`` + ``backend.drop_handle``, in API mode (the
  compiled cffi module, the default) and, as ``lkrtc-abi``, in ABI mode (cffi
  ``dlopen`` + libffi: the fallback of an install without a C compiler, chosen
  with ``LKRTC_TRIO_FFI_MODE=abi``; the child checks ``native_info()``);
* official: ``FfiClient.instance.request`` + ``FfiHandle.dispose`` (livekit.rtc),
  run in its own process (the native core initializes once per process).

Run one contender: ``python -m bench.ffi_request floor|lkrtc|lkrtc-abi|official [N] [REPEATS]``;
prints a JSON list of per-repeat us/op. ``run(url)`` runs all three, 5 rounds
interleaved (one sample per round: the median of that child's repeats), and
returns the rows for ``python -m bench``.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial

from bench._common import ROUNDS, Row, child_json, retried, row


def _time(fn: Callable[[], None], n: int, repeats: int) -> list[float]:
    for _ in range(min(n, 2000)):
        fn()
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(n):
            fn()
        out.append((time.perf_counter() - t) / n * 1e6)
    return out


def floor_op() -> Callable[[], None]:
    from lkrtc_trio import _lkffi
    from lkrtc_trio._proto import ffi_pb2
    from lkrtc_trio._runtime import get_runtime

    get_runtime()  # loads and initializes the library once
    ffi, lib = _lkffi.ffi, _lkffi.lib
    rp = ffi.new("const char **")
    rl = ffi.new("size_t *")
    response = ffi_pb2.FfiResponse
    request = ffi_pb2.FfiRequest

    def op() -> None:
        req = request()
        req.new_audio_resampler.SetInParent()
        data = req.SerializeToString()
        h = lib.lk_request(data, len(data), rp, rl)
        out = ffi.unpack(rp[0], rl[0])
        lib.lk_drop_handle(h)
        resp = response.FromString(out)
        lib.lk_drop_handle(resp.new_audio_resampler.resampler.handle.id)

    return op


def lkrtc_op() -> Callable[[], None]:
    from lkrtc_trio._proto import ffi_pb2
    from lkrtc_trio._runtime import get_runtime

    rt = get_runtime()
    request = ffi_pb2.FfiRequest
    drop = rt.backend.drop_handle

    def op() -> None:
        req = request()
        req.new_audio_resampler.SetInParent()
        resp = rt.request(req)
        drop(resp.new_audio_resampler.resampler.handle.id)

    return op


def lkrtc_abi_op() -> Callable[[], None]:
    import lkrtc_trio as lk

    op = lkrtc_op()
    info = lk.native_info()
    if info.mode is not lk.FfiMode.ABI:
        raise RuntimeError(f"expected ABI mode, got {info}")
    return op


def official_op() -> Callable[[], None]:
    from livekit.rtc._ffi_client import FfiClient, FfiHandle
    from livekit.rtc._proto import ffi_pb2

    client = FfiClient.instance
    request = ffi_pb2.FfiRequest

    def op() -> None:
        req = request()
        req.new_audio_resampler.SetInParent()
        resp = client.request(req)
        FfiHandle(resp.new_audio_resampler.resampler.handle.id).dispose()

    return op


CONTENDERS = {
    "floor": floor_op,
    "lkrtc": lkrtc_op,
    "lkrtc-abi": lkrtc_abi_op,
    "official": official_op,
}
#: environment of each contender's child process
ENV = {"lkrtc-abi": {"LKRTC_TRIO_FFI_MODE": "abi"}}


def run(url: str) -> list[Row]:
    """``ROUNDS`` interleaved rounds per contender (no server needed); each
    round's sample is the median of its child's 7 repeats x 20000 requests."""
    del url
    samples: dict[str, list[float]] = {name: [] for name in CONTENDERS}
    for i in range(ROUNDS):
        for name in CONTENDERS:
            got = retried(
                f"ffi_request {name} round {i}",
                partial(child_json, "bench.ffi_request", name, env=ENV.get(name)),
            )
            samples[name].append(statistics.median(got))
    return [
        row("FFI request round trip (no server)", "new_audio_resampler", name, "us/op", "lower", s)
        for name, s in samples.items()
    ]


if __name__ == "__main__":
    which = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 20_000
    repeats = int(sys.argv[3]) if len(sys.argv) > 3 else 7
    print(json.dumps(_time(CONTENDERS[which](), n, repeats)))
