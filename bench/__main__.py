"""``python -m bench`` (``make bench``): every scenario, every contender, one run.

Starts a local livekit-server, runs the scenario modules listed in
``SCENARIOS`` (each contender in its own process, ``ROUNDS`` = 5 rounds per
contender unless the module sets ``SCENARIO_ROUNDS`` and says why in its
docstring (``many_rooms``: 3), interleaved: round r of lkrtc-trio, round r of
the official SDK, then round r + 1, ...), prints a table of medians with paired
ratios, and writes ``bench/results.json`` and ``docs/performance.md``.

Ratios are paired: round r of a contender is compared with round r of
lkrtc-trio (one sample per row per round, see ``bench._common``), so slow
phases of the machine hit both sides of each ratio. A row reports the median
of its per-round ratios and their min..max; when that range crosses 1 the row
is "within noise" (some rounds had the other contender ahead).

``python -m bench ffi_request rpc`` runs a subset (results are then not
written).

``python -m bench --merge many_rooms [rpc ...]`` runs a subset and merges it
into the existing ``bench/results.json``: the rows of the scenarios it ran
(and their timing and failed rounds) replace the old ones, everything else is
kept, the machine block records the merge (date, load averages), and
``docs/performance.md`` is regenerated from the merged results (its "whole
run" is then the sum of the per-scenario times).
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

from bench._common import FAILED_ROUNDS, ROUNDS, Row

SCENARIOS = [
    "ffi_request",
    "async_request",
    "data",
    "rpc",
    "events",
    "streams",
    "audio_cpu",
    "e2ee",
    "memory",
    "mixer",
    "many_rooms",
]
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


def paired_ratios(ours: list[float], other: list[float], better: str) -> list[float] | None:
    """lkrtc-trio's advantage in each round: round r of lkrtc-trio against round
    r of the other contender (> 1: lkrtc-trio better). None when a round has no
    positive value on both sides (a ratio of zeros or of signed growths means
    nothing)."""
    n = min(len(ours), len(other))
    if n == 0:
        return None
    out = []
    for a, b in zip(ours[:n], other[:n], strict=True):
        if a <= 0 or b <= 0:
            return None
        out.append(b / a if better == "lower" else a / b)
    return out


def summarize(rows: list[Row]) -> list[dict[str, Any]]:
    """Per row: the median of its rounds; per non-lkrtc row: the median and
    the min..max of the paired per-round ratios against lkrtc-trio, and
    whether that range crosses 1 ("within noise")."""
    out = []
    cases: dict[tuple[str, str, str], dict[str, list[float]]] = {}
    for r in rows:
        cases.setdefault((r["scenario"], r["case"], r["metric"]), {})[r["contender"]] = r["samples"]
    for r in rows:
        key = (r["scenario"], r["case"], r["metric"])
        ours = cases[key].get("lkrtc")
        ratios = None
        if ours is not None and r["contender"] != "lkrtc":
            ratios = paired_ratios(ours, r["samples"], r["better"])
        paired: dict[str, Any] = {
            # median of the paired per-round ratios; > 1: lkrtc-trio is better
            "lkrtc_advantage": None,
            "paired_ratios": ratios,
            "ratio_low": None,
            "ratio_high": None,
            "within_noise": None,
        }
        if ratios:
            low, high = min(ratios), max(ratios)
            paired.update(
                lkrtc_advantage=statistics.median(ratios),
                ratio_low=low,
                ratio_high=high,
                within_noise=low < 1 < high,
            )
        out.append(
            {
                **r,
                "rounds": len(r["samples"]),
                "median": statistics.median(r["samples"]),
                "min": min(r["samples"]),
                "max": max(r["samples"]),
                **paired,
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


def advantage(s: dict[str, Any]) -> str:
    """Like ``1.17x (0.84..1.40) within noise``; "" for lkrtc-trio's own rows."""
    adv = s["lkrtc_advantage"]
    if adv is None:
        return ""
    text = f"{adv:.2f}x ({s['ratio_low']:.2f}..{s['ratio_high']:.2f})"
    return text + (" within noise" if s["within_noise"] else "")


def table(summary: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| scenario | case | metric | contender | rounds | median | min..max "
        "| lkrtc-trio better by: median (min..max) of paired rounds |",
        "|---|---|---|---|---:|---:|---:|---:|",
    ]
    for s in summary:
        lines.append(
            f"| {s['scenario']} | {s['case']} | {s['metric']} ({s['better']} is better) "
            f"| {s['contender']} | {s['rounds']} | {fmt(s['median'])} "
            f"| {fmt(s['min'])}..{fmt(s['max'])} | {advantage(s)} |"
        )
    return lines


def main() -> None:
    from lkrtc_trio.testing import LocalServer, in_test_netns, install_server

    args = sys.argv[1:]
    merge = bool(args) and args[0] == "--merge"
    chosen = args[1:] if merge else (args or SCENARIOS)
    unknown = [name for name in chosen if name not in SCENARIOS]
    if unknown or (merge and not chosen):
        raise SystemExit(
            f"usage: python -m bench [--merge] [SCENARIO ...]; scenarios: {' '.join(SCENARIOS)}"
        )
    module_of: dict[str, str] = {}
    rounds_of: dict[str, int] = {}
    rows: list[Row] = []
    load_start = os.getloadavg()
    started = time.monotonic()
    timings: dict[str, float] = {}
    with LocalServer(binary=install_server()) as info:
        for name in chosen:
            t0 = time.monotonic()
            print(f"== {name}", flush=True)
            module = importlib.import_module(f"bench.{name}")
            got: list[Row] = module.run(info.url)
            rows += got
            module_of.update((r["scenario"], name) for r in got)
            # a module may run fewer rounds than ROUNDS, saying why (SCENARIO_ROUNDS)
            rounds_of[name] = getattr(module, "SCENARIO_ROUNDS", ROUNDS)
            timings[name] = time.monotonic() - t0
            for line in table(summarize(got))[2:]:
                print(line, flush=True)
    summary = [{**s, "module": module_of[s["scenario"]]} for s in summarize(rows)]
    total = time.monotonic() - started
    short = [r for r in rows if len(r["samples"]) < rounds_of[module_of[r["scenario"]]]]
    for r in short:
        print(
            f"warning: {r['scenario']} / {r['case']} / {r['contender']}: only "
            f"{len(r['samples'])} rounds"
        )
    for failed in FAILED_ROUNDS:
        print(f"warning: {failed['round']} failed once (run again): {failed['error'][-300:]}")
    print(f"\ntotal {total:.0f} s")
    results_path = ROOT / "bench" / "results.json"
    if merge:
        load_end = os.getloadavg()[0]
        results = merged(json.loads(results_path.read_text()), chosen, summary, timings)
        results["machine"]["merged"] = (
            f"{' '.join(chosen)} re-run on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} "
            f"(load average at start, end: {load_start[0]:.1f}, {load_end:.1f})"
        )
        write(results, sum(results["seconds"].values()))
        return
    if chosen != SCENARIOS:
        return
    meta = {
        **machine(),
        "network": "private netns (veth)" if in_test_netns() else "loopback",
        # other work on the machine adds noise; 1-minute load averages
        "load average at start, end": f"{load_start[0]:.1f}, {os.getloadavg()[0]:.1f}",
    }
    results = {
        "machine": meta,
        "seconds": timings,
        "failed_rounds": FAILED_ROUNDS,
        "rows": summary,
    }
    write(results, total)


def merged(
    old: dict[str, Any], chosen: list[str], summary: list[dict[str, Any]], timings: dict[str, float]
) -> dict[str, Any]:
    """``old`` results with the rows, timings and failed rounds of the
    scenario modules ``chosen`` replaced by this run's. An old row belongs to
    a module if it says so (``module``) or has one of this run's scenario
    names (rows written before rows named their module)."""
    names = {s["scenario"] for s in summary}
    kept = [r for r in old["rows"] if r.get("module") not in chosen and r["scenario"] not in names]
    seconds = {**old.get("seconds", {}), **timings}
    order = {name: k for k, name in enumerate(SCENARIOS)}
    failed = [f for f in old.get("failed_rounds", []) if f["round"].split(" ", 1)[0] not in chosen]
    return {
        "machine": old["machine"],
        "seconds": dict(sorted(seconds.items(), key=lambda kv: order.get(kv[0], len(order)))),
        "failed_rounds": failed + FAILED_ROUNDS,
        "rows": kept + summary,
    }


def write(results: dict[str, Any], total: float) -> None:
    """Writes ``results`` to bench/results.json and regenerates docs/performance.md."""
    (ROOT / "bench" / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    from bench.report import write_report

    summary = results["rows"]
    write_report(
        ROOT / "docs" / "performance.md",
        results["machine"],
        summary,
        table(summary),
        total,
        results["failed_rounds"],
    )
    print("wrote bench/results.json and docs/performance.md")


if __name__ == "__main__":
    main()
