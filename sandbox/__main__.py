"""Serve the sandbox: ``python -m sandbox --host 127.0.0.1 --port 8090 --token TOKEN [--pixel CODE ...]``.

``--port`` and ``--token`` default to ``SANDBOX_PORT`` and ``TIKTOK_ACCESS_TOKEN``; ``make run`` passes the
token in the environment only, since a command line is visible to every user in ``ps``. A token that is
a JSON object ``{"<pixel code>": "<token>"}`` is a token per pixel, each valid for its own pixel only.
Without ``--pixel`` any pixel code is accepted. Logs are JSON lines on stdout. A browser opening
``/`` gets the event inspector (what was received, live); other clients get ``{"status": "ok"}``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
from collections.abc import Mapping, Sequence

from werkzeug.serving import run_simple

from sandbox.app import create_app, log_line
from sandbox.contract import TRACK_PATH

DEFAULT_PORT = 8090


def parse_args(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> argparse.Namespace:
    environ = os.environ if environ is None else environ
    parser = argparse.ArgumentParser(prog="python -m sandbox", description="Local TikTok Events API sandbox.")
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, help=f"port (default $SANDBOX_PORT or {DEFAULT_PORT})")
    parser.add_argument(
        "--token",
        default=None,
        help="the Access-Token to accept (default $TIKTOK_ACCESS_TOKEN, which unlike this option is not shown by ps)",
    )
    parser.add_argument(
        "--pixel",
        action="append",
        default=None,
        metavar="CODE",
        help="accepted pixel code; repeat for several (default: any)",
    )
    args = parser.parse_args(argv)
    if args.port is None:
        raw_port = environ.get("SANDBOX_PORT") or str(DEFAULT_PORT)
        if not raw_port.isdigit():
            parser.error(f"SANDBOX_PORT must be a port number, got {raw_port!r}")
        args.port = int(raw_port)
    if not 0 < args.port < 65536:
        parser.error(f"port must be between 1 and 65535, got {args.port}")
    args.token = args.token or environ.get("TIKTOK_ACCESS_TOKEN")
    if not args.token:
        parser.error("an access token is required: --token TOKEN or TIKTOK_ACCESS_TOKEN")
    if args.token.lstrip().startswith("{"):
        args.token = parse_token_map(args.token, parser)
    return args


def parse_token_map(text: str, parser: argparse.ArgumentParser) -> dict[str, str]:
    """A ``{pixel_code: token}`` map, as the sender reads TIKTOK_ACCESS_TOKEN for several pixels."""
    try:
        tokens = json.loads(text)
    except ValueError as exc:
        parser.error(f"--token looks like a JSON token map but is not valid JSON ({exc})")
    if not isinstance(tokens, dict) or not tokens or not all(isinstance(v, str) and v for v in tokens.values()):
        parser.error('--token as JSON must be a non-empty object {"<pixel code>": "<token>"}')
    return tokens


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    app = create_app(args.token, set(args.pixel) if args.pixel else None)
    # Werkzeug's own access log and banner go to stderr in another format; our JSON lines replace them.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    log_line(
        {
            "severity": "INFO",
            "message": "sandbox listening",
            "url": f"http://{args.host}:{args.port}{TRACK_PATH}",
            "inspector": f"http://{args.host}:{args.port}/",  # open in a browser: what it received, live
            "pixels": sorted(args.pixel) if args.pixel else "any",
            "tokens": sorted(args.token) if isinstance(args.token, dict) else 1,  # pixels with a token, never one
        }
    )
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is the normal way to stop it
        run_simple(args.host, args.port, app, threaded=True, use_reloader=False, use_debugger=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
