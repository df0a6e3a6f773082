"""The demo behind scripts/demo.sh: svcwrap's whole lifecycle in a minute.

1. Starts the in-repo Consul agent double (a TEST STAND-IN, not Consul).
2. Wraps a small HTTP server with svcwrap (as PID 1 in a new PID namespace
   when run as root), which registers it once it answers.
3. Finds the service the way a client would: through Consul's health API.
4. Stops svcwrap with SIGTERM (what `docker stop` sends) and shows the
   service gone from Consul before the server was told to stop.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def say(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m", flush=True)


def get(url: str):
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.loads(resp.read())


def wait_for(what: str, predicate, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    sys.exit(f"demo: gave up waiting for {what}")


def svcwrap_pid(wrapped: subprocess.Popen, under_unshare: bool) -> int:
    """svcwrap itself: under unshare, the one child that unshare forked."""
    if not under_unshare:
        return wrapped.pid
    import psutil

    return psutil.Process(wrapped.pid).children()[0].pid


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    say("starting a STAND-IN Consul agent (tests/consul_double; not a real Consul)")
    agent = subprocess.Popen([sys.executable, "-m", "tests.consul_double",
                              "--http-addr", "127.0.0.1:0"], cwd=REPO, stdout=subprocess.PIPE,
                             text=True)
    consul_url = agent.stdout.readline().split()[-1]
    consul_addr = consul_url.removeprefix("http://")
    print(f"stand-in agent at {consul_url}")

    port = free_port()
    argv = [sys.executable, "-m", "svcwrap", "--name", "web", "--id", "web-demo",
            "--port", str(port), "--ttl", "3s", "--drain", "500ms", "--",
            sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"]
    pid1 = os.geteuid() == 0 and shutil.which("unshare") is not None
    if pid1:
        argv = ["unshare", "--pid", "--fork", "--mount-proc"] + argv
        how = "as PID 1 in a new PID namespace"
    else:
        how = "as a plain process (run as root to see it as PID 1)"
    say(f"wrapping an HTTP server on port {port} with svcwrap, {how}")
    print(f"$ CONSUL_HTTP_ADDR={consul_addr} " + " ".join(argv))
    wrapped = subprocess.Popen(argv, cwd=REPO, env=dict(os.environ, CONSUL_HTTP_ADDR=consul_addr))
    try:
        health = f"{consul_url}/v1/health/service/web?passing"
        entries = wait_for("the service to be passing", lambda: get(health))
        say("registered and passing in Consul: a client looks it up in the health API")
        for e in entries:
            address = e["Service"]["Address"] or e["Node"]["Address"]
            checks = {c["CheckID"]: c["Status"] for c in e["Checks"]}
            print(f"{e['Service']['ID']}: {address}:{e['Service']['Port']}  checks: {checks}")
            with urllib.request.urlopen(f"http://{address}:{e['Service']['Port']}/", timeout=5) as r:
                print(f"GET http://{address}:{e['Service']['Port']}/ -> {r.status} {r.reason}")

        say("stopping svcwrap with SIGTERM (what `docker stop` sends)")
        os.kill(svcwrap_pid(wrapped, pid1), signal.SIGTERM)
        wait_for("the service to leave Consul", lambda: get(health) == [], timeout=5)
        print("gone from ?passing while svcwrap drains (500ms) before signalling the server")
        code = wrapped.wait(timeout=15)
        print(f"svcwrap exited {code} (the server's own status: 128+15 for SIGTERM)")
        print(f"registered services now: {get(consul_url + '/v1/agent/services')}")
    finally:
        if wrapped.poll() is None:
            wrapped.kill()
        agent.terminate()
        agent.wait(5)

    say("with a real Consul agent")
    print("Point svcwrap at it with CONSUL_HTTP_ADDR (or --consul), and CONSUL_HTTP_TOKEN or")
    print("CONSUL_HTTP_TOKEN_FILE for ACLs, e.g. with `consul agent -dev` on this machine:")
    print("  CONSUL_HTTP_ADDR=127.0.0.1:8500 svcwrap --name web --port 8000 -- \\")
    print("      python3 -m http.server 8000")
    print("  dig @127.0.0.1 -p 8600 web.service.consul")


if __name__ == "__main__":
    main()
