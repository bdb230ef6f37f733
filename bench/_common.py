"""Shared pieces of the benchmark scenarios.

A scenario module ``bench/<name>.py`` has ``run(url: str) -> list[Row]``: it
measures every case for every contender ("floor" where it exists, "lkrtc",
"official"), each contender in its own process (the native core initializes
once per process), in ``ROUNDS`` (at least 5) rounds interleaved: round r of
every contender, then round r + 1, so machine noise hits all contenders alike.

A row's ``samples`` hold exactly one value per round, in round order (a
child that repeats a measurement within its round reports the median of its
repeats), so ``samples[r]`` of lkrtc-trio and ``samples[r]`` of the official
SDK were measured side by side and their ratio is one paired round.
``python -m bench`` collects the rows, computes the paired ratios, prints the
table and writes ``bench/results.json`` and ``docs/performance.md``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any, Literal, TypedDict, TypeVar

__all__ = ["FAILED_ROUNDS", "ROUNDS", "Row", "child_json", "retried", "row"]

T = TypeVar("T")

#: rounds that failed and were run again, as {"round": label, "error": text}:
#: ``python -m bench`` writes them to results.json and docs/performance.md
FAILED_ROUNDS: list[dict[str, str]] = []

#: interleaved rounds per contender of every scenario (each row: one sample per round)
ROUNDS = 5

Contender = Literal["floor", "lkrtc", "official"]


class Row(TypedDict):
    scenario: str  # e.g. "publish_data reliable"
    case: str  # e.g. "15 KiB"
    contender: str  # floor | lkrtc | official
    metric: str  # e.g. "messages/s"
    better: str  # "higher" or "lower"
    samples: list[float]  # one value per round, in round order


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


def child_json(
    module: str, *args: str, timeout: float = 300, env: dict[str, str] | None = None
) -> Any:
    """Runs ``python -m <module> <args>`` (with ``env`` added to the environment)
    and returns the JSON it printed last.

    Raises:
        RuntimeError: the child failed (its stderr tail is in the message).
    """
    proc = subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=None if env is None else {**os.environ, **env},
    )
    lines = [ln for ln in proc.stdout.strip().splitlines() if ln.startswith(("{", "["))]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(
            f"{module} {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}"
        )
    return json.loads(lines[-1])


def retried(label: str, fn: Callable[[], T]) -> T:
    """Runs one round (``fn``); if it fails, records the failure in
    ``FAILED_ROUNDS`` (reported, never hidden) and runs it once more. A second
    failure ends the run. One crash or lost join in a 20-minute run should not
    throw away every other measurement, but it must show in the report."""
    try:
        return fn()
    except Exception as exc:
        text = str(exc)
        FAILED_ROUNDS.append({"round": label, "error": text[-3000:]})
        print(f"warning: {label} failed; running it again:\n{text[-3000:]}", file=sys.stderr)
        return fn()
