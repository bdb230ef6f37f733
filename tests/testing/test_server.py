"""Tests of lkrtc_trio.testing: tokens, ports, install cache, LocalServer, plugin."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import socket
import stat
import subprocess
import sys
import textwrap
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

import lkrtc_trio.testing as lt
from lkrtc_trio.testing import _server

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
_REPO_ROOT = Path(lt.__file__).resolve().parents[2]


def _http_get(url: str) -> tuple[int, bytes]:
    try:
        with _OPENER.open(url, timeout=5) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _b64decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def _write_script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + textwrap.dedent(body))
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def _process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.fixture(scope="module")
def server_binary() -> Path:
    # Uses the real cache (builds once, minutes, on a fresh machine).
    return lt.install_server()


# --------------------------------------------------------------------------- tokens


def test_token_round_trip() -> None:
    before = int(time.time())
    token = lt.mint_token(
        "alice",
        "room-1",
        name="Alice",
        metadata="meta",
        attributes={"a": "1"},
        ttl=120,
        can_publish=False,
        hidden=True,
        kind="agent",
    )
    header_b64, claims_b64, sig_b64 = token.split(".")
    assert "=" not in token
    header = json.loads(_b64decode(header_b64))
    assert header == {"alg": "HS256", "typ": "JWT"}
    expected = hmac.new(b"secret", f"{header_b64}.{claims_b64}".encode(), hashlib.sha256)
    assert hmac.compare_digest(_b64decode(sig_b64), expected.digest())

    claims = json.loads(_b64decode(claims_b64))
    assert claims["iss"] == "devkey"
    assert claims["sub"] == "alice"
    assert claims["name"] == "Alice"
    assert claims["metadata"] == "meta"
    assert claims["attributes"] == {"a": "1"}
    assert claims["kind"] == "agent"
    assert before - 11 <= claims["nbf"] <= before - 9
    assert claims["exp"] - claims["nbf"] == pytest.approx(130, abs=2)
    assert claims["video"] == {
        "roomJoin": True,
        "room": "room-1",
        "canPublish": False,
        "canSubscribe": True,
        "canPublishData": True,
        "canUpdateOwnMetadata": True,
        "hidden": True,
    }


def test_token_optional_claims_absent_and_custom_keys() -> None:
    token = lt.mint_token("bob", "r", api_key="k", api_secret="s")
    header_b64, claims_b64, sig_b64 = token.split(".")
    claims = json.loads(_b64decode(claims_b64))
    assert claims["iss"] == "k"
    for key in ("name", "metadata", "attributes", "kind"):
        assert key not in claims
    expected = hmac.new(b"s", f"{header_b64}.{claims_b64}".encode(), hashlib.sha256)
    assert _b64decode(sig_b64) == expected.digest()


@pytest.mark.parametrize(
    ("identity", "room", "ttl"), [("", "r", 60.0), ("a", "", 60.0), ("a", "r", 0.0)]
)
def test_token_rejects_bad_input(identity: str, room: str, ttl: float) -> None:
    with pytest.raises(ValueError):
        lt.mint_token(identity, room, ttl=ttl)


# --------------------------------------------------------------------------- ports, paths


@pytest.mark.parametrize("kind", ["tcp", "udp"])
def test_free_port_is_usable(kind: str) -> None:
    host = lt.test_host()
    sock_type = socket.SOCK_STREAM if kind == "tcp" else socket.SOCK_DGRAM
    port = lt.free_port(host, kind)  # type: ignore[arg-type]
    assert 0 < port < 65536
    with socket.socket(socket.AF_INET, sock_type) as sock:
        sock.bind((host, port))


def test_free_ports_are_distinct_and_usable() -> None:
    host = lt.test_host()
    ports = lt.free_ports(host, 5, "tcp")
    assert len(set(ports)) == 5
    socks = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in ports]
    try:
        for sock, port in zip(socks, ports, strict=True):
            sock.bind((host, port))
    finally:
        for sock in socks:
            sock.close()
    with pytest.raises(ValueError):
        lt.free_port(host, "sctp")  # type: ignore[arg-type]


def test_test_host_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LKRTC_TEST_HOST", raising=False)
    assert lt.test_host() == "127.0.0.1"
    monkeypatch.setenv("LKRTC_TEST_HOST", "10.9.8.7")
    assert lt.test_host() == "10.9.8.7"


def test_cache_dir_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("LKRTC_CACHE_DIR", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert lt.cache_dir() == tmp_path / "home" / ".cache" / "lkrtc-trio"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert lt.cache_dir() == tmp_path / "xdg" / "lkrtc-trio"
    monkeypatch.setenv("LKRTC_CACHE_DIR", str(tmp_path / "explicit"))
    assert lt.cache_dir() == tmp_path / "explicit"
    assert lt.server_binary_path("v9") == (
        tmp_path / "explicit" / "bin" / "livekit-server-v9" / "server"
    )


# --------------------------------------------------------------------------- install


def _no_go() -> str | None:
    raise AssertionError("install_server tried to build")


@pytest.mark.integration
def test_install_server_uses_real_cache_without_building(
    monkeypatch: pytest.MonkeyPatch, server_binary: Path
) -> None:
    monkeypatch.delenv("LKRTC_SERVER_BIN", raising=False)
    monkeypatch.setattr(_server, "_find_go", _no_go)
    assert lt.install_server() == server_binary
    assert os.access(server_binary, os.X_OK)


def test_install_server_cached_in_custom_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("LKRTC_SERVER_BIN", raising=False)
    monkeypatch.setenv("LKRTC_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(_server, "_find_go", _no_go)
    fake = lt.server_binary_path(lt.SERVER_VERSION)
    fake.parent.mkdir(parents=True)
    _write_script(fake, "exit 0\n")
    assert lt.install_server() == fake
    # A cached fallback is used before trying to build anything.
    fake.unlink()
    fallback = lt.server_binary_path(lt.FALLBACK_VERSIONS[0])
    fallback.parent.mkdir(parents=True)
    _write_script(fallback, "exit 0\n")
    assert lt.install_server() == fallback


def test_install_server_env_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(_server, "_find_go", _no_go)
    binary = _write_script(tmp_path / "my-server", "exit 0\n")
    monkeypatch.setenv("LKRTC_SERVER_BIN", str(binary))
    assert lt.install_server() == binary
    monkeypatch.setenv("LKRTC_SERVER_BIN", str(tmp_path / "missing"))
    with pytest.raises(lt.ServerInstallError, match="LKRTC_SERVER_BIN"):
        lt.install_server()


def test_install_server_without_go(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("LKRTC_SERVER_BIN", raising=False)
    monkeypatch.setenv("LKRTC_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(_server, "_find_go", lambda: None)
    with pytest.raises(lt.ServerInstallError, match="go"):
        lt.install_server()


def test_install_server_falls_back_and_renames(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("LKRTC_SERVER_BIN", raising=False)
    monkeypatch.setenv("LKRTC_CACHE_DIR", str(tmp_path / "cache"))
    calls = tmp_path / "calls.txt"
    fake_go = _write_script(
        tmp_path / "go",
        f"""\
        echo "$@" >> {calls}
        case "$2" in
          *@{lt.SERVER_VERSION}) echo "go: unknown revision {lt.SERVER_VERSION}" >&2; exit 1;;
        esac
        printf '#!/bin/sh\\nexit 0\\n' > "$GOBIN/server"
        chmod +x "$GOBIN/server"
        """,
    )
    monkeypatch.setattr(_server, "_find_go", lambda: str(fake_go))
    result = lt.install_server()
    assert result == lt.server_binary_path(lt.FALLBACK_VERSIONS[0])
    assert os.access(result, os.X_OK)
    assert calls.read_text().splitlines() == [
        f"install github.com/livekit/livekit-server/cmd/server@{lt.SERVER_VERSION}",
        f"install github.com/livekit/livekit-server/cmd/server@{lt.FALLBACK_VERSIONS[0]}",
    ]
    leftovers = [p.name for p in (tmp_path / "cache" / "bin").iterdir()]
    assert sorted(leftovers) == [".install.lock", f"livekit-server-{lt.FALLBACK_VERSIONS[0]}"]
    # Second call: cached, no new go invocation.
    assert lt.install_server() == result
    assert len(calls.read_text().splitlines()) == 2


def test_concurrent_installers_build_once(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("LKRTC_SERVER_BIN", raising=False)
    monkeypatch.setenv("LKRTC_CACHE_DIR", str(tmp_path / "cache"))
    calls = tmp_path / "calls.txt"
    fake_go = _write_script(
        tmp_path / "go",
        f"""\
        echo "$2" >> {calls}
        sleep 0.5
        printf '#!/bin/sh\\nexit 0\\n' > "$GOBIN/server"
        chmod +x "$GOBIN/server"
        """,
    )
    monkeypatch.setattr(_server, "_find_go", lambda: str(fake_go))
    results: list[Path] = []
    threads = [
        threading.Thread(target=lambda: results.append(lt.install_server())) for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert results == [lt.server_binary_path(lt.SERVER_VERSION)] * 3
    assert len(calls.read_text().splitlines()) == 1


def test_install_server_all_versions_fail(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("LKRTC_SERVER_BIN", raising=False)
    monkeypatch.setenv("LKRTC_CACHE_DIR", str(tmp_path / "cache"))
    fake_go = _write_script(tmp_path / "go", 'echo "go: cannot resolve $2" >&2\nexit 1\n')
    monkeypatch.setattr(_server, "_find_go", lambda: str(fake_go))
    with pytest.raises(lt.ServerInstallError) as info:
        lt.install_server()
    for version in (lt.SERVER_VERSION, *lt.FALLBACK_VERSIONS):
        assert f"go: cannot resolve github.com/livekit/livekit-server/cmd/server@{version}" in str(
            info.value
        )
    assert [p.name for p in (tmp_path / "cache" / "bin").iterdir()] == [".install.lock"]


# --------------------------------------------------------------------------- LocalServer


@pytest.mark.integration
def test_two_local_servers_side_by_side(server_binary: Path) -> None:
    host = lt.test_host()
    first, second = lt.LocalServer(binary=server_binary), lt.LocalServer(binary=server_binary)
    with first as info1, second as info2:
        assert info1.host == info2.host == host
        ports1 = {info1.http_port, info1.tcp_port}
        ports2 = {info2.http_port, info2.tcp_port}
        assert len(ports1) == 2 and not ports1 & ports2
        assert info1.udp_port != info2.udp_port
        assert info1.url == f"ws://{host}:{info1.http_port}"
        assert info1.http_url == f"http://{host}:{info1.http_port}"
        for info in (info1, info2):
            assert _http_get(info.http_url + "/") == (200, b"OK")
        assert first.process is not None and second.process is not None
        pids = [first.process.pid, second.process.pid]
        assert first.log_path is not None and first.log_path.exists()
        assert "starting LiveKit server" in first.log_tail()
        # The minted token is accepted by the real server; a wrong secret is not.
        token = lt.mint_token("alice", "room", api_key=info1.api_key, api_secret=info1.api_secret)
        status, body = _http_get(f"{info1.http_url}/rtc/validate?access_token={token}")
        assert (status, body) == (200, b"success")
        bad = lt.mint_token("alice", "room", api_secret="not-the-secret")
        assert _http_get(f"{info1.http_url}/rtc/validate?access_token={bad}")[0] == 401
    assert first.process is None and second.process is None
    assert not first.running
    for pid in pids:
        assert _process_gone(pid)
    first.stop()  # idempotent
    with pytest.raises(RuntimeError):
        _ = first.info


@pytest.mark.integration
def test_local_server_on_a_chosen_http_port(server_binary: Path) -> None:
    host = lt.test_host()
    port = lt.free_port(host)
    with lt.LocalServer(binary=server_binary, http_port=port) as info:
        assert info.http_port == port and info.tcp_port != port
        assert info.url == f"ws://{host}:{port}"
        assert _http_get(info.http_url + "/") == (200, b"OK")
    with pytest.raises(ValueError, match="http_port"):
        lt.LocalServer(binary=server_binary, http_port=0)


def test_config_body(tmp_path: Path) -> None:
    info = lt.ServerInfo(host="127.0.0.1", http_port=1, tcp_port=2, udp_port=3)
    body = lt.LocalServer(extra_config="logging:\n  level: warn").config_body(info)
    assert body == (
        "port: 1\nrtc:\n  tcp_port: 2\n  udp_port: 3\n  use_external_ip: false\n"
        "  enable_loopback_candidate: true\nlogging:\n  level: warn\n"
    )
    other = lt.ServerInfo(host="10.213.0.1", http_port=1, tcp_port=2, udp_port=3)
    assert "loopback" not in lt.LocalServer().config_body(other)


def test_start_error_when_binary_exits(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    script = _write_script(tmp_path / "server", "echo boom-from-fake-server\nexit 1\n")
    monkeypatch.setenv("LKRTC_SERVER_BIN", str(script))
    server = lt.LocalServer(start_timeout=10, log_dir=tmp_path / "logs")
    started = time.monotonic()
    with pytest.raises(lt.ServerStartError) as info:
        server.start()
    assert time.monotonic() - started < 5
    assert "exited with code 1" in str(info.value)
    assert "boom-from-fake-server" in str(info.value)
    assert server.process is None
    assert server.log_path is not None and server.log_path.exists()  # kept for debugging
    assert server.log_path.parent == tmp_path / "logs"


def test_start_timeout_and_sigkill(tmp_path: Path) -> None:
    # Ignores SIGTERM and never answers HTTP: start times out, stop escalates to SIGKILL.
    script = _write_script(
        tmp_path / "server",
        "trap '' TERM\necho pid=$$\nwhile :; do sleep 0.1; done\n",
    )
    server = lt.LocalServer(
        binary=script, start_timeout=0.5, stop_timeout=0.3, log_dir=tmp_path / "logs"
    )
    with pytest.raises(lt.ServerStartError, match=r"not ready after 0\.5 s") as info:
        server.start()
    match = re.search(r"pid=(\d+)", str(info.value))
    assert match is not None
    assert _process_gone(int(match.group(1)))


# --------------------------------------------------------------------------- plugin, CLI


def _env_with_repo() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(_REPO_ROOT), env.get("PYTHONPATH", "")) if p
    )
    return env


#: the server cache of this run (read before pytester changes HOME)
_CACHE_DIR = lt.cache_dir()

_PLUGIN_TESTS = """
import base64, json, urllib.request

import pytest

import lkrtc_trio as lk

OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
SEEN = []


def claims(token):
    part = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def test_sync(livekit_server, livekit_token, livekit_room_name):
    SEEN.append(livekit_server)
    assert livekit_room_name.startswith("test_sync-")
    token = livekit_token("alice", can_publish=False)
    c = claims(token)
    assert c["video"]["room"] == livekit_room_name
    assert c["video"]["canPublish"] is False
    assert claims(livekit_token("bob", "explicit"))["video"]["room"] == "explicit"
    url = f"{livekit_server.http_url}/rtc/validate?access_token={token}"
    with OPENER.open(url, timeout=5) as r:
        assert r.read() == b"success"


async def join(livekit_server, livekit_token, livekit_room_name):
    SEEN.append(livekit_server)
    async with lk.open_room(livekit_server.url, livekit_token("carol")) as room:
        assert room.name == livekit_room_name
        assert room.local_participant.identity == "carol"


@pytest.mark.trio
async def test_pytest_trio(livekit_server, livekit_token, livekit_room_name):
    await join(livekit_server, livekit_token, livekit_room_name)


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["trio", "asyncio"])
async def test_anyio_plugin(livekit_server, livekit_token, livekit_room_name, anyio_backend):
    await join(livekit_server, livekit_token, livekit_room_name)


def test_cluster_fixture(livekit_cluster, livekit_token):
    # two nodes sharing one Redis; a livekit_token is good on each of them
    assert len(livekit_cluster.nodes) == 2
    assert livekit_cluster.urls[0] != livekit_cluster.urls[1]
    token = livekit_token("dave")
    for node in livekit_cluster.nodes:
        url = f"{node.http_url}/rtc/validate?access_token={token}"
        with OPENER.open(url, timeout=5) as r:
            assert r.read() == b"success"


def test_one_server_per_session():
    assert len(SEEN) == 4 and all(s is SEEN[0] for s in SEEN)
"""


@pytest.mark.integration
@pytest.mark.parametrize("conftest", ["", 'pytest_plugins = ["lkrtc_trio.testing.pytest_plugin"]'])
def test_pytest_plugin_loads_by_entry_point(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, conftest: str
) -> None:
    """Installing lkrtc-trio is enough: the fixtures work with no conftest line
    (the pytest11 entry point), and an older ``pytest_plugins`` line still works;
    with pytest-trio's marker and with anyio's plugin on both backends."""
    # pytester gives the run a HOME of its own: point it at the built server
    monkeypatch.setenv("LKRTC_CACHE_DIR", str(_CACHE_DIR))
    if conftest:
        pytester.makeconftest(conftest)
    pytester.makepyfile(test_uses_plugin=_PLUGIN_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q", timeout=240)
    result.assert_outcomes(passed=6)


@pytest.mark.integration
def test_pytest_plugin_can_be_disabled(pytester: pytest.Pytester) -> None:
    """``-p no:lkrtc_trio.testing.pytest_plugin`` unloads it: proof that the
    fixtures above came from the entry point."""
    pytester.makepyfile(test_uses_plugin=_PLUGIN_TESTS)
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-p", "no:lkrtc_trio.testing.pytest_plugin", "-q", timeout=120
    )
    result.assert_outcomes(errors=5, failed=1)
    result.stdout.fnmatch_lines(["*fixture 'livekit_server' not found*"])


@pytest.mark.integration
def test_cli_install_server_and_token(server_binary: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "lkrtc_trio.testing", "install-server"],
        env=_env_with_repo(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(server_binary)
    result = subprocess.run(
        [sys.executable, "-m", "lkrtc_trio.testing", "token", "carol", "r9"],
        env=_env_with_repo(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    claims = json.loads(_b64decode(result.stdout.strip().split(".")[1]))
    assert (claims["sub"], claims["video"]["room"]) == ("carol", "r9")


@pytest.mark.integration
def test_cli_serve_until_interrupted() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "lkrtc_trio.testing", "serve", "--identity", "dave"],
        env=_env_with_repo(),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        url_line = process.stdout.readline()
        assert url_line.startswith("url:"), url_line
        http_url = url_line.split()[1].replace("ws://", "http://")
        assert _http_get(http_url + "/") == (200, b"OK")
        process.send_signal(2)  # SIGINT, as Ctrl-C
        assert process.wait(timeout=15) == 0
        with pytest.raises(urllib.error.URLError):
            _OPENER.open(http_url + "/", timeout=2)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()
