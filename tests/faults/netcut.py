"""Network partitions for fault tests: nftables rules in the test network
namespace.

``Partition(info)`` cuts every client off one server (both directions, TCP
signalling and UDP media/data, by the server's ports); ``GroupPartition`` cuts
off only the processes of one group id. Each owns one nftables table, named
after the server's port or the group, so fault tests running side by side do
not interfere; ``heal()`` deletes it.
"""

from __future__ import annotations

import os
import shutil
import subprocess

from lkrtc_trio.testing import ServerInfo
from lkrtc_trio.testing.netns import netns_available


def available() -> tuple[bool, str]:
    """Whether a fault scenario started here can make partitions: nft, and a
    private network namespace of its own (root; ``lkrtc_trio.testing.netns``)."""
    if shutil.which("nft") is None:
        return False, "nft (nftables) not found; `make sysdeps` installs it as root"
    return netns_available()


def _nft(script: str) -> None:
    subprocess.run(["nft", "-f", "-"], input=script.encode(), check=True, timeout=10)


class Partition:
    """Drops every packet to or from the server ``info`` (both directions)."""

    def __init__(self, info: ServerInfo) -> None:
        self.table = f"lkfault{info.http_port}"
        tcp = f"{{ {info.http_port}, {info.tcp_port} }}"
        udp = str(info.udp_port)
        matches = f"tcp dport {tcp}", f"tcp sport {tcp}", f"udp dport {udp}", f"udp sport {udp}"
        self._script = (
            f"table inet {self.table} {{\n"
            "  chain out {\n    type filter hook output priority 0;\n"
            + "".join(f"    {m} drop\n" for m in matches)
            + "  }\n}\n"
        )
        self.active = False

    def cut(self) -> None:
        _nft(self._script)
        self.active = True

    def heal(self) -> None:
        if self.active:
            self.active = False
            _nft(f"delete table inet {self.table}\n")

    def __enter__(self) -> Partition:
        self.cut()
        return self

    def __exit__(self, *exc: object) -> None:
        self.heal()


class GroupPartition(Partition):
    """Drops every packet between ``host`` and the sockets of this process's
    group (a one-sided partition: run the participant to cut off in a process
    with a group id of its own). The first packet such a socket sends marks
    its connection (conntrack); every packet of a marked connection is
    dropped, in both directions."""

    def __init__(self, host: str) -> None:
        gid = os.getgid()
        self.table = f"lkcut{gid}"
        self._script = (
            f"table inet {self.table} {{\n"
            "  chain out {\n    type filter hook output priority 0;\n"
            f"    meta skgid {gid} ip daddr {host} ct mark set 0x4c4b\n"
            "    ct mark 0x4c4b drop\n  }\n"
            "  chain in {\n    type filter hook input priority 0;\n"
            "    ct mark 0x4c4b drop\n  }\n}\n"
        )
        self.active = False
