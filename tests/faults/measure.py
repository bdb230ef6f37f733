"""Measures data delivery across network partitions, lkrtc-trio (trio and
asyncio) and the official SDK side by side, for ``docs/reliability.md``.

Each round runs, for every partition length, the three SDKs at the same time
(each with a server of its own, see ``scenarios.py partition``); rounds repeat
the whole set, so the SDKs share whatever the machine is doing. Prints a
Markdown table: per SDK and length, packets lost of COUNT (each round), how
many lost packets no error or event reported, how many packets (distinct)
a ``ReliableDataMayBeLost`` range covered, when ``Reconnecting`` and
``Reconnected`` came (seconds after the cut, median), and the slowest
``publish_data`` call.

Usage (from the repository root, inside the test network namespace):
    python -m tests.faults.measure [ROUNDS] [COUNT] [SECONDS ...]
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

SDKS = ("official", "trio", "asyncio")


def run(seconds: float, sdk: str, count: int) -> dict[str, Any]:
    argv = [sys.executable, "-m", "tests.faults.scenarios", "partition", str(seconds), sdk]
    done = subprocess.run(
        [*argv, str(count)], capture_output=True, text=True, timeout=seconds + 150, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{sdk} {seconds}s failed:\n{done.stderr[-3000:]}")
    out: dict[str, Any] = json.loads(done.stdout)
    return out


def summarize(out: dict[str, Any]) -> dict[str, Any]:
    sent = out["sent"]
    got = set(out["received"])
    lost = [i for i in range(len(sent)) if i not in got]
    reports = [d for _, who, name, d in out["events"] if name == "ReliableDataMayBeLost"]
    failed = {i for i, (_, _, outcome, _) in enumerate(sent) if outcome != "ok"}

    def reported(i: int) -> bool:
        seq = sent[i][1]
        return i in failed or any(
            seq is not None and r["first_sequence"] <= seq <= r["last_sequence"] for r in reports
        )

    def first(name: str) -> float | None:
        times = [t for t, who, n, _ in out["events"] if who == "sender" and n == name]
        return times[0] if times else None

    return {
        "lost": len(lost),
        "silent": sum(1 for i in lost if not reported(i)),
        # distinct packets inside at least one report (own link or receiver)
        "reported": sum(1 for i in range(len(sent)) if reported(i) and i not in failed),
        "reconnecting": first("Reconnecting"),
        "reconnected": first("Reconnected"),
        "slowest": max(d for _, _, _, d in sent),
        "in_order": out["received"] == sorted(out["received"]),
        "duplicates": len(out["received"]) - len(got),
    }


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    lengths = [float(x) for x in sys.argv[3:]] or [3.0, 10.0, 20.0, 30.0]
    results: dict[tuple[str, float], list[dict[str, Any]]] = {}
    for r in range(rounds):
        for seconds in lengths:
            with ThreadPoolExecutor(len(SDKS)) as pool:
                outs = list(pool.map(lambda sdk, s=seconds: run(s, sdk, count), SDKS))
            for sdk, out in zip(SDKS, outs, strict=True):
                s = summarize(out)
                results.setdefault((sdk, seconds), []).append(s)
                print(f"round {r + 1} {seconds:>4.0f}s {sdk:8} {s}", file=sys.stderr, flush=True)

    def med(xs: list[float | None]) -> str:
        vals = [x for x in xs if x is not None]
        if not vals:
            return "-"
        return f"{statistics.median(vals):.1f}" + ("" if len(vals) == len(xs) else "*")

    print(
        f"| partition | SDK | lost of {count} (each round) | lost silently | reported at risk "
        "| Reconnecting (s) | Reconnected (s) | slowest call (s) | order, duplicates |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for seconds in lengths:
        for sdk in SDKS:
            rs = results[(sdk, seconds)]
            name = "official (asyncio)" if sdk == "official" else f"lkrtc-trio ({sdk})"
            order = "in order" if all(x["in_order"] for x in rs) else "REORDERED"
            dups = sum(x["duplicates"] for x in rs)
            print(
                f"| {seconds:.0f} s | {name} | {', '.join(str(x['lost']) for x in rs)} "
                f"| {', '.join(str(x['silent']) for x in rs)} "
                f"| {', '.join(str(x['reported']) for x in rs) if sdk != 'official' else '-'} "
                f"| {med([x['reconnecting'] for x in rs])} | {med([x['reconnected'] for x in rs])} "
                f"| {max(x['slowest'] for x in rs):.1f} | {order}, {dups} |"
            )


if __name__ == "__main__":
    main()
