# Type stub of the cffi extension built from native/build_ffi.py.
from typing import Any

ffi: Any
lib: Any
