"""Writes docs/performance.md from the benchmark summary."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _median(
    summary: list[dict[str, Any]], scenario: str, case: str, metric: str, who: str
) -> float | None:
    for s in summary:
        if (s["scenario"], s["case"], s["metric"], s["contender"]) == (scenario, case, metric, who):
            return float(s["median"])
    return None


def targets(summary: list[dict[str, Any]]) -> list[tuple[str, str, bool | None]]:
    """(target, measured, met) for each target of the benchmark issue."""
    out: list[tuple[str, str, bool | None]] = []

    def ratio(a: float | None, b: float | None) -> float | None:
        return None if a is None or b is None or b == 0 else a / b

    ffi = ("FFI request round trip (no server)", "new_audio_resampler", "us/op")
    floor, ours, official = (_median(summary, *ffi, who) for who in ("floor", "lkrtc", "official"))
    r = ratio(ours, floor)
    out.append(
        (
            "per-request overhead within 1.25x of the bare cffi floor",
            "n/a" if r is None else f"{r:.2f}x the floor",
            None if r is None else r <= 1.25,
        )
    )
    r = ratio(official, ours)
    out.append(
        (
            "per-request overhead at least 2x better than the official SDK",
            "n/a" if r is None else f"{r:.2f}x better",
            None if r is None else r >= 2,
        )
    )

    pd = ("publish_data reliable", "15 KiB", "messages/s")
    r = ratio(_median(summary, *pd, "lkrtc"), _median(summary, *pd, "official"))
    out.append(
        (
            "15 KiB publish_data at least 3x the official SDK's delivered messages/s",
            "n/a" if r is None else f"{r:.2f}x",
            None if r is None else r >= 3,
        )
    )

    rpc = ("RPC round trip 100 B", "sequential 1000", "p50 ms")
    ours_p50, off_p50 = _median(summary, *rpc, "lkrtc"), _median(summary, *rpc, "official")
    out.append(
        (
            "RPC p50 no worse than the official SDK's",
            "n/a"
            if ours_p50 is None or off_p50 is None
            else f"{ours_p50:.2f} ms vs {off_p50:.2f} ms",
            None if ours_p50 is None or off_p50 is None else ours_p50 <= off_p50,
        )
    )

    sc = ("In-flight scaling", "us per completed request")
    n1 = _median(summary, sc[0], "N=1", sc[1], "lkrtc")
    n1000 = _median(summary, sc[0], "N=1000", sc[1], "lkrtc")
    r = ratio(n1000, n1)
    out.append(
        (
            "cost per request at N = 1000 within 1.5x of N = 1",
            "n/a" if r is None else f"{r:.2f}x",
            None if r is None else r <= 1.5,
        )
    )

    mem_rss = _median(
        summary, "Memory", "100000 data messages + 1000 RPCs", "RSS growth MiB", "lkrtc"
    )
    mem_h = _median(
        summary, "Memory", "100000 data messages + 1000 RPCs", "live native handles after", "lkrtc"
    )
    flat = None if mem_rss is None or mem_h is None else (mem_h == 0 and mem_rss < 20)
    out.append(
        (
            "memory and handles flat over the run (lkrtc-trio)",
            "n/a" if flat is None else f"RSS +{mem_rss:.1f} MiB, {mem_h:.0f} live handles",
            flat,
        )
    )
    return out


def write_report(
    path: Path,
    meta: dict[str, Any],
    summary: list[dict[str, Any]],
    table_lines: list[str],
    total_s: float,
) -> None:
    checks = targets(summary)
    lines = [
        "# Performance",
        "",
        "Measured by `make bench` (`python -m bench`): lkrtc-trio, the official asyncio",
        "SDK (`livekit`) and, where it exists, the bare native floor, side by side in",
        "one run against the same local livekit-server. Each contender runs in its own",
        "process; rounds are interleaved; the table shows medians over the repeats.",
        "These machines are noisy: compare the ratios, not absolute times across runs.",
        "",
        "This file is generated: run `make bench` to refresh it.",
        "",
        "## Machine",
        "",
        *[f"- {k}: {v}" for k, v in meta.items()],
        f"- whole run: {total_s:.0f} s",
        "",
        "## Targets",
        "",
        "| target | measured | met |",
        "|---|---|---|",
        *[
            f"| {t} | {m} | {'yes' if ok else ('n/a' if ok is None else '**no**')} |"
            for t, m, ok in checks
        ],
        "",
        "## All scenarios",
        "",
        '"lkrtc-trio better by" is the factor by which lkrtc-trio beats that',
        "contender (above 1: lkrtc-trio is better; below 1: worse).",
        "",
        *table_lines,
        "",
        "## How each scenario is measured",
        "",
        "See the docstring at the top of each `bench/<scenario>.py`.",
        "",
        "## Reproduce",
        "",
        "```sh",
        "make bench            # everything (about 10 minutes on 2 cores)",
        ".venv/bin/python -m lkrtc_trio.testing.netns -- .venv/bin/python -m bench rpc data",
        "```",
        "",
    ]
    extra = path.with_name("performance-notes.md")
    if extra.exists():
        lines += ["## Analysis", "", extra.read_text().strip(), ""]
    path.write_text("\n".join(lines))
