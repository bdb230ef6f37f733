"""Helpers for testing against a real livekit-server.

* :class:`LocalServer` runs ``livekit-server --dev`` on free ports;
  :func:`install_server` builds and caches the binary (needs Go, once).
* :class:`LocalCluster` runs a Redis and several livekit-server nodes sharing
  it (:class:`LocalRedis`, :class:`ClusterInfo`; Redis from ``redis-server``
  on ``PATH``, :func:`find_redis_server`).
* :func:`mint_token` makes access tokens (with :class:`lkrtc_trio.api.AccessToken`).
* The pytest plugin (loaded by entry point once lkrtc-trio is installed) gives
  the fixtures ``livekit_server``, ``livekit_cluster``, ``livekit_token`` and
  ``livekit_room_name``.
* ``python -m lkrtc_trio.testing.netns -- CMD`` runs CMD in a private network
  namespace where WebRTC works without touching the host's interfaces.
* ``python -m lkrtc_trio.testing install-server|serve|token``.
"""

from ._cluster import ClusterInfo as ClusterInfo
from ._cluster import LocalCluster as LocalCluster
from ._cluster import LocalRedis as LocalRedis
from ._cluster import find_redis_server as find_redis_server
from ._server import DEFAULT_API_KEY as DEFAULT_API_KEY
from ._server import DEFAULT_API_SECRET as DEFAULT_API_SECRET
from ._server import FALLBACK_VERSIONS as FALLBACK_VERSIONS
from ._server import NETNS_HOST as NETNS_HOST
from ._server import SERVER_VERSION as SERVER_VERSION
from ._server import LocalServer as LocalServer
from ._server import ServerInfo as ServerInfo
from ._server import ServerInstallError as ServerInstallError
from ._server import ServerStartError as ServerStartError
from ._server import cache_dir as cache_dir
from ._server import free_port as free_port
from ._server import free_ports as free_ports
from ._server import in_test_netns as in_test_netns
from ._server import install_server as install_server
from ._server import mint_token as mint_token
from ._server import server_binary_path as server_binary_path
from ._server import test_host as test_host
