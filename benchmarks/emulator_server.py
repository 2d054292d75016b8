"""The emulator as ``python -m django_fyno.emulator`` serves it, with its replies unchecked.

    python benchmarks/emulator_server.py --port 0 --latency 0.02 [any emulator flag]

The emulator checks each of its own replies against the contract
(``strict_replies``): a self-test that costs about as much as checking the
request (for a bulk of 100 events, several milliseconds of CPU per request on
a 2-core machine). Throughput benchmarks measure the outbox, not that
self-test, so they serve the emulator without it. Requests are still checked,
and answered, exactly as by the command.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from django_fyno.emulator.__main__ import _stop, build_emulator, parse_args
from django_fyno.emulator.server import make_server


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    emulator = build_emulator(args)
    emulator.strict_replies = False
    server = make_server(emulator, args.host, args.port, prefix=args.prefix)
    print(f"FYNO_ENDPOINT={server.endpoint}", flush=True)
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
