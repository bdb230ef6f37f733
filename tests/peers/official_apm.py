"""Run audio through the official SDK's ``livekit.rtc.AudioProcessingModule``, for the
differential tests of ``lkrtc_trio.AudioProcessingModule`` (``tests/test_apm.py``).

Usage: ``python official_apm.py JOBS.npz OUT.npz``, or ``python official_apm.py
crash SAMPLES``: one 48 kHz mono frame of SAMPLES samples through the official
``process_stream`` (the regression test that a frame that is not whole 10 ms chunks aborts
the process there; prints "returned" if it does not).

``JOBS.npz`` holds ``jobs``: a JSON list (as a 0-d string array) of jobs, each
``{"name", "flags": {"echo_cancellation", "noise_suppression", "high_pass_filter",
"auto_gain_control"}, "sample_rate", "num_channels", "delay_ms" (int or null)}``, and per job
``near_<name>``: int16 ``(frames, samples_per_channel * num_channels)``, interleaved by channel,
and optionally ``far_<name>`` of the same shape. For each frame, in order: the far-end frame goes
through ``process_reverse_stream``, ``set_stream_delay_ms(delay_ms)`` is called when given, then
the near-end frame goes through ``process_stream``. One fresh module per job.

``OUT.npz`` gets ``out_<name>``: the processed near-end frames, same shape, int16.

This runs in its own process because one process cannot initialise the native library twice.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import numpy as np
from livekit import rtc


def run_job(job: dict[str, Any], near: np.ndarray, far: np.ndarray | None) -> np.ndarray:
    rate = int(job["sample_rate"])
    channels = int(job["num_channels"])
    spc = rate // 100
    delay = job.get("delay_ms")
    apm = rtc.AudioProcessingModule(**{k: bool(v) for k, v in job["flags"].items()})
    out = np.empty_like(near)
    for i in range(near.shape[0]):
        if far is not None:
            reverse = rtc.AudioFrame(bytearray(far[i].tobytes()), rate, channels, spc)
            apm.process_reverse_stream(reverse)
        if delay is not None:
            apm.set_stream_delay_ms(int(delay))
        frame = rtc.AudioFrame(bytearray(near[i].tobytes()), rate, channels, spc)
        apm.process_stream(frame)
        out[i] = np.frombuffer(frame.data, dtype=np.int16)
    return out


def main() -> int:
    if sys.argv[1] == "crash":
        samples = int(sys.argv[2])
        apm = rtc.AudioProcessingModule(noise_suppression=True)
        apm.process_stream(rtc.AudioFrame(bytearray(2 * samples), 48000, 1, samples))
        print("returned", flush=True)
        return 0
    jobs_path, out_path = sys.argv[1], sys.argv[2]
    with np.load(jobs_path) as data:
        jobs = json.loads(str(data["jobs"]))
        arrays = {key: data[key] for key in data.files if key != "jobs"}
    results = {}
    for job in jobs:
        name = job["name"]
        results[f"out_{name}"] = run_job(job, arrays[f"near_{name}"], arrays.get(f"far_{name}"))
    np.savez(out_path, **results)  # type: ignore[arg-type]
    return 0


if __name__ == "__main__":
    sys.exit(main())
