"""Fault injection, run in a subprocess: make the native core panic.

Connects one room properly, then sends a raw connect for a second room and
never sends ``ready_for_room_event`` for it: after 15 s the native core emits
a ``panic`` event. lkrtc_trio must fail the open room and every pending call
with NativePanicError, and the process must survive (the official SDK sends
itself SIGTERM). Prints one JSON line with what it saw; exit 0 on success.

Usage: python panic_no_ready.py URL TOKEN_A TOKEN_B [BACKEND]   (trio | asyncio)
"""

from __future__ import annotations

import json
import sys

import anyio
from anyio.abc import SocketAttribute

import lkrtc_trio as lk
from lkrtc_trio._proto import ffi_pb2
from lkrtc_trio._runtime import get_runtime


async def main(url: str, token_a: str, token_b: str) -> dict[str, object]:
    report: dict[str, object] = {}
    host = url.split("//", 1)[1].rsplit(":", 1)[0]
    rt = get_runtime()
    async with lk.open_room(url, token_a) as room:
        with room.events() as events:
            req = ffi_pb2.FfiRequest()
            req.connect.url = url
            req.connect.token = token_b
            req.connect.options.auto_subscribe = True
            cb = await rt.request_async(req, "connect")
            report["raw_connect_error"] = cb.error
            stranded = [rt.own(h, "stranded") for h in _handles(cb)]

            async def pending_call() -> None:
                try:
                    await room.wait_for_participant("nobody")
                except lk.LiveKitError as exc:
                    report["wait_error"] = type(exc).__name__

            # A server that accepts and never answers: a connect to it stays
            # pending until its 60 s timeout, well past the panic.
            listener = await anyio.create_tcp_listener(local_host=host, local_port=0)
            port = listener.extra(SocketAttribute.local_port)

            async def pending_request() -> None:
                r = ffi_pb2.FfiRequest()
                r.connect.url = f"ws://{host}:{port}"
                r.connect.token = token_b
                r.connect.options.connect_timeout_ms = 60_000
                try:
                    late = await rt.request_async(r, "connect")
                    report["request_outcome"] = "completed: " + late.error
                except lk.NativePanicError as exc:
                    report["request_outcome"] = type(exc).__name__

            with anyio.fail_after(40):
                async with anyio.create_task_group() as nursery:
                    nursery.start_soon(pending_call)
                    nursery.start_soon(pending_request)
                    try:
                        async for _ in events:
                            pass
                        report["events"] = "ended"
                    except lk.LiveKitError as exc:
                        report["events"] = type(exc).__name__
            await listener.aclose()
            report["panic"] = str(rt.dispatcher.panic)
            try:
                await room.get_rtc_stats()
            except lk.LiveKitError as exc:
                report["after_panic"] = type(exc).__name__
            for h in stranded:
                h.detach()
    report["alive"] = True
    return report


def _handles(cb: object) -> list[int]:
    from lkrtc_trio._dispatch import owned_handle_ids

    return owned_handle_ids(cb)


if __name__ == "__main__":
    backend = sys.argv[4] if len(sys.argv) > 4 else "trio"
    report = anyio.run(main, sys.argv[1], sys.argv[2], sys.argv[3], backend=backend)
    print(json.dumps(report), flush=True)
