"""``python -m lkrtc_trio``: ``--version`` prints lkrtc-trio's version and the
``livekit`` wheel's (the native core it drives), with the tested range."""

from __future__ import annotations

import argparse
import sys

from ._version import TESTED_LIVEKIT, __version__, livekit_version


def version_line() -> str:
    return f"lkrtc-trio {__version__} (livekit {livekit_version()}; tested livekit{TESTED_LIVEKIT})"


def main(argv: list[str] | None = None) -> int:
    """Exit status 0 on success, 2 for a usage error (argparse's)."""
    parser = argparse.ArgumentParser(
        prog="python -m lkrtc_trio",
        description="lkrtc-trio: a LiveKit real-time client SDK for trio and anyio.",
    )
    parser.add_argument(
        "--version", action="store_true", help="print the lkrtc-trio and livekit versions"
    )
    args = parser.parse_args(argv)
    if args.version:
        print(version_line())
        return 0
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
