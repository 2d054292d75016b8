"""Run the Fyno emulator as a local HTTP server.

    python -m django_fyno.emulator --port 8765 --wsid FYDEV --api-key dev-key

It prints the endpoint and the environment lines to point a project at it,
then serves (one thread per connection) until Ctrl-C.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence
from types import FrameType
from typing import Any

from .app import Emulator
from .server import make_server

__all__ = ["build_parser", "main"]


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not between 0 and 1")
    return value


def _seconds(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is negative")
    return value


def _error_status(text: str) -> int:
    value = int(text)
    if not 400 <= value <= 599:
        raise argparse.ArgumentTypeError(f"{text} is not a 4xx or 5xx status")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m django_fyno.emulator",
        description="A stateful, offline stand-in for the Fyno REST API.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port (8765)")
    parser.add_argument("--prefix", default="/v1", help="mount point of the API (default: /v1)")
    parser.add_argument("--wsid", default="FYTEST", help="workspace id (default: FYTEST)")
    parser.add_argument("--api-key", default="test-api-key", help="the API key to accept")
    parser.add_argument(
        "--events",
        type=lambda text: [name.strip() for name in text.split(",") if name.strip()],
        default=None,
        help="comma-separated event names that exist (default: any event name is accepted)",
    )
    parser.add_argument(
        "--latency", type=_seconds, default=0.0, help="seconds added to each answer"
    )
    parser.add_argument(
        "--latency-jitter", type=_seconds, default=0.0, help="random extra seconds, up to this"
    )
    parser.add_argument(
        "--error-rate", type=_fraction, default=0.0, help="fraction of calls answered in error"
    )
    parser.add_argument(
        "--error-status", type=_error_status, default=503, help="status of those (default: 503)"
    )
    parser.add_argument(
        "--seed", type=int, default=None, help="seed the faults' random choices (repeatable runs)"
    )
    parser.add_argument(
        "--verbose", action="store_true", help="log one line per request (never headers)"
    )
    return parser


def faults_from(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """The command line's faults, in the emulator's shape: ``{"*": {knob: value}}``."""
    knobs: dict[str, Any] = {}
    if args.latency or args.latency_jitter:
        knobs["latency"] = args.latency
        knobs["jitter"] = args.latency_jitter
    if args.error_rate:
        knobs["error_rate"] = args.error_rate
        knobs["error_status"] = args.error_status
    return {"*": knobs} if knobs else {}


def _stop(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def build_emulator(args: argparse.Namespace) -> Emulator:
    """The emulator the command line describes.

    Fault flags are part of its start configuration, so ``reset()`` keeps them.
    """
    return Emulator(
        args.wsid, args.api_key, events=args.events, faults=faults_from(args), seed=args.seed
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    emulator = build_emulator(args)
    try:
        server = make_server(
            emulator, args.host, args.port, prefix=args.prefix, verbose=args.verbose
        )
    except OSError as error:
        print(f"cannot listen on {args.host}:{args.port}: {error}", file=sys.stderr)
        return 1
    # The key is the user's own emulator key: printing it here, on the
    # terminal that started the emulator, is the point; it is never logged.
    print(f"Fyno emulator serving workspace {args.wsid} at {server.endpoint}")
    print(f"Control API: {server.url}/_emulator/  (Ctrl-C to stop)")
    print()
    print(f"FYNO_ENDPOINT={server.endpoint}")
    print(f"FYNO_WSID={args.wsid}")
    print(f"FYNO_API_KEY={args.api_key}", flush=True)
    # `kill` and process managers send SIGTERM: stop as cleanly as on Ctrl-C.
    signal.signal(signal.SIGTERM, _stop)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
