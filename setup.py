"""Build hook: compiles the cffi binding declared in native/build_ffi.py.

The compiled module (cffi API mode) is the fast path. When it cannot be built,
for instance on a machine without a C compiler, the install goes on without it
and lkrtc_trio uses cffi's ABI mode at run time (``lkrtc_trio.native_info()``
says which mode is in use and why).
"""

from __future__ import annotations

import sys

from setuptools import setup
from setuptools.command.build_ext import build_ext


class optional_build_ext(build_ext):
    """build_ext that reports a failed compile and carries on."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # no compiler at all (e.g. "gcc": not found)
            self._skipped(exc)

    def build_extension(self, ext: object) -> None:
        try:
            super().build_extension(ext)  # type: ignore[arg-type]
        except Exception as exc:  # compiler present but the compile failed
            self._skipped(exc)

    @staticmethod
    def _skipped(exc: BaseException) -> None:
        print(
            "lkrtc-trio: the compiled binding lkrtc_trio._lkffi was not built "
            f"({type(exc).__name__}: {exc}); lkrtc_trio will use cffi's ABI mode "
            "(the same behaviour; each native call costs a little more)",
            file=sys.stderr,
        )


setup(
    cffi_modules=["native/build_ffi.py:ffibuilder"],
    cmdclass={"build_ext": optional_build_ext},
)
