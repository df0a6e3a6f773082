"""The template engine alone, in-process (issue 11; bench/templates.py runs
svcwrap itself end to end, with the child's reload signal):

    python bench/templates_engine.py [--services 50] [--changes 1000]

Runs the Consul double in a subprocess and svcwrap's TemplateManager in this
process (the real watches and transport), and prints a markdown table:
idle CPU and RSS with N watched services, Consul change -> file rewritten
(median, p90), and what 1,000 rapid changes cost.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from svcwrap.config import ConsulConfig, Secret  # noqa: E402
from svcwrap.logs import Logger  # noqa: E402
from svcwrap.templates.manager import TemplateManager  # noqa: E402
from svcwrap.templates.spec import TemplateSpec  # noqa: E402
from svcwrap.consul_http import AgentHTTP  # noqa: E402


def start_double() -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "tests.consul_double", "--http-addr",
                             "127.0.0.1:0"], cwd=REPO, stdout=subprocess.PIPE, text=True)
    for line in proc.stdout:
        if line.startswith("listening "):
            return proc, line.split("http://", 1)[1].strip()
    raise SystemExit("the Consul double did not start")


def put(addr: str, path: str, body: dict) -> None:
    req = urllib.request.Request(f"http://{addr}{path}", data=json.dumps(body).encode(),
                                 method="PUT")
    urllib.request.urlopen(req, timeout=10).read()


def register(addr: str, name: str, n: int, port: int) -> None:
    put(addr, "/v1/agent/service/register", {
        "Name": name, "ID": f"{name}-{n}", "Port": port, "Address": "10.0.0.1",
        "Check": {"TTL": "10m", "Status": "passing"}})


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def wait_for(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit("timed out")
        time.sleep(0.001)


def manager_for(addr: str, tmp: Path, names: list[str], wait: tuple[float, float],
                reloads: list) -> tuple[TemplateManager, Path]:
    source = tmp / "all.j2"
    source.write_text("".join("{% for s in service('" + n + "') %}" + n +
                              " {{ s.address }}:{{ s.port }}\n{% endfor %}" for n in names))
    dest = tmp / "all.conf"
    host, port = addr.rsplit(":", 1)
    consul = ConsulConfig("http", host, int(port), Secret(""), True, None, "")
    manager = TemplateManager([TemplateSpec(str(source), str(dest))],
                              connect=lambda: AgentHTTP(consul),
                              environ={}, log=Logger(level="error"), runner=lambda a, t: (0, ""),
                              on_rendered=lambda changed, failures: reloads.append(time.monotonic()),
                              wait=wait)
    return manager, dest


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--services", type=int, default=50)
    parser.add_argument("--changes", type=int, default=1000)
    parser.add_argument("--idle", type=float, default=10.0)
    args = parser.parse_args()
    double, addr = start_double()
    rows = []
    try:
        with tempfile.TemporaryDirectory() as tmpdir:
            tmp = Path(tmpdir)
            names = [f"svc{i}" for i in range(args.services)]
            for i, name in enumerate(names):
                register(addr, name, 1, 9000 + i)
            reloads: list[float] = []
            manager, dest = manager_for(addr, tmp, names, (0.0, 0.0), reloads)
            rss_before = rss_mb()
            manager.start()
            assert manager.first_render_done.wait(30)
            time.sleep(1.0)
            cpu0, t0 = time.process_time(), time.monotonic()
            time.sleep(args.idle)
            cpu = (time.process_time() - cpu0) / (time.monotonic() - t0) * 100
            rows.append((f"idle CPU, {args.services} watched services", f"{cpu:.3f} % of a core"))
            rows.append(("RSS before start / idle, watching", f"{rss_before:.1f} / {rss_mb():.1f} MB"))

            latencies = []
            for i in range(30):
                before = dest.read_text()
                t = time.monotonic()
                register(addr, names[i % len(names)], 1, 20000 + i)
                wait_for(lambda: dest.read_text() != before)
                latencies.append((time.monotonic() - t) * 1000)
            q = statistics.quantiles(latencies, n=10)
            rows.append(("change in Consul -> file rewritten, no wait",
                         f"median {statistics.median(latencies):.1f} ms, p90 {q[8]:.1f} ms"))
            manager.stop()

            reloads.clear()
            manager, dest = manager_for(addr, tmp, names[:1], (0.5, 2.0), reloads)
            manager.start()
            assert manager.first_render_done.wait(30)
            cpu0, t0 = time.process_time(), time.monotonic()
            for i in range(args.changes):
                register(addr, names[0], 1, 30000 + i)
            took = time.monotonic() - t0
            wait_for(lambda: f":{30000 + args.changes - 1}" in dest.read_text())
            cpu = time.process_time() - cpu0
            rows.append((f"{args.changes} rapid changes in {took:.1f} s, wait 500ms:2s (floor 250ms)",
                         f"{len(reloads)} renders/reloads, {cpu * 1000:.0f} ms CPU in svcwrap"))
            manager.stop()
    finally:
        double.terminate()
        double.wait(10)
    print_table("svcwrap's template engine", rows)


def print_table(title: str, rows: list[tuple[str, str]]) -> None:
    print(f"| figure | {title} |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    main()
