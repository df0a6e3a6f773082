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

import psutil

from util import (REPO, UNSHARE, ConsulReader, ListedWatcher, LineReader, PassingWatcher, Unavailable,
                  clean_venv, cpu_seconds, cpu_so_far_ns, is_heartbeat, median, percentile, pid1_of,
                  python_env, rss_mb, rusage_ns, spawn, stop)

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
    return leaves_received(double, [service_id], after_ns).get(service_id)


def leaves_received(double: Double, service_ids: list[str], after_ns: int) -> dict[str, int]:
    """leave_received for many IDs in one pass over the request log (IDs must not contain
    each other: bench-x-1 would match bench-x-10's requests)."""
    found: dict[str, int] = {}
    for rec in double.handle.requests:  # type: ignore[attr-defined]
        received = int(rec.time * 1e9)
        if rec.method != "PUT" or received < after_ns:
            continue
        body = rec.body if isinstance(rec.body, dict) else {}
        if "/check/pass/" in rec.path or body.get("Status") == "passing":
            continue
        for sid in service_ids:
            if sid in rec.path and sid not in found:
                found[sid] = received
    return found


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


# == many stops at once ==========================================================================
@dataclass
class StopBatch:
    """What one batch of simultaneous stops showed, per wrapper (in start order)."""
    sent: int  # time.monotonic_ns() of the SIGTERM
    cpu_ms: list[float]  # CPU from the SIGTERM to the exit, of the wrappers that exited
    signalled_ns: list[Optional[int]]  # when each child's SIGTERM handler ran
    not_exited: int
    at_once: bool  # one killpg(), not a kill() per wrapper


@dataclass
class ConsulStops:
    """A batch of registered svcwraps stopped at once, as Consul (the double) saw it."""
    stopped: StopBatch
    listed: int  # children signalled while their service was certainly still in ?passing
    unclear: int  # signalled after the deregistration could act, before it was stamped done
    gone_ms: Optional[float]  # SIGTERM -> the last one out of ?passing
    still_passing: int  # never out of ?passing
    left: int  # entries still in agent/services at the end
    checked_s: float  # when that was counted, s after the SIGTERM
    received_ms: list[float]  # SIGTERM -> the double received each deregistration


Batch = list[tuple[subprocess.Popen, LineReader]]


def start_batch(argvs: list[list[str]], log: IO[bytes]) -> Batch:
    """Start every argv in one new process group (led by the first), a little spread out."""
    batch: Batch = []
    for i, argv in enumerate(argvs):
        batch.append(spawn(argv, stderr=log, process_group=batch[0][0].pid if batch else 0))
        if i % 10 == 9:
            time.sleep(0.05)
    return batch


def stop_batch(batch: Batch, timeout: float) -> StopBatch:
    """SIGTERM every wrapper at once, collect each one's rusage with os.wait4 and its child's
    "term NS" line. CPU = rusage at exit - /proc before the stop, both counting the wrapper
    with its waited-for children, so the child's own CPU before the stop is read too."""
    pgid = batch[0][0].pid
    before: dict[int, int] = {}
    at_once = True
    for proc, _ in batch:
        children = psutil.Process(proc.pid).children()
        before[proc.pid] = cpu_so_far_ns(proc.pid) + sum(cpu_so_far_ns(c.pid) for c in children)
        # One killpg reaches every wrapper in the same instant, if the group holds the
        # wrappers and none of their children (those lead groups of their own).
        at_once = at_once and os.getpgid(proc.pid) == pgid and all(
            os.getpgid(c.pid) != pgid for c in children)
    sent = time.monotonic_ns()
    if at_once:
        os.killpg(pgid, signal.SIGTERM)
    else:
        for proc, _ in batch:
            os.kill(proc.pid, signal.SIGTERM)
    waiting = {proc.pid: proc for proc, _ in batch}
    cpu: dict[int, float] = {}
    deadline = time.monotonic() + timeout
    while waiting and time.monotonic() < deadline:
        for pid in list(waiting):
            done, status, usage = os.wait4(pid, os.WNOHANG)
            if done:
                waiting.pop(pid).returncode = os.waitstatus_to_exitcode(status)
                cpu[pid] = (rusage_ns(usage) - before[pid]) / 1e6
        if waiting:
            time.sleep(0.01)
    signalled: list[Optional[int]] = []
    for _, lines in batch:
        try:
            signalled.append(int(lines.expect("term", 2)[1]))
        except (TimeoutError, EOFError, RuntimeError):
            signalled.append(None)
    return StopBatch(sent, [cpu[p.pid] for p, _ in batch if p.pid in cpu], signalled, len(waiting),
                     at_once)


def end_batch(batch: Batch) -> None:
    """SIGKILL whatever is left of a batch, children first (they would outlive a wrapper)."""
    for proc, _ in batch:
        if proc.poll() is not None:
            continue
        try:
            for child in psutil.Process(proc.pid).children(recursive=True):
                child.kill()
        except psutil.NoSuchProcess:
            pass
        proc.kill()
        proc.wait()


def massstop_registered(helper: Path, n: int, double: Double, log: IO[bytes], name: str,
                        delay: float) -> ConsulStops:
    """N registered svcwraps (TTL 10s), all passing, then SIGTERM to all at once with the
    double answering every request `delay` s late."""
    sids = [f"{name}-{i:04d}" for i in range(n)]  # fixed width: no ID contains another
    state = double.handle.state  # type: ignore[attr-defined]
    batch = start_batch([registered_argv(name, sid, double, "none", "10s") + [str(helper), "signals"]
                         for sid in sids], log)
    watcher: Optional[ListedWatcher] = None
    try:
        wait = 60 + n * 0.5
        deadline = time.monotonic() + wait
        while ListedWatcher.count(state, sids) < n and time.monotonic() < deadline:
            if any(proc.poll() is not None for proc, _ in batch):
                raise Unavailable("a svcwrap exited before the stop (see out/svcwrap.log)")
            time.sleep(0.25)
        up = ListedWatcher.count(state, sids)
        if up < n:
            raise Unavailable(f"only {up}/{n} passing within {wait:.0f} s")
        time.sleep(1.0)  # the registrations' follow-up requests settle
        watcher = ListedWatcher(state, sids)
        double.handle.delay(delay)  # type: ignore[attr-defined]
        stopped = stop_batch(batch, 30 + delay)
        # Shorter than any TTL can run out (10s, heartbeats every 3.3 s): what is still in
        # ?passing then was never deregistered.
        watcher.wait_all_gone(delay + 5)
        received = leaves_received(double, sids, stopped.sent)
        listed = unclear = 0
        for sid, signalled in zip(sids, stopped.signalled_ns):
            if signalled is None:
                continue
            out = watcher.gone.get(sid)  # upper bound of when it left
            if out is not None and signalled >= out:
                continue
            # The double sleeps `delay` before it acts on a request: not out before that.
            leaving = received.get(sid)
            if leaving is None or signalled < leaving + delay * 1e9:
                listed += 1
            else:
                unclear += 1
        gone_ms = ((max(watcher.gone.values()) - stopped.sent) / 1e6
                   if not watcher.remaining and watcher.gone else None)
        left = ListedWatcher.count(state, sids, "services")
        return ConsulStops(stopped, listed, unclear, gone_ms, len(watcher.remaining), left,
                           (time.monotonic_ns() - stopped.sent) / 1e9,
                           [(t - stopped.sent) / 1e6 for t in received.values()])
    finally:
        double.handle.delay(0)  # type: ignore[attr-defined]
        if watcher is not None:
            watcher.close()
        end_batch(batch)


def massstop_peer(helper: Path, n: int, prefix: list[str], log: IO[bytes]) -> StopBatch:
    batch = start_batch([prefix + [str(helper), "signals"] for _ in range(n)], log)
    try:
        for _, lines in batch:
            lines.expect("ready", 20)
        time.sleep(0.5)
        return stop_batch(batch, 30)
    finally:
        end_batch(batch)


def massstop(helper: Path, n: int, double: Double, log: IO[bytes], slow: float = 1.5) -> list[Result]:
    """Issue 9: N svcwraps (not PID 1) stopped by one SIGTERM at the same moment, with the
    agent answering at once and `slow` s late (beyond --leave-timeout's 1s); tini and
    dumb-init stopped the same way for the CPU figure."""
    cpu_fig = f"{n} stops at once: CPU per stop [double]"
    listed_fig = f"{n} stops at once: child signalled while listed [double]"
    gone_fig = f"{n} stops at once: SIGTERM → all out of ?passing [double]"

    def how(stopped: StopBatch) -> str:
        sent = "one killpg" if stopped.at_once else "kill() in a loop"
        exits = f"; {stopped.not_exited} never exited" if stopped.not_exited else ""
        return f"not PID 1 (plain subprocesses), {sent}{exits}"

    rows: list[Result] = []
    for wrapper, name, delay in (("svcwrap", "bench-massstop", 0.0),
                                 (f"svcwrap, agent {slow:g} s late", "bench-massstop-slow", slow)):
        run = massstop_registered(helper, n, double, log, name, delay)
        got = [t for t in run.stopped.signalled_ns if t is not None]
        to_child = [(t - run.stopped.sent) / 1e6 for t in got]
        signal_note = "; ".join(
            f"SIGTERM → {what} median {median(ms):.0f} ms, p90 {percentile(ms, 90):.0f} ms"
            + ("" if len(ms) == n else f" ({len(ms)}/{n})")
            for what, ms in (("deregistration at the agent", run.received_ms),
                             ("child's handler", to_child)) if ms)
        rows.append(Result.of(cpu_fig, wrapper, "ms", run.stopped.cpu_ms,
                              note=f"{how(run.stopped)}; TTL 10s, --leave-timeout 1s"))
        r = Result(listed_fig, wrapper, "", run.listed, None, len(got),
                   note=f"+{run.unclear} unclear (signalled while the deregistration was being "
                        f"applied); {signal_note}")
        if delay == 0:
            r.target, r.met = "0 (out of ?passing first)", run.listed == 0
        else:
            r.note += ("; by design: signalled at the leave timeout while the deregistration "
                       "is still in flight")
        rows.append(r)
        after = f"{run.checked_s:.1f} s after the SIGTERM"
        left = (f"{run.left}/{n} entries still in agent/services {after}" if run.left
                else f"all {n} entries gone from agent/services ({after})")
        if run.gone_ms is None:
            rows.append(Result(gone_fig, wrapper, "ms", note=left,
                               na=f"n/a: {run.still_passing}/{n} still in ?passing {after}"))
        else:
            rows.append(Result(gone_fig, wrapper, "ms", run.gone_ms, None, 1, note=left))
    peers = {}
    for name, prefix in (("tini", ["tini", "--"]), ("dumb-init", ["dumb-init"])):
        stopped = massstop_peer(helper, n, prefix, log)
        peers[name] = Result.of(cpu_fig, name, "ms", stopped.cpu_ms, note=f"{how(stopped)}; no Consul")
        rows.append(peers[name])
    tini = peers["tini"].median
    for r in rows:
        if r.figure == cpu_fig and r.median is not None and tini:
            r.vs_tini = r.median / tini
    return rows
