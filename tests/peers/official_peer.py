"""A participant driven by the official asyncio SDK (``livekit.rtc``), for interop tests.

Usage: ``python official_peer.py URL TOKEN``

Protocol (JSON lines): every room event and every command reply is written to stdout as one
JSON object per line; commands are read from stdin, one JSON object per line, each with an
``"id"``. Replies look like ``{"event": "reply", "id": ..., "ok": bool, "result": ...,
"error": ..., "code": ...}``. Stdin EOF or a ``disconnect`` command disconnects and exits 0;
a failed connect writes ``{"event": "error", ...}`` and exits 3. Logs go to stderr only.

Commands (``"cmd"``): ``list``, ``publish_data``, ``perform_rpc``, ``register_rpc`` (behaviour
echo/error/raise/sleep), ``unregister_rpc``, ``participant`` (a participant's identity, sid,
name, metadata, attributes and kind as this peer sees it), ``publish_dtmf``,
``publish_transcription``, ``set_metadata``, ``set_name``, ``set_attributes``, ``disconnect``.
Events: ``connected``, ``participant_connected``/``_disconnected``, ``data_received``,
``participant_metadata_changed``/``_name_changed``/``_attributes_changed``, ``track_*``,
``sip_dtmf_received``, ``transcription_received``, ``rpc_invoked``, ``rpc_returned`` (a handler
returned its payload), ``connection_state_changed``, ``disconnected``.

This runs in its own process because one process cannot initialise the native library twice.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import sys
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TextIO

from livekit import rtc

log = logging.getLogger("official_peer")

JsonDict = dict[str, Any]

_out: TextIO | None = None


def _take_stdout() -> None:
    """Keep the protocol channel private: anything else (native code included) writing to
    fd 1 would corrupt it, so fd 1 is pointed at stderr and the protocol uses a duplicate."""
    global _out
    _out = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr


def emit(event: str, **fields: Any) -> None:
    global _out
    if _out is None:
        return
    try:
        _out.write(json.dumps({"event": event, **fields}) + "\n")
        _out.flush()
    except (OSError, ValueError):
        _out = None
        log.warning("stdout is gone; dropping events")


def _start_stdin_reader(
    loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[bytes | None]
) -> None:
    # A daemon thread doing raw os.read() calls: works for any stdin kind, and unlike
    # sys.stdin it holds no buffer lock that would abort interpreter shutdown.
    def run() -> None:
        buf = b""
        try:
            while chunk := os.read(0, 65536):
                *lines, buf = (buf + chunk).split(b"\n")
                for line in lines:
                    loop.call_soon_threadsafe(queue.put_nowait, line)
            if buf:
                loop.call_soon_threadsafe(queue.put_nowait, buf)
        except OSError:
            log.exception("stdin read failed")
        except RuntimeError:  # the loop is closed: we are exiting anyway
            return
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(queue.put_nowait, None)

    threading.Thread(target=run, name="stdin-reader", daemon=True).start()


def _ident(p: rtc.Participant | None) -> str | None:
    return None if p is None else p.identity


def _attach_room_events(room: rtc.Room) -> None:
    def on_participant_connected(p: rtc.RemoteParticipant) -> None:
        emit(
            "participant_connected",
            identity=p.identity,
            sid=p.sid,
            name=p.name,
            metadata=p.metadata,
            attributes=dict(p.attributes),
        )

    def on_participant_disconnected(p: rtc.RemoteParticipant) -> None:
        emit("participant_disconnected", identity=p.identity, reason=p.disconnect_reason)

    def on_data_received(packet: rtc.DataPacket) -> None:
        emit(
            "data_received",
            payload_b64=base64.b64encode(packet.data).decode("ascii"),
            topic=packet.topic,
            kind=int(packet.kind),
            identity=_ident(packet.participant),
        )

    def on_connection_state_changed(state: int) -> None:
        emit("connection_state_changed", state=int(state))

    def on_disconnected(reason: int) -> None:
        emit("disconnected", reason=int(reason))

    def on_metadata_changed(p: rtc.Participant, old: str, new: str) -> None:
        emit("participant_metadata_changed", identity=p.identity, old=old, metadata=new)

    def on_name_changed(p: rtc.Participant, old: str, new: str) -> None:
        emit("participant_name_changed", identity=p.identity, old=old, name=new)

    def on_attributes_changed(changed: dict[str, str], p: rtc.Participant) -> None:
        emit(
            "participant_attributes_changed",
            identity=p.identity,
            changed=dict(changed),
            attributes=dict(p.attributes),
        )

    def on_track_published(pub: rtc.RemoteTrackPublication, p: rtc.RemoteParticipant) -> None:
        emit(
            "track_published",
            identity=p.identity,
            track_sid=pub.sid,
            kind=int(pub.kind),
            name=pub.name,
        )

    def on_track_subscribed(
        track: rtc.Track, pub: rtc.RemoteTrackPublication, p: rtc.RemoteParticipant
    ) -> None:
        emit("track_subscribed", identity=p.identity, track_sid=pub.sid, kind=int(pub.kind))

    def on_track_unsubscribed(
        track: rtc.Track | None, pub: rtc.RemoteTrackPublication, p: rtc.RemoteParticipant
    ) -> None:
        emit("track_unsubscribed", identity=p.identity, track_sid=pub.sid, kind=int(pub.kind))

    def on_sip_dtmf_received(dtmf: rtc.SipDTMF) -> None:
        emit(
            "sip_dtmf_received",
            code=int(dtmf.code),
            digit=dtmf.digit,
            identity=_ident(dtmf.participant),
        )

    def on_transcription_received(
        segments: list[rtc.TranscriptionSegment],
        p: rtc.Participant | None,
        pub: rtc.TrackPublication | None,
    ) -> None:
        emit(
            "transcription_received",
            identity=_ident(p),
            track_sid=None if pub is None else pub.sid,
            segments=[
                {
                    "id": s.id,
                    "text": s.text,
                    "start_time": int(s.start_time),
                    "end_time": int(s.end_time),
                    "final": bool(s.final),
                    "language": s.language,
                }
                for s in segments
            ],
        )

    handlers: dict[str, Callable[..., None]] = {
        "participant_connected": on_participant_connected,
        "participant_disconnected": on_participant_disconnected,
        "data_received": on_data_received,
        "connection_state_changed": on_connection_state_changed,
        "disconnected": on_disconnected,
        "participant_metadata_changed": on_metadata_changed,
        "participant_name_changed": on_name_changed,
        "participant_attributes_changed": on_attributes_changed,
        "track_published": on_track_published,
        "track_subscribed": on_track_subscribed,
        "track_unsubscribed": on_track_unsubscribed,
        "sip_dtmf_received": on_sip_dtmf_received,
        "transcription_received": on_transcription_received,
    }
    for name, handler in handlers.items():
        room.on(name, handler)  # type: ignore[arg-type]  # names are valid EventTypes


def _rpc_handler(
    cmd: JsonDict,
) -> Callable[[rtc.RpcInvocationData], Awaitable[str]]:
    behaviour = str(cmd.get("behaviour", "echo"))
    if behaviour not in ("echo", "error", "raise", "sleep"):
        raise ValueError(f"unknown rpc behaviour {behaviour!r}")

    async def handler(data: rtc.RpcInvocationData) -> str:
        emit(
            "rpc_invoked",
            method=data.method,
            caller=data.caller_identity,
            payload=data.payload,
            request_id=data.request_id,
            response_timeout=data.response_timeout,
        )
        if behaviour == "error":
            raise rtc.RpcError(
                int(cmd.get("code", 2000)), str(cmd.get("message", "error")), cmd.get("data")
            )
        if behaviour == "raise":
            raise RuntimeError(str(cmd.get("message", "handler raised")))
        if behaviour == "sleep":
            await asyncio.sleep(float(cmd.get("seconds", 1.0)))
        # written before the SDK sends the response, so it precedes any later reply
        emit("rpc_returned", method=data.method, request_id=data.request_id)
        return data.payload

    return handler


def _participant_info(p: rtc.Participant) -> JsonDict:
    return {
        "identity": p.identity,
        "sid": p.sid,
        "name": p.name,
        "metadata": p.metadata,
        "attributes": dict(p.attributes),
        "kind": int(p.kind),
    }


class Peer:
    def __init__(self, room: rtc.Room) -> None:
        self.room = room
        self.stop = asyncio.Event()
        self.tasks: set[asyncio.Task[None]] = set()

    def remote_identities(self) -> list[str]:
        return sorted(p.identity for p in self.room.remote_participants.values())

    async def run_command(self, cmd: JsonDict) -> Any:
        name = cmd.get("cmd")
        lp = self.room.local_participant
        if name == "list":
            return self.remote_identities()
        if name == "publish_data":
            await lp.publish_data(
                base64.b64decode(cmd.get("payload_b64", "")),
                reliable=bool(cmd.get("reliable", True)),
                topic=str(cmd.get("topic") or ""),
                destination_identities=list(cmd.get("destination_identities") or []),
            )
            return None
        if name == "perform_rpc":
            timeout = cmd.get("response_timeout")
            latency = cmd.get("max_round_trip_latency")
            return await lp.perform_rpc(
                destination_identity=str(cmd["destination"]),
                method=str(cmd["method"]),
                payload=str(cmd.get("payload", "")),
                response_timeout=None if timeout is None else float(timeout),
                max_round_trip_latency=None if latency is None else float(latency),
            )
        if name == "register_rpc":
            lp.register_rpc_method(str(cmd["method"]), _rpc_handler(cmd))
            return None
        if name == "unregister_rpc":
            lp.unregister_rpc_method(str(cmd["method"]))
            return None
        if name == "participant":
            # The peer's view of a participant (its own when identity is omitted or its own).
            identity = cmd.get("identity")
            if identity is None or identity == lp.identity:
                return _participant_info(lp)
            remote = next(
                (p for p in self.room.remote_participants.values() if p.identity == identity),
                None,
            )
            return None if remote is None else _participant_info(remote)
        if name == "publish_dtmf":
            await lp.publish_dtmf(code=int(cmd["code"]), digit=str(cmd["digit"]))
            return None
        if name == "publish_transcription":
            await lp.publish_transcription(
                rtc.Transcription(
                    participant_identity=str(cmd.get("participant_identity") or lp.identity),
                    track_sid=str(cmd["track_sid"]),
                    segments=[
                        rtc.TranscriptionSegment(
                            id=str(seg["id"]),
                            text=str(seg["text"]),
                            start_time=int(seg.get("start_time", 0)),
                            end_time=int(seg.get("end_time", 0)),
                            language=str(seg.get("language", "")),
                            final=bool(seg.get("final", False)),
                        )
                        for seg in cmd.get("segments", [])
                    ],
                )
            )
            return None
        if name == "set_metadata":
            await lp.set_metadata(str(cmd["metadata"]))
            return None
        if name == "set_name":
            await lp.set_name(str(cmd["name"]))
            return None
        if name == "set_attributes":
            await lp.set_attributes({str(k): str(v) for k, v in dict(cmd["attributes"]).items()})
            return None
        if name == "disconnect":
            await self.room.disconnect()
            self.stop.set()
            return None
        raise ValueError(f"unknown command {name!r}")

    async def handle(self, cmd: JsonDict) -> None:
        cmd_id = cmd.get("id")
        try:
            result = await self.run_command(cmd)
        except rtc.RpcError as e:
            emit(
                "reply",
                id=cmd_id,
                ok=False,
                result=None,
                error=e.message,
                code=e.code,
                data=e.data,
            )
        except Exception as e:
            log.exception("command %r failed", cmd.get("cmd"))
            emit("reply", id=cmd_id, ok=False, result=None, error=repr(e), code=None)
        else:
            emit("reply", id=cmd_id, ok=True, result=result, error=None, code=None)

    def dispatch(self, line: bytes) -> None:
        try:
            cmd = json.loads(line)
            if not isinstance(cmd, dict):
                raise ValueError("command is not a JSON object")
        except ValueError as e:
            log.error("bad command line %r: %s", line, e)
            emit("reply", id=None, ok=False, result=None, error=f"bad command: {e}", code=None)
            return
        task = asyncio.get_running_loop().create_task(self.handle(cmd))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def serve(self) -> None:
        lines: asyncio.Queue[bytes | None] = asyncio.Queue()
        _start_stdin_reader(asyncio.get_running_loop(), lines)
        stop_wait = asyncio.ensure_future(self.stop.wait())
        try:
            while not self.stop.is_set():
                get = asyncio.ensure_future(lines.get())
                await asyncio.wait({get, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
                if not get.done():
                    get.cancel()
                    break
                line = get.result()
                if line is None:
                    log.info("stdin closed")
                    break
                if line.strip():
                    self.dispatch(line)
        finally:
            stop_wait.cancel()
        await self.room.disconnect()  # no-op if already disconnected
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


async def main(url: str, token: str) -> int:
    room = rtc.Room()
    _attach_room_events(room)
    try:
        await room.connect(url, token)
    except Exception as e:
        message = e.message if isinstance(e, rtc.ConnectError) else repr(e)
        log.error("connect failed: %s", message)
        emit("error", message=message)
        return 3
    lp = room.local_participant
    peer = Peer(room)
    # No await between connect() returning and this line: no room event can precede it.
    emit(
        "connected",
        identity=lp.identity,
        sid=lp.sid,
        room=room.name,
        remote=peer.remote_identities(),
    )
    await peer.serve()
    log.info("exiting")
    return 0


if __name__ == "__main__":
    _take_stdout()
    logging.basicConfig(
        level=os.environ.get("OFFICIAL_PEER_LOG_LEVEL", "INFO"),
        stream=sys.stderr,
        format=f"[official_peer {os.getpid()}] %(levelname)s %(name)s: %(message)s",
    )
    if len(sys.argv) != 3:
        print("usage: official_peer.py URL TOKEN", file=sys.stderr)
        sys.exit(2)
    sys.exit(asyncio.run(main(sys.argv[1], sys.argv[2])))
