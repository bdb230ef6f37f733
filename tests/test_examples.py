"""The examples run to success against the session's livekit-server.

Each example is run as a script (``sys.executable``, as a user would), with
``--url``/``--api-key``/``--api-secret`` of the ``livekit_server`` fixture, so
it does not start a server of its own. It must exit 0 and print its success
line. These tests are sync (they only wait for a subprocess), so they run
once, not once per backend.

Not run here: examples/publish_tone.py and examples/record_wav.py, which with
``--url`` each need the other running in the same room (record_wav.py without
``--url`` starts its own server).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lkrtc_trio.testing import ServerInfo

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
#: seconds an example may take (each takes about 3 s to see its peers, then
#: a few seconds; rpc.py waits for its timeouts)
TIMEOUT = 120

#: script -> the line it prints when everything was as expected
SUCCESS = {
    "chat.py": "chat example: everything as expected",
    "data.py": "data example: everything as expected",
    "demo.py": "demo finished OK",
    "e2ee.py": "e2ee example: everything as expected",
    "rpc.py": "rpc example: every outcome as expected",
    "voice_loop.py": "voice_loop example: everything as expected",
}


def as_text(output: str | bytes | None) -> str:
    return output.decode(errors="replace") if isinstance(output, bytes) else output or ""


@pytest.mark.parametrize("script", sorted(SUCCESS))
def test_example_runs_to_success(livekit_server: ServerInfo, script: str) -> None:
    command = [
        sys.executable,
        str(EXAMPLES / script),
        "--url",
        livekit_server.url,
        "--api-key",
        livekit_server.api_key,
        "--api-secret",
        livekit_server.api_secret,
    ]
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=TIMEOUT, cwd=EXAMPLES.parent
        )
    except subprocess.TimeoutExpired as exc:
        out, err = (as_text(s) for s in (exc.stdout, exc.stderr))
        pytest.fail(f"{script} did not finish within {TIMEOUT} s\nstdout:\n{out}\nstderr:\n{err}")
    report = f"{script} exited {done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    assert done.returncode == 0, report
    lines = done.stdout.splitlines()
    assert SUCCESS[script] in lines, report
    assert not [line for line in lines if line.startswith("UNEXPECTED")], report
