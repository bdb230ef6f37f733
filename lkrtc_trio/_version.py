"""Versions: this package's (from its installed metadata) and the ``livekit``
wheel's, whose native core and protobuf schema lkrtc_trio drives."""

from __future__ import annotations

from importlib import metadata

__all__ = ["TESTED_LIVEKIT", "__version__", "livekit_version"]

#: The ``livekit`` versions lkrtc_trio is tested with (its dependency pin).
TESTED_LIVEKIT = ">=1.2.0,<1.3"

try:
    __version__: str = metadata.version("lkrtc-trio")
except metadata.PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"


def livekit_version() -> str:
    """The installed ``livekit`` wheel's version (the source of the native core).

    Raises:
        importlib.metadata.PackageNotFoundError: ``livekit`` is not installed.
    """
    return metadata.version("livekit")
