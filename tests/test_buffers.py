"""Buffers lent to the native core: one owner, released explicitly.

These use the real cffi binding (no server): a pin is a buffer export, so a
memoryview cannot be released (or resized, for a bytearray) while it is lent,
and ``unpin`` ends the export at once instead of leaving it to the collector.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from lkrtc_trio._native import load_native


def test_pin_holds_an_export_until_unpinned() -> None:
    native = load_native()
    raw = bytearray(b"0123456789")
    view = memoryview(raw).cast("B")[2:]
    pin, address = native.pin(view)
    assert native.read(address, 4) == b"2345"  # no copy: the view's own bytes
    with pytest.raises(BufferError):
        view.release()  # exported: the memoryview cannot go away under us
    with pytest.raises(BufferError):
        raw.extend(b"x")  # nor can the bytearray move
    native.unpin(pin)
    view.release()
    raw.extend(b"x")


_CYCLES = textwrap.dedent(
    """
    import gc, sys
    from lkrtc_trio._native import load_native
    native = load_native()
    for _ in range(50):
        view = memoryview(bytearray(64))
        pin, _ = native.pin(view)
        cycle = [view, pin]
        cycle.append(cycle)  # garbage only the cyclic collector can free
        if sys.argv[1] == "unpin":
            native.unpin(pin)
        del view, pin, cycle
        gc.collect()
    print("survived")
    """
)


@pytest.mark.parametrize("release", ["unpin", "left-to-gc"])
def test_pins_in_garbage_cycles(release: str) -> None:
    """Why every pin is released explicitly: a lent memoryview that ends in a
    garbage cycle with its export still held is cleared by the collector
    anyway on CPython < 3.13, and the export's later release dereferences the
    cleared view (SIGSEGV). Released first, the same cycle is harmless."""
    proc = subprocess.run(
        [sys.executable, "-c", _CYCLES, release], capture_output=True, text=True, timeout=60
    )
    if release == "unpin" or sys.version_info >= (3, 13):
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert proc.stdout.strip() == "survived"
    else:
        assert proc.returncode == -11, (proc.returncode, proc.stderr[-2000:])
        assert "memoryview has 1 exported buffer" in proc.stderr
