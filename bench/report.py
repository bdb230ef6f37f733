"""Writes docs/performance.md from the benchmark summary."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from bench.e2ee import SCENARIO as E2EE_SCENARIO
from bench.many_rooms import AUDIO_SCENARIO as MR_AUDIO
from bench.many_rooms import RATE as MR_RATE
from bench.many_rooms import RPC_SCENARIO as MR_RPC
from bench.memory import CASE as MEMORY_CASE

Check = tuple[str, str, bool | None]


def _samples(
    summary: list[dict[str, Any]], scenario: str, case: str, metric: str, who: str
) -> list[float] | None:
    for s in summary:
        if (s["scenario"], s["case"], s["metric"], s["contender"]) == (scenario, case, metric, who):
            return [float(v) for v in s["samples"]]
    return None


def _paired(a: list[float] | None, b: list[float] | None) -> list[float] | None:
    """a[r] / b[r] for each round r (rounds are paired: see bench._common)."""
    if not a or not b or any(v <= 0 for v in b):
        return None
    return [x / y for x, y in zip(a, b, strict=False)]


def _check(
    target: str, ratios: list[float] | None, threshold: float, at_least: bool, unit: str = "x"
) -> Check:
    """A target on the median of paired per-round ratios: met only if the
    median meets ``threshold`` (``>=`` if ``at_least``, else ``<=``). The
    measured text gives the median and the min..max of the rounds, "within
    noise" if that range crosses 1, and "rounds straddle the target" if it
    crosses ``threshold`` (some rounds met it, some did not)."""
    if not ratios:
        return target, "n/a", None
    med, lo, hi = statistics.median(ratios), min(ratios), max(ratios)
    text = f"{med:.2f}{unit} (rounds {lo:.2f}..{hi:.2f}, n={len(ratios)})"
    notes = []
    if lo < 1 < hi:
        notes.append("within noise")
    if threshold != 1 and lo < threshold < hi:
        notes.append("rounds straddle the target")
    if notes:
        text += ", " + ", ".join(notes)
    return target, text, med >= threshold if at_least else med <= threshold


def targets(summary: list[dict[str, Any]]) -> list[Check]:
    """(target, measured, met) for each target of the benchmark issue."""
    out: list[Check] = []

    def get(scenario: str, case: str, metric: str, who: str) -> list[float] | None:
        return _samples(summary, scenario, case, metric, who)

    ffi = ("FFI request round trip (no server)", "new_audio_resampler", "us/op")
    floor, ours, official = (get(*ffi, who) for who in ("floor", "lkrtc", "official"))
    out.append(
        _check(
            "per-request overhead within 1.25x of the bare cffi floor",
            _paired(ours, floor),
            1.25,
            at_least=False,
            unit="x the floor",
        )
    )
    out.append(
        _check(
            "per-request overhead at least 2x better than the official SDK",
            _paired(official, ours),
            2,
            at_least=True,
            unit="x better",
        )
    )

    out.append(
        _check(
            "ABI mode (no compiler at install) per-request cost, for reference: how "
            "much faster API mode is",
            _paired(get(*ffi, "lkrtc-abi"), ours),
            1,
            at_least=True,
            unit="x (ABI mode us/op / API mode us/op)",
        )
    )

    pd = ("publish_data reliable", "15 KiB", "messages/s")
    out.append(
        _check(
            "15 KiB publish_data at least 3x the official SDK's delivered messages/s",
            _paired(get(*pd, "lkrtc"), get(*pd, "official")),
            3,
            at_least=True,
        )
    )

    rpc = ("RPC round trip 100 B", "sequential 1000", "p50 ms")
    ours_p50, off_p50 = get(*rpc, "lkrtc"), get(*rpc, "official")
    target, text, met = _check(
        "RPC p50 no worse than the official SDK's",
        _paired(off_p50, ours_p50),
        1,
        at_least=True,
        unit="x better",
    )
    if ours_p50 and off_p50:
        text = (
            f"{statistics.median(ours_p50):.2f} ms vs {statistics.median(off_p50):.2f} ms; " + text
        )
    out.append((target, text, met))

    sc = ("In-flight scaling", "us per completed request")
    out.append(
        _check(
            "cost per request at N = 1000 within 1.5x of N = 1",
            _paired(get(sc[0], "N=1000", sc[1], "lkrtc"), get(sc[0], "N=1", sc[1], "lkrtc")),
            1.5,
            at_least=False,
        )
    )

    mem_rss = get("Memory", MEMORY_CASE, "RSS growth MiB", "lkrtc")
    mem_h = get("Memory", MEMORY_CASE, "live native handles after", "lkrtc")
    flat = None if not mem_rss or not mem_h else (max(mem_h) == 0 and max(mem_rss) < 20)
    out.append(
        (
            "memory and handles flat over the run (lkrtc-trio)",
            "n/a"
            if not mem_rss or not mem_h
            else f"RSS {round(statistics.median(mem_rss), 1) + 0.0:+.1f} MiB median "
            f"(max {round(max(mem_rss), 1) + 0.0:+.1f}) per round of {MEMORY_CASE.split(',')[0]}, "
            f"at most {max(mem_h):.0f} live handles after any of {len(mem_h)} rounds",
            flat,
        )
    )

    for way in ("sent", "received"):
        cpu = ("publish_data reliable", "15 KiB", f"loop-thread CPU us/msg, {way}")
        out.append(
            _check(
                "lkrtc-trio's loop-thread CPU per 15 KiB message at most a third of the "
                f"official SDK's ({way})",
                _paired(get(*cpu, "official"), get(*cpu, "lkrtc")),
                3,
                at_least=True,
                unit="x (official's CPU / lkrtc-trio's; the target needs >= 3)",
            )
        )
    # E2EE audio (bench/e2ee.py): not targets of the benchmark issue, but the
    # claims docs/room-control.md makes: encryption costs little, and no more
    # than in the official SDK with the same key
    for role in ("publish", "receive"):
        case = (E2EE_SCENARIO, f"{role}, encrypted", "CPU s per audio s")
        out.append(
            _check(
                f"E2EE audio CPU per audio second ({role}) no worse than the official "
                "SDK's with the same key",
                _paired(get(*case, "official"), get(*case, "lkrtc")),
                1,
                at_least=True,
                unit="x better",
            )
        )
        overhead = get(E2EE_SCENARIO, role, "encrypted / plain CPU", "lkrtc")
        out.append(
            _check(
                f"E2EE audio ({role}) at most 1.25x lkrtc-trio's plain-audio CPU",
                overhead,
                1.25,
                at_least=False,
                unit="x plain",
            )
        )
    out += many_rooms_targets(get)
    return out


def _med(v: list[float] | None) -> float | None:
    return None if not v else statistics.median(v)


def many_rooms_targets(get: Any) -> list[Check]:
    """Targets of the many-rooms scenario (bench/many_rooms.py)."""
    out: list[Check] = []
    p99 = "RPC p99 ms"
    ours1, ours50 = get(MR_RPC, "R=1", p99, "lkrtc"), get(MR_RPC, "R=50", p99, "lkrtc")
    off50 = get(MR_RPC, "R=50", p99, "official")
    busy = [
        _med(get(MR_RPC, "R=50", "machine CPU busy fraction", who)) for who in ("lkrtc", "official")
    ]
    load = (
        ""
        if None in busy
        else " (machine CPU busy at R=50: "
        + ", ".join(
            f"{who} round {b:.0%}" for who, b in zip(("lkrtc", "official"), busy, strict=True)
        )
        + ")"
    )
    target, text, met = _check(
        "many rooms: lkrtc-trio's RPC p99 with 50 rooms per process within 2x its p99 with 1 room",
        _paired(ours50, ours1),
        2,
        at_least=False,
        unit="x its p99 at R=1",
    )
    if ours1 and ours50:
        text = f"{_med(ours50):.1f} ms at R=50 vs {_med(ours1):.1f} ms at R=1; {text}{load}"
    out.append((target, text, met))
    target, text, met = _check(
        "many rooms: at R = 50, lkrtc-trio's RPC p99 at least 3x better than the official SDK's",
        _paired(off50, ours50),
        3,
        at_least=True,
        unit="x better",
    )
    if ours50 and off50:
        text = f"{_med(ours50):.1f} ms vs {_med(off50):.1f} ms; {text}{load}"
    out.append((target, text, met))
    drops = get(MR_AUDIO, "R=10", "frames dropped", "lkrtc")
    got = get(MR_AUDIO, "R=10", "frames received / expected", "lkrtc")
    out.append(
        (
            "many rooms: no audio frame dropped by lkrtc-trio with 10 audio rooms per process",
            "n/a"
            if not drops
            else f"{sum(drops):.0f} frames dropped in {len(drops)} rounds (max {max(drops):.0f} "
            f"per round); frames received / expected, median {_med(got) or 0:.3f}",
            None if not drops else max(drops) == 0,
        )
    )
    return out


def _fig(v: float | None, spec: str) -> str:
    return "n/a" if v is None else format(v, spec)


def many_rooms_section(summary: list[dict[str, Any]]) -> list[str]:
    """The "Many rooms per process" section: setup, figures per R for both
    SDKs (medians over the rounds), and where the machine capped R (derived
    from the rows). Empty if the scenario did not run."""
    rows = [s for s in summary if s["scenario"] in (MR_RPC, MR_AUDIO)]
    if not rows:
        return []

    def med(scenario: str, case: str, metric: str, who: str) -> float | None:
        return _med(_samples(summary, scenario, case, metric, who))

    def cases(scenario: str) -> list[str]:
        seen = {s["case"]: None for s in rows if s["scenario"] == scenario}
        return sorted(seen, key=lambda c: int(c.split("=")[1]))

    rounds = max(len(s["samples"]) for s in rows)
    sdk = {"lkrtc": "lkrtc-trio", "official": "official"}
    rpc_lines = [
        "| R | SDK | rooms joined | calls/s per room | RPC p50 ms | RPC p99 ms "
        "| loop lag p99 ms | data delivered | loop-thread CPU s/s | process CPU s/s "
        "| peer CPU s/s | machine busy | join s |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    caps: list[str] = []
    for case in cases(MR_RPC):
        n = int(case.split("=")[1])
        for who, name in sdk.items():

            def m(metric: str, who: str = who, case: str = case) -> float | None:
                return med(MR_RPC, case, metric, who)

            rate, joined = m("RPC calls/s per room"), m("rooms joined")
            busy, cpu, loop = (
                m("machine CPU busy fraction"),
                m("process CPU s per s"),
                m("loop-thread CPU s per s"),
            )
            delivered = m("data delivered fraction")
            rpc_lines.append(
                f"| {n} | {name} | {_fig(joined, '.0f')} | {_fig(rate, '.2f')} "
                f"| {_fig(m('RPC p50 ms'), '.1f')} | {_fig(m('RPC p99 ms'), '.1f')} "
                f"| {_fig(m('loop lag p99 ms'), '.1f')} | {_fig(delivered, '.2%')} "
                f"| {_fig(loop, '.3f')} | {_fig(cpu, '.2f')} "
                f"| {_fig(m('peer process CPU s per s'), '.2f')} | {_fig(busy, '.0%')} "
                f"| {_fig(m('join s, all R rooms'), '.1f')} |"
            )
            short = []
            if joined is not None and joined < n:
                short.append(f"joined {joined:.0f} of {n} rooms")
            if rate is not None and rate < 0.95 * MR_RATE:
                short.append(f"achieved {rate:.2f} of {MR_RATE:g} calls/s per room")
            if delivered is not None and delivered < 1:
                short.append(f"{delivered:.2%} of the data packets delivered")
            if busy is not None and busy >= 0.85:
                short.append(f"machine {busy:.0%} busy")
            if short:
                caps.append(
                    f"- RPC, R = {n}, {name}: {', '.join(short)} (measured process "
                    f"{_fig(cpu, '.2f')} CPU s/s, of which {_fig(loop, '.3f')} on the loop "
                    f"thread; peer {_fig(m('peer process CPU s per s'), '.2f')} CPU s/s)."
                )
    audio_lines = [
        "| R | SDK | frames received / expected | frames dropped (max of rounds) "
        "| loop-thread CPU s/s | process CPU s/s | peer CPU s/s | machine busy |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for case in cases(MR_AUDIO):
        n = int(case.split("=")[1])
        for who, name in sdk.items():
            drops = _samples(summary, MR_AUDIO, case, "frames dropped", who)
            got = med(MR_AUDIO, case, "frames received / expected", who)
            busy = med(MR_AUDIO, case, "machine CPU busy fraction", who)
            audio_lines.append(
                f"| {n} | {name} | {_fig(got, '.3f')} "
                f"| {_fig(max(drops) if drops else None, '.0f')} "
                f"| {_fig(med(MR_AUDIO, case, 'loop-thread CPU s per s', who), '.3f')} "
                f"| {_fig(med(MR_AUDIO, case, 'process CPU s per s', who), '.2f')} "
                f"| {_fig(med(MR_AUDIO, case, 'peer process CPU s per s', who), '.2f')} "
                f"| {_fig(busy, '.0%')} |"
            )
            if got is not None and got < 0.99:
                caps.append(f"- audio, R = {n}, {name}: {got:.1%} of the expected frames.")
    return [
        "## Many rooms per process",
        "",
        "`bench/many_rooms.py`. One measured process (lkrtc-trio on trio, or the",
        "official SDK on asyncio) holds one participant in each of R rooms; a peer",
        "process (lkrtc-trio for both contenders, so only the measured side differs)",
        "holds the other participant of each room. RPC variant: in each room the",
        f"measured participant calls its peer {MR_RATE:g} times a second (rooms at random",
        "phases, at most one call in flight per room: an overrun skips slots, so",
        "overload shows as a lower achieved rate), and the peer's handler publishes",
        "one reliable data packet back per call. Audio variant: the peer publishes a",
        "48 kHz mono tone in each room and the measured process reads one",
        "`AudioStream` per room. Rooms are added in stages within a round (R = 1,",
        "then more); each stage warms up, then measures a fixed window over all R",
        f"rooms. Medians of {rounds} interleaved round(s) per SDK (fewer than the other",
        "scenarios' 5, or the scenario would exceed its time budget; see the module",
        "docstring).",
        "",
        "The official SDK offers every native event to every `Room` (and every",
        "in-flight request's queue) of the process, each of which drops the other",
        "rooms' events; lkrtc-trio routes each event to its one consumer by handle.",
        '"loop-thread CPU" is the event-loop thread\'s CPU seconds per wall second;',
        '"loop lag" is how late a task sleeping 20 ms at a time wakes up during the',
        "window (the 99th percentile): the time the loop thread keeps a ready task",
        "waiting. An RPC p99 far above the loop lag was spent outside the loop",
        "(the native core's threads, the peer, the server, waiting for a core);",
        '"process CPU" includes the native core\'s threads (libwebrtc, data',
        'channels, Opus); "peer CPU" is the peer process; "machine busy" is the',
        "busy fraction of all cores (the local server, the peer and the measured",
        "process share them; other work on the machine adds to it). Data delivered:",
        "of the window's successful calls, the fraction whose packet arrived. Audio",
        "frames dropped: lkrtc-trio's `AudioStream.dropped_frames` (its bounded",
        "buffer drops the oldest frame when the reader falls behind); the official",
        "stream's queue is unbounded, so its figure is the shortfall against 100",
        "frames per second per room.",
        "",
        "RPC, 5 calls/s per room, one data packet back per call:",
        "",
        *rpc_lines,
        "",
        "Audio, one 48 kHz mono subscription per room:",
        "",
        *audio_lines,
        "",
        "### Where this machine caps R",
        "",
        *(
            [
                "Stages listed here ran short of rooms, call rate, data or frames, or on a",
                "machine at least 85 % busy: there the 2 cores (server, peer and measured",
                "process, native threads included) limit the figures as much as the SDK",
                "does. Per stage (medians):",
                "",
            ]
            if caps
            else []
        ),
        *(
            caps
            or [
                "- No stage ran short of rooms, call rate, data or audio frames,"
                " or ran the machine above 85 % busy."
            ]
        ),
        "",
    ]


def write_report(
    path: Path,
    meta: dict[str, Any],
    summary: list[dict[str, Any]],
    table_lines: list[str],
    total_s: float,
    failed_rounds: list[dict[str, str]] | None = None,
) -> None:
    checks = targets(summary)
    failures = []
    for f in failed_rounds or []:
        tail = [ln for ln in f["error"].strip().splitlines() if ln.strip()][-6:]
        failures += [f"- {f['round']}:", "", "  ```", *[f"  {ln}" for ln in tail], "  ```"]
    failed_section = [
        "## Failed rounds",
        "",
        "Each of these rounds failed once and was run again (a second failure would",
        "have ended the run); the tables use the rerun. Last lines of the error:",
        "",
        *failures,
        "",
    ]
    lines = [
        "# Performance",
        "",
        "Measured by `make bench` (`python -m bench`): lkrtc-trio, the official asyncio",
        "SDK (`livekit`) and, where it exists, the bare native floor, side by side in",
        "one run against the same local livekit-server. Each contender runs in its own",
        "process.",
        "",
        "How to read the numbers:",
        "",
        "- Every row comes from 5 rounds per contender (3 for the many-rooms",
        "  scenario, see its section), interleaved: round r",
        "  of lkrtc-trio, then round r of the official SDK (and floor), then round",
        "  r + 1. Each round is a fresh process (and a fresh room) and gives one sample",
        "  per row; the table shows the median and min..max of those samples.",
        "- Ratios are paired: for each round r, lkrtc-trio's advantage is the other",
        "  contender's value over lkrtc-trio's for lower-is-better metrics (lkrtc-trio's",
        "  over the other's for higher-is-better ones), both from round r, so a slow",
        '  phase of the machine hits both sides of a ratio. "lkrtc-trio better by" is',
        "  the median of these per-round ratios, followed by their spread: the min..max",
        "  over the rounds (with 5 rounds, the whole range rather than an interquartile",
        "  range, which five points cannot estimate).",
        '- "within noise": the min..max range of the paired ratios crosses 1, i.e. in',
        "  some rounds the other contender was ahead. Such a row shows no demonstrated",
        "  difference, whatever its median.",
        "- A target counts as met only if the median paired ratio meets it; the",
        '  measured column adds "within noise" where the range crosses 1 and "rounds',
        "  straddle the target\" where it crosses the target's threshold.",
        '- "loop-thread CPU" rows: `time.thread_time()` on the thread running the event',
        "  loop, sender and receiver, around the measured interval, per message (or per",
        "  event, or per MB). Native threads are not in it. The official SDK parses each",
        "  native event in the native callback thread (under the GIL, off the loop);",
        "  lkrtc-trio parses on the loop, so its figure includes that work and the",
        "  official SDK's does not.",
        "- These machines are noisy: compare the ratios, not absolute times across runs.",
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
        *(failed_section if failures else []),
        *many_rooms_section(summary),
        "## All scenarios",
        "",
        '"lkrtc-trio better by" is the factor by which lkrtc-trio beats that',
        "contender (above 1: lkrtc-trio is better; below 1: worse): the median of the",
        "paired per-round ratios, then their min..max.",
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
        "make bench            # everything (about 30 minutes on 2 cores)",
        ".venv/bin/python -m lkrtc_trio.testing.netns -- .venv/bin/python -m bench rpc data",
        "# re-run some scenarios and merge them into bench/results.json and this file:",
        ".venv/bin/python -m lkrtc_trio.testing.netns -- \\",
        "    .venv/bin/python -m bench --merge many_rooms",
        "```",
        "",
    ]
    extra = path.with_name("performance-notes.md")
    if extra.exists():
        lines += ["## Analysis", "", extra.read_text().strip(), ""]
    path.write_text("\n".join(lines))
