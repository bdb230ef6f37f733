"""``python -m bench``: runs each scenario for each contender, each contender in
its own process, interleaved, and prints medians and ratios."""

from __future__ import annotations

import json
import platform
import statistics
import subprocess
import sys


def run(module: str, *args: str) -> list[float]:
    out = subprocess.run(
        [sys.executable, "-m", module, *args], capture_output=True, text=True, check=True
    )
    return [float(x) for x in json.loads(out.stdout.strip().splitlines()[-1])]


def main() -> None:
    rounds = 3
    samples: dict[str, list[float]] = {"floor": [], "lkrtc": [], "official": []}
    for _ in range(rounds):  # interleave contenders to spread machine noise
        for name in samples:
            samples[name] += run("bench.ffi_request", name)
    med = {k: statistics.median(v) for k, v in samples.items()}
    best = {k: min(v) for k, v in samples.items()}
    machine = f"{platform.machine()} {platform.processor()}".strip()
    print(f"machine: {machine}, python {platform.python_version()}")
    print("FFI request round trip (no server), us/op over", rounds, "x 7 x 20000 ops")
    print(f"{'contender':<10} {'median':>8} {'best':>8} {'vs floor':>9}")
    for k in samples:
        print(f"{k:<10} {med[k]:8.2f} {best[k]:8.2f} {med[k] / med['floor']:8.2f}x")
    print(f"official / lkrtc-trio: {med['official'] / med['lkrtc']:.2f}x")


if __name__ == "__main__":
    main()
