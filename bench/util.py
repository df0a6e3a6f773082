"""Plumbing shared by the measurements: the C helper, processes, statistics, Consul reads."""
from __future__ import annotations

import http.client
import json
import math
import os
import queue
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

import psutil

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
UNSHARE = ["unshare", "--pid", "--fork", "--mount-proc"]


class Unavailable(Exception):
    """A figure cannot be measured here; the message becomes the table's "n/a: ..." text."""


# -- the C helper ---------------------------------------------------------------------------------
def build_helper(out_dir: Path) -> Path:
    """Compile bench/helper.c into out_dir/helper (every run, so it always matches the source)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    binary = out_dir / "helper"
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        raise SystemExit("bench: needs gcc (or cc) to build bench/helper.c")
    subprocess.run([cc, "-O2", "-Wall", "-o", str(binary), str(BENCH_DIR / "helper.c")], check=True)
    return binary


def clean_venv(out_dir: Path, python: str, console_script: Path) -> tuple[Path, Path]:
    """A venv with only the repository on its path (a plain .pth line), plus a copy of
    svcwrap's console script pointing at it, its shebang flags dropped as pip drops them.

    This is svcwrap as a wheel install runs it (as in the Docker image): the development
    venv's editable install adds a .pth import hook that every interpreter start there pays
    for, svcwrap or not. Not PYTHONPATH: svcwrap ignores it (it re-executes itself with -E,
    issue 9). Returns (python, svcwrap script)."""
    venv = out_dir / "venv-clean"
    clean_python = venv / "bin" / "python"
    if not clean_python.exists():
        subprocess.run([python, "-m", "venv", "--without-pip", str(venv)], check=True)
    purelib = subprocess.run([str(clean_python), "-c",
                              "import sysconfig; print(sysconfig.get_path('purelib'))"],
                             capture_output=True, text=True, check=True).stdout.strip()
    (Path(purelib) / "svcwrap-repo.pth").write_text(f"{REPO}\n")
    script = venv / "bin" / "svcwrap"
    lines = console_script.read_text().splitlines(keepends=True)
    script.write_text(f"#!{clean_python}\n" + "".join(lines[1:]))
    script.chmod(0o755)
    return clean_python, script


# -- statistics -------------------------------------------------------------------------------------
def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (p50 of [1, 2, 3, 4] is 2, p90 of 50 values is the 45th)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def median(values: Sequence[float]) -> float:
    return percentile(values, 50)


# -- processes ----------------------------------------------------------------------------------------
class LineReader:
    """Reads a process's stdout on a thread, so lines can be awaited with a timeout."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc = proc
        self.lines: "queue.Queue[Optional[str]]" = queue.Queue()
        self.thread = threading.Thread(target=self._pump, daemon=True)
        self.thread.start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self.lines.put(raw.decode(errors="replace").rstrip("\n"))
        self.lines.put(None)

    def expect(self, tag: str, timeout: float) -> list[str]:
        """The words of the next line starting with `tag` (other lines are dropped)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no {tag!r} line within {timeout:g}s")
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                raise TimeoutError(f"no {tag!r} line within {timeout:g}s") from None
            if line is None:
                raise EOFError(f"process exited before printing {tag!r}")
            words = line.split()
            if words and words[0] == tag:
                return words
            if words and words[0].startswith("error"):
                raise RuntimeError(f"helper: {line}")


def python_env(extra: Optional[dict[str, str]] = None) -> dict[str, str]:
    """The environment every measured process gets: bytecode caching on, into bench/out/pycache.

    With PYTHONDONTWRITEBYTECODE=1 (set in some dev shells) a source file edited after its .pyc
    was written is recompiled at every start (~5 ms per svcwrap module here), which a wheel
    install, compiled by pip, never does. The prefix keeps the bench out of svcwrap/__pycache__."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(BENCH_DIR / "out" / "pycache")
    env.update(extra or {})
    return env


def spawn(argv: list[str], env: Optional[dict[str, str]] = None,
          stderr: Optional[int] = subprocess.DEVNULL,
          process_group: Optional[int] = None) -> tuple[subprocess.Popen, LineReader]:
    """`process_group`: join that process group (0: lead a new one), so one killpg() signals
    a whole batch at the same moment."""
    group: dict[str, object] = {}
    if process_group is not None:
        if sys.version_info >= (3, 11):
            group["process_group"] = process_group
        else:
            group["preexec_fn"] = lambda: os.setpgid(0, process_group)
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr,
                            env=env if env is not None else python_env(), cwd=REPO,
                            **group)  # type: ignore[call-overload]
    return proc, LineReader(proc)


def pid1_of(unshare_pid: int, timeout: float = 5.0) -> int:
    """The host PID of the process `unshare --fork` made PID 1 of the new namespace."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            children = psutil.Process(unshare_pid).children()
        except psutil.NoSuchProcess:
            break
        if children:
            return children[0].pid
        time.sleep(0.001)
    raise RuntimeError("unshare did not start PID 1")


def stop(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """SIGTERM the namespace's PID 1 (or the process itself), then SIGKILL if it lingers."""
    if proc.poll() is not None:
        return
    targets = [proc.pid]
    try:
        targets = [c.pid for c in psutil.Process(proc.pid).children()] + targets
    except psutil.NoSuchProcess:
        pass
    for pid in targets:
        try:
            os.kill(pid, 15)
        except ProcessLookupError:
            pass
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def check_unshare() -> None:
    """unshare --pid needs root (or user namespaces): fail early and clearly."""
    if shutil.which("unshare") is None:
        raise Unavailable("unshare not installed (util-linux)")
    done = subprocess.run(UNSHARE + ["true"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if done.returncode != 0:
        raise Unavailable(f"unshare --pid failed: {done.stderr.decode().strip()} (needs root)")


def cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def cpu_so_far_ns(pid: int) -> int:
    """CPU `pid` has used so far, with its children already waited for, in ns: the larger of
    /proc/PID/stat's utime+stime (clock ticks, truncated: up to 2 ticks short) and the sum of
    its threads' run times in /proc/PID/task/*/schedstat (ns, but without threads that have
    ended), each plus cutime+cstime. Both are lower bounds; with no ended thread the second
    is exact. os.wait4's rusage at exit counts the same (self plus waited-for children)."""
    tick = 1e9 / os.sysconf("SC_CLK_TCK")
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()  # fields 3.. of "PID (comm) STATE ..."
    utime, stime, cutime, cstime = (int(v) for v in fields[11:15])
    children = int((cutime + cstime) * tick)
    threads = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                threads += int(f.read().split()[0])
        except (OSError, IndexError, ValueError):
            pass  # the thread ended meanwhile
    return max(int((utime + stime) * tick), threads) + children


def rusage_ns(usage: "resource.struct_rusage") -> int:
    return int((usage.ru_utime + usage.ru_stime) * 1e9)


def rss_mb(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / 2**20


# -- Consul (the double) ------------------------------------------------------------------------------
class ConsulReader:
    """A keep-alive HTTP client for GETs against the agent."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.conn = http.client.HTTPConnection(host, port, timeout=60)

    def get(self, path: str) -> tuple[int, dict[str, str], object]:
        for attempt in (1, 2):
            try:
                self.conn.request("GET", path)
                resp = self.conn.getresponse()
                body = resp.read()
                headers = {k.lower(): v for k, v in resp.getheaders()}
                return resp.status, headers, json.loads(body) if body else None
            except (http.client.HTTPException, OSError):
                self.conn.close()
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.conn.close()


class PassingWatcher:
    """Follows `GET /v1/health/service/NAME?passing` with blocking queries and records
    (time.monotonic_ns() when the answer arrived, number of passing instances) per answer.

    A blocking query returns as soon as the agent's index moves, so an answer's arrival time is
    the change plus one response's latency: an upper bound on when the change happened."""

    def __init__(self, host: str, port: int, name: str) -> None:
        self.reader = ConsulReader(host, port)
        self.name = name
        self.events: list[tuple[int, int]] = []
        self.changed = threading.Condition()
        self.stopping = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        index = 0
        while not self.stopping:
            query = f"/v1/health/service/{self.name}?passing"
            if index:
                query += f"&index={index}&wait=2s"
            try:
                status, headers, body = self.reader.get(query)
            except OSError:
                time.sleep(0.01)
                continue
            arrived = time.monotonic_ns()
            count = len(body) if status == 200 and isinstance(body, list) else -1
            with self.changed:
                self.events.append((arrived, count))
                self.changed.notify_all()
            new_index = int(headers.get("x-consul-index", "0") or 0)
            index = new_index if new_index >= index else 0

    def wait_for(self, predicate: Callable[[int], bool], after_ns: int, timeout: float) -> Optional[int]:
        """The arrival time of the first answer after `after_ns` whose count satisfies `predicate`."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                for arrived, count in self.events:
                    if arrived >= after_ns and predicate(count):
                        return arrived
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.changed.wait(left)

    def close(self) -> None:
        self.stopping = True
        self.reader.close()


class ListedWatcher:
    """When each of `service_ids` left ?passing (its entry gone, or its TTL check
    `service:ID` not passing), read from the double's state in this process. Not over HTTP:
    a double told to delay its answers delays its readers too. Times are time.monotonic_ns()
    just after the change, upper bounds: a deregistration is stamped by the request's own
    thread as the double's state.deregister returns (wrapped on this instance until close()),
    anything else (a TTL expiring) by a thread woken at every change the state announces,
    which may be a few ms late on a loaded machine."""

    def __init__(self, state: object, service_ids: Sequence[str]) -> None:
        self.state = state
        self.remaining = set(service_ids)
        self.gone: dict[str, int] = {}
        self.stopping = False
        self._deregister = state.deregister  # type: ignore[attr-defined]
        state.deregister = self._stamped_deregister  # type: ignore[attr-defined]
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _stamped_deregister(self, sid: str) -> bool:
        with self.state.lock:  # type: ignore[attr-defined]
            removed = self._deregister(sid)
            if sid in self.remaining and not self.listed(self.state, sid):
                self.gone[sid] = time.monotonic_ns()
                self.remaining.discard(sid)
            return removed

    @staticmethod
    def listed(state: object, sid: str) -> bool:
        """In ?passing: registered, its TTL check passing, not in maintenance (lock held)."""
        checks = state.checks  # type: ignore[attr-defined]
        check = checks.get(f"service:{sid}")
        return (sid in state.services and check is not None  # type: ignore[attr-defined]
                and check.status == "passing" and f"_service_maintenance:{sid}" not in checks)

    @staticmethod
    def count(state: object, service_ids: Sequence[str], where: str = "passing") -> int:
        """How many are in ?passing ("passing") or in the agent's services ("services")."""
        with state.lock:  # type: ignore[attr-defined]
            if where == "services":
                return sum(1 for sid in service_ids if sid in state.services)  # type: ignore[attr-defined]
            return sum(1 for sid in service_ids if ListedWatcher.listed(state, sid))

    def _run(self) -> None:
        changed = self.state.changed  # type: ignore[attr-defined]
        with changed:
            while not self.stopping and self.remaining:
                now = time.monotonic_ns()
                for sid in [s for s in self.remaining if not self.listed(self.state, s)]:
                    self.gone[sid] = now
                    self.remaining.discard(sid)
                changed.wait(0.05)

    def wait_all_gone(self, timeout: float) -> bool:
        self.thread.join(timeout)
        return not self.remaining

    def close(self) -> None:
        self.stopping = True
        self.thread.join(1)
        vars(self.state).pop("deregister", None)  # the class's method again


DOUBLE_NOTES: list[str] = []  # what the bench changed about the double, for the report


def start_double() -> object:
    """The in-process Consul agent double (tests/consul_double), or Unavailable.

    If the double's HTTP handler leaves Nagle's algorithm on, turn it off (the standard library's
    StreamRequestHandler.disable_nagle_algorithm, as Consul's Go server does by default): the
    handler writes headers and body separately, so every response otherwise stalls ~40 ms on
    the client's delayed ACK, which would swamp every latency measured against it."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    try:
        from tests.consul_double import start  # type: ignore[import-not-found]
        from tests.consul_double import http as double_http  # type: ignore[import-not-found]
    except ImportError as err:
        raise Unavailable(f"Consul double not importable yet ({err})") from None
    handler = getattr(double_http, "DoubleRequestHandler", None)
    if handler is not None and not handler.disable_nagle_algorithm:
        handler.disable_nagle_algorithm = True
        DOUBLE_NOTES.append("the bench set TCP_NODELAY on the double's connections (its own "
                            "default stalls every response ~40 ms on delayed ACKs)")
    return start()


def is_heartbeat(record: object) -> bool:
    """A TTL heartbeat as the double logged it: PUT /v1/agent/check/{pass,warn,fail,update}/ID."""
    path = getattr(record, "path", "")
    return getattr(record, "method", "") == "PUT" and path.startswith(
        ("/v1/agent/check/pass/", "/v1/agent/check/update/", "/v1/agent/check/warn/",
         "/v1/agent/check/fail/"))
