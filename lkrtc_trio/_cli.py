"""``lkrtc``: a command line tool for LiveKit rooms, in the spirit of LiveKit's ``lk``.

Commands: ``server`` (a local dev livekit-server), ``token`` (mint access
tokens), ``join`` (print a room's events live), ``rpc`` (call a participant's
method), ``send`` (data packet, text stream or file), ``room`` (list, create,
delete rooms through the server API) and ``load-test`` (rooms of participants
exchanging audio, data and RPC calls; see :mod:`lkrtc_trio._loadtest`). Every
command runs on ``trio.run``, and uses lkrtc_trio the way an application does:
through its public API
(``import lkrtc_trio as lk``, :mod:`lkrtc_trio.api`, :mod:`lkrtc_trio.testing`).

Exit codes (stable; scripts may rely on them): see :class:`ExitCode`.
Expected failures print ``lkrtc: error: ...`` on stderr, never a traceback,
and never an access token.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import dataclasses
import enum
import json
import logging
import math
import os
import re
import secrets
import signal
import sys
import warnings
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TextIO, final

import trio

import lkrtc_trio as lk

from . import _loadtest, api
from ._errors import redact
from ._version import TESTED_LIVEKIT, __version__, livekit_version
from .testing import (
    LocalServer,
    ServerInfo,
    ServerInstallError,
    ServerStartError,
    install_server,
)

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup

__all__ = ["ExitCode", "main", "version_line"]

log = logging.getLogger("lkrtc_trio.cli")


class ExitCode(enum.IntEnum):
    """The exit statuses of ``lkrtc``, the same for every command."""

    OK = 0
    ERROR = 1
    USAGE = 2
    CONNECTION = 3
    NOT_FOUND = 4
    RPC = 5
    INTERRUPTED = 130


EXIT_CODES = """\
exit codes:
  0    success; also Ctrl-C or SIGTERM on `join` and `server`, which run until stopped
  1    error (a failed send, a server that did not start, an API error, ...)
  2    usage error (bad or missing arguments, no credentials)
  3    could not connect or authenticate (unreachable server, bad token or key),
       or the server ended the connection (`join`: removed, room deleted, ...)
  4    not found (`room delete` of no such room; `rpc`/`send --to` someone who is
       not in the room)
  5    RPC error: the method failed, is unknown, or timed out (`rpc`)
  130  interrupted by Ctrl-C or SIGTERM (commands other than `join` and `server`)"""

CONNECTION_HELP = """\
connection settings (every command but `server`):
  --url URL             server URL, ws(s):// or http(s)://    [env LIVEKIT_URL]
  --api-key KEY         API key                               [env LIVEKIT_API_KEY]
  --api-secret SECRET   API secret                            [env LIVEKIT_API_SECRET]"""


def version_line() -> str:
    """lkrtc-trio's version, the ``livekit`` wheel's, and the tested range."""
    return f"lkrtc-trio {__version__} (livekit {livekit_version()}; tested livekit{TESTED_LIVEKIT})"


@final
class CliError(Exception):
    """An expected failure: ``message`` goes to stderr, ``code`` is the exit status."""

    def __init__(self, code: ExitCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# --------------------------------------------------------------------------- parsing values

_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd]?)")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_MAX_SECONDS = 100 * 365 * 86400


def parse_duration(text: str) -> timedelta:
    """``"90"``, ``"90s"``, ``"15m"``, ``"1h30m"``, ``"2d"`` -> a positive timedelta.

    Raises:
        argparse.ArgumentTypeError: not such a duration.
    """
    pos, seconds = 0, 0.0
    for match in _DURATION.finditer(text.strip()):
        if match.start() != pos:
            break
        seconds += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if text.strip() and pos == len(text.strip()) and 0 < seconds < _MAX_SECONDS:
        return timedelta(seconds=seconds)
    raise argparse.ArgumentTypeError(f"invalid duration {text!r} (examples: 90s, 15m, 1h30m)")


def _positive_seconds(text: str) -> float:
    return parse_duration(text).total_seconds()


def parse_pairs(items: Sequence[str], what: str) -> dict[str, str]:
    """``["k=v", ...]`` -> ``{"k": "v"}``.

    Raises:
        CliError: an item without ``=`` or with an empty key (usage error).
    """
    pairs: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CliError(ExitCode.USAGE, f"{what} must be KEY=VALUE, not {item!r}")
        pairs[key] = value
    return pairs


_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def parse_bool(text: str) -> bool:
    """``true/false``, ``1/0``, ``yes/no``, ``on/off``.

    Raises:
        CliError: anything else (usage error).
    """
    low = text.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise CliError(ExitCode.USAGE, f"not a boolean: {text!r} (use true or false)")


def _port(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise argparse.ArgumentTypeError(f"invalid port {text!r}")
    return int(text)


def _readable_file(text: str) -> Path:
    path = Path(text)
    if not path.is_file() or not os.access(path, os.R_OK):
        raise argparse.ArgumentTypeError(f"{text!r} is not a readable file")
    return path


def _ws_url(url: str) -> str:
    return re.sub(r"^http(s?)://", r"ws\1://", url)


# --------------------------------------------------------------------------- the parser


@final
class _Formatter(argparse.RawDescriptionHelpFormatter):
    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=30)


def _epilog(examples: str) -> str:
    return f"examples:\n{examples}\n\n{EXIT_CODES}"


def _common_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-v", "--verbose", action="count", default=0, help="log more (-vv: debug logs)"
    )
    return common


def _connection_parser() -> argparse.ArgumentParser:
    env = os.environ.get
    conn = argparse.ArgumentParser(add_help=False)
    group = conn.add_argument_group("connection (defaults from the environment)")
    group.add_argument(
        "--url", default=env("LIVEKIT_URL"), help="server URL, ws(s):// or http(s):// [LIVEKIT_URL]"
    )
    group.add_argument("--api-key", default=env("LIVEKIT_API_KEY"), help="[LIVEKIT_API_KEY]")
    group.add_argument(
        "--api-secret", default=env("LIVEKIT_API_SECRET"), help="[LIVEKIT_API_SECRET]"
    )
    return conn


def _participant_parser() -> argparse.ArgumentParser:
    part = argparse.ArgumentParser(add_help=False)
    group = part.add_argument_group("participant")
    group.add_argument("--identity", help="identity to join as (default: lkrtc-<random>)")
    group.add_argument("--name", help="display name")
    group.add_argument(
        "--token", help="join with this access token (its room and identity) instead of minting one"
    )
    group.add_argument(
        "--connect-timeout",
        type=_positive_seconds,
        default=10.0,
        metavar="DURATION",
        help="give up connecting after this long (default 10s)",
    )
    return part


def build_parser(prog: str = "lkrtc") -> argparse.ArgumentParser:
    """The ``lkrtc`` argument parser (every subcommand, with examples and exit codes)."""
    parser = argparse.ArgumentParser(
        prog=prog,
        formatter_class=_Formatter,
        description="lkrtc: LiveKit rooms from the command line (lkrtc-trio, on trio).",
        epilog=_epilog(
            "  lkrtc server                                  # a local dev server\n"
            "  export LIVEKIT_URL=ws://127.0.0.1:7880 LIVEKIT_API_KEY=devkey "
            "LIVEKIT_API_SECRET=secret\n"
            "  lkrtc join my-room                            # print the room's events\n"
            "  lkrtc send my-room --text 'hello'\n"
            "  lkrtc rpc my-room --to bob --method greet --payload hi\n"
            "  lkrtc room list --json\n"
            "  lkrtc token --identity bob --room my-room\n"
            "  lkrtc load-test --rooms 4 --participants 3 --duration 30s\n\n"
            f"{CONNECTION_HELP}"
        ),
    )
    parser.add_argument("--version", action="store_true", help="print the versions and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    common, conn, part = _common_parser(), _connection_parser(), _participant_parser()
    _add_server(sub, common)
    _add_token(sub, common, conn)
    _add_join(sub, common, conn, part)
    _add_rpc(sub, common, conn, part)
    _add_send(sub, common, conn, part)
    _add_room(sub, common, conn)
    _add_load_test(sub, common)
    return parser


def _add_server(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "server",
        parents=[common],
        formatter_class=_Formatter,
        help="run a local dev livekit-server until Ctrl-C",
        description=(
            "Run livekit-server --dev on this machine (built with `go install` on first use,\n"
            "then cached), print its URLs and API key and secret, and stop it on Ctrl-C or\n"
            "SIGTERM (exit 0)."
        ),
        epilog=_epilog(
            "  lkrtc server\n"
            "  lkrtc server --port 7880 --keys mykey:a-secret-of-at-least-32-characters\n"
            "  lkrtc server --json | head -1   # one JSON line: url, http_url, api_key, api_secret"
        ),
    )
    p.add_argument("--port", type=_port, help="HTTP/WebSocket port (default: a free port)")
    p.add_argument("--host", help="address to bind and advertise (default: the test host)")
    p.add_argument(
        "--keys", metavar="KEY:SECRET", help="API key and secret (default devkey:secret)"
    )
    p.add_argument("--json", action="store_true", help="print the settings as one JSON line")


def _add_token(sub: Any, common: argparse.ArgumentParser, conn: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "token",
        parents=[common, conn],
        formatter_class=_Formatter,
        help="mint an access token",
        description=(
            "Mint an access token signed with --api-key/--api-secret and print it.\n"
            "--room grants joining that room; --admin, --create and --list grant the server\n"
            "API's room administration, room creation and room listing; --grant sets any\n"
            "video grant (snake_case names: can_publish, can_subscribe, can_publish_data,\n"
            "can_publish_sources, hidden, room_record, ...)."
        ),
        epilog=_epilog(
            "  lkrtc token --identity bob --room my-room\n"
            "  lkrtc token --identity viewer --room my-room --grant can_publish=false --ttl 15m\n"
            "  lkrtc token --identity bot --room my-room --attributes role=bot lang=en --json\n"
            "  lkrtc token --identity ops --create --list      # server API: create and list rooms"
        ),
    )
    p.add_argument("--identity", help="participant identity (needed to join a room)")
    p.add_argument("--room", help="room the token may join")
    p.add_argument("--name", help="display name")
    p.add_argument("--metadata", help="participant metadata")
    p.add_argument(
        "--attributes", nargs="+", action="extend", default=[], metavar="K=V", help="attributes"
    )
    p.add_argument(
        "--ttl", type=parse_duration, default=timedelta(hours=6), help="lifetime (default 6h)"
    )
    p.add_argument(
        "--grant", nargs="+", action="extend", default=[], metavar="NAME=VALUE", help="video grants"
    )
    p.add_argument("--admin", action="store_true", help="room_admin for --room")
    p.add_argument("--create", action="store_true", help="room_create (server API)")
    p.add_argument("--list", action="store_true", help="room_list (server API)")
    p.add_argument("--json", action="store_true", help="print a JSON object, not just the token")


def _add_join(
    sub: Any,
    common: argparse.ArgumentParser,
    conn: argparse.ArgumentParser,
    part: argparse.ArgumentParser,
) -> None:
    p = sub.add_parser(
        "join",
        parents=[common, conn, part],
        formatter_class=_Formatter,
        help="join a room and print its events live",
        description=(
            "Join ROOM and print one line per room event: participants connecting and\n"
            "leaving, tracks published and subscribed, data packets, text and byte streams,\n"
            "metadata, name and attribute changes, connection state, disconnection. Ctrl-C\n"
            "(or SIGTERM) leaves the room and exits 0. Text lines are\n"
            "`HH:MM:SS.mmm EVENT key=value ...`; --json prints one JSON object per line\n"
            '(`{"time": ..., "event": ..., ...}`).'
        ),
        epilog=_epilog(
            "  lkrtc join my-room\n"
            "  lkrtc join my-room --identity watcher --json | jq .event\n"
            "  lkrtc join my-room --topic chat --save-dir ./received   # also streams on 'chat'\n"
            "  lkrtc join my-room --publish-tone 440                   # and publish a sine tone\n"
            '  lkrtc join --url wss://example.livekit.cloud --token "$TOKEN"'
        ),
    )
    p.add_argument("room", nargs="?", help="room to join (not needed with --token)")
    p.add_argument("--json", action="store_true", help="JSON lines")
    p.add_argument(
        "--topic",
        action="append",
        default=[],
        help="also print text/byte streams on TOPIC (always: '' and 'lk.chat'); repeatable",
    )
    p.add_argument("--save-dir", type=Path, help="save incoming byte streams (files) there")
    p.add_argument("--publish-tone", type=float, metavar="HZ", help="publish a sine tone track")
    p.add_argument(
        "--all-events",
        action="store_true",
        help="also print frequent events (speakers, connection quality, room updates)",
    )


def _add_rpc(
    sub: Any,
    common: argparse.ArgumentParser,
    conn: argparse.ArgumentParser,
    part: argparse.ArgumentParser,
) -> None:
    p = sub.add_parser(
        "rpc",
        parents=[common, conn, part],
        formatter_class=_Formatter,
        help="call a participant's RPC method",
        description=(
            "Join ROOM, call METHOD on the participant IDENTITY, print its response and\n"
            "leave. An RPC error (the method failed, is not registered, or timed out)\n"
            "goes to stderr as `lkrtc: error: RPC error CODE: MESSAGE` and exits 5."
        ),
        epilog=_epilog(
            "  lkrtc rpc my-room --to agent --method greet --payload hi\n"
            "  echo '{\"a\": 1}' | lkrtc rpc my-room --to agent --method add --payload -\n"
            "  lkrtc rpc my-room --to agent --method slow --timeout 30s --json"
        ),
    )
    p.add_argument("room", nargs="?", help="room to join (not needed with --token)")
    p.add_argument("--to", required=True, metavar="IDENTITY", help="participant to call")
    p.add_argument("--method", required=True, help="method name")
    p.add_argument("--payload", default="", help="request payload ('-': read stdin)")
    p.add_argument(
        "--timeout",
        type=_positive_seconds,
        default=15.0,
        metavar="DURATION",
        help="response timeout (default 15s)",
    )
    p.add_argument(
        "--wait",
        type=_positive_seconds,
        default=10.0,
        metavar="DURATION",
        help="wait this long for --to to be in the room (default 10s), else exit 4",
    )
    p.add_argument(
        "--json",
        action="store_true",
        help='print {"response": ...} (or {"error": {"code", "message", "data"}})',
    )


def _add_send(
    sub: Any,
    common: argparse.ArgumentParser,
    conn: argparse.ArgumentParser,
    part: argparse.ArgumentParser,
) -> None:
    p = sub.add_parser(
        "send",
        parents=[common, conn, part],
        formatter_class=_Formatter,
        help="send a data packet, a text stream or a file",
        description=(
            "Join ROOM, send one data packet (--data), text stream (--text) or file as a\n"
            "byte stream (--file) to everyone or to the --to participants, wait until each\n"
            "recipient confirmed it (an RPC round trip behind the data: `delivered` in the\n"
            "output), and leave."
        ),
        epilog=_epilog(
            "  lkrtc send my-room --data 'ping' --topic chat\n"
            "  lkrtc send my-room --data 'position 3,4' --lossy --to bob --to carol\n"
            "  lkrtc send my-room --text 'hello everyone' --topic lk.chat\n"
            "  lkrtc send my-room --file ./report.pdf --topic files --to bob\n"
            "  date | lkrtc send my-room --text -"
        ),
    )
    p.add_argument("room", nargs="?", help="room to join (not needed with --token)")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--data", help="a data packet with this text ('-': read stdin)")
    what.add_argument("--text", help="a text stream with this text ('-': read stdin)")
    what.add_argument("--file", type=_readable_file, help="this file, as a byte stream")
    p.add_argument("--topic", default="", help="topic (default '')")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--reliable", dest="reliable", action="store_true", default=True, help="(default)"
    )
    mode.add_argument("--lossy", dest="reliable", action="store_false", help="lossy packet")
    p.add_argument(
        "--to", action="append", default=[], metavar="IDENTITY", help="recipient; repeatable"
    )
    p.add_argument(
        "--wait",
        type=_positive_seconds,
        default=10.0,
        metavar="DURATION",
        help="wait this long for the --to participants (else exit 4), and for each "
        "recipient's confirmation (default 10s)",
    )
    p.add_argument("--json", action="store_true", help="print what was sent as JSON")


def _add_room(sub: Any, common: argparse.ArgumentParser, conn: argparse.ArgumentParser) -> None:
    room_epilog = _epilog(
        "  lkrtc room list\n"
        "  lkrtc room create my-room --empty-timeout 10m --max-participants 20\n"
        "  lkrtc room delete my-room\n"
        "  lkrtc room list --json | jq '.rooms[].name'"
    )
    p = sub.add_parser(
        "room",
        formatter_class=_Formatter,
        help="list, create and delete rooms (server API)",
        description="List, create and delete rooms with the server API (RoomService).",
        epilog=room_epilog,
    )
    rooms = p.add_subparsers(dest="room_command", metavar="ACTION", required=True)
    kw: dict[str, Any] = {"parents": [common, conn], "formatter_class": _Formatter}
    ls = rooms.add_parser("list", help="list rooms", epilog=room_epilog, **kw)
    ls.add_argument("names", nargs="*", help="only these rooms")
    create = rooms.add_parser("create", help="create a room", epilog=room_epilog, **kw)
    create.add_argument("name")
    create.add_argument("--empty-timeout", type=parse_duration, metavar="DURATION")
    create.add_argument("--departure-timeout", type=parse_duration, metavar="DURATION")
    create.add_argument("--max-participants", type=int)
    create.add_argument("--metadata")
    delete = rooms.add_parser("delete", help="delete a room", epilog=room_epilog, **kw)
    delete.add_argument("name")
    for action in (ls, create, delete):
        action.add_argument("--json", action="store_true", help="print JSON")


def _int_at_least(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low} and {high}, not {value}")
        return value

    return parse


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 <= value <= 1000:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1000 per second, not {text}")
    return value


def _load_seconds(text: str) -> float:
    try:
        if float(text) <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, not {text}")
    except ValueError:
        pass  # "30s", "2m": parse_duration says if it is not a duration
    return _positive_seconds(text)


def _grace_seconds(text: str) -> float:
    try:
        if float(text) == 0:
            return 0.0
    except ValueError:
        pass
    return _load_seconds(text)


def _add_load_test(sub: Any, common: argparse.ArgumentParser) -> None:
    env = os.environ.get
    p = sub.add_parser(
        "load-test",
        parents=[common],
        formatter_class=_Formatter,
        help="load-test a server or cluster: rooms of participants with audio, data and RPC",
        description=(
            "Join --rooms rooms of --participants participants each (all in this process;\n"
            "with several --url, participant n joins through URL n mod the number of URLs,\n"
            "so every node of a cluster gets traffic), wait until everyone sees everyone\n"
            "and hears the audio, then for --duration: each participant calls an echo RPC\n"
            "method --rpc-rate times a second (on the others of its room in turn) and sends\n"
            "--data-rate numbered reliable packets a second to its room; with --audio, the\n"
            "first participant of each room publishes a 48 kHz mono tone in 10 ms frames\n"
            "and the others count what they receive. Then sending stops, in-flight data\n"
            "gets --grace to arrive, everyone leaves, and the report is printed: join\n"
            "times, RPC latency (p50/p90/p99/max) and errors, data sent/received/lost/\n"
            "reordered/duplicated, audio frames received vs expected (100 a second per\n"
            "subscriber) and dropped, and this process's CPU time. Losses are reported,\n"
            "not errors: the exit status is 0 once the run completed."
        ),
        epilog=_epilog(
            "  lkrtc load-test --url ws://127.0.0.1:7880 --api-key devkey --api-secret secret\n"
            "  lkrtc load-test --rooms 10 --participants 4 --duration 1m --rpc-rate 5 --json\n"
            "  lkrtc load-test --url ws://node1:7880 --url ws://node2:7880 --no-audio   "
            "# a cluster\n"
            "  lkrtc load-test --data-rate 50 --data-size 1000 --rpc-rate 0 --duration 30s"
        ),
    )
    conn = p.add_argument_group("connection (defaults from the environment)")
    conn.add_argument(
        "--url",
        action="append",
        metavar="URL",
        help="server URL, ws(s):// or http(s)://; repeat for the nodes of a cluster "
        "(participants are spread round-robin) [LIVEKIT_URL]",
    )
    conn.add_argument("--api-key", default=env("LIVEKIT_API_KEY"), help="[LIVEKIT_API_KEY]")
    conn.add_argument(
        "--api-secret", default=env("LIVEKIT_API_SECRET"), help="[LIVEKIT_API_SECRET]"
    )
    load = p.add_argument_group("load")
    load.add_argument(
        "--rooms", type=_int_at_least(1, 1000), default=2, metavar="R", help="rooms (default 2)"
    )
    load.add_argument(
        "--participants",
        type=_int_at_least(2, 1000),
        default=2,
        metavar="P",
        help="participants per room, at least 2 (default 2)",
    )
    load.add_argument(
        "--duration",
        type=_load_seconds,
        default=10.0,
        metavar="DURATION",
        help="measured traffic time (default 10s)",
    )
    load.add_argument(
        "--rpc-rate",
        type=_rate,
        default=2.0,
        metavar="N",
        help="RPC calls a second per participant, 0: none (default 2)",
    )
    load.add_argument(
        "--data-rate",
        type=_rate,
        default=5.0,
        metavar="N",
        help="reliable data packets a second per participant, to its room; 0: none (default 5)",
    )
    load.add_argument(
        "--data-size",
        type=_int_at_least(1, lk.MAX_DATA_BYTES),
        default=64,
        metavar="BYTES",
        help="data packet size (default 64)",
    )
    load.add_argument(
        "--audio",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="a tone from the first participant of each room to the others (default on)",
    )
    load.add_argument(
        "--room-prefix",
        metavar="PREFIX",
        help="rooms are PREFIX-0, PREFIX-1, ... (default lkrtc-load-<random>)",
    )
    load.add_argument("--json", action="store_true", help="print the report as one JSON object")
    limits = p.add_argument_group("limits")
    limits.add_argument(
        "--connect-timeout",
        type=_load_seconds,
        default=10.0,
        metavar="DURATION",
        help="each join (default 10s); a failed join exits 3",
    )
    limits.add_argument(
        "--ready-timeout",
        type=_load_seconds,
        default=20.0,
        metavar="DURATION",
        help="until everyone sees everyone and hears the tone (default 20s), else exit 1",
    )
    limits.add_argument(
        "--rpc-timeout",
        type=_load_seconds,
        default=5.0,
        metavar="DURATION",
        help="each RPC call's response timeout (default 5s)",
    )
    limits.add_argument(
        "--grace",
        type=_grace_seconds,
        default=2.0,
        metavar="DURATION",
        help="after the window, time for in-flight data to arrive (default 2s)",
    )
    limits.add_argument(
        "--join-concurrency",
        type=_int_at_least(1, 1000),
        default=8,
        metavar="N",
        help="participants connecting at the same time (default 8)",
    )


# --------------------------------------------------------------------------- output


def _needs_quotes(text: str) -> bool:
    return not text or re.fullmatch(r"[\w.:/@+=\-]+", text) is None


def _text_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False) if _needs_quotes(value) else value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def format_text(record: Mapping[str, object]) -> str:
    """``{"event": "x", "a": 1}`` -> ``x a=1`` (strings quoted when they need it)."""
    head = str(record.get("event", ""))
    rest = " ".join(f"{k}={_text_value(v)}" for k, v in record.items() if k != "event")
    return f"{head} {rest}".rstrip()


@final
@dataclasses.dataclass
class Printer:
    """Writes records to stdout: ``event key=value ...`` lines, or JSON lines."""

    as_json: bool
    timestamps: bool = False
    stream: TextIO | None = None

    def emit(self, record: Mapping[str, object]) -> None:
        out = self.stream or sys.stdout
        if self.as_json:
            if self.timestamps:
                now = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
                record = {"time": now, **record}
            line = json.dumps(record, ensure_ascii=False, separators=(",", ":"))
        else:
            line = format_text(record)
            if self.timestamps:
                line = f"{datetime.now().strftime('%H:%M:%S.%f')[:-3]} {line}"
        print(line, file=out, flush=True)


def _snake(name: str) -> str:
    """``SipDTMFReceived`` -> ``sip_dtmf_received``."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()


def plain(value: object) -> object:
    """A JSON-ready copy of an event field: participants become identities,
    enums their names, bytes text (or base64), dataclasses dicts."""
    if isinstance(value, lk.Participant):
        return value.identity
    if isinstance(value, lk.TrackPublication):
        return value.sid
    if isinstance(value, enum.Enum):
        return value.name
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return _decode(bytes(value))[0]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [plain(v) for v in value]
    return str(value)


def _decode(data: bytes) -> tuple[str, bool]:
    """(text, True) for UTF-8, else (base64, False)."""
    try:
        return data.decode("utf-8"), True
    except UnicodeDecodeError:
        return base64.b64encode(data).decode("ascii"), False


#: Events printed only with --all-events (frequent, or of little interest).
QUIET_EVENTS: tuple[type[Any], ...] = (
    lk.ActiveSpeakersChanged,
    lk.ConnectionQualityChanged,
    lk.ParticipantsUpdated,
    lk.RoomUpdated,
    lk.ParticipantActive,
    lk.DataChannelBufferedAmountLowThresholdChanged,
    lk.TokenRefreshed,
)


def _publication_fields(pub: lk.TrackPublication) -> dict[str, object]:
    return {
        "track_sid": pub.sid,
        "track_name": pub.name,
        "track_kind": pub.kind.name,
        "track_source": pub.source.name,
    }


def _participant_fields(p: lk.Participant) -> dict[str, object]:
    fields: dict[str, object] = {"participant": p.identity}
    if p.name:
        fields["name"] = p.name
    if p.metadata:
        fields["metadata"] = p.metadata
    if p.attributes:
        fields["attributes"] = p.attributes
    return fields


def event_record(event: lk.RoomEvent) -> dict[str, object]:
    """The record ``join`` prints for a room event: ``{"event": snake_name, ...}``."""
    record: dict[str, object] = {"event": _snake(type(event).__name__)}
    if isinstance(event, lk.ParticipantConnected):
        record.update(_participant_fields(event.participant))
        return record
    for field in dataclasses.fields(event):
        value = getattr(event, field.name)
        if field.name == "track" or value is None:
            continue
        if isinstance(value, lk.TrackPublication):
            record.update(_publication_fields(value))
        elif isinstance(value, (bytes, bytearray, memoryview)):
            text, ok = _decode(bytes(value))
            record[field.name if ok else f"{field.name}_base64"] = text
        elif field.name == "token":
            record[field.name] = "<redacted>"
        else:
            record[field.name] = plain(value)
    identity = record.pop("participant_identity", None)
    if "participant" not in record and identity:
        record["participant"] = identity
    return record


# --------------------------------------------------------------------------- credentials


@final
@dataclasses.dataclass(frozen=True)
class Connection:
    """Where the server is and how to authenticate (from options or environment)."""

    url: str | None
    api_key: str | None
    api_secret: str | None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Connection:
        return cls(url=args.url or None, api_key=args.api_key, api_secret=args.api_secret)

    def need_url(self) -> str:
        if not self.url:
            raise CliError(ExitCode.USAGE, "no server URL: pass --url or set LIVEKIT_URL")
        if not re.match(r"^(wss?|https?)://", self.url):
            raise CliError(
                ExitCode.USAGE, "--url must start with ws://, wss://, http:// or https://"
            )
        return self.url

    def need_keys(self, why: str) -> tuple[str, str]:
        if not self.api_key or not self.api_secret:
            raise CliError(
                ExitCode.USAGE,
                f"{why} needs an API key and secret: pass --api-key and --api-secret "
                "or set LIVEKIT_API_KEY and LIVEKIT_API_SECRET",
            )
        return self.api_key, self.api_secret


def _grant_value(name: str, annotation: str, text: str) -> object:
    if "bool" in annotation:
        return parse_bool(text)
    if "Sequence" in annotation or "list" in annotation.lower():
        return [s.strip() for s in text.split(",") if s.strip()]
    if "int" in annotation:
        try:
            return int(text)
        except ValueError:
            raise CliError(ExitCode.USAGE, f"grant {name} needs an integer") from None
    return text


def parse_grants(items: Sequence[str]) -> dict[str, object]:
    """``["can_publish=false", ...]`` -> VideoGrants keyword arguments.

    Raises:
        CliError: an unknown grant name or a bad value (usage error).
    """
    known = {f.name: str(f.type) for f in dataclasses.fields(api.VideoGrants)}
    grants: dict[str, object] = {}
    for name, text in parse_pairs(items, "--grant").items():
        if name not in known:
            raise CliError(
                ExitCode.USAGE, f"unknown grant {name!r}; known: {', '.join(sorted(known))}"
            )
        grants[name] = _grant_value(name, known[name], text)
    return grants


def mint(
    conn: Connection,
    *,
    identity: str | None,
    name: str | None = None,
    metadata: str | None = None,
    attributes: Mapping[str, str] | None = None,
    ttl: timedelta = timedelta(hours=6),
    grants: Mapping[str, Any],
) -> str:
    """An access token signed with the connection's key and secret.

    Raises:
        CliError: no key or secret (usage error).
    """
    key, secret = conn.need_keys("minting a token")
    try:
        token = api.AccessToken(key, secret).with_ttl(ttl).with_grants(api.VideoGrants(**grants))
        if identity:
            token = token.with_identity(identity)
        if name:
            token = token.with_name(name)
        if metadata:
            token = token.with_metadata(metadata)
        if attributes:
            token = token.with_attributes(dict(attributes))
        return token.to_jwt()
    except (TypeError, ValueError) as exc:
        raise CliError(ExitCode.USAGE, f"cannot mint the token: {exc}") from None


@final
@dataclasses.dataclass(frozen=True)
class Participation:
    """How ``join``/``rpc``/``send`` enter a room: URL, token, options."""

    url: str
    token: str
    options: lk.RoomOptions

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Participation:
        conn = Connection.from_args(args)
        url = _ws_url(conn.need_url())
        options = lk.RoomOptions(connect_timeout=float(args.connect_timeout))
        if args.token:
            if args.identity or args.name:
                raise CliError(ExitCode.USAGE, "--identity and --name come from the --token")
            return cls(url=url, token=str(args.token), options=options)
        if not args.room:
            raise CliError(ExitCode.USAGE, "a ROOM is needed (or --token)")
        identity = args.identity or f"lkrtc-{secrets.token_hex(3)}"
        token = mint(
            conn,
            identity=identity,
            name=args.name,
            grants={"room_join": True, "room": str(args.room)},
        )
        return cls(url=url, token=token, options=options)


# --------------------------------------------------------------------------- running


async def run_interruptible(body: Callable[[], Awaitable[int]]) -> int | None:
    """Runs ``body()`` until it returns its exit code, or until SIGINT/SIGTERM
    cancels it (then None). An exception of ``body`` propagates as it is (no
    ExceptionGroup)."""
    results: list[int] = []
    failures: list[Exception] = []
    interrupted = False
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:

            async def run_body() -> None:
                try:
                    results.append(await body())
                except Exception as exc:  # re-raised below, outside the nursery
                    failures.append(exc)
                finally:
                    nursery.cancel_scope.cancel()

            nursery.start_soon(run_body)
            async for _ in signals:
                interrupted = True
                nursery.cancel_scope.cancel()
                break
    if failures:
        raise failures[0]
    if interrupted or not results:
        return None
    return results[0]


def _interrupted_code(command: str) -> ExitCode:
    return ExitCode.OK if command in ("join", "server") else ExitCode.INTERRUPTED


def run_async(command: str, body: Callable[[], Awaitable[int]]) -> int:
    """``trio.run`` of ``body`` with signals handled as documented."""
    code = trio.run(run_interruptible, body)
    return int(_interrupted_code(command) if code is None else code)


# --------------------------------------------------------------------------- server


def _server_keys(text: str | None) -> tuple[str, str] | None:
    if text is None:
        return None
    key, sep, secret = text.partition(":")
    key, secret = key.strip(), secret.strip()
    if not sep or not key or not secret or re.search(r"[\s:]", key + secret):
        raise CliError(ExitCode.USAGE, "--keys must be KEY:SECRET (no spaces)")
    return key, secret


def _start_server(args: argparse.Namespace) -> tuple[LocalServer, ServerInfo]:
    """Starts a LocalServer as asked; returns it and where it listens."""
    keys = _server_keys(args.keys)
    extra = None if keys is None else f"keys:\n  {keys[0]}: {keys[1]}\n"
    server = LocalServer(
        binary=install_server(), host=args.host, extra_config=extra, http_port=args.port
    )
    info = server.start()
    if keys is not None:
        info = dataclasses.replace(info, api_key=keys[0], api_secret=keys[1])
    return server, info


def _print_server(info: ServerInfo, log_path: object, as_json: bool) -> None:
    if as_json:
        fields = {
            "url": info.url,
            "http_url": info.http_url,
            "api_key": info.api_key,
            "api_secret": info.api_secret,
            "log": str(log_path),
        }
        print(json.dumps(fields), flush=True)
        return
    print(f"url:        {info.url}")
    print(f"http url:   {info.http_url}")
    print(f"api key:    {info.api_key}")
    print(f"api secret: {info.api_secret}")
    print(f"log:        {log_path}")
    print()
    print(
        f"  export LIVEKIT_URL={info.url} LIVEKIT_API_KEY={info.api_key} "
        f"LIVEKIT_API_SECRET={info.api_secret}"
    )
    print(
        f"  lkrtc join my-room --url {info.url} --api-key {info.api_key} "
        f"--api-secret {info.api_secret}",
        flush=True,
    )


def cmd_server(args: argparse.Namespace) -> int:
    try:
        server, info = _start_server(args)
    except (ServerInstallError, ServerStartError, OSError) as exc:
        raise CliError(ExitCode.ERROR, f"livekit-server did not start: {exc}") from None
    try:
        _print_server(info, server.log_path, bool(args.json))
        print("livekit-server is running; Ctrl-C to stop.", file=sys.stderr, flush=True)

        async def watch() -> int:
            # a subprocess.Popen has no awaitable exit: poll it
            while server.running:  # noqa: ASYNC110
                await trio.sleep(0.2)
            print("livekit-server exited:\n" + server.log_tail(), file=sys.stderr)
            return ExitCode.ERROR

        return run_async("server", watch)
    finally:
        server.stop()


# --------------------------------------------------------------------------- token


def cmd_token(args: argparse.Namespace) -> int:
    grants = parse_grants(args.grant)
    if args.room:
        grants.setdefault("room_join", True)
        grants.setdefault("room", str(args.room))
    if args.admin:
        if not args.room:
            raise CliError(ExitCode.USAGE, "--admin needs --room")
        grants["room_admin"] = True
    if args.create:
        grants["room_create"] = True
    if args.list:
        grants["room_list"] = True
    if not grants:
        raise CliError(ExitCode.USAGE, "nothing to grant: pass --room, --create, --list or --grant")
    if grants.get("room_join") and not args.identity:
        raise CliError(ExitCode.USAGE, "joining a room needs --identity")
    token = mint(
        Connection.from_args(args),
        identity=args.identity,
        name=args.name,
        metadata=args.metadata,
        attributes=parse_pairs(args.attributes, "--attributes"),
        ttl=args.ttl,
        grants=grants,
    )
    if not args.json:
        print(token)
        return ExitCode.OK
    expires = datetime.now(timezone.utc) + args.ttl
    record: dict[str, object] = {
        "token": token,
        "identity": args.identity,
        "room": args.room,
        "url": args.url,
        "expires_at": expires.isoformat(timespec="seconds"),
        "grants": grants,
    }
    print(json.dumps({k: v for k, v in record.items() if v is not None}))
    return ExitCode.OK


# --------------------------------------------------------------------------- join


async def _print_text_streams(
    streams: lk.StreamSubscription[lk.TextStreamReader], out: Printer
) -> None:
    async with trio.open_nursery() as nursery:
        async for reader in streams:
            nursery.start_soon(_print_text, reader, out)


async def _print_text(reader: lk.TextStreamReader, out: Printer) -> None:
    async with reader:
        try:
            text = await reader.read_all()
        except lk.StreamError as exc:
            out.emit(
                {
                    "event": "text_stream_failed",
                    "stream_id": reader.info.stream_id,
                    "participant": reader.participant_identity,
                    "error": str(exc),
                }
            )
            return
    out.emit(
        {
            "event": "text_stream",
            "participant": reader.participant_identity,
            "topic": reader.info.topic,
            "stream_id": reader.info.stream_id,
            "text": text,
        }
    )


async def _print_byte_streams(
    streams: lk.StreamSubscription[lk.ByteStreamReader], out: Printer, save_dir: Path | None
) -> None:
    async with trio.open_nursery() as nursery:
        async for reader in streams:
            nursery.start_soon(_print_bytes, reader, out, save_dir)


async def _print_bytes(reader: lk.ByteStreamReader, out: Printer, save_dir: Path | None) -> None:
    info = reader.info
    record: dict[str, object] = {
        "event": "byte_stream",
        "participant": reader.participant_identity,
        "topic": info.topic,
        "stream_id": info.stream_id,
        "name": info.name,
        "mime_type": info.mime_type,
    }
    async with reader:
        try:
            if save_dir is not None:
                path = await reader.write_to_file(save_dir)
                record["path"] = str(path)
                record["size"] = (await trio.Path(path).stat()).st_size
            else:
                record["size"] = sum([len(chunk) async for chunk in reader])
        except lk.StreamError as exc:
            record["event"] = "byte_stream_failed"
            record["error"] = str(exc)
    out.emit(record)


#: Events ``join`` buffers while stdout is slow (beyond: EventOverflowError, exit 1).
JOIN_EVENTS_BUFFER = 4096

TONE_RATE = 48000
TONE_FRAME = TONE_RATE // 100  # 10 ms


async def publish_tone(room: lk.Room, frequency: float) -> None:
    """Publishes a sine tone as a microphone track until cancelled."""
    import numpy as np  # only this command needs it

    source = lk.AudioSource(TONE_RATE, 1)
    try:
        track = lk.LocalAudioTrack.create_audio_track("tone", source)
        try:
            options = lk.TrackPublishOptions(source=lk.TrackSource.SOURCE_MICROPHONE)
            await room.local_participant.publish_track(track, options)
            # one second of the tone (and a frame more, so every slice is whole),
            # computed once; the phase restarts each second as before
            step = 2 * math.pi * frequency / TONE_RATE
            tone = (9830 * np.sin(step * np.arange(TONE_RATE + TONE_FRAME))).astype(np.int16)
            n = 0
            while True:
                frame = lk.AudioFrame.from_numpy(tone[n : n + TONE_FRAME].copy(), TONE_RATE)
                n = (n + TONE_FRAME) % TONE_RATE
                await source.capture_frame(frame)
        finally:
            track.close()
    finally:
        source.close()


def _connected_record(room: lk.Room) -> dict[str, object]:
    return {
        "event": "connected",
        "room": room.name,
        "sid": room.sid,
        "identity": room.local_participant.identity,
        "participants": sorted(room.remote_participants),
    }


async def _follow(room: lk.Room, args: argparse.Namespace, out: Printer) -> None:
    """Prints the room's events until the room ends. Everything is
    subscribed before the ``connected`` line, so nothing sent after it is missed."""
    topics = dict.fromkeys(["", "lk.chat", *args.topic])
    with contextlib.ExitStack() as stack:
        events = stack.enter_context(room.events(max_buffer=JOIN_EVENTS_BUFFER))
        texts = [stack.enter_context(room.text_streams(topic)) for topic in topics]
        files = [stack.enter_context(room.byte_streams(topic)) for topic in topics]
        out.emit(_connected_record(room))
        async with trio.open_nursery() as nursery:
            for text_sub in texts:
                nursery.start_soon(_print_text_streams, text_sub, out)
            for byte_sub in files:
                nursery.start_soon(_print_byte_streams, byte_sub, out, args.save_dir)
            if args.publish_tone is not None:
                nursery.start_soon(publish_tone, room, float(args.publish_tone))
            async for event in events:
                if args.all_events or not isinstance(event, QUIET_EVENTS):
                    out.emit(event_record(event))
            nursery.cancel_scope.cancel()


async def _join(args: argparse.Namespace) -> int:
    how = Participation.from_args(args)
    out = Printer(as_json=bool(args.json), timestamps=True)
    room_name = ""
    ended_by_server = False
    try:
        async with lk.open_room(how.url, how.token, options=how.options) as room:
            room_name = room.name
            await _follow(room, args, out)
            ended_by_server = True
    finally:
        if room_name:
            out.emit({"event": "left", "room": room_name})
    return ExitCode.CONNECTION if ended_by_server else ExitCode.OK


def cmd_join(args: argparse.Namespace) -> int:
    if args.publish_tone is not None and not 0 < args.publish_tone < TONE_RATE / 2:
        raise CliError(ExitCode.USAGE, "--publish-tone must be between 0 and 24000 Hz")
    if args.save_dir is not None:
        args.save_dir.mkdir(parents=True, exist_ok=True)
    return run_async("join", lambda: _join(args))


# --------------------------------------------------------------------------- rpc and send


def _stdin_or(text: str) -> str:
    return sys.stdin.read() if text == "-" else text


async def _wait_for(room: lk.Room, identities: Sequence[str], limit: float) -> None:
    """Waits until every identity is in the room.

    Raises:
        CliError: someone was not there within ``limit`` seconds (not found).
    """
    deadline = trio.current_time() + limit
    for identity in identities:
        with trio.move_on_at(deadline):
            await room.wait_for_participant(identity)
            continue
        raise CliError(ExitCode.NOT_FOUND, f"participant {identity!r} is not in room {room.name!r}")


async def _rpc(args: argparse.Namespace, payload: str) -> int:
    how = Participation.from_args(args)
    out = Printer(as_json=bool(args.json))
    async with lk.open_room(how.url, how.token, options=how.options) as room:
        await _wait_for(room, [args.to], float(args.wait))
        try:
            reply = await room.local_participant.perform_rpc(
                destination_identity=str(args.to),
                method=str(args.method),
                payload=payload,
                response_timeout=float(args.timeout),
            )
        except lk.RpcError as exc:
            if args.json:
                out.emit({"error": {"code": exc.code, "message": exc.message, "data": exc.data}})
            raise
    if args.json:
        out.emit({"response": reply})
    else:
        print(reply, flush=True)
    return ExitCode.OK


def cmd_rpc(args: argparse.Namespace) -> int:
    payload = _stdin_or(str(args.payload))
    return run_async("rpc", lambda: _rpc(args, payload))


async def _send_one(
    room: lk.Room, args: argparse.Namespace, content: str | None
) -> dict[str, object]:
    lp = room.local_participant
    to: list[str] = list(args.to)
    record: dict[str, object] = {"event": "sent", "room": room.name, "topic": args.topic}
    if args.file is not None:
        info = await lp.send_file(args.file, topic=args.topic, destination_identities=to)
        record.update(kind="file", stream_id=info.stream_id, name=info.name, size=info.size)
    elif args.text is not None:
        assert content is not None
        text_info = await lp.send_text(content, topic=args.topic, destination_identities=to)
        record.update(kind="text", stream_id=text_info.stream_id, size=len(content.encode()))
    else:
        assert content is not None
        data = content.encode()
        await lp.publish_data(
            data, reliable=bool(args.reliable), topic=args.topic, destination_identities=to
        )
        record.update(kind="data", size=len(data), reliable=bool(args.reliable))
    if to:
        record["to"] = to
    return record


#: The method ``send`` calls on each recipient after sending (see :func:`confirm_delivery`).
FLUSH_METHOD = "lkrtc.flush"

#: RPC outcomes that do not prove the recipient got the request.
_UNANSWERED = frozenset(
    {
        lk.RpcError.ErrorCode.CONNECTION_TIMEOUT,
        lk.RpcError.ErrorCode.RESPONSE_TIMEOUT,
        lk.RpcError.ErrorCode.RECIPIENT_DISCONNECTED,
        lk.RpcError.ErrorCode.RECIPIENT_NOT_FOUND,
        lk.RpcError.ErrorCode.SEND_FAILED,
        lk.RpcError.ErrorCode.UNSUPPORTED_SERVER,
    }
)


async def confirm_delivery(room: lk.Room, identities: Sequence[str], limit: float) -> list[str]:
    """Waits until what was sent on the reliable channel reached each of
    ``identities``; returns those that confirmed it.

    The native core's sends complete once the data is buffered, and leaving
    the room drops what is still buffered; it offers no flush. So each
    recipient gets an RPC call of :data:`FLUSH_METHOD`: it travels on the same
    ordered channel, after the data, and any answer (normally 1400, "method not
    supported", from the recipient's SDK itself) proves the data arrived first.
    """
    confirmed: list[str] = []

    async def one(identity: str) -> None:
        try:
            await room.local_participant.perform_rpc(
                destination_identity=identity,
                method=FLUSH_METHOD,
                payload="",
                response_timeout=limit,
            )
        except lk.RpcError as exc:
            if exc.code in _UNANSWERED:
                log.warning("could not confirm that %r received it: %s", identity, exc)
                return
        confirmed.append(identity)

    async with trio.open_nursery() as nursery:
        for identity in identities:
            nursery.start_soon(one, identity)
    return sorted(confirmed)


async def _send(args: argparse.Namespace, content: str | None) -> int:
    how = Participation.from_args(args)
    async with lk.open_room(how.url, how.token, options=how.options) as room:
        await _wait_for(room, args.to, float(args.wait))
        recipients = list(args.to) or sorted(room.remote_participants)
        record = await _send_one(room, args, content)
        record["delivered"] = await confirm_delivery(room, recipients, float(args.wait))
    Printer(as_json=bool(args.json)).emit(record)
    return ExitCode.OK


def cmd_send(args: argparse.Namespace) -> int:
    content = None
    if args.data is not None:
        content = _stdin_or(str(args.data))
    elif args.text is not None:
        content = _stdin_or(str(args.text))
    return run_async("send", lambda: _send(args, content))


# --------------------------------------------------------------------------- room


ROOM_FIELDS = (
    "name",
    "sid",
    "num_participants",
    "num_publishers",
    "max_participants",
    "empty_timeout",
    "departure_timeout",
    "creation_time",
    "metadata",
    "active_recording",
)


def room_record(room: Any) -> dict[str, object]:
    """A livekit-protocol ``Room`` as a plain dict of its main fields."""
    record: dict[str, object] = {}
    for name in ROOM_FIELDS:
        value = getattr(room, name, None)
        if value is not None:
            record[name] = value if isinstance(value, (str, bool)) else int(value)
    return record


def _print_rooms(rooms: Sequence[Mapping[str, object]]) -> None:
    if not rooms:
        print("no rooms", file=sys.stderr)
        return
    width = max(len("NAME"), *(len(str(r["name"])) for r in rooms))
    print(f"{'NAME':<{width}}  {'SID':<16}  PARTICIPANTS  PUBLISHERS  CREATED")
    for r in rooms:
        created = datetime.fromtimestamp(int(str(r.get("creation_time", 0))), timezone.utc)
        print(
            f"{r['name']!s:<{width}}  {r.get('sid', '')!s:<16}  "
            f"{r.get('num_participants', 0)!s:>12}  {r.get('num_publishers', 0)!s:>10}  "
            f"{created.isoformat(timespec='seconds')}"
        )


async def _room(args: argparse.Namespace) -> int:
    conn = Connection.from_args(args)
    url = conn.need_url()  # LiveKitAPI turns ws(s):// into http(s)://
    key, secret = conn.need_keys("the server API")
    async with api.LiveKitAPI(url, key, secret) as lkapi:
        if args.room_command == "list":
            listed = await lkapi.room.list_rooms(api.ListRoomsRequest(names=list(args.names)))
            rooms = [room_record(r) for r in listed.rooms]
            if args.json:
                print(json.dumps({"rooms": rooms}))
            else:
                _print_rooms(rooms)
        elif args.room_command == "create":
            created = await lkapi.room.create_room(_create_request(args))
            if args.json:
                print(json.dumps(room_record(created)))
            else:
                print(f"created room {created.name} ({created.sid})")
        else:
            await lkapi.room.delete_room(api.DeleteRoomRequest(room=str(args.name)))
            print(json.dumps({"deleted": args.name}) if args.json else f"deleted room {args.name}")
    return ExitCode.OK


def _create_request(args: argparse.Namespace) -> api.CreateRoomRequest:
    request = api.CreateRoomRequest(name=str(args.name))
    if args.empty_timeout is not None:
        request.empty_timeout = int(args.empty_timeout.total_seconds())
    if args.departure_timeout is not None:
        request.departure_timeout = int(args.departure_timeout.total_seconds())
    if args.max_participants is not None:
        request.max_participants = int(args.max_participants)
    if args.metadata is not None:
        request.metadata = str(args.metadata)
    return request


def cmd_room(args: argparse.Namespace) -> int:
    return run_async("room", lambda: _room(args))


# --------------------------------------------------------------------------- load-test


def load_test_config(args: argparse.Namespace) -> _loadtest.LoadTestConfig:
    """The load test ``args`` ask for.

    Raises:
        CliError: no URL or credentials, or a bad URL (usage error).
    """
    urls = list(args.url or []) or (
        [os.environ["LIVEKIT_URL"]] if os.environ.get("LIVEKIT_URL") else []
    )
    if not urls:
        raise CliError(ExitCode.USAGE, "no server URL: pass --url (repeatable) or set LIVEKIT_URL")
    checked = [_ws_url(Connection(url=u, api_key=None, api_secret=None).need_url()) for u in urls]
    key, secret = Connection(urls[0], args.api_key, args.api_secret).need_keys("load-test")
    prefix = args.room_prefix or f"lkrtc-load-{secrets.token_hex(3)}"
    try:
        return _loadtest.LoadTestConfig(
            urls=tuple(checked),
            api_key=key,
            api_secret=secret,
            rooms=int(args.rooms),
            participants=int(args.participants),
            duration=float(args.duration),
            rpc_rate=float(args.rpc_rate),
            data_rate=float(args.data_rate),
            data_size=int(args.data_size),
            audio=bool(args.audio),
            room_prefix=prefix,
            connect_timeout=float(args.connect_timeout),
            ready_timeout=float(args.ready_timeout),
            rpc_timeout=float(args.rpc_timeout),
            grace=float(args.grace),
            join_concurrency=int(args.join_concurrency),
        )
    except ValueError as exc:
        raise CliError(ExitCode.USAGE, str(exc)) from None


async def _load_test(config: _loadtest.LoadTestConfig, as_json: bool) -> int:
    try:
        report = await _loadtest.run_load_test(config)
    except _loadtest.ConnectFailedError as exc:
        raise CliError(ExitCode.CONNECTION, str(exc)) from None
    except _loadtest.LoadTestError as exc:
        raise CliError(ExitCode.ERROR, f"load test aborted: {exc}") from None
    if as_json:
        print(json.dumps(report.as_dict()), flush=True)
    else:
        print(_loadtest.format_report(report), flush=True)
    return ExitCode.OK


def cmd_load_test(args: argparse.Namespace) -> int:
    config = load_test_config(args)
    return run_async("load-test", lambda: _load_test(config, bool(args.json)))


# --------------------------------------------------------------------------- errors


def _api_error_code(exc: BaseException) -> ExitCode | None:
    """The exit code of a server API error, or None if ``exc`` is not one."""
    connection_like: tuple[type[BaseException], ...] = (
        api.ApiConnectionError,
        api.UnauthenticatedError,
        api.PermissionDeniedError,
    )
    if isinstance(exc, connection_like):
        return ExitCode.CONNECTION
    if isinstance(exc, api.NotFoundError):
        return ExitCode.NOT_FOUND
    if isinstance(exc, api.ApiError):
        return ExitCode.ERROR
    return None


def classify(exc: BaseException) -> tuple[ExitCode, str] | None:
    """(exit code, message) for an expected failure; None for a bug."""
    if isinstance(exc, CliError):
        return exc.code, exc.message
    if isinstance(exc, lk.ConnectError):
        return ExitCode.CONNECTION, f"could not connect: {exc.reason}"
    if isinstance(exc, lk.RpcError):
        detail = f" ({exc.data})" if exc.data else ""
        return ExitCode.RPC, f"RPC error {exc.code}: {exc.message}{detail}"
    if isinstance(exc, lk.RoomDisconnectedError):
        return ExitCode.CONNECTION, f"disconnected: {exc}"
    api_code = _api_error_code(exc)
    if api_code is not None:
        return api_code, f"server API: {exc}"
    if isinstance(exc, (lk.LiveKitError, OSError)):
        return ExitCode.ERROR, str(exc)
    return None


def leaves(exc: BaseException) -> Iterator[BaseException]:
    """``exc``, or the exceptions inside it if it is an exception group."""
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            yield from leaves(inner)
    else:
        yield exc


def classify_any(exc: BaseException) -> tuple[ExitCode, str] | None:
    """:func:`classify` of ``exc``, or of the first exception in a group that
    is not a cancellation, when every such one is expected."""
    found = [leaf for leaf in leaves(exc) if not isinstance(leaf, trio.Cancelled)]
    known = [classify(leaf) for leaf in found]
    if not known or any(k is None for k in known):
        return None
    return known[0]


def _fail(code: ExitCode, message: str) -> int:
    print(f"lkrtc: error: {redact(message)}", file=sys.stderr, flush=True)
    return int(code)


# --------------------------------------------------------------------------- main


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "server": cmd_server,
    "token": cmd_token,
    "join": cmd_join,
    "rpc": cmd_rpc,
    "send": cmd_send,
    "room": cmd_room,
    "load-test": cmd_load_test,
}


@contextlib.contextmanager
def _logging_for_cli(verbose: int) -> Iterator[None]:
    """lkrtc_trio's logs on stderr as ``lkrtc: LEVEL: logger: message``
    (warnings and up; -v info, -vv debug; the native core's own lines only
    with -v), for the duration of a command; restored afterwards."""
    root = logging.getLogger("lkrtc_trio")
    native = logging.getLogger("lkrtc_trio.native")
    saved = root.level, native.level
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("lkrtc: %(levelname)s: %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel([logging.WARNING, logging.INFO, logging.DEBUG][min(verbose, 2)])
    # the native core's own lines repeat what the error message says
    native.setLevel([logging.CRITICAL, logging.WARNING, logging.DEBUG][min(verbose, 2)])
    try:
        with warnings.catch_warnings():
            if not verbose:
                # PyJWT's advice about short HMAC keys, such as the dev server's "secret"
                warnings.filterwarnings("ignore", message="The HMAC key is .* bytes long")
            yield
    finally:
        root.removeHandler(handler)
        root.setLevel(saved[0])
        native.setLevel(saved[1])


def _parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """Parses ``argv``; --help, --version and usage errors end here.

    Raises:
        SystemExit: with the exit status, once help, the version or the
            usage error is printed.
    """
    args = parser.parse_args(argv)
    if args.version:
        print(version_line())
        raise SystemExit(ExitCode.OK)
    if args.command is None:
        parser.print_help(sys.stderr)
        raise SystemExit(ExitCode.USAGE)
    return args


def main(argv: Sequence[str] | None = None, *, prog: str = "lkrtc") -> int:
    """Runs ``lkrtc`` (the console script, and ``python -m lkrtc_trio``).

    Args:
        argv: arguments after the program name (default ``sys.argv[1:]``).
        prog: program name for usage messages.

    Returns:
        The exit status (see :class:`ExitCode`); unexpected exceptions (bugs)
        propagate.
    """
    return run(argv, prog=prog)


def run(argv: Sequence[str] | None = None, *, prog: str = "lkrtc") -> int:
    """Parses ``argv`` and runs the command; returns the exit status."""
    try:
        args = _parse(build_parser(prog), argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else ExitCode.USAGE
    command = str(args.command)
    # SIGTERM stops a command like Ctrl-C does (trio's signal receivers take
    # both over while a command runs).
    previous = _sigterm_as_interrupt()
    try:
        with _logging_for_cli(int(args.verbose)):
            return int(COMMANDS[command](args))
    except KeyboardInterrupt:
        return int(_interrupted_code(command))
    except Exception as exc:
        known = classify_any(exc)
        if known is None:
            raise
        return _fail(*known)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _sigterm_as_interrupt() -> Any:
    """Makes SIGTERM raise KeyboardInterrupt; returns the previous handler
    (None when not on the main thread, where signals cannot be set)."""
    try:
        return signal.signal(signal.SIGTERM, signal.default_int_handler)
    except ValueError:
        return None


if __name__ == "__main__":
    sys.exit(main())
