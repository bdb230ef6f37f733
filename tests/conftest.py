"""Test rules: real server on loopback (or the run's own network namespace),
free ports only, bounded durations (fail_after everywhere a wait could hang).

Both backends: every ``async def`` test runs twice, on trio and on asyncio
(anyio's pytest plugin in auto mode, with the parametrized ``anyio_backend``
fixture below), so it may only use anyio's API. Tests of trio-only machinery (mock
clocks) are plain functions that call ``trio.run`` themselves.

After a *failed* test, native handles it left open are closed, so that one
failure does not make every later test's "handles back to zero" check fail.
Passing tests must clean up after themselves (they assert it).
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from typing import Any

import pytest

# The fixtures livekit_server, livekit_token and livekit_room_name come from
# lkrtc_trio's pytest plugin, loaded by its pytest11 entry point (no line here
# for it); pytester tests that plugin.
pytest_plugins = ["pytester"]


@pytest.fixture(params=["trio", "asyncio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test that uses the server (or its binary) is marked
    ``integration``, so that ``make unit`` (``-m "not integration"``) runs
    without one."""
    unmarked = [
        item.nodeid
        for item in items
        if {"livekit_server", "livekit_cluster", "server_binary"}
        & set(getattr(item, "fixturenames", ()))
        and item.get_closest_marker("integration") is None
    ]
    if unmarked:
        raise pytest.UsageError(
            "tests that use livekit_server must be marked integration: " + ", ".join(unmarked)
        )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Generator[None, Any, None]:
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        item.stash[_FAILED] = report.failed


_FAILED = pytest.StashKey[bool]()


@pytest.fixture(autouse=True)
def _isolate_failed_tests(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if not request.node.stash.get(_FAILED, False):
        return
    from lkrtc_trio import _runtime

    rt = _runtime._runtime
    if rt is not None:
        leaked = rt.release_all_handles()
        if leaked:
            print(f"closed native handles left by the failed test: {leaked}")
