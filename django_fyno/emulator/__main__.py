"""Run the Fyno emulator as a local HTTP server.

    python -m django_fyno.emulator --port 8765 --wsid FYDEV --api-key dev-key
    python -m django_fyno.emulator --workspace FYONE:key-1 --workspace FYTWO:key-2

It prints the endpoint and the environment lines to point a project at each
workspace, then serves (one thread per connection) until Ctrl-C.
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
from .workspace import check_api_key, check_wsid

__all__ = ["build_parser", "main", "parse_args"]

DEFAULT_WSID = "FYTEST"
DEFAULT_API_KEY = "test-api-key"


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


def _wsid(text: str) -> str:
    try:
        return check_wsid(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _api_key(text: str) -> str:
    try:
        return check_api_key(text)
    except ValueError as error:  # its message never shows the key
        raise argparse.ArgumentTypeError(str(error)) from None


def _workspace(text: str) -> tuple[str, str]:
    """``WSID:KEY`` as (wsid, key). Errors never repeat the text: it holds a key."""
    wsid, colon, key = text.partition(":")
    if not colon:
        raise argparse.ArgumentTypeError("expected WSID:KEY (no ':' found)")
    if not wsid:
        raise argparse.ArgumentTypeError("expected WSID:KEY (the WSID before ':' is empty)")
    if not key:
        raise argparse.ArgumentTypeError(f"expected WSID:KEY (the key of {wsid!r} is empty)")
    return _wsid(wsid), _api_key(key)


class _Given(argparse.Action):
    """Store the value and remember that it was given (its default is not an answer)."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        setattr(namespace, self.dest, values)
        setattr(namespace, f"{self.dest}_given", True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m django_fyno.emulator",
        description="A stateful, offline stand-in for the Fyno REST API.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port (8765)")
    parser.add_argument("--prefix", default="/v1", help="mount point of the API (default: /v1)")
    parser.add_argument(
        "--wsid",
        type=_wsid,
        action=_Given,
        default=DEFAULT_WSID,
        help=f"workspace id of the one workspace (default: {DEFAULT_WSID})",
    )
    parser.add_argument(
        "--api-key",
        type=_api_key,
        action=_Given,
        default=DEFAULT_API_KEY,
        help="the API key it accepts",
    )
    parser.add_argument(
        "--workspace",
        dest="workspaces",
        metavar="WSID:KEY",
        type=_workspace,
        action="append",
        default=None,
        help="serve this workspace, with this key (repeat for several; the first is the "
        "default one of the control API). Replaces --wsid/--api-key",
    )
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
        "--allow-remote-webhooks",
        action="store_true",
        help="let the webhook sender call URLs on other hosts (default: loopback only)",
    )
    parser.add_argument(
        "--auto-delivery-reports",
        type=_seconds,
        default=None,
        metavar="SECONDS",
        help="send a 'delivered' report to the registered webhook this many seconds "
        "after each accepted event (default: only when POST /_emulator/delivery-report asks)",
    )
    parser.add_argument(
        "--verbose", action="store_true", help="log one line per request (never headers)"
    )
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line, checked as a whole (exits with status 2 on an error).

    ``args.workspaces`` is then the list of ``(wsid, key)`` to serve.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.workspaces is None:
        args.workspaces = [(args.wsid, args.api_key)]
        return args
    if getattr(args, "wsid_given", False) or getattr(args, "api_key_given", False):
        parser.error("use either --workspace WSID:KEY (repeatable) or --wsid/--api-key, not both")
    seen: set[str] = set()
    for wsid, _ in args.workspaces:
        if wsid in seen:
            parser.error(f"argument --workspace: workspace {wsid!r} is given twice")
        seen.add(wsid)
    return args


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
    workspaces = getattr(args, "workspaces", None) or [(args.wsid, args.api_key)]
    return Emulator(
        workspaces=dict(workspaces),
        events=args.events,
        faults=faults_from(args),
        seed=args.seed,
        allow_remote_webhooks=getattr(args, "allow_remote_webhooks", False),
        auto_delivery_reports=getattr(args, "auto_delivery_reports", None),
    )


def banner(emulator: Emulator, endpoint: str, url: str) -> str:
    """What the command prints at start: where it serves, and the settings to use.

    One workspace: ``FYNO_ENDPOINT``, ``FYNO_WSID``, ``FYNO_API_KEY``. Several:
    ``FYNO_ENDPOINT``, then a ``FYNO_WSID``/``FYNO_API_KEY`` pair per workspace,
    each under a ``# workspace WSID`` comment; the last line is a key.
    """
    spaces = list(emulator.workspaces.values())
    if len(spaces) == 1:
        lines = [
            f"Fyno emulator serving workspace {spaces[0].wsid} at {endpoint}",
            f"Control API: {url}/_emulator/  (Ctrl-C to stop)",
            "",
            f"FYNO_ENDPOINT={endpoint}",
            f"FYNO_WSID={spaces[0].wsid}",
            f"FYNO_API_KEY={spaces[0].api_key}",
        ]
        return "\n".join(lines)
    names = ", ".join(space.wsid for space in spaces)
    lines = [
        f"Fyno emulator serving {len(spaces)} workspaces ({names}) at {endpoint}",
        f"Control API: {url}/_emulator/  (?workspace=WSID addresses one; default "
        f"{spaces[0].wsid}; Ctrl-C to stop)",
        "",
        f"FYNO_ENDPOINT={endpoint}",
    ]
    for index, space in enumerate(spaces):
        default = " (default)" if index == 0 else ""
        lines += [
            "",
            f"# workspace {space.wsid}{default}",
            f"FYNO_WSID={space.wsid}",
            f"FYNO_API_KEY={space.api_key}",
        ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    emulator = build_emulator(args)
    try:
        server = make_server(
            emulator, args.host, args.port, prefix=args.prefix, verbose=args.verbose
        )
    except OSError as error:
        print(f"cannot listen on {args.host}:{args.port}: {error}", file=sys.stderr)
        return 1
    # The keys are the user's own emulator keys: printing them here, on the
    # terminal that started the emulator, is the point; they are never logged.
    print(banner(emulator, server.endpoint, server.url), flush=True)
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
