"""The control socket and --metrics (issue 10): what they cost, beside the plain svcwrap.

* `svcwrap status` round trip: exec of the verb -> its exit, as `docker exec` and Docker's
  HEALTHCHECK pay it (`healthcheck` is the same request), and the socket exchange alone
  (connect, request, answer) from this process.
* start-up and signal latency of svcwrap as PID 1 with --metrics and with a control socket
  (as PID 1 there is one by default) against --control off: both are set up after the spawn, so neither
  may move the figures the rest of the bench has.
* RSS while supervising, without and with --metrics (prometheus_client is imported on a
  thread once the child runs; measured once /metrics answers).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from measure import PYTHON, SVCWRAP, Result, free_port
from util import UNSHARE, median, pid1_of, python_env, rss_mb, spawn, stop

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from svcwrap.control import ask, encode_request  # noqa: E402


SOCKET = f"{tempfile.gettempdir()}/svcwrap-bench-control.sock"  # not the host's /run/svcwrap


def variants(port: int) -> dict[str, list[str]]:
    """svcwrap's argv prefix (before the child) per variant."""
    return {
        "svcwrap --control off": [SVCWRAP, "--no-register", "--control", "off", "--"],
        "svcwrap --control PATH": [SVCWRAP, "--no-register", "--control", SOCKET, "--"],
        "svcwrap --metrics": [SVCWRAP, "--no-register", "--control", "off",
                              "--metrics", f"127.0.0.1:{port}", "--"],
    }


def startup(helper: Path, runs: int) -> list[Result]:
    h = str(helper)
    argvs = {name: UNSHARE + prefix + [h, "stamp"] for name, prefix in variants(free_port()).items()}
    samples: dict[str, list[float]] = {name: [] for name in argvs}
    for run in range(runs + 1):  # interleaved; run 0 warms up
        for name, argv in argvs.items():
            proc, lines = spawn([h, "launch"] + argv)
            launched = int(lines.expect("launch", 10)[1])
            running = int(lines.expect("child", 10)[1])
            proc.wait()
            if run > 0:
                samples[name].append((running - launched) / 1e6)
    base = median(samples["svcwrap --control off"])
    return [Result.of("exec → child running (control, metrics)", name, "ms", vals,
                      note=f"{median(vals) - base:+.2f} ms vs --control off")
            for name, vals in samples.items()]


def signals(helper: Path, runs: int) -> list[Result]:
    """Steady state: for --metrics, once /metrics answers (while prometheus_client is being
    imported, in the first ~100 ms, a signal can wait for that thread's GIL switch interval:
    the "import window" row)."""
    rows = []
    for name, prefix in variants(free_port()).items():
        port = metrics_port(prefix)
        window: list[float] = []
        proc, lines = spawn(UNSHARE + prefix + [str(helper), "signals"])
        try:
            lines.expect("ready", 10)
            pid1 = pid1_of(proc.pid)
            latencies = []
            for i in range(runs + 5):
                if i == 5 and port is not None:  # the first five: during the import
                    window = latencies[:]
                    wait_for_metrics(port)
                time.sleep(0.005)
                sent = time.monotonic_ns()
                os.kill(pid1, signal.SIGUSR1)
                latencies.append((int(lines.expect("usr1", 5)[1]) - sent) / 1e3)
        finally:
            stop(proc)
        steady = latencies[5:]
        rows.append(Result.of("kill(1, SIGUSR1) → child handler (control, metrics)", name, "µs",
                              steady, target="≤ 500 µs median",
                              met=bool(steady) and median(steady) <= 500,
                              note="once /metrics answers" if port else ""))
        if window:
            rows.append(Result.of("kill(1, SIGUSR1) → child handler (control, metrics)",
                                  f"{name}, import window", "µs", window,
                                  note="the 5 signals right after the child is ready"))
    return rows


def metrics_port(prefix: list[str]) -> "int | None":
    if "--metrics" not in prefix:
        return None
    return int(prefix[prefix.index("--metrics") + 1].rsplit(":", 1)[1])


def metrics_answer(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1) as answer:
            return answer.status == 200
    except OSError:
        return False


def wait_for_metrics(port: int) -> None:
    deadline = time.monotonic() + 10
    while not metrics_answer(port) and time.monotonic() < deadline:
        time.sleep(0.05)


def rss(helper: Path) -> list[Result]:
    rows = []
    for name, prefix in variants(free_port()).items():
        port = metrics_port(prefix)
        proc, lines = spawn(UNSHARE + prefix + [str(helper), "signals"])
        try:
            lines.expect("ready", 10)
            pid1 = pid1_of(proc.pid)
            if port is not None:
                wait_for_metrics(port)
            time.sleep(1.0)  # settled: the threads started, the first scrape answered
            samples = [rss_mb(pid1) for _ in range(5)]
        finally:
            stop(proc)
        rows.append(Result.of("RSS while supervising (control, metrics)", name, "MB", samples,
                              note="after /metrics answered" if port else ""))
    return rows


def status_round_trip(helper: Path, runs: int) -> list[Result]:
    with tempfile.TemporaryDirectory(prefix="svcwrap-bench-") as tmp:
        sock = f"{tmp}/control.sock"
        proc, lines = spawn(UNSHARE + [SVCWRAP, "--no-register", "--control", sock, "--",
                                       str(helper), "signals"])
        try:
            lines.expect("ready", 10)
            deadline = time.monotonic() + 10
            while not Path(sock).exists() and time.monotonic() < deadline:
                time.sleep(0.01)
            verb, exchange = [], []
            env = python_env()
            for i in range(runs + 3):
                started = time.monotonic_ns()
                subprocess.run([SVCWRAP, "status", "--control", sock], env=env, check=True,
                               stdout=subprocess.DEVNULL)
                ended = time.monotonic_ns()
                if i >= 3:
                    verb.append((ended - started) / 1e6)
                started = time.monotonic_ns()
                ask([sock], encode_request("status"))
                ended = time.monotonic_ns()
                if i >= 3:
                    exchange.append((ended - started) / 1e6)
        finally:
            stop(proc)
    return [Result.of("svcwrap status round trip", "`svcwrap status` exec → exit", "ms", verb,
                      note=f"{Path(SVCWRAP).name} run by {Path(PYTHON).name}"),
            Result.of("svcwrap status round trip", "socket exchange alone", "ms", exchange,
                      note="connect, request, answer (in the bench's process)")]


def control(helper: Path, runs: int) -> list[Result]:
    return startup(helper, runs) + signals(helper, runs) + rss(helper) + \
        status_round_trip(helper, runs)

