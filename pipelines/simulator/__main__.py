"""CLI: `python -m pipelines.simulator --port 8765`; prints the base URL, stops on SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path

from .server import HOST_KINDS, Simulator


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.simulator", description=__doc__)
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    parser.add_argument("--host", default="127.0.0.1", help="loopback address only")
    parser.add_argument("--host-kind", choices=HOST_KINDS, default="public",
                        help="public = api.coingecko.com rules, pro = pro-api rules")
    parser.add_argument("--rate-limit", type=int, default=None, metavar="N",
                        help="requests per minute before 429 (default: unlimited)")
    parser.add_argument("--now", type=float, default=None, metavar="EPOCH",
                        help="fixed clock in epoch seconds (default: real UTC now)")
    parser.add_argument("--demo-key", action="append", default=None, help="valid demo key (repeatable)")
    parser.add_argument("--pro-key", action="append", default=None, help="valid pro key (repeatable)")
    parser.add_argument("--pidfile", type=Path, default=None)
    args = parser.parse_args(argv)

    try:
        sim = Simulator(host_kind=args.host_kind, rate_limit_per_min=args.rate_limit, now=args.now,
                        demo_keys=args.demo_key, pro_keys=args.pro_key, host=args.host,
                        port=args.port)
        sim.start()
    except (ValueError, OSError) as exc:
        print(f"simulator: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    if args.pidfile:
        args.pidfile.write_text(f"{os.getpid()}\n")
    print(sim.base_url, flush=True)  # callers read this line to know where to connect
    try:
        stop.wait()
    finally:
        sim.stop()
        if args.pidfile:
            args.pidfile.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
