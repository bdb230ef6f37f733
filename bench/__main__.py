"""``python -m bench`` (``make bench``): every scenario, every contender, one run.

Starts a local livekit-server, runs the scenario modules listed in
``SCENARIOS`` (each contender in its own process, rounds interleaved), prints
a table of medians with ratios, and writes ``bench/results.json`` and
``docs/performance.md``. ``python -m bench ffi_request rpc`` runs a subset
(results are then not written).
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from bench._common import Row

SCENARIOS = ["ffi_request", "async_request", "data", "rpc", "events", "audio_cpu", "memory"]
ROOT = Path(__file__).resolve().parent.parent


def machine() -> dict[str, Any]:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import importlib.metadata as md

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "livekit": md.version("livekit"),
        "lkrtc_trio": md.version("lkrtc-trio"),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def summarize(rows: list[Row]) -> list[dict[str, Any]]:
    """Median per row, and ratios against lkrtc-trio within each case."""
    out = []
    cases: dict[tuple[str, str, str], dict[str, float]] = {}
    for r in rows:
        med = statistics.median(r["samples"])
        cases.setdefault((r["scenario"], r["case"], r["metric"]), {})[r["contender"]] = med
    for r in rows:
        key = (r["scenario"], r["case"], r["metric"])
        med = cases[key][r["contender"]]
        ours = cases[key].get("lkrtc")
        ratio = None
        if ours and med and r["contender"] != "lkrtc":
            # > 1 means lkrtc-trio is better by that factor
            ratio = med / ours if r["better"] == "lower" else ours / med
        out.append(
            {
                **r,
                "median": med,
                "min": min(r["samples"]),
                "max": max(r["samples"]),
                "lkrtc_advantage": ratio,
            }
        )
    return out


def fmt(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    if abs(v) >= 1:
        return f"{v:.2f}"
    return f"{v:.4f}"


def table(summary: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| scenario | case | metric | contender | median | min..max | lkrtc-trio better by |",
        "|---|---|---|---|---:|---:|---:|",
    ]
    for s in summary:
        adv = s["lkrtc_advantage"]
        lines.append(
            f"| {s['scenario']} | {s['case']} | {s['metric']} ({s['better']} is better) "
            f"| {s['contender']} | {fmt(s['median'])} | {fmt(s['min'])}..{fmt(s['max'])} "
            f"| {'' if adv is None else f'{adv:.2f}x'} |"
        )
    return lines


def main() -> None:
    from lkrtc_trio.testing import LocalServer, in_test_netns, install_server

    chosen = sys.argv[1:] or SCENARIOS
    rows: list[Row] = []
    started = time.monotonic()
    timings: dict[str, float] = {}
    with LocalServer(binary=install_server()) as info:
        for name in chosen:
            t0 = time.monotonic()
            print(f"== {name}", flush=True)
            module = importlib.import_module(f"bench.{name}")
            got: list[Row] = module.run(info.url)
            rows += got
            timings[name] = time.monotonic() - t0
            for line in table(summarize(got))[2:]:
                print(line, flush=True)
    summary = summarize(rows)
    total = time.monotonic() - started
    print(f"\ntotal {total:.0f} s")
    if chosen != SCENARIOS:
        return
    meta = {**machine(), "network": "private netns (veth)" if in_test_netns() else "loopback"}
    results = {"machine": meta, "seconds": timings, "rows": summary}
    (ROOT / "bench" / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    from bench.report import write_report

    write_report(ROOT / "docs" / "performance.md", meta, summary, table(summary), total)
    print("wrote bench/results.json and docs/performance.md")


if __name__ == "__main__":
    main()
