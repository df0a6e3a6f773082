"""Templates end to end (issue 11 bench items): svcwrap itself, as a child
subreaper, with its templates rendered from the Consul double and its child
reloaded by signal.

    python bench/templates.py [--services 50] [--changes 1000] [--runs 30] [--quick]

Prints a markdown table:

* change in Consul -> file rewritten -> the child has its reload signal
  (median, p90), with --template-wait MIN:MAX; goal: <= MIN + 50 ms;
* idle CPU and RSS of svcwrap with N watched services (one service() each);
* N rapid changes: how many renders and reloads they cost (bounded by the
  quiescence window: about the burst's length / MAX + 1) and svcwrap's CPU.

The child is bench/helper.c's `signals` mode (compiled here): it prints
"usr1 NS" (CLOCK_MONOTONIC, the clock of time.monotonic_ns) on SIGUSR1,
which is the reload action. Builds on bench/templates_engine.py (the engine
alone, in-process).
"""
from __future__ import annotations

import argparse
import os
import select
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))

from templates_engine import print_table, put, register, start_double  # noqa: E402

WAIT = (0.3, 1.2)   # --template-wait; MIN above the 250 ms watch floor (see README)


def compile_helper(tmp: Path) -> Path:
    out = tmp / "helper"
    subprocess.run(["gcc", "-O2", "-o", str(out), str(REPO / "bench" / "helper.c")], check=True)
    return out


class Svcwrap:
    def __init__(self, tmp: Path, addr: str, helper: Path, source: str, wait: tuple[float, float],
                 name: str) -> None:
        self.source = tmp / f"{name}.j2"
        self.source.write_text(source)
        self.dest = tmp / f"{name}.conf"
        self.log = tmp / f"{name}.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "svcwrap", "--no-register", "--consul", addr,
             "--template", f"{self.source}:{self.dest}", "--reload", "signal:USR1",
             "--template-wait", f"{wait[0]}s:{wait[1]}s", "--", str(helper), "signals"],
            cwd=REPO, stdout=subprocess.PIPE, stderr=open(self.log, "w"),
            env={k: v for k, v in os.environ.items() if not k.startswith(("SVCWRAP_", "CONSUL_"))})
        self.buf = b""
        self.line(60.0, "ready")

    def line(self, timeout: float, starts: str) -> str:
        """The child's next output line starting with `starts`."""
        deadline = time.monotonic() + timeout
        while True:
            while b"\n" in self.buf:
                line, self.buf = self.buf.split(b"\n", 1)
                if line.decode().startswith(starts):
                    return line.decode()
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.proc.stdout], [], [], left)[0]:
                raise SystemExit(f"no {starts!r} from the child in {timeout:g}s; see {self.log}")
            chunk = os.read(self.proc.stdout.fileno(), 65536)
            if not chunk:
                raise SystemExit(f"the child's output ended; see {self.log}")
            self.buf += chunk

    def signals(self, quiet: float) -> list[int]:
        """Every "usr1 NS" line until none came for `quiet` seconds."""
        stamps = []
        while True:
            try:
                stamps.append(int(self.line(quiet, "usr1").split()[1]))
            except SystemExit:
                return stamps

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(15)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--services", type=int, default=50)
    parser.add_argument("--changes", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--idle", type=float, default=10.0)
    parser.add_argument("--quick", action="store_true", help="a smoke run: few of everything")
    args = parser.parse_args()
    if args.quick:
        args.services, args.changes, args.runs, args.idle = 5, 100, 5, 1.0
    double, addr = start_double()
    rows = []
    try:
        with tempfile.TemporaryDirectory() as tmpdir:
            tmp = Path(tmpdir)
            helper = compile_helper(tmp)

            # -- latency: a KV write to the child's reload signal ------------
            put(addr, "/v1/kv/bench/v", {"v": 0})
            s = Svcwrap(tmp, addr, helper, "{{ key('bench/v') }}", WAIT, "latency")
            latencies = []
            for i in range(1, args.runs + 2):   # the first is a warm-up, not counted
                before = time.monotonic_ns()
                put(addr, "/v1/kv/bench/v", {"v": i})
                stamp = int(s.line(10.0, "usr1").split()[1])
                if i > 1:
                    latencies.append((stamp - before) / 1e6)
                time.sleep(0.3)   # past the floor: the next write finds the query blocked
            s.stop()
            q = statistics.quantiles(latencies, n=10)
            goal = WAIT[0] * 1000 + 50
            median = statistics.median(latencies)
            rows.append((f"KV write -> file -> child has SIGUSR1, wait {WAIT[0]:g}s:{WAIT[1]:g}s",
                         f"median {median:.0f} ms, p90 {q[8]:.0f} ms (goal <= {goal:.0f} ms: "
                         f"{'yes' if q[8] <= goal else 'NO'})"))

            # -- idle with N watched services ----------------------------------
            names = [f"svc{i}" for i in range(args.services)]
            for i, name in enumerate(names):
                register(addr, name, 1, 9000 + i)
            source = "".join("{% for s in service('" + n + "') %}" + n +
                             " {{ s.address }}:{{ s.port }}\n{% endfor %}" for n in names)
            s = Svcwrap(tmp, addr, helper, source, WAIT, "idle")
            time.sleep(2.0)
            cpu0, t0 = s.cpu_seconds(), time.monotonic()
            time.sleep(args.idle)
            cpu = (s.cpu_seconds() - cpu0) / (time.monotonic() - t0) * 100
            rows.append((f"idle, {args.services} watched services",
                         f"{cpu:.2f} % of a core, RSS {s.rss_mb():.1f} MB"))
            s.stop()

            # -- a burst of rapid changes ----------------------------------------
            s = Svcwrap(tmp, addr, helper, "{% for s in service('svc0') %}{{ s.port }} "
                                           "{% endfor %}", WAIT, "burst")
            cpu0, t0 = s.cpu_seconds(), time.monotonic()
            for i in range(args.changes):
                register(addr, "svc0", 2, 30000 + i)
            took = time.monotonic() - t0
            signals = s.signals(quiet=WAIT[1] + 1.0)
            renders = s.log.read_text().count("template rendered") - 1   # not the first
            bound = int(took / WAIT[1]) + 2
            rows.append((f"{args.changes} rapid changes in {took:.1f} s",
                         f"{renders} renders, {len(signals)} reloads (bound {bound}: "
                         f"{'yes' if len(signals) <= bound else 'NO'}), "
                         f"{(s.cpu_seconds() - cpu0) * 1000:.0f} ms CPU in svcwrap"))
            s.stop()
    finally:
        double.terminate()
        double.wait(10)
    print_table("svcwrap, templates end to end", rows)


if __name__ == "__main__":
    main()
