"""Packaging hygiene: the version comes from the package metadata, ``python -m
lkrtc_trio --version`` prints both versions, the tested ``livekit`` range is
the dependency pin, and the metadata says typed and Apache-2.0."""

from __future__ import annotations

import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

import lkrtc_trio as lk

ROOT = Path(__file__).resolve().parent.parent


def test_version_comes_from_the_installed_metadata() -> None:
    assert lk.__version__ == metadata.version("lkrtc-trio") != "0+unknown"
    pinned = re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M)
    assert pinned is not None and lk.__version__ == pinned.group(1)
    assert lk.livekit_version() == metadata.version("livekit")


def test_tested_livekit_range_is_the_dependency_pin() -> None:
    pins = [
        Requirement(r)
        for r in metadata.requires("lkrtc-trio") or []
        if Requirement(r).name == "livekit"
    ]
    assert len(pins) == 1 and pins[0].specifier == SpecifierSet(lk.TESTED_LIVEKIT)
    assert Version(lk.livekit_version()) in pins[0].specifier  # what runs here is tested


def test_metadata_says_typed_and_licensed() -> None:
    meta = metadata.metadata("lkrtc-trio")
    assert "Typing :: Typed" in meta.get_all("Classifier", [])
    assert meta["License-Expression"] == "Apache-2.0"
    assert (Path(lk.__file__).parent / "py.typed").exists()


def test_python_m_lkrtc_trio_version_prints_both_versions() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "lkrtc_trio", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        f"lkrtc-trio {lk.__version__} (livekit {lk.livekit_version()}; "
        f"tested livekit{lk.TESTED_LIVEKIT})"
    )
