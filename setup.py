"""Build hook: compiles the cffi binding declared in native/build_ffi.py."""

from setuptools import setup

setup(cffi_modules=["native/build_ffi.py:ffibuilder"])
