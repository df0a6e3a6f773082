"""Helpers for running svcwrap in tests: as a real PID 1 or as a subreaper."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import psutil
import pytest

from tests.consul_fixture import wait_until

REPO = Path(__file__).resolve().parent.parent
PROGRAMS = Path(__file__).resolve().parent / "programs"
# The svcwrap under test: this checkout run by the tests' Python, or the executable that
# SVCWRAP_TEST_EXECUTABLE names (e.g. /opt/svcwrap/bin/svcwrap, the self-contained tree of
# issue 12, extracted from docker/svcwrap-dist/out/svcwrap-dist.tar.gz).
SVCWRAP = ([os.environ["SVCWRAP_TEST_EXECUTABLE"]] if os.environ.get("SVCWRAP_TEST_EXECUTABLE")
           else [sys.executable, "-m", "svcwrap"])
PID1 = ["unshare", "--pid", "--fork", "--mount-proc"]


def assert_stays_false(predicate, seconds: float, message: str) -> None:
    """Absence can only be shown over a window: check it throughout one."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert not predicate(), message
        time.sleep(0.02)


def can_be_pid1() -> bool:
    return os.geteuid() == 0 and shutil.which("unshare") is not None


def program(name: str, *args: object) -> list[str]:
    return [sys.executable, str(PROGRAMS / name), *map(str, args)]


class Wrapped:
    """svcwrap running under test; .pid is svcwrap's own PID as seen from here.

    As PID 1, svcwrap is the one child that `unshare --fork` starts, and
    unshare exits with svcwrap's status: waiting on unshare is waiting on
    svcwrap. Its PID is looked up only when a test needs it, so a svcwrap
    that has already exited is never waited for (issue 14)."""

    def __init__(self, args: list[str], *, pid1: bool, **popen: object) -> None:
        self.pid1 = pid1
        popen.setdefault("stderr", subprocess.PIPE)
        popen.setdefault("cwd", str(REPO))
        env = popen.get("env") or os.environ
        asks = any(a == "--control" or a.startswith("--control=") for a in args)
        if not asks and "SVCWRAP_CONTROL" not in env:  # type: ignore[operator]
            # No control socket unless the test asks for one: as PID 1 svcwrap
            # would bind /run/svcwrap/control.sock, which all pid1 tests on
            # this host share (issue 10). A flag, not SVCWRAP_CONTROL: the
            # child must get exactly the environment the test gave.
            args = ["--control", "off", *args]
        self.args = args
        self.proc = subprocess.Popen((PID1 if pid1 else []) + SVCWRAP + args, **popen)
        self._pid: int | None = None if pid1 else self.proc.pid
        self._stderr = ""
        self._done = False

    @property
    def pid(self) -> int:
        if self._pid is None:
            found = wait_until(self._unshare_child, message="svcwrap inside unshare")
            if found < 0:  # as os.kill() says of a process that is gone
                raise ProcessLookupError(f"svcwrap has already exited ({self.proc.returncode})")
            self._pid = found
        return self._pid

    def _unshare_child(self) -> int:
        """svcwrap's PID (unshare's child; before its exec it has unshare's
        command line, which names svcwrap too), or -1 once unshare is gone."""
        try:
            for child in psutil.Process(self.proc.pid).children():
                if "svcwrap" in " ".join(child.cmdline()):
                    return child.pid
        except psutil.Error:
            pass
        return -1 if self.proc.poll() is not None else 0

    def kill(self, signo: int) -> None:
        os.kill(self.pid, signo)

    def wait(self, timeout: float = 10.0) -> int:
        """svcwrap's exit status; on timeout svcwrap (not only unshare) is killed,
        and the failure says what state it was in and what it had logged."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            try:
                state = psutil.Process(self.pid).status()
            except (psutil.Error, ProcessLookupError):
                state = "gone"
            logged = self.stderr_so_far()
            self.close()
            raise AssertionError(f"svcwrap still running after {timeout:g}s (state: {state}); "
                                 f"it logged:\n{logged}") from None

    def stderr_so_far(self) -> str:
        """What svcwrap has logged until now, without waiting for it to exit."""
        if self.proc.stderr is not None and self.proc.poll() is None:
            os.set_blocking(self.proc.stderr.fileno(), False)
            chunk = self.proc.stderr.read()
            self._stderr += chunk.decode() if chunk else ""
            return self._stderr
        return self.stderr

    @property
    def stderr(self) -> str:
        if self.proc.stderr is not None and self.proc.poll() is not None and not self._done:
            os.set_blocking(self.proc.stderr.fileno(), True)
            self._stderr += self.proc.stderr.read().decode()
            self._done = True
        return self._stderr

    def children(self) -> list[psutil.Process]:
        try:
            return psutil.Process(self.pid).children()
        except (psutil.Error, ProcessLookupError):
            return []

    def close(self) -> None:
        """SIGKILL svcwrap and anything it started. As PID 1 that ends its
        whole namespace; killing unshare alone would leave svcwrap running."""
        if self.proc.poll() is None:
            pid = self._pid
            if pid is None:
                pid = wait_until(self._unshare_child, message="svcwrap inside unshare")
            if not self.pid1:  # as PID 1, killing svcwrap ends its whole namespace
                try:
                    descendants = psutil.Process(pid).children(recursive=True)
                except psutil.Error:
                    descendants = []
                for proc in descendants:
                    try:
                        proc.kill()
                    except psutil.Error:
                        pass
            try:
                if pid > 0:
                    os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:  # unshare reaps svcwrap and exits (killed with it, it would leave a zombie)
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


CGROUPS = Path("/sys/fs/cgroup")


@contextmanager
def frozen(pid: int) -> Iterator[None]:
    """Keep process pid from running (the cgroup freezer) while the body
    sends it signals: they all pend, and it finds them together once thawed.
    SIGSTOP cannot do this for svcwrap: the SIGCONT that resumes it would be
    forwarded to the child like any other signal. Skips where no freezer
    can be used (cgroup v2 cgroup.freeze, or the v1 freezer controller)."""
    v2 = (CGROUPS / "cgroup.controllers").exists()
    parent = CGROUPS if v2 else CGROUPS / "freezer"
    group = parent / f"svcwrap-test-{os.getpid()}-{pid}"
    try:
        group.mkdir()
        (group / "cgroup.procs").write_text(str(pid))
    except OSError as err:
        if group.exists():
            group.rmdir()
        pytest.skip(f"no cgroup freezer to use here: {err}")
    knob, freeze, thaw = ("cgroup.freeze", "1", "0") if v2 else ("freezer.state", "FROZEN", "THAWED")

    def is_frozen() -> bool:
        if v2:
            return "frozen 1" in (group / "cgroup.events").read_text()
        return (group / knob).read_text().strip() == "FROZEN"

    try:
        (group / knob).write_text(freeze)
        wait_until(is_frozen, message=f"process {pid} frozen")
        yield
    finally:
        (group / knob).write_text(thaw)
        try:
            (parent / "cgroup.procs").write_text(str(pid))
        except OSError:
            pass  # already gone
        wait_until(lambda: not (group / "cgroup.procs").read_text().strip(),
                   message="test cgroup empty")
        group.rmdir()


def pending_signals(pid: int) -> set[int]:
    """Process-directed signals pending for pid (ShdPnd in /proc/PID/status)."""
    with open(f"/proc/{pid}/status") as f:
        mask = int(next(line for line in f if line.startswith("ShdPnd:")).split()[1], 16)
    return {n for n in range(1, 65) if mask & (1 << (n - 1))}


def relay(a: socket.socket, b: socket.socket) -> None:
    """Copy bytes both ways between two connected sockets until both sides
    have finished (each end passed on as a half-close), then close both."""
    def pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while chunk := src.recv(65536):
                dst.sendall(chunk)
        except OSError:
            pass
        finally:
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    other = threading.Thread(target=pump, args=(b, a), daemon=True)
    other.start()
    pump(a, b)
    other.join(10)
    for sock in (a, b):
        sock.close()


class HeldProxy:
    """A TCP proxy to host:port that holds what its first client sends until
    release(): a test can then act while it knows a request is on its way
    (.holding). Later connections pass at once; .answered_later is set once
    one of them has had an answer (e.g. a deregistration sent meanwhile)."""

    def __init__(self, host: str, port: int) -> None:
        self.upstream = (host, port)
        self.server = socket.create_server(("127.0.0.1", 0))
        self.addr = "127.0.0.1:%d" % self.server.getsockname()[1]
        self.holding = threading.Event()
        self.released = threading.Event()
        self.answered_later = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        first = True
        while True:
            try:
                client, _ = self.server.accept()
                agent = socket.create_connection(self.upstream, timeout=10)
            except OSError:
                return
            answered = None if first else self.answered_later
            for src, dst, held, seen in ((client, agent, first, None),
                                         (agent, client, False, answered)):
                threading.Thread(target=self._pump, args=(src, dst, held, seen), daemon=True).start()
            first = False

    def _pump(self, src: socket.socket, dst: socket.socket, held: bool,
              seen: threading.Event | None) -> None:
        try:
            while data := src.recv(65536):
                if held:
                    self.holding.set()
                    self.released.wait()
                dst.sendall(data)
                if seen is not None:
                    seen.set()
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                sock.close()

    def release(self) -> None:
        self.released.set()

    def close(self) -> None:
        self.released.set()
        self.server.close()


def skip_unless_pid1() -> None:
    if not can_be_pid1():
        pytest.skip("a real PID 1 needs root and unshare(1)")


class _Ports:
    """Ports for the processes a test starts (its service, a probe's target).

    Not bind(0)'s: a port it gives back is free for anyone, and on a loaded
    run another worker's bind(0) (a double, a test server) took one before
    the test's own child could bind it; the child failed to start and the
    test timed out waiting for it. These come from a block of 1,000 ports per
    pytest-xdist worker, below the kernel's ephemeral range (32768-60999),
    handed out in turn, each checked free when handed out."""

    def __init__(self) -> None:
        import os
        import random

        worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
        index = int(worker[2:]) if worker[2:].isdigit() else 0
        self.base = 20000 + (index % 12) * 1000
        self.next = random.randrange(1000)

    def take(self) -> int:
        for _ in range(1000):
            port = self.base + self.next
            self.next = (self.next + 1) % 1000
            if bindable(port):
                return port
        raise RuntimeError(f"no free port in {self.base}-{self.base + 999}")


def bindable(port: int) -> bool:
    """Nothing holds 127.0.0.1:port now (a listener, or a connection in TIME_WAIT)."""
    import socket

    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


_PORTS = _Ports()


def free_port() -> int:
    """A port nobody listens on, that no other test will be given meanwhile."""
    return _PORTS.take()
