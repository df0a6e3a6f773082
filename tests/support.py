"""Helpers for running svcwrap in tests: as a real PID 1 or as a subreaper."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

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
    """svcwrap running under test; .pid is svcwrap's own PID as seen from here."""

    def __init__(self, args: list[str], *, pid1: bool, **popen: object) -> None:
        self.pid1 = pid1
        popen.setdefault("stderr", subprocess.PIPE)
        popen.setdefault("cwd", str(REPO))
        self.proc = subprocess.Popen((PID1 if pid1 else []) + SVCWRAP + args, **popen)
        self.pid = self.proc.pid
        if pid1:  # svcwrap is the (only) child that unshare forks
            self.pid = wait_until(self._unshare_child, message="svcwrap inside unshare")
        self._stderr = ""
        self._done = False

    def _unshare_child(self) -> int:
        try:
            for child in psutil.Process(self.proc.pid).children():
                if "svcwrap" in " ".join(child.cmdline()):
                    return child.pid
        except psutil.Error:
            pass
        return 0

    def kill(self, signo: int) -> None:
        os.kill(self.pid, signo)

    def wait(self, timeout: float = 10.0) -> int:
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise
        return code

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
        except psutil.Error:
            return []

    def close(self) -> None:
        """SIGKILL svcwrap (as PID 1 that ends its whole namespace; killing
        unshare alone would leave svcwrap running) and anything it started."""
        if self.proc.poll() is None:
            if not self.pid1:  # as PID 1, killing svcwrap ends its whole namespace
                try:
                    descendants = psutil.Process(self.pid).children(recursive=True)
                except psutil.Error:
                    descendants = []
                for proc in descendants:
                    try:
                        proc.kill()
                    except psutil.Error:
                        pass
            for pid in (self.pid, self.proc.pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.proc.wait(10)


def skip_unless_pid1() -> None:
    if not can_be_pid1():
        pytest.skip("a real PID 1 needs root and unshare(1)")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
