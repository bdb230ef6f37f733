"""Shared pieces of the benchmark scenarios.

A scenario module ``bench/<name>.py`` has ``run(url: str) -> list[Row]``: it
measures every case for every contender ("floor" where it exists, "lkrtc",
"official"), each contender in its own process (the native core initializes
once per process), repeated and interleaved so machine noise hits all
contenders alike. ``python -m bench`` collects the rows, prints the table and
writes ``bench/results.json`` and ``docs/performance.md``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any, Literal, TypedDict

__all__ = ["Row", "child_json", "row"]

Contender = Literal["floor", "lkrtc", "official"]


class Row(TypedDict):
    scenario: str  # e.g. "publish_data reliable"
    case: str  # e.g. "15 KiB"
    contender: str  # floor | lkrtc | official
    metric: str  # e.g. "messages/s"
    better: str  # "higher" or "lower"
    samples: list[float]  # one value per repeat


def row(
    scenario: str, case: str, contender: str, metric: str, better: str, samples: list[float]
) -> Row:
    return Row(
        scenario=scenario,
        case=case,
        contender=contender,
        metric=metric,
        better=better,
        samples=[float(s) for s in samples],
    )


def child_json(module: str, *args: str, timeout: float = 300) -> Any:
    """Runs ``python -m <module> <args>`` and returns the JSON it printed last.

    Raises:
        RuntimeError: the child failed (its stderr tail is in the message).
    """
    proc = subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    lines = [ln for ln in proc.stdout.strip().splitlines() if ln.startswith(("{", "["))]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(
            f"{module} {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}"
        )
    return json.loads(lines[-1])
