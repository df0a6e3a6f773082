"""``python -m tests.consul_double --http-addr 127.0.0.1:0 [...]``: run the double until SIGTERM/SIGINT."""
from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import List, Optional

from . import STANDIN_NOTICE, start
from .durations import SECOND, DurationError, parse_duration
from .keyacl import parse_tokens


def _duration(text: str) -> float:
    try:
        return parse_duration(text) / SECOND
    except DurationError as exc:
        raise argparse.ArgumentTypeError(str(exc))


def _token(text: str) -> str:
    try:
        parse_tokens([text])
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc))
    return text


def _addr(text: str) -> tuple:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError("expected HOST:PORT, got %r" % text)
    return host.strip("[]") or "127.0.0.1", int(port)


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.consul_double",
                                description="Consul agent HTTP API test double (NOT a real Consul agent).")
    p.add_argument("--http-addr", type=_addr, default=("127.0.0.1", 8500), help="HOST:PORT, port 0 = any")
    p.add_argument("--dcsa-min", type=_duration, default=60.0, metavar="DUR",
                   help="check_deregister_interval_min (Go duration, default 1m)")
    p.add_argument("--reap-interval", type=_duration, default=30.0, metavar="DUR",
                   help="check_reap_interval (Go duration, default 30s)")
    p.add_argument("--check-update-interval", type=_duration, default=300.0, metavar="DUR",
                   help="check_update_interval for deferred output sync (default 5m; 0 = immediate)")
    p.add_argument("--output-max-size", type=int, default=4096)
    p.add_argument("--acl-token", action="append", default=[], metavar="SECRET[=RULES]", type=_token,
                   help="enable ACLs (default deny) and accept this token: with full rights, or limited to "
                        "RULES, a comma-separated list of key:PREFIX (read+write) and key-read:PREFIX; "
                        "repeatable")
    p.add_argument("--legacy", action="store_true", help="answer unknown IDs like Consul <= 1.10")
    p.add_argument("--node-name", default="double-node")
    p.add_argument("--datacenter", default="dc1")
    args = p.parse_args(argv)

    print(STANDIN_NOTICE, file=sys.stderr, flush=True)
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    host, port = args.http_addr
    double = start(host=host, port=port, dcsa_min=args.dcsa_min, reap_interval=args.reap_interval,
                   acl_tokens=args.acl_token, output_max_size=args.output_max_size, legacy=args.legacy,
                   node_name=args.node_name, datacenter=args.datacenter,
                   check_update_interval=args.check_update_interval)
    print("listening %s" % double.url, flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        double.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
