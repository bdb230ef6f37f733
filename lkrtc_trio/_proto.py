"""The FFI protobuf schema, imported from the installed ``livekit`` wheel.

The generated ``*_pb2`` modules live in ``livekit/rtc/_proto``. Importing them as
``livekit.rtc._proto`` would first run ``livekit/rtc/__init__.py``, which loads
the whole asyncio SDK (and numpy): about 170 ms. Instead the folder is mounted
as the package ``lkrtc_trio._pb`` (about 35 ms); the messages are the same
schema, byte for byte. Nothing from the schema is copied into this repository.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from pathlib import Path
from typing import TYPE_CHECKING

from ._errors import NativeLoadError

__all__ = [
    "audio_frame_pb2",
    "ffi_pb2",
    "handle_pb2",
    "participant_pb2",
    "room_pb2",
    "rpc_pb2",
    "stats_pb2",
    "track_pb2",
    "track_publication_pb2",
    "video_frame_pb2",
]

_PKG = "lkrtc_trio._pb"


def _mount() -> None:
    if _PKG in sys.modules:
        return
    spec = importlib.util.find_spec("livekit")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for root in locations:
        folder = Path(root) / "rtc" / "_proto"
        if (folder / "ffi_pb2.py").is_file():
            pkg = types.ModuleType(_PKG)
            pkg.__path__ = [str(folder)]
            pkg.__package__ = _PKG
            sys.modules[_PKG] = pkg
            return
    raise NativeLoadError(
        "the livekit wheel (source of the native library and its protobuf schema) "
        "is not installed: pip install 'livekit>=1.2,<1.3'"
    )


if TYPE_CHECKING:
    from livekit.rtc._proto import (
        audio_frame_pb2,
        ffi_pb2,
        handle_pb2,
        participant_pb2,
        room_pb2,
        rpc_pb2,
        stats_pb2,
        track_pb2,
        track_publication_pb2,
        video_frame_pb2,
    )
else:
    _mount()
    audio_frame_pb2 = importlib.import_module(_PKG + ".audio_frame_pb2")
    ffi_pb2 = importlib.import_module(_PKG + ".ffi_pb2")
    handle_pb2 = importlib.import_module(_PKG + ".handle_pb2")
    participant_pb2 = importlib.import_module(_PKG + ".participant_pb2")
    room_pb2 = importlib.import_module(_PKG + ".room_pb2")
    rpc_pb2 = importlib.import_module(_PKG + ".rpc_pb2")
    stats_pb2 = importlib.import_module(_PKG + ".stats_pb2")
    track_pb2 = importlib.import_module(_PKG + ".track_pb2")
    track_publication_pb2 = importlib.import_module(_PKG + ".track_publication_pb2")
    video_frame_pb2 = importlib.import_module(_PKG + ".video_frame_pb2")
