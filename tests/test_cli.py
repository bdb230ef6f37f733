"""The ``lkrtc`` command line tool, run as users run it: in a subprocess
(``python -m lkrtc_trio`` and the ``lkrtc`` console script next to
``sys.executable``), against the session's real livekit-server, with
in-process lkrtc_trio participants on the other side.

Rules: every wait is bounded (``anyio.fail_after``, subprocess timeouts); the
subprocesses get an environment without ``LIVEKIT_*`` variables (each test
says what it passes); independent CLI runs go concurrently, to keep the
module's wall time down (each run pays a Python start and a connect, ~1 s).
Help, usage and token tests call :func:`lkrtc_trio._cli.main` in-process or
run once (sync); the room tests are async and run on trio and asyncio.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import jwt
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream

import lkrtc_trio as lk
from lkrtc_trio import _cli, api
from lkrtc_trio.testing import ServerInfo, free_port, test_host
from lkrtc_trio.testing.pytest_plugin import TokenFactory

from .helpers import next_event, server_participants, wait_server

LKRTC = str(Path(sys.executable).parent / "lkrtc")
PY_M = [sys.executable, "-m", "lkrtc_trio"]
ROOT = Path(__file__).resolve().parent.parent
#: seconds a CLI run may take (Python start, connect, the work, leave)
RUN_LIMIT = 30


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVEKIT_")}
    env.update(extra)
    return env


def conn_args(server: ServerInfo) -> list[str]:
    return ["--url", server.url, "--api-key", server.api_key, "--api-secret", server.api_secret]


async def run_cli(
    *args: str, stdin: bytes | None = None, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m lkrtc_trio ARGS``, bounded; output decoded."""
    with anyio.fail_after(RUN_LIMIT):
        done = await anyio.run_process(
            [*PY_M, *args], input=stdin, check=False, env=dict(env or clean_env())
        )
    return subprocess.CompletedProcess(
        done.args, done.returncode, done.stdout.decode(), done.stderr.decode()
    )


def report(done: subprocess.CompletedProcess[str]) -> str:
    return f"exit {done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"


class JsonLines:
    """The JSON lines a CLI process prints, kept: :meth:`until` looks at
    every line seen so far, then reads more."""

    def __init__(self, stream: anyio.abc.ByteReceiveStream) -> None:
        self._stream = BufferedByteReceiveStream(stream)
        self.seen: list[dict[str, Any]] = []

    async def until(self, limit: float = 15, **match: object) -> dict[str, Any]:
        def matches(record: dict[str, Any]) -> bool:
            return all(record.get(k) == v for k, v in match.items())

        found = [r for r in self.seen if matches(r)]
        if found:
            return found[0]
        try:
            with anyio.fail_after(limit):
                while True:
                    line = await self._stream.receive_until(b"\n", 1 << 20)
                    record: dict[str, Any] = json.loads(line)
                    self.seen.append(record)
                    if matches(record):
                        return record
        except (TimeoutError, anyio.EndOfStream, anyio.IncompleteRead):
            raise AssertionError(f"no line with {match}; lines: {self.seen}") from None


async def stop(process: anyio.abc.Process) -> None:
    """Kills ``process`` if it still runs, and closes its streams."""
    if process.returncode is None:
        process.kill()
    with anyio.move_on_after(10, shield=True):
        await process.aclose()


# --------------------------------------------------------------------------- help, usage, version


COMMANDS = [
    [],
    ["server"],
    ["token"],
    ["join"],
    ["rpc"],
    ["send"],
    ["room"],
    ["room", "list"],
    ["room", "create"],
    ["room", "delete"],
    ["load-test"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "lkrtc")
def test_help_shows_examples_and_exit_codes(
    command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert _cli.main([*command, "--help"]) == 0
    out = capsys.readouterr().out
    assert "examples:\n  lkrtc " in out
    assert _cli.EXIT_CODES in out


def test_exit_code_table_is_the_documented_one() -> None:
    documented = (ROOT / "docs" / "cli.md").read_text()
    for code in _cli.ExitCode:
        assert f"\n  {code.value:<4} " in _cli.EXIT_CODES
        assert f"| {code.value} |" in documented, code
    assert [c.value for c in _cli.ExitCode] == [0, 1, 2, 3, 4, 5, 130]


def test_version_from_the_console_script_and_python_m() -> None:
    expected = _cli.version_line()
    for command in ([LKRTC, "--version"], [*PY_M, "--version"]):
        done = subprocess.run(command, capture_output=True, text=True, timeout=RUN_LIMIT)
        assert (done.returncode, done.stdout) == (0, expected + "\n"), report(done)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "usage:"),
        (["join", "room"], "no server URL"),
        (["join", "--url", "ws://x"], "a ROOM is needed"),
        (["join", "room", "--url", "ftp://x"], "--url must start with"),
        (["send", "room", "--url", "ws://x", "--data", "x"], "needs an API key and secret"),
        (["send", "room", "--data", "x", "--text", "y"], "not allowed with"),
        (["send", "room", "--file", "/no/such/file"], "is not a readable file"),
        (["token", "--api-key", "k", "--api-secret", "s"], "nothing to grant"),
        (["token", "--room", "r", "--api-key", "k", "--api-secret", "s"], "needs --identity"),
        (["token", "--identity", "i", "--grant", "nope=1"], "unknown grant 'nope'"),
        (["token", "--identity", "i", "--grant", "hidden=maybe"], "not a boolean"),
        (["token", "--identity", "i", "--room", "r", "--ttl", "soon"], "invalid duration"),
        (["token", "--identity", "i", "--room", "r", "--attributes", "x"], "KEY=VALUE"),
        (["server", "--keys", "no-secret"], "KEY:SECRET"),
        (["join", "r", "--publish-tone", "30000"], "between 0 and 24000 Hz"),
    ],
)
def test_usage_errors_exit_2(
    argv: list[str],
    message: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("LIVEKIT_URL", "LIVEKIT_API_KEY", "LIVEKIT_API_SECRET"):
        monkeypatch.delenv(name, raising=False)
    assert _cli.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


# --------------------------------------------------------------------------- pure parts


def test_durations() -> None:
    assert _cli.parse_duration("90").total_seconds() == 90
    assert _cli.parse_duration("1h30m").total_seconds() == 5400
    assert _cli.parse_duration("2d").total_seconds() == 172800
    assert _cli.parse_duration("1.5s").total_seconds() == 1.5
    for bad in ("", "0", "h", "1x", "1h 2", "-1s"):
        with pytest.raises(Exception, match="invalid duration"):
            _cli.parse_duration(bad)


def test_event_records_and_text_lines() -> None:
    data = lk.DataReceived(
        payload=b"\xffraw",
        participant=None,
        topic="chat",
        kind=lk.DataPacketKind.KIND_LOSSY,
        participant_identity="bob",
    )
    record = _cli.event_record(data)
    assert record == {
        "event": "data_received",
        "payload_base64": "/3Jhdw==",
        "topic": "chat",
        "kind": "KIND_LOSSY",
        "participant": "bob",
    }
    assert _cli.format_text(record) == (
        "data_received payload_base64=/3Jhdw== topic=chat kind=KIND_LOSSY participant=bob"
    )
    gone = _cli.event_record(lk.Disconnected(reason=lk.DisconnectReason.ROOM_DELETED))
    assert _cli.format_text(gone) == "disconnected reason=ROOM_DELETED"
    refreshed = _cli.event_record(lk.TokenRefreshed(token="eyJhbGciOi.x.y"))
    assert refreshed == {"event": "token_refreshed", "token": "<redacted>"}
    dtmf = _cli.event_record(lk.SipDTMFReceived(code=1, digit="1", participant=None))
    assert dtmf["event"] == "sip_dtmf_received"
    spaced = {"event": "text_stream", "text": 'two "words"', "ok": True, "n": [1]}
    assert _cli.format_text(spaced) == 'text_stream text="two \\"words\\"" ok=true n=[1]'


def test_token_is_minted_with_the_asked_claims() -> None:
    key, secret = "clikey", "a-secret-long-enough-for-hs256-keys"
    argv = ["token", "--identity", "bob", "--room", "r1", "--name", "Bob", "--metadata", "m"]
    argv += ["--attributes", "a=1", "b=x=y", "--ttl", "15m", "--json"]
    argv += ["--grant", "can_publish=false", "can_publish_sources=camera,microphone"]
    argv += ["--api-key", key, "--api-secret", secret]
    done = subprocess.run([LKRTC, *argv], capture_output=True, text=True, timeout=RUN_LIMIT)
    assert done.returncode == 0, report(done)
    printed = json.loads(done.stdout)
    claims = api.TokenVerifier(key, secret).verify(printed["token"])
    assert (claims.identity, claims.name, claims.metadata) == ("bob", "Bob", "m")
    assert claims.attributes == {"a": "1", "b": "x=y"}
    assert claims.video is not None
    assert (claims.video.room_join, claims.video.room) == (True, "r1")
    assert claims.video.can_publish is False
    assert claims.video.can_publish_sources == ("camera", "microphone")
    assert not claims.video.room_admin
    exp = jwt.decode(printed["token"], secret, algorithms=["HS256"], issuer=key)["exp"]
    assert abs(exp - time.time() - 900) < 30
    expires = datetime.fromisoformat(printed["expires_at"]).timestamp()
    assert abs(expires - exp) < 30 and printed["identity"] == "bob"

    # plain output is the token alone; env credentials; admin, create and list
    env = clean_env(LIVEKIT_API_KEY=key, LIVEKIT_API_SECRET=secret)
    argv = ["token", "--identity", "ops", "--room", "r1", "--admin", "--create", "--list"]
    done = subprocess.run(
        [*PY_M, *argv], capture_output=True, text=True, timeout=RUN_LIMIT, env=env
    )
    assert done.returncode == 0 and done.stderr == "", report(done)
    video = api.TokenVerifier(key, secret).verify(done.stdout.strip()).video
    assert video is not None
    assert (video.room_admin, video.room_create, video.room_list) == (True, True, True)


def test_unreachable_server_fails_fast_with_exit_3() -> None:
    port = free_port("127.0.0.1")  # nothing listens there
    creds = ["--api-key", "k", "--api-secret", "a-secret-long-enough-for-hs256-keys"]
    commands = [
        ["join", "r", "--url", f"ws://127.0.0.1:{port}", *creds],
        ["room", "list", "--url", f"http://127.0.0.1:{port}", *creds],
    ]
    started = time.monotonic()
    runs = [
        subprocess.Popen([*PY_M, *c], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for c in commands
    ]
    for process in runs:
        out, err = process.communicate(timeout=RUN_LIMIT)
        assert process.returncode == 3, f"{process.args!r}\n{out}\n{err}"
        assert err.startswith("lkrtc: error: ") and "Traceback" not in err, err
    assert time.monotonic() - started < 15


# --------------------------------------------------------------------------- the real server


@pytest.mark.integration
def test_bad_credentials_exit_3_without_showing_the_token(
    livekit_server: ServerInfo, livekit_room_name: str
) -> None:
    url, http_url = livekit_server.url, livekit_server.http_url
    wrong = ["--api-key", livekit_server.api_key, "--api-secret", "not-the-secret-of-this-server"]
    commands = [
        ["join", "--url", url, "--token", "not-a-token"],
        ["join", livekit_room_name, "--url", url, *wrong],
        ["rpc", livekit_room_name, "--to", "x", "--method", "m", "--url", url, *wrong],
        ["room", "list", "--url", http_url, *wrong],
    ]
    started = time.monotonic()
    runs = [
        subprocess.Popen(
            [*PY_M, *c], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env()
        )
        for c in commands
    ]
    for process in runs:
        out, err = process.communicate(timeout=RUN_LIMIT)
        assert process.returncode == 3, f"{process.args!r}\n{out}\n{err}"
        assert err.startswith("lkrtc: error: ") and "Traceback" not in err, err
        assert "eyJ" not in err + out  # no token, not even the rejected one
    assert time.monotonic() - started < 15


@pytest.mark.integration
async def test_join_prints_events_and_leaves_on_sigint(
    livekit_server: ServerInfo,
    livekit_room_name: str,
    livekit_token: TokenFactory,
    tmp_path: Path,
) -> None:
    received = tmp_path / "received"
    command = [LKRTC, "join", livekit_room_name, "--identity", "cli", "--json"]
    command += ["--publish-tone", "440", "--topic", "files", "--save-dir", str(received)]
    command += conn_args(livekit_server)
    errors = tmp_path / "stderr.txt"
    with anyio.fail_after(60), errors.open("wb") as err:
        process = await anyio.open_process(command, stderr=err, env=clean_env())
        try:
            assert process.stdout is not None
            lines = JsonLines(process.stdout)
            hello = await lines.until(event="connected")
            assert (hello["room"], hello["identity"]) == (livekit_room_name, "cli")
            await _peer_visits_the_cli(livekit_server, livekit_token, lines, tmp_path)
            await lines.until(event="participant_disconnected", participant="peer")
            process.send_signal(signal.SIGINT)
            assert await process.wait() == 0
            await lines.until(event="left", room=livekit_room_name)
        finally:
            await stop(process)
    assert "Traceback" not in errors.read_text()
    await wait_server(livekit_server, livekit_room_name, lambda view: "cli" not in view)


async def _peer_visits_the_cli(
    server: ServerInfo, livekit_token: TokenFactory, lines: JsonLines, tmp_path: Path
) -> None:
    """A participant joins, sees the CLI's tone, sends a data packet, changes
    its metadata, sends a text stream and a file, and leaves; the CLI prints
    each (and saves the file)."""
    async with lk.open_room(server.url, livekit_token("peer", name="Peer")) as room:
        cli = await room.wait_for_participant("cli")
        joined = await lines.until(event="participant_connected", participant="peer")
        assert joined["name"] == "Peer"
        tone = await lines.until(event="local_track_published", track_name="tone")
        assert tone["track_kind"] == "KIND_AUDIO"
        with anyio.fail_after(10):  # the peer gets the tone (maybe before it could subscribe)
            while not any(p.track for p in cli.track_publications.values()):
                await anyio.sleep(0.05)
        lp = room.local_participant
        await lp.publish_data(b"hello cli", topic="chat")
        data = await lines.until(event="data_received", payload="hello cli")
        assert (data["participant"], data["topic"], data["kind"]) == (
            "peer",
            "chat",
            "KIND_RELIABLE",
        )
        await lp.set_metadata("busy")
        await lines.until(event="participant_metadata_changed", participant="peer", metadata="busy")
        await lp.send_text("a text stream", topic="lk.chat")
        await lines.until(event="text_stream", participant="peer", text="a text stream")
        sent = anyio.Path(tmp_path / "notes.txt")
        await sent.write_text("some notes")
        await lp.send_file(str(sent), topic="files")
        saved = await lines.until(event="byte_stream", participant="peer", name="notes.txt")
        assert saved["topic"] == "files" and saved["size"] == len("some notes")
        assert await anyio.Path(saved["path"]).read_text() == "some notes"
        assert Path(saved["path"]).parent == tmp_path / "received"


@pytest.mark.integration
async def test_rpc_prints_the_response_and_maps_errors(
    livekit_server: ServerInfo, livekit_room_name: str, livekit_token: TokenFactory
) -> None:
    slow_called = anyio.Event()
    async with lk.open_room(livekit_server.url, livekit_token("callee")) as room:
        lp = room.local_participant

        @lp.register_rpc_method("greet")
        async def greet(data: lk.RpcInvocationData) -> str:
            return f"hello {data.caller_identity}: {data.payload}"

        @lp.register_rpc_method("fail")
        async def fail(data: lk.RpcInvocationData) -> str:
            raise lk.RpcError(2001, "no way", "some details")

        @lp.register_rpc_method("slow")
        async def slow(data: lk.RpcInvocationData) -> str:
            slow_called.set()
            await anyio.sleep(60)
            return "late"

        base = ["rpc", livekit_room_name, "--to", "callee", *conn_args(livekit_server)]
        runs = {
            "ok": [*base, "--method", "greet", "--payload", "hi", "--identity", "caller"],
            "stdin": [*base, "--method", "greet", "--payload", "-", "--identity", "s", "--json"],
            "fail": [*base, "--method", "fail", "--json"],
            "unknown": [*base, "--method", "nope"],
            "absent": [*base, "--method", "greet", "--to", "nobody", "--wait", "1s"],
        }
        done = await _run_all(runs, stdin=b"from stdin")
        assert (done["ok"].returncode, done["ok"].stdout) == (0, "hello caller: hi\n")
        assert json.loads(done["stdin"].stdout) == {"response": "hello s: from stdin"}
        assert done["fail"].returncode == 5, report(done["fail"])
        assert done["fail"].stderr == "lkrtc: error: RPC error 2001: no way (some details)\n"
        error = {"code": 2001, "message": "no way", "data": "some details"}
        assert json.loads(done["fail"].stdout) == {"error": error}
        assert done["unknown"].returncode == 5, report(done["unknown"])
        assert "RPC error 1400" in done["unknown"].stderr
        assert done["absent"].returncode == 4, report(done["absent"])
        assert "'nobody' is not in room" in done["absent"].stderr

        # SIGTERM while the call waits: exit 130, the caller leaves
        command = [*PY_M, *base, "--method", "slow", "--identity", "impatient"]
        with anyio.fail_after(RUN_LIMIT):
            process = await anyio.open_process(command, env=clean_env())
            try:
                await slow_called.wait()
                process.send_signal(signal.SIGTERM)
                assert await process.wait() == 130
            finally:
                await stop(process)
        view = await server_participants(livekit_server, livekit_room_name)
        assert "impatient" not in view


async def _run_all(
    runs: Mapping[str, list[str]], stdin: bytes | None = None
) -> dict[str, subprocess.CompletedProcess[str]]:
    done: dict[str, subprocess.CompletedProcess[str]] = {}

    async def one(key: str) -> None:
        done[key] = await run_cli(*runs[key], stdin=stdin)

    async with anyio.create_task_group() as tg:
        for key in runs:
            tg.start_soon(one, key)
    return done


@pytest.mark.integration
async def test_send_data_text_and_file(
    livekit_server: ServerInfo,
    livekit_room_name: str,
    livekit_token: TokenFactory,
    tmp_path: Path,
) -> None:
    report_file = tmp_path / "report.bin"
    content = os.urandom(100_000)
    report_file.write_bytes(content)
    async with lk.open_room(livekit_server.url, livekit_token("receiver")) as room:
        with (
            room.events() as events,
            room.text_streams("notes") as texts,
            room.byte_streams("files") as files,
        ):
            broadcast = ["send", livekit_room_name, *conn_args(livekit_server)]
            base = [*broadcast, "--to", "receiver"]
            runs = {
                "data": [*base, "--data", "hello", "--topic", "chat", "--json"],
                "file": [*base, "--file", str(report_file), "--topic", "files", "--json"],
            }
            done = await _run_all(runs)
            # to everyone in the room (after the others left: they would be recipients too)
            to_all = [*broadcast, "--text", "ünïcode text", "--topic", "notes", "--json"]
            done["text"] = await run_cli(*to_all)
            for run in done.values():
                assert run.returncode == 0, report(run)
            sent = json.loads(done["data"].stdout)
            assert sent["kind"] == "data" and sent["reliable"] is True and sent["size"] == 5
            assert json.loads(done["file"].stdout)["name"] == "report.bin"
            for run in done.values():  # each recipient confirmed before the sender left
                assert json.loads(run.stdout)["delivered"] == ["receiver"], report(run)
            with anyio.fail_after(15):
                packet = await next_event(events, lk.DataReceived, lambda e: e.topic == "chat")
                assert packet.payload == b"hello"
                async with await texts.receive() as text:
                    assert await text.read_all() == "ünïcode text"
                async with await files.receive() as file:
                    assert file.info.name == "report.bin"
                    assert await file.read_all() == content


@pytest.mark.integration
async def test_room_create_list_delete_round_trip(
    livekit_server: ServerInfo, livekit_room_name: str, tmp_path: Path
) -> None:
    env = clean_env(
        LIVEKIT_URL=livekit_server.url,
        LIVEKIT_API_KEY=livekit_server.api_key,
        LIVEKIT_API_SECRET=livekit_server.api_secret,
    )
    name = livekit_room_name

    async def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return await run_cli("room", *args, env=env)

    create = ["create", name, "--max-participants", "7", "--empty-timeout", "10m"]
    created = await cli(*create, "--metadata", "hello", "--json")
    assert created.returncode == 0, report(created)
    room = json.loads(created.stdout)
    assert (room["name"], room["max_participants"], room["empty_timeout"]) == (name, 7, 600)
    assert room["metadata"] == "hello" and room["sid"].startswith("RM_")
    listed = await cli("list", "--json")
    assert room["sid"] in [r["sid"] for r in json.loads(listed.stdout)["rooms"]], report(listed)
    table = await cli("list", name)
    assert table.stdout.splitlines()[1].split()[:2] == [name, room["sid"]], report(table)

    # deleting the room ends a `join` in it with exit 3
    with anyio.fail_after(RUN_LIMIT):
        process = await anyio.open_process([LKRTC, "join", name, "--json"], env=env)
        try:
            assert process.stdout is not None
            lines = JsonLines(process.stdout)
            await lines.until(event="connected")
            deleted = await cli("delete", name, "--json")
            assert json.loads(deleted.stdout) == {"deleted": name}, report(deleted)
            await lines.until(event="disconnected", reason="ROOM_DELETED")
            assert await process.wait() == 3
        finally:
            await stop(process)
    listed = await cli("list", "--json")
    assert name not in [r["name"] for r in json.loads(listed.stdout)["rooms"]]
    again = await cli("delete", name)
    assert again.returncode == 4 and again.stderr.startswith("lkrtc: error: "), report(again)


@pytest.mark.integration
async def test_server_command_serves_until_sigint(tmp_path: Path) -> None:
    host = test_host()
    port = free_port(host)
    key, secret = "clikey", "a-secret-long-enough-for-hs256-keys"
    command = [*PY_M, "server", "--json", "--port", str(port), "--keys", f"{key}:{secret}"]
    errors = tmp_path / "stderr.txt"
    with anyio.fail_after(60), errors.open("wb") as err:
        process = await anyio.open_process(command, stderr=err, env=clean_env())
        try:
            assert process.stdout is not None
            info = await JsonLines(process.stdout).until(limit=40)
            assert info["url"] == f"ws://{host}:{port}"
            assert info["http_url"] == f"http://{host}:{port}"
            assert (info["api_key"], info["api_secret"]) == (key, secret)
            grants = api.VideoGrants(room_join=True, room="r")
            token = api.AccessToken(key, secret).with_identity("c").with_grants(grants).to_jwt()
            async with lk.open_room(info["url"], token) as room:
                assert room.isconnected()
            process.send_signal(signal.SIGINT)
            assert await process.wait() == 0
        finally:
            await stop(process)
    assert "Traceback" not in errors.read_text()
    with pytest.raises(OSError):  # nothing listens any more: the server is gone
        await (await anyio.connect_tcp(host, port)).aclose()
