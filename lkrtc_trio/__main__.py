"""``python -m lkrtc_trio``: the ``lkrtc`` command line tool (see ``--help``).

``python -m lkrtc_trio --version`` prints lkrtc-trio's version and the
``livekit`` wheel's (the native core it drives), with the tested range.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from ._cli import main as _cli_main
from ._cli import version_line as version_line

__all__ = ["main", "version_line"]


def main(argv: Sequence[str] | None = None) -> int:
    """Runs ``lkrtc`` as ``python -m lkrtc_trio``; returns its exit status
    (0 success, 2 usage error; the full table is in ``--help``)."""
    return _cli_main(argv, prog="python -m lkrtc_trio")


if __name__ == "__main__":
    sys.exit(main())
