"""Test rules: real server on loopback (or the run's own network namespace),
free ports only, bounded durations (fail_after everywhere a wait could hang).
"""

from __future__ import annotations

pytest_plugins = ["lkrtc_trio.testing.pytest_plugin"]
