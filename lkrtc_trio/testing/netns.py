"""Run a command inside a private network namespace made for LiveKit tests.

Usage::

    python -m lkrtc_trio.testing.netns [--] CMD ARGS...

Why: libwebrtc (the engine under LiveKit's native client) skips loopback
interfaces when it gathers ICE candidates, so a client and a server talking over
127.0.0.1 only connect when the server offers a loopback candidate; and the
server sends ICE checks to every candidate a client offers, which on a normal
machine includes the host's own interface addresses. Test traffic must never go
to the host's own interface address. A fresh network namespace with a veth pair
gives both sides a real, non-loopback address (``10.213.0.1``) that exists only
for the duration of the run and reaches nothing else.

When running as root with working ``unshare -n`` and ``ip`` (iproute2), this
re-executes itself inside ``unshare -n``, brings ``lo`` up, creates the veth pair
``lkv0``/``lkv1`` with ``10.213.0.1/24`` on ``lkv0`` (both ends up), sets
``LKRTC_TEST_HOST=10.213.0.1`` and execs CMD. Otherwise (not root, tools
missing or not permitted, or ``LKRTC_NO_NETNS=1``) it prints one line saying so
to stderr and execs CMD with ``LKRTC_TEST_HOST=127.0.0.1``. CMD's exit code is
passed through.

Standard library only.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Sequence

from ._server import NETNS_HOST, in_test_netns

__all__ = [
    "NETNS_HOST",
    "NETNS_PREFIX_LEN",
    "in_test_netns",
    "main",
    "netns_available",
]

NETNS_PREFIX_LEN = 24
_VETH = ("lkv0", "lkv1")
_LOOPBACK_HOST = "127.0.0.1"
_PROG = "python -m lkrtc_trio.testing.netns"


def _note(message: str) -> None:
    print(f"lkrtc-trio netns: {message}", file=sys.stderr, flush=True)


def _run(argv: list[str]) -> None:
    subprocess.run(
        argv,
        check=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _setup_links() -> None:
    """Bring up lo and the veth pair in the current (fresh) namespace.

    Raises:
        subprocess.CalledProcessError: An ``ip`` command failed.
        OSError: ``ip`` cannot be run.
    """
    a, b = _VETH
    _run(["ip", "link", "set", "lo", "up"])
    _run(["ip", "link", "add", a, "type", "veth", "peer", "name", b])
    _run(["ip", "addr", "add", f"{NETNS_HOST}/{NETNS_PREFIX_LEN}", "dev", a])
    _run(["ip", "link", "set", a, "up"])
    _run(["ip", "link", "set", b, "up"])


def _self_argv(*args: str) -> list[str]:
    # Same interpreter, same cwd and environment: importable as it was for us.
    return [sys.executable, "-m", "lkrtc_trio.testing.netns", *args]


def netns_available() -> tuple[bool, str]:
    """Check whether the namespace path can be used here.

    Actually tries: runs the full setup once in a throwaway namespace.

    Returns:
        ``(True, "")`` if usable, else ``(False, reason)``.
    """
    if os.environ.get("LKRTC_NO_NETNS") == "1":
        return False, "LKRTC_NO_NETNS=1"
    if not sys.platform.startswith("linux"):
        return False, f"not Linux ({sys.platform})"
    if os.geteuid() != 0:
        return False, "not running as root"
    unshare = shutil.which("unshare")
    if unshare is None:
        return False, "`unshare` (util-linux) not found"
    if shutil.which("ip") is None:
        return False, "`ip` (iproute2) not found"
    try:
        result = subprocess.run(
            [unshare, "-n", "--", *_self_argv("--probe")],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"`unshare -n` failed: {exc}"
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        return False, f"`unshare -n` + veth setup failed: {last}"
    return True, ""


def _exec(cmd: Sequence[str], host: str) -> int:
    env = dict(os.environ)
    env["LKRTC_TEST_HOST"] = host
    try:
        os.execvpe(cmd[0], list(cmd), env)
    except OSError as exc:
        _note(f"cannot run {cmd[0]!r}: {exc}")
        return 127
    raise AssertionError("unreachable")  # pragma: no cover


def _usage() -> int:
    print(f"usage: {_PROG} [--] CMD [ARGS...]", file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    """Run CMD in the test namespace (or plainly); see the module docstring.

    On success this does not return: the process is replaced by CMD.

    Args:
        argv: Arguments after the program name; defaults to ``sys.argv[1:]``.

    Returns:
        An exit code when CMD could not be started: 2 for a usage error, 127
        when CMD was not found, 1 when the namespace setup failed.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    mode = "outer"
    if args and args[0] in ("--inside", "--probe"):
        mode = args.pop(0)
    if args and args[0] == "--":
        args.pop(0)
    elif args and args[0] in ("-h", "--help"):
        print(__doc__)
        return 0

    if mode == "--probe":
        try:
            _setup_links()
        except (OSError, subprocess.CalledProcessError) as exc:
            detail = getattr(exc, "stderr", None) or str(exc)
            print(str(detail).strip(), file=sys.stderr)
            return 1
        return 0

    if not args:
        return _usage()

    if mode == "--inside":
        try:
            _setup_links()
        except (OSError, subprocess.CalledProcessError) as exc:
            detail = getattr(exc, "stderr", None) or str(exc)
            _note(f"setting up the namespace failed: {str(detail).strip()}")
            return 1
        return _exec(args, NETNS_HOST)

    ok, reason = netns_available()
    if not ok:
        _note(f"no private network namespace ({reason}); running on {_LOOPBACK_HOST}")
        return _exec(args, _LOOPBACK_HOST)
    unshare = shutil.which("unshare") or "unshare"
    try:
        os.execv(unshare, [unshare, "-n", "--", *_self_argv("--inside", "--", *args)])
    except OSError as exc:
        _note(f"cannot run unshare: {exc}")
        return 1
    raise AssertionError("unreachable")  # pragma: no cover


if __name__ == "__main__":
    sys.exit(main())
