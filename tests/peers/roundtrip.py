"""A room round trip in a process of its own, for the binding-mode and packaging tests.

``python roundtrip.py URL TOKEN_A TOKEN_B BACKEND``: participants "a" and "b"
join the room of the two tokens; b serves an RPC method ``echo``; a calls it,
then sends a reliable data packet that b must receive; both leave. Prints one
JSON object: what ``lkrtc_trio.native_info()`` says, where ``lkrtc_trio`` was
imported from, the RPC answer, the packet b received, the native log batches
the debug filter dropped, and the native handles left after leaving (0). Exit
status 0 when every step worked.

Runs the same on ``trio`` and ``asyncio`` (anyio only), and imports nothing
from the repository: the packaging test runs it in a fresh venv.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import anyio

import lkrtc_trio as lk


async def main(url: str, token_a: str, token_b: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with anyio.fail_after(60):
        async with lk.open_room(url, token_b) as b:

            @b.local_participant.register_rpc_method("echo")
            def echo(data: lk.RpcInvocationData) -> str:
                return f"echo:{data.payload}"

            packets = b.events()
            async with lk.open_room(url, token_a) as a:
                out["rpc"] = await a.local_participant.perform_rpc(
                    destination_identity="b", method="echo", payload="hi"
                )
                await a.local_participant.publish_data(b"ping", topic="rt", reliable=True)
                async for event in packets:
                    if isinstance(event, lk.DataReceived) and event.topic == "rt":
                        out["data"] = event.payload.decode()
                        break
                await packets.aclose()
        while lk.pending_requests() or lk.live_native_handles():
            await anyio.sleep(0.01)
    info = lk.native_info()
    out.update(
        mode=info.mode.name,
        reason=info.reason,
        loaded=info.loaded,
        library=str(info.library_path),
        lkrtc_trio=lk.__file__,
        version=lk.__version__,
        handles=lk.live_native_handles(),
        quiet_logs_dropped=_quiet_logs_dropped(),
    )
    return out


def _quiet_logs_dropped() -> int:
    from lkrtc_trio._native import load_native

    return load_native().quiet_logs_dropped()


if __name__ == "__main__":
    url, token_a, token_b, backend = sys.argv[1:5]
    print(json.dumps(anyio.run(main, url, token_a, token_b, backend=backend)))
