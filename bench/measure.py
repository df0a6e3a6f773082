"""The measurements. Each function returns a list of Result rows for the table.

Every wrapper runs as a real PID 1: `unshare --pid --fork --mount-proc WRAPPER CHILD`, where
CHILD is the C helper (helper.c), so the child adds no start-up of its own. "none" is the helper
itself as PID 1 (unshare -> child directly), the baseline subtracted from the start-up figures.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Optional

from util import (REPO, UNSHARE, ConsulReader, PassingWatcher, Unavailable, clean_venv, cpu_seconds,
                  is_heartbeat, median, percentile, pid1_of, python_env, rss_mb, spawn, stop)

PYTHON = sys.executable  # the interpreter that runs svcwrap; the bare-python baseline uses it too
SVCWRAP = str(Path(PYTHON).parent / "svcwrap")  # the console script installed beside it


@dataclass
class Result:
    figure: str
    wrapper: str
    unit: str
    median: Optional[float] = None
    p90: Optional[float] = None
    n: int = 0
    note: str = ""
    na: str = ""
    vs_tini: Optional[float] = None
    vs_python: Optional[float] = None
    target: str = ""
    met: Optional[bool] = None

    @classmethod
    def of(cls, figure: str, wrapper: str, unit: str, samples: list[float], **kw: object) -> "Result":
        na = str(kw.pop("na", "n/a: no samples"))
        if not samples:
            return cls(figure, wrapper, unit, na=na, **kw)  # type: ignore[arg-type]
        return cls(figure, wrapper, unit, median(samples), percentile(samples, 90), len(samples),
                   **kw)  # type: ignore[arg-type]


def wrappers(helper: Path) -> dict[str, list[str]]:
    """The command prefix of each wrapper, to be followed by the child's argv."""
    return {
        "none": [],
        "tini": ["tini", "--"],
        "dumb-init": ["dumb-init"],
        "svcwrap": [SVCWRAP, "--no-register", "--"],
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# == exec of the wrapper -> child running ==========================================================
def startup(helper: Path, runs: int) -> list[Result]:
    h = str(helper)
    first_statement = "import os,time; os.write(1, b'child %d\\n' % time.monotonic_ns())"
    variants = {name: UNSHARE + prefix + [h, "stamp"] for name, prefix in wrappers(helper).items()}
    variants["python -m svcwrap"] = UNSHARE + [PYTHON, "-m", "svcwrap", "--no-register", "--", h,
                                               "stamp"]
    variants["bare python3"] = UNSHARE + [PYTHON, "-c", first_statement]
    clean_python, clean_svcwrap = clean_venv(helper.parent, PYTHON, Path(SVCWRAP))
    variants["svcwrap, clean venv"] = UNSHARE + [str(clean_svcwrap), "--no-register", "--", h, "stamp"]
    variants["bare python3, clean venv"] = UNSHARE + [str(clean_python), "-c", first_statement]
    clean_env = python_env()
    samples: dict[str, list[float]] = {name: [] for name in variants}
    exits: list[float] = []
    for run in range(runs + 1):  # interleaved, so slow drift hits every variant alike
        for name, argv in variants.items():
            proc, lines = spawn([h, "launch"] + argv, env=clean_env if "clean" in name else None)
            launched = int(lines.expect("launch", 10)[1])
            running = int(lines.expect("child", 10)[1])
            proc.wait()
            if run > 0:  # run 0 only warms the page cache and writes the .pyc files
                samples[name].append((running - launched) / 1e6)
        done = subprocess.run([h, "runtime", PYTHON, "-c", "pass"], capture_output=True, check=True,
                              env=python_env())
        if run > 0:
            exits.append(int(done.stdout.split()[1]) / 1e6)

    base = median(samples["none"])
    overhead = {name: median(vals) - base for name, vals in samples.items()}
    results = []
    for name, vals in samples.items():
        r = Result.of("exec → child running", name, "ms", vals,
                      note=f"+{overhead[name]:.2f} ms over none" if name != "none" else "unshare → child")
        python = "bare python3, clean venv" if "clean" in name else "bare python3"
        if name != "none" and not name.startswith("bare"):
            r.vs_tini = overhead[name] / overhead["tini"]
            r.vs_python = overhead[name] / overhead[python]
        if name.startswith("bare"):
            r.note = f"python start = +{overhead[name]:.2f} ms over none (the ×python unit)"
        if "svcwrap" in name:
            r.target = "≤ 1.3 × python start"
            r.met = r.vs_python is not None and r.vs_python <= 1.3
        results.append(r)
    results.append(Result.of("exec → child running", "python3 -c pass, exec → exit (no unshare)",
                             "ms", exits, note="reference only"))
    return results


# == kill(1, SIGUSR1) -> the child's handler runs ===================================================
def signal_latency(helper: Path, runs: int) -> list[Result]:
    results = []
    for name, prefix in wrappers(helper).items():
        latencies = usr1_latencies(UNSHARE + prefix + [str(helper), "signals"], runs)
        results.append(Result.of("kill(1, SIGUSR1) → child handler", name, "µs", latencies))
    return tini_ratios(results, target="≤ 500 µs median", met=lambda r: r.median <= 500)


def usr1_latencies(argv: list[str], runs: int, stderr: Optional[IO[bytes]] = None,
                   pause: float = 0.005) -> list[float]:
    """µs from kill(1, SIGUSR1) to the helper child's handler, after 5 warm-up signals."""
    proc, lines = spawn(argv, stderr=stderr) if stderr is not None else spawn(argv)
    try:
        lines.expect("ready", 10)
        pid1 = pid1_of(proc.pid)
        latencies = []
        for i in range(runs + 5):
            time.sleep(pause)
            sent = time.monotonic_ns()
            os.kill(pid1, signal.SIGUSR1)
            handled = int(lines.expect("usr1", 5)[1])
            if i >= 5:
                latencies.append((handled - sent) / 1e3)
    finally:
        stop(proc)
    return latencies


def signal_latency_misbehaving(helper: Path, runs: int, double: Double,
                               log: IO[bytes]) -> list[Result]:
    """Issue 9: the same figure while the agent drips its answers and then
    sends 1 MB gzip-labelled error bodies to every heartbeat (TTL 600ms)."""
    figure = "kill(1, SIGUSR1) → child handler, agent misbehaving [double]"
    argv = UNSHARE + registered_argv("bench-bad-agent", "bench-bad-agent-1", double, "none",
                                     "600ms") + [str(helper), "signals"]
    handle = double.handle
    handle.drip(0.002)  # type: ignore[attr-defined]
    try:
        half = usr1_latencies(argv, runs // 2, stderr=log, pause=0.02)
        handle.drip(0)  # type: ignore[attr-defined]
        handle.fail_with(500, b"\x1f\x8b" + os.urandom(1 << 20),  # type: ignore[attr-defined]
                         {"Content-Encoding": "gzip"})
        half += usr1_latencies(argv, runs - runs // 2, stderr=log, pause=0.02)
    finally:
        handle.drip(0)  # type: ignore[attr-defined]
        handle.fail_with(None)  # type: ignore[attr-defined]
    r = Result.of(figure, "svcwrap registered", "µs", half)
    if r.median is not None:
        p99 = percentile(half, 99)
        r.note = f"p99 {p99:.0f} µs; dripping agent, then 1 MB gzip error bodies"
        r.target, r.met = "≤ 1 ms p99", p99 <= 1000
    return [r]


def tini_ratios(results: list[Result], target: str, met) -> list[Result]:  # type: ignore[no-untyped-def]
    tini = next((r for r in results if r.wrapper == "tini" and r.median), None)
    for r in results:
        if tini is not None and r.median is not None:
            r.vs_tini = r.median / tini.median  # type: ignore[operator]
        if r.wrapper == "svcwrap" and r.median is not None:
            r.target, r.met = target, bool(met(r))
    return results


# == orphans reaped per second =======================================================================
def orphans(helper: Path, runs: int, count: int = 1000) -> list[Result]:
    results = []
    for name, prefix in wrappers(helper).items():
        # Without an init nobody reaps them: a few runs show that, more would only wait.
        n_runs, timeout_ms = (max(1, runs // 10), 1000) if name == "none" else (runs, 10000)
        durations: list[float] = []
        left_max = 0
        for _ in range(n_runs):
            proc, lines = spawn(UNSHARE + prefix + [str(helper), "orphans", str(count), str(timeout_ms)])
            words = lines.expect("orphans", timeout_ms / 1000 + 60)
            proc.wait()
            if int(words[1]) > 0:
                durations.append(int(words[1]) / 1e9)
            left_max = max(left_max, int(words[2]))
        note = f"zombies left: {left_max} (max of {n_runs} runs)"
        if not durations:
            results.append(Result("orphans reaped /s (1,000)", name, "/s", n=n_runs, note=note,
                                  na="never reaped"))
            continue
        # A rate's slow tail is the p90 of the durations, so p90 = count / p90(duration).
        r = Result("orphans reaped /s (1,000)", name, "/s", count / median(durations),
                   count / percentile(durations, 90), len(durations), note=note)
        if name == "svcwrap":
            r.target = "≥ 2,000/s, 0 left"
            r.met = (r.median or 0) >= 2000 and left_max == 0
        results.append(r)
    tini = next(r for r in results if r.wrapper == "tini")
    for r in results:
        if r.median and tini.median:
            r.vs_tini = r.median / tini.median
    return results


# == Consul: helpers ======================================================================================
class Double:
    """The Consul agent double, started in this process, with a reader for its HTTP API."""

    def __init__(self, handle: object) -> None:
        self.handle = handle
        self.host, port = handle.addr.rsplit(":", 1)  # type: ignore[attr-defined]
        self.port = int(port)
        self.addr: str = handle.addr  # type: ignore[attr-defined]
        self.reader = ConsulReader(self.host, self.port)

    def heartbeats(self, service_id: str = "") -> int:
        return sum(1 for rec in self.handle.requests  # type: ignore[attr-defined]
                   if is_heartbeat(rec) and service_id in rec.path)

    def passing(self, name: str) -> int:
        status, _, body = self.reader.get(f"/v1/health/service/{name}?passing")
        return len(body) if status == 200 and isinstance(body, list) else 0

    def watch(self, name: str) -> PassingWatcher:
        return PassingWatcher(self.host, self.port, name)


def registered_argv(name: str, sid: str, double: Double, ready: str, ttl: str,
                    extra: tuple[str, ...] = ()) -> list[str]:
    return [SVCWRAP, "--name", name, "--id", sid, "--ready", ready, "--ttl", ttl,
            "--consul", double.addr, *extra, "--"]


# == RSS and idle CPU ========================================================================================
def idle(helper: Path, seconds: float, double: Optional[Double], log: IO[bytes]) -> list[Result]:
    """All wrappers side by side, each supervising an idle child, for `seconds`."""
    h = str(helper)
    commands = {name: UNSHARE + prefix + [h, "signals"] for name, prefix in wrappers(helper).items()
                if name != "none"}
    if double is not None:
        commands["svcwrap registered (TTL 10s)"] = UNSHARE + registered_argv(
            "bench-idle", "bench-idle-1", double, "none", "10s") + [h, "signals"]
    procs = {name: spawn(argv, stderr=log) for name, argv in commands.items()}
    results: list[Result] = []
    try:
        pids = {}
        for name, (proc, lines) in procs.items():
            lines.expect("ready", 10)
            pids[name] = pid1_of(proc.pid)
        registered_note = ""
        if double is not None:
            deadline = time.monotonic() + 15
            while double.passing("bench-idle") < 1 and time.monotonic() < deadline:
                time.sleep(0.05)
            if double.passing("bench-idle") < 1:
                registered_note = "never passing in Consul; "
        time.sleep(1.0)  # let start-up work (imports, registration) finish
        cpu0 = {name: cpu_seconds(pid) for name, pid in pids.items()}
        beats0 = double.heartbeats("bench-idle-1") if double is not None else 0
        rss: dict[str, list[float]] = {name: [] for name in pids}
        started = time.monotonic()
        while time.monotonic() - started < seconds:
            for name, pid in pids.items():
                rss[name].append(rss_mb(pid))
            time.sleep(min(1.0, max(0.0, seconds - (time.monotonic() - started))))
        elapsed = time.monotonic() - started
        for name, pid in pids.items():
            share = (cpu_seconds(pid) - cpu0[name]) / elapsed * 100
            note = f"over {elapsed:.0f} s"
            if name.startswith("svcwrap registered") and double is not None:
                beats = double.heartbeats("bench-idle-1") - beats0
                note = f"{registered_note}over {elapsed:.0f} s, {beats} heartbeats"
            r = Result(f"CPU idle (% of a core)", name, "%", share, None, 1, note=note)
            if name.startswith("svcwrap registered"):
                r.target, r.met = "≤ 0.1 %", share <= 0.1
            results.append(r)
        for name in pids:
            results.append(Result.of("RSS while supervising", name, "MB", rss[name],
                                     note="sampled once a second during the CPU figure"))
    finally:
        for proc, _ in procs.values():
            stop(proc)
    tini_ratios([r for r in results if r.figure.startswith("CPU")], "", lambda r: True)
    tini_ratios([r for r in results if r.figure.startswith("RSS")], "", lambda r: True)
    for r in results:
        if r.figure.startswith("RSS") and r.wrapper.startswith("svcwrap registered"):
            r.target, r.met = "≤ 30 MB", (r.median or 0) <= 30
        elif r.figure.startswith("RSS") or r.wrapper == "svcwrap":
            r.target, r.met = "", None
    return results


def heartbeat_growth(helper: Path, beats: int, double: Double, log: IO[bytes]
                     ) -> tuple[list[Result], list[tuple[int, float]]]:
    """RSS of a registered svcwrap from its first heartbeat to `beats` heartbeats, sent fast
    (TTL 1s, check every 5ms). Returns the rows and the (heartbeats, RSS MB) curve."""
    sid = "bench-beats-1"
    argv = UNSHARE + registered_argv("bench-beats", sid, double, "none", "1s",
                                     ("--check-interval", "5ms")) + [str(helper), "signals"]
    proc, lines = spawn(argv, stderr=log)
    curve: list[tuple[int, float]] = []
    try:
        lines.expect("ready", 10)
        pid = pid1_of(proc.pid)
        deadline = time.monotonic() + 20
        while double.heartbeats(sid) < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        if double.heartbeats(sid) < 1:
            raise Unavailable("svcwrap sent no heartbeat to the double within 20 s")
        step = max(1, beats // 20)
        started = time.monotonic()
        # At least as fast as the TTL: give up if it is far slower than 1 per check interval.
        limit = max(60.0, beats * 0.005 * 4)
        next_mark = 0
        while True:
            count = double.heartbeats(sid)
            done = (count >= beats or time.monotonic() - started > limit
                    or proc.poll() is not None)
            if count >= next_mark or done:
                curve.append((count, rss_mb(pid)))
                next_mark = count + step
            if done:
                break
            time.sleep(0.05)
        elapsed = time.monotonic() - started
    finally:
        stop(proc)
    first, last = curve[0], curve[-1]
    growth = last[1] - first[1]
    reached = last[0] >= beats
    rows = [
        Result("RSS registered, at 1st heartbeat", "svcwrap", "MB", first[1], None, 1,
               target="≤ 30 MB", met=first[1] <= 30),
        Result(f"RSS registered, after {last[0]:,} heartbeats", "svcwrap", "MB", last[1], None, 1,
               note=f"growth {growth:+.2f} MB; {last[0] / elapsed:.0f} heartbeats/s"
                    + ("" if reached else f" (stopped short of {beats:,})"),
               target="no growth (< 1 MB)", met=growth < 1.0 and reached),
    ]
    return rows, curve


# == readiness -> passing, SIGTERM -> out of ?passing -> child signalled ============================
def leave_received(double: Double, service_id: str, after_ns: int) -> Optional[int]:
    """When the double received the first request that takes `service_id` out of ?passing
    (deregister, maintenance, or a non-passing check status), in time.monotonic_ns()."""
    for rec in double.handle.requests:  # type: ignore[attr-defined]
        received = int(rec.time * 1e9)
        if rec.method != "PUT" or service_id not in rec.path or received < after_ns:
            continue
        body = rec.body if isinstance(rec.body, dict) else {}
        if "/check/pass/" in rec.path or body.get("Status") == "passing":
            continue
        return received
    return None


def lifecycle(helper: Path, runs: int, double: Double, log: IO[bytes],
              delay_ms: int = 1000) -> list[Result]:
    """Per run: a notify child and a tcp child that become ready `delay_ms` after they start
    (by then svcwrap has imported its Consul client and waits), and a notify child ready at once
    (the cold case: the time includes that import). SIGTERM is measured on the first."""
    ready_ms: dict[str, list[float]] = {"notify": [], "tcp": [], "cold": []}
    out_ms: list[float] = []
    signalled_ms: list[float] = []
    in_order = unclear = 0
    failures: dict[str, str] = {}
    for i in range(runs):
        for kind in ("notify", "tcp", "cold"):
            if kind in failures and not ready_ms[kind]:
                continue  # failed from the first run on: do not wait out every timeout
            name = f"bench-{kind}-{i}"
            if kind == "notify":
                child, ready, extra = [str(helper), "notify", str(delay_ms)], "notify", ()
            elif kind == "cold":
                child, ready, extra = [str(helper), "notify", "0"], "notify", ()
            else:
                port = free_port()
                child, ready, extra = ([str(helper), "listen", str(port), str(delay_ms)],
                                       f"tcp:{port}", ("--port", str(port)))
            watcher = double.watch(name)
            proc, lines = spawn(UNSHARE + registered_argv(name, name, double, ready, "10s", extra)
                                + child, stderr=log)
            try:
                became_ready = int(lines.expect("ready", 10)[1])
                passing = watcher.wait_for(lambda n: n >= 1, 0, 10)
                if passing is None:
                    failures[kind] = "never passing in the double within 10 s"
                    continue
                ready_ms[kind].append((passing - became_ready) / 1e6)
                if kind != "notify":
                    continue
                time.sleep(0.05)
                sent = time.monotonic_ns()
                os.kill(pid1_of(proc.pid), signal.SIGTERM)
                signalled = int(lines.expect("term", 15)[1])
                left = watcher.wait_for(lambda n: n == 0, sent, 5)
                signalled_ms.append((signalled - sent) / 1e6)
                if left is None:
                    failures["sigterm"] = "still passing 5 s after SIGTERM"
                    continue
                out_ms.append((left - sent) / 1e6)
                if left <= signalled:
                    in_order += 1
                else:
                    # The watcher saw it late: did the double at least receive the leave
                    # request (deregistration, or a non-passing status) before the signal?
                    received = leave_received(double, name, sent)
                    if received is not None and received <= signalled:
                        unclear += 1
            except (TimeoutError, EOFError, RuntimeError) as err:
                failures[kind] = str(err)
            finally:
                stop(proc)
                watcher.close()

    def row(figure: str, samples: list[float], key: str, target: str = "", limit: float = 0,
            note: str = "") -> Result:
        r = Result.of(figure, "svcwrap", "ms", samples, na=f"n/a: {failures.get(key, 'no samples')}",
                      note="; ".join(filter(None, [note, f"failed: {failures[key]}"
                                                   if key in failures else ""])))
        if target and r.median is not None:
            r.target, r.met = target, r.median <= limit
        return r

    wrong = len(out_ms) - in_order - unclear
    order = (f"order: out of ?passing before the child's signal in {in_order}/{len(out_ms)} runs; "
             f"{unclear} within the watcher's latency (leave request received before the signal, "
             f"seen after); {wrong} wrong") if out_ms else ""
    settled = f"child ready {delay_ms} ms after start"
    return [
        row("readiness → passing (notify) [double]", ready_ms["notify"], "notify", "≤ 20 ms", 20,
            note=settled),
        row("readiness → passing (tcp) [double]", ready_ms["tcp"], "tcp",
            note=settled + "; probe polls 10 ms backing off ×1.5 to 200 ms"),
        row("readiness → passing (notify, cold) [double]", ready_ms["cold"], "cold",
            note="child ready at once: includes svcwrap importing its Consul client"),
        row("SIGTERM → out of ?passing [double]", out_ms, "sigterm", "≤ 20 ms", 20, note=order),
        row("SIGTERM → child signalled [double]", signalled_ms, "sigterm", "after out of ?passing",
            float("inf"), note=order),
    ]


# == many services on one agent =============================================================================
def heartbeat_times(double: Double, prefix: str) -> dict[str, list[float]]:
    """Successful heartbeats per check ID, as time.monotonic() seconds, from the request log."""
    times: dict[str, list[float]] = {}
    for rec in double.handle.requests:  # type: ignore[attr-defined]
        if is_heartbeat(rec) and rec.status == 200 and prefix in rec.path:
            times.setdefault(rec.path.rsplit("/", 1)[1], []).append(rec.time)
    return times


def missed_ttls(times: dict[str, list[float]], start: float, end: float, ttl: float) -> int:
    """Checks that went longer than `ttl` without a heartbeat somewhere in [start, end]:
    exactly when the agent would have turned them critical."""
    missed = 0
    for beats in times.values():
        before = [t for t in beats if t < start]
        points = before[-1:] + [t for t in beats if start <= t <= end] + [end]
        if not before or any(b - a > ttl for a, b in zip(points, points[1:])):
            missed += 1
    return missed


def scale(helper: Path, sizes: list[int], seconds: float, double: Double, log: IO[bytes]) -> list[Result]:
    """Grow to each size in turn (50, then 150 more, ...), wait until every instance has sent a
    heartbeat, then watch for `seconds`: heartbeat requests/s at the agent, missed TTLs and the
    total CPU of all the svcwrap processes (non-PID-1 here: one namespace each would add 500
    unshare processes and change nothing that is measured).

    Everything is read from the double's request log, not by polling its HTTP API: building
    /v1/health/service for 500 instances holds the double's state lock long enough to slow
    every heartbeat down, and would measure the bench instead."""
    name, ttl = "bench-scale", 10.0
    procs: list[tuple[subprocess.Popen, object]] = []
    results: list[Result] = []
    try:
        for size in sizes:
            while len(procs) < size:
                i = len(procs)
                argv = registered_argv(name, f"{name}-{i}", double, "none", "10s") + [
                    str(helper), "signals"]
                procs.append(spawn(argv, stderr=log))
                if i % 10 == 9:
                    time.sleep(0.05)  # spread the start-up burst a little
            wait = 60 + size * 0.5
            deadline = time.monotonic() + wait
            while len(heartbeat_times(double, name)) < size and time.monotonic() < deadline:
                time.sleep(1.0)
            up = len(heartbeat_times(double, name))
            if up < size:
                results.append(Result(f"{size} services [double]", "svcwrap", "", na=(
                    f"n/a: only {up}/{size} sent a heartbeat within {wait:.0f} s")))
                break
            time.sleep(2.0)  # let the start-up burst settle
            cpu0 = sum(cpu_seconds(p.pid) for p, _ in procs)
            agent0 = cpu_seconds(os.getpid())
            started = time.monotonic()
            time.sleep(seconds)
            ended = time.monotonic()
            elapsed = ended - started
            cpu = (sum(cpu_seconds(p.pid) for p, _ in procs) - cpu0) / elapsed * 100
            agent_cpu = (cpu_seconds(os.getpid()) - agent0) / elapsed * 100
            times = heartbeat_times(double, name)
            beats = sum(1 for ts in times.values() for t in ts if started <= t <= ended) / elapsed
            missed = missed_ttls(times, started, ended, ttl)
            r = Result(f"{size} services [double]", "svcwrap", "req/s", beats, None, 1,
                       note=(f"missed TTLs {missed}; svcwrap CPU total {cpu:.1f} % of a core"
                             f" ({cpu / size:.3f} %/service); double+bench {agent_cpu:.1f} %;"
                             f" over {elapsed:.0f} s"))
            r.target = "0 missed TTLs" + (" (at 500)" if size == 500 else "")
            r.met = missed == 0
            results.append(r)
    finally:
        for proc, _ in procs:
            try:
                proc.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
        for proc, _ in procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
    return results
