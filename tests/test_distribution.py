"""The distribution: ``python -m build`` makes an sdist and a wheel without a
single warning, and both install and run a room round trip in a fresh venv
with no C compiler on PATH.

* The sdist, built there without a compiler, installs without the compiled
  binding: lkrtc_trio runs in cffi ABI mode (``native_info()`` says so).
* The wheel (built here, with the compiled binding inside) installs without
  compiling anything: API mode.

Offline: everything is installed from the wheelhouse that ``make test``
downloads first (``WHEELHOUSE``, default ``.wheelhouse``), because the tests
run in a network namespace with no route to a package index.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import lkrtc_trio as lk
from lkrtc_trio.testing import ServerInfo
from lkrtc_trio.testing.pytest_plugin import TokenFactory

ROOT = Path(__file__).resolve().parent.parent
ROUNDTRIP = ROOT / "tests" / "peers" / "roundtrip.py"
WHEELHOUSE = Path(os.environ.get("WHEELHOUSE", ROOT / ".wheelhouse"))

#: What a clean build may not print (setuptools and build say "warning" or
#: "Deprecated"/"SetuptoolsDeprecationWarning" for every problem they tolerate).
_WARNING = re.compile(r"warn|deprecat", re.IGNORECASE)


def _offline_env(path: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        # PYTHONDONTWRITEBYTECODE makes setuptools warn that it skips byte-compiling
        if not k.startswith(("PIP_", "PYTHON", "VIRTUAL_ENV", "LKRTC_TRIO_FFI"))
    }
    env.update(
        PATH=path,
        PIP_NO_INDEX="1",
        PIP_FIND_LINKS=str(WHEELHOUSE),
        PIP_DISABLE_PIP_VERSION_CHECK="1",
    )
    return env


def _run(argv: list[str], env: dict[str, str], timeout: float = 300) -> str:
    proc = subprocess.run(
        argv, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{argv} failed:\n{output[-4000:]}"
    return output


@pytest.mark.integration
def test_build_then_install_without_a_compiler_and_join_a_room(
    tmp_path: Path, livekit_server: ServerInfo, livekit_token: TokenFactory
) -> None:
    assert (WHEELHOUSE / "setuptools").exists() or any(WHEELHOUSE.glob("setuptools-*.whl")), (
        f"no wheelhouse at {WHEELHOUSE}: `make test` downloads it (make wheelhouse)"
    )
    # 1. sdist + wheel, no warnings
    dist = tmp_path / "dist"
    build_env = _offline_env(os.environ["PATH"])
    out = _run([sys.executable, "-m", "build", "--outdir", str(dist), str(ROOT)], build_env)
    noisy = [line for line in out.splitlines() if _WARNING.search(line)]
    assert not noisy, "the build printed warnings:\n" + "\n".join(noisy)
    (sdist,) = dist.glob("lkrtc_trio-*.tar.gz")
    (wheel,) = dist.glob("lkrtc_trio-*.whl")
    assert sdist.name == f"lkrtc_trio-{lk.__version__}.tar.gz"

    # 2. a fresh venv whose PATH has no compiler
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], _offline_env(os.environ["PATH"]))
    bin_dir = venv / "bin"
    env = _offline_env(str(bin_dir))
    for compiler in ("gcc", "cc", "clang", "x86_64-linux-gnu-gcc"):
        assert shutil.which(compiler, path=env["PATH"]) is None
    python = str(bin_dir / "python")

    def round_trip(backend: str) -> dict[str, object]:
        out = _run(
            [
                python,
                str(ROUNDTRIP),
                livekit_server.url,
                livekit_token("a"),
                livekit_token("b"),
                backend,
            ],
            env,
            timeout=120,
        )
        got: dict[str, object] = json.loads(out.strip().splitlines()[-1])
        # the venv's copy ran, not this checkout's
        assert str(got["lkrtc_trio"]).startswith(str(venv)), got
        assert got["rpc"] == "echo:hi" and got["data"] == "ping" and got["handles"] == 0
        assert got["version"] == lk.__version__
        return got

    # 3. the sdist: the compile fails (no compiler), the install goes on in ABI mode
    # -v shows the build's output; no cache: pip must build it here, not reuse a wheel
    out = _run([python, "-m", "pip", "install", "-v", "--no-cache-dir", str(sdist)], env)
    assert "lkrtc_trio._lkffi was not built" in out, out[-3000:]
    site = next((venv / "lib").glob("python3*/site-packages/lkrtc_trio"))
    assert not list(site.glob("_lkffi*.so"))
    got = round_trip("trio")
    assert got["mode"] == "ABI" and "not available" in str(got["reason"]), got

    # 4. the wheel: the compiled binding comes with it; nothing is compiled
    _run([python, "-m", "pip", "install", "--no-deps", "--force-reinstall", str(wheel)], env)
    assert list(site.glob("_lkffi*.so"))
    got = round_trip("asyncio")
    assert got["mode"] == "API" and "compiled module" in str(got["reason"]), got

    # the console script and `python -m lkrtc_trio` of the installed package
    version = _run([str(bin_dir / "lkrtc"), "--version"], env)
    assert version.startswith(f"lkrtc-trio {lk.__version__} (livekit {lk.livekit_version()}")
