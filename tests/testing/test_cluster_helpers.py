"""Tests of lkrtc_trio.testing's LocalRedis, LocalCluster and the livekit_cluster
fixture (the traffic across nodes is in tests/test_cluster.py)."""

from __future__ import annotations

import os
import socket
import urllib.error
import urllib.request
from pathlib import Path

import pytest

import lkrtc_trio.testing as lt

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def _redis(address: str, *command: str) -> bytes:
    host, _, port = address.rpartition(":")
    payload = f"*{len(command)}\r\n" + "".join(f"${len(c)}\r\n{c}\r\n" for c in command)
    with socket.create_connection((host.strip("[]"), int(port)), timeout=5) as sock:
        sock.sendall(payload.encode())
        return sock.recv(65536)


@pytest.fixture(scope="module")
def server_binary() -> Path:
    return lt.install_server()


def test_find_redis_server_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(lt.ServerInstallError, match="apt-get install redis-server"):
        lt.find_redis_server()
    with pytest.raises(lt.ServerInstallError):
        lt.LocalRedis().start()


def test_local_redis_starts_answers_and_stops(tmp_path: Path) -> None:
    redis = lt.LocalRedis(log_dir=tmp_path)
    with pytest.raises(RuntimeError):
        _ = redis.address
    with redis as address:
        assert address.startswith(lt.test_host() + ":")
        assert redis.running
        assert _redis(address, "PING") == b"+PONG\r\n"
        assert _redis(address, "SET", "k", "v") == b"+OK\r\n"
        assert _redis(address, "GET", "k") == b"$1\r\nv\r\n"
        process = redis._process
        assert process is not None
        with pytest.raises(RuntimeError, match="already started"):
            redis.start()
    assert not redis.running and _gone(process.pid)
    assert not list(tmp_path.glob("*.rdb")), "no persistence"
    redis.stop()  # idempotent


def test_cluster_rejects_no_nodes() -> None:
    with pytest.raises(ValueError, match="at least one node"):
        lt.LocalCluster(nodes=0)


@pytest.mark.integration
def test_cluster_nodes_share_redis_and_stop_cleanly(server_binary: Path) -> None:
    cluster = lt.LocalCluster(nodes=3, binary=server_binary)
    assert repr(cluster) == "<LocalCluster nodes=3 stopped>"
    with pytest.raises(RuntimeError):
        _ = cluster.info
    with cluster as info:
        assert len(info.nodes) == 3 and len(cluster.nodes) == 3
        assert info.redis_address == cluster.redis.address
        assert len({n.http_port for n in info.nodes}) == 3
        assert len({n.udp_port for n in info.nodes}) == 3
        ids = [n.node_id for n in info.nodes]
        assert all(i and i.startswith("ND_") for i in ids) and len(set(ids)) == 3
        assert info.urls == tuple(n.url for n in info.nodes)
        assert (info.api_key, info.api_secret) == (lt.DEFAULT_API_KEY, lt.DEFAULT_API_SECRET)
        for node in info.nodes:
            with _OPENER.open(node.http_url + "/", timeout=5) as response:
                assert response.status == 200
        # every node registered itself in the shared Redis
        nodes_hash = _redis(info.redis_address, "HKEYS", "nodes")
        for node_id in ids:
            assert node_id is not None and node_id.encode() in nodes_hash
        assert "redis" in repr(cluster)
        with pytest.raises(RuntimeError, match="already started"):
            cluster.start()
        pids = [n.process.pid for n in cluster.nodes if n.process is not None]
        redis_process = cluster.redis._process
        assert redis_process is not None and len(pids) == 3
        # a node stopped on its own: the info still names it (as last started)
        cluster.nodes[2].stop()
        assert _gone(pids[2]) and cluster.info.nodes[2] == info.nodes[2]
    for pid in [*pids, redis_process.pid]:
        assert _gone(pid)
    assert len(cluster.nodes) == 0 and not cluster.redis.running
    cluster.stop()  # idempotent


@pytest.mark.integration
def test_cluster_start_failure_leaves_nothing(server_binary: Path) -> None:
    # The second half of the config is not YAML: every node exits at once.
    cluster = lt.LocalCluster(nodes=2, binary=server_binary, extra_config="rtc: [unclosed")
    with pytest.raises(lt.ServerStartError):
        cluster.start()
    assert cluster.nodes == () and not cluster.redis.running
