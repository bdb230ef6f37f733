"""Benchmarks: lkrtc-trio against the official SDK and the bare native floor,
side by side in one run (``make bench``)."""
