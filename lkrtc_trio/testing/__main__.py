"""Command line: ``python -m lkrtc_trio.testing {install-server,serve,token}``.

* ``install-server [--version TAG]``: build/cache livekit-server, print its path.
* ``serve [--host H] [--identity I] [--room R]``: run a server in the foreground,
  print its URL and a sample token, stop on Ctrl-C (or SIGTERM).
* ``token IDENTITY ROOM [--api-key K] [--api-secret S] [--ttl SECONDS]``: print a token.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from ._server import (
    DEFAULT_API_KEY,
    DEFAULT_API_SECRET,
    LocalServer,
    ServerInstallError,
    ServerStartError,
    install_server,
    mint_token,
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lkrtc_trio.testing")
    sub = parser.add_subparsers(dest="command", required=True)

    p_install = sub.add_parser("install-server", help="build/cache livekit-server, print path")
    p_install.add_argument("--version", default=None, help="git tag (default: built-in chain)")

    p_serve = sub.add_parser("serve", help="run a livekit-server until Ctrl-C")
    p_serve.add_argument("--host", default=None, help="address (default: test host)")
    p_serve.add_argument("--identity", default="alice", help="identity of the sample token")
    p_serve.add_argument("--room", default="test-room", help="room of the sample token")
    p_serve.add_argument("--extra-config", default=None, help="YAML appended to the config")

    p_token = sub.add_parser("token", help="print an access token")
    p_token.add_argument("identity")
    p_token.add_argument("room")
    p_token.add_argument("--api-key", default=DEFAULT_API_KEY)
    p_token.add_argument("--api-secret", default=DEFAULT_API_SECRET)
    p_token.add_argument("--ttl", type=float, default=3600.0)
    return parser


def _serve(args: argparse.Namespace) -> int:
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = signal.signal(signal.SIGTERM, on_signal)
    server = LocalServer(host=args.host, extra_config=args.extra_config)
    try:
        info = server.start()
        token = mint_token(
            args.identity, args.room, api_key=info.api_key, api_secret=info.api_secret
        )
        print(f"url:        {info.url}")
        print(f"api key:    {info.api_key}")
        print(f"api secret: {info.api_secret}")
        print(f"log:        {server.log_path}")
        print(f"token ({args.identity} in {args.room}):")
        print(token, flush=True)
        print("Ctrl-C to stop.", file=sys.stderr, flush=True)
        while not stop.wait(0.5):
            if not server.running:
                print("livekit-server exited:\n" + server.log_tail(), file=sys.stderr)
                return 1
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        signal.signal(signal.SIGTERM, previous)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line.

    Args:
        argv: Arguments after the program name; defaults to ``sys.argv[1:]``.

    Returns:
        The exit code (1 when the server could not be installed or started).
    """
    args = _parser().parse_args(argv)
    try:
        if args.command == "install-server":
            print(install_server(args.version))
            return 0
        if args.command == "serve":
            return _serve(args)
        print(
            mint_token(
                args.identity,
                args.room,
                api_key=args.api_key,
                api_secret=args.api_secret,
                ttl=args.ttl,
            )
        )
        return 0
    except (ServerInstallError, ServerStartError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
