"""Two minutes of the soak (``make soak`` runs 30): mixed traffic, a fault
every 30 s, on trio and asyncio side by side, each in a process of its own
(``tests/faults/soak.py``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from lkrtc_trio.testing import ServerInfo

pytestmark = pytest.mark.integration

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DURATION, INTERVAL = 120, 30


def soak(backend: str) -> dict[str, Any]:
    argv = [sys.executable, "-m", "lkrtc_trio.testing.netns", "--"]  # a namespace of its own
    argv += [sys.executable, "-m", "tests.faults.soak", str(DURATION), str(INTERVAL), backend]
    proc = subprocess.run(
        argv, capture_output=True, text=True, timeout=DURATION + 120, cwd=ROOT, check=False
    )
    assert proc.returncode == 0, f"{backend}: exit {proc.returncode}\n{proc.stderr[-4000:]}"
    out: dict[str, Any] = json.loads(proc.stdout)
    return out


def check_soak(out: dict[str, Any], duration: float, interval: float) -> None:
    """What ``make soak`` asserts too."""
    assert out["rss_growth_max"] < 10.0, out["rss"]
    assert out["handles"] == 0 and out["pending"] == 0
    assert len(out["faults"]) >= int(duration // interval) - 1
    assert not [f for f in out["faults"] if f[1] == "error"], out["faults"]
    for name, pair in out["pairs"].items():
        assert pair["in_order"] and pair["duplicates"] == 0, name
        assert pair["lost_silently"] == 0, (name, pair)
        assert pair["sent"] > duration * 10, (name, pair["sent"])  # ~20 per second
        assert pair["audio_frames"] > duration * 50, (name, pair["audio_frames"])  # 100/s
        rpc = pair["rpc"]
        assert rpc.get("ok", 0) >= 0.8 * sum(rpc.values()), (name, rpc)


def test_two_minute_soak(livekit_server: ServerInfo) -> None:
    """(``livekit_server``: the server binary is built first.)"""
    with ThreadPoolExecutor(2) as pool:
        outs = dict(zip(("trio", "asyncio"), pool.map(soak, ("trio", "asyncio")), strict=True))
    for backend, out in outs.items():
        try:
            check_soak(out, DURATION, INTERVAL)
        except AssertionError as exc:
            raise AssertionError(f"{backend}: {exc}") from exc
