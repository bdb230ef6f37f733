# Quick start: `make demo` and `make test` on a fresh machine; each sets up what
# it needs (venv, package + test extras, the compiled binding, livekit-server,
# iproute2 for the test network namespace) and skips what is already done.

PYTHON ?= python3
VENV   := .venv
VPY    := $(VENV)/bin/python
STAMP  := $(VENV)/.lkrtc-installed
# Tests, demo and benchmarks run inside a private network namespace when root
# (libwebrtc ignores loopback for ICE); plain loopback otherwise.
NETNS  := $(VPY) -m lkrtc_trio.testing.netns --

.PHONY: setup sysdeps server test lint typecheck unit demo bench clean

setup: $(STAMP) sysdeps server

$(VPY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(VPY) pyproject.toml setup.py native/build_ffi.py native/lk_shim.c native/livekit_ffi.cdef.h
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q -e ".[test]"
	touch $(STAMP)

sysdeps:
	@if [ "$$(id -u)" = 0 ] && ! command -v ip >/dev/null 2>&1; then \
	  echo "installing iproute2 (ip) for the test network namespace"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iproute2) \
	    || echo "could not install iproute2; tests will use plain loopback"; \
	fi

server: $(STAMP)
	$(VPY) -m lkrtc_trio.testing install-server

lint: $(STAMP)
	$(VPY) -m ruff check lkrtc_trio tests examples bench

typecheck: $(STAMP)
	$(VPY) -m mypy

test: setup lint typecheck
	$(NETNS) $(VPY) -m pytest $(PYTEST_ARGS)

unit: $(STAMP)
	$(VPY) -m pytest -m "not integration" $(PYTEST_ARGS)

demo: setup
	$(NETNS) $(VPY) examples/demo.py

bench: setup
	$(NETNS) $(VPY) -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info lkrtc_trio/_lkffi*.so lkrtc_trio/_lkffi.c
