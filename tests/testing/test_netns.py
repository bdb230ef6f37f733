"""Tests of ``python -m lkrtc_trio.testing.netns``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import lkrtc_trio.testing as lt
from lkrtc_trio.testing import netns

_REPO_ROOT = Path(lt.__file__).resolve().parents[2]

_PROBE = (
    "import os, sys; from lkrtc_trio.testing import in_test_netns; "
    "print(os.environ['LKRTC_TEST_HOST'], in_test_netns()); sys.exit(int(sys.argv[1]))"
)


def _run(*args: str, no_netns: bool = False) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(_REPO_ROOT), env.get("PYTHONPATH", "")) if p
    )
    env.pop("LKRTC_NO_NETNS", None)
    if no_netns:
        env["LKRTC_NO_NETNS"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "lkrtc_trio.testing.netns", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_plain_path_when_disabled() -> None:
    result = _run("--", sys.executable, "-c", _PROBE, "3", no_netns=True)
    assert result.returncode == 3
    assert result.stdout.split() == ["127.0.0.1", "False"]
    assert "LKRTC_NO_NETNS=1" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_namespace_when_available() -> None:
    available, reason = netns.netns_available()
    result = _run(sys.executable, "-c", _PROBE, "5")  # without "--" too
    assert result.returncode == 5, result.stderr
    if available:
        assert result.stdout.split() == [netns.NETNS_HOST, "True"]
        assert result.stderr == ""
    else:
        assert result.stdout.split() == ["127.0.0.1", "False"]
        assert reason in result.stderr


def test_missing_command_and_usage() -> None:
    assert _run("--", "/nonexistent/lkrtc-cmd", no_netns=True).returncode == 127
    assert _run(no_netns=True).returncode == 2


def test_in_test_netns_tells_inside_from_outside() -> None:
    # this process: inside under `make test`, outside under a plain pytest
    inside = os.environ.get("LKRTC_TEST_HOST") == netns.NETNS_HOST
    assert lt.in_test_netns() is inside
    # a child without the namespace's variable is outside, wherever it runs
    env = {k: v for k, v in os.environ.items() if k != "LKRTC_TEST_HOST"}
    code = "import lkrtc_trio.testing as lt; print(lt.in_test_netns())"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "False", out.stderr
    # the variable alone is not enough: the address must be ours
    if not inside:
        env["LKRTC_TEST_HOST"] = netns.NETNS_HOST
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
        assert out.stdout.strip() == "False", out.stderr
