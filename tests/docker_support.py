"""Helpers for the Docker tests (tests/test_docker.py): the docker CLI, the
redis-with-wrapper:local image, containers, raw redis PING and a pty driver.

Everything talks to 127.0.0.1 only: containers run with --network host.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Dict, List, Optional

from tests.consul_fixture import wait_until

REPO = Path(__file__).resolve().parent.parent
IMAGE = os.environ.get("SVCWRAP_TEST_IMAGE", "redis-with-wrapper:local")
BUILD_SCRIPT = REPO / "docker" / "redis-with-wrapper" / "build-local.sh"
#: label that build-local.sh puts on the image: a hash of the svcwrap sources it was built from
SOURCE_LABEL = "org.svcwrap.source-hash"
#: label on every container the tests start, to find leftovers: docker ps -a -f label=...
CONTAINER_LABEL = "org.svcwrap.test"

class DockerError(RuntimeError):
    pass


def docker(*args: str, timeout: float = 60.0, check: bool = True) -> subprocess.CompletedProcess:
    """Run the docker CLI; returns the CompletedProcess (text). Raises DockerError
    (with stderr) on a non-zero exit when check is true."""
    try:
        proc = subprocess.run(["docker", *args], stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=timeout)
    except subprocess.TimeoutExpired as err:
        raise DockerError(f"docker {' '.join(args)}: no answer within {timeout}s") from err
    if check and proc.returncode != 0:
        raise DockerError(f"docker {' '.join(args)} exited {proc.returncode}: "
                          f"{proc.stderr.strip() or proc.stdout.strip()}")
    return proc


def engine_problem() -> Optional[str]:
    """None when a Docker engine answers, else why not (a skip reason)."""
    if shutil.which("docker") is None:
        return "no docker CLI on PATH (run docker/engine.sh)"
    try:
        proc = docker("info", "--format", "{{.ServerVersion}}", timeout=20, check=False)
    except DockerError as err:
        return str(err)
    if proc.returncode != 0 or not proc.stdout.strip():
        return ("no Docker engine answers `docker info` (run docker/engine.sh): "
                + (proc.stderr.strip().splitlines() or ["?"])[-1])
    return None


def source_hash() -> str:
    """The same hash build-local.sh computes: sha256 over `sha256sum` lines of
    pyproject.toml, bin/svcwrap and svcwrap/**/*.py, sorted by path."""
    files = [REPO / "pyproject.toml", REPO / "bin" / "svcwrap", *(REPO / "svcwrap").rglob("*.py")]
    rel = sorted(str(p.relative_to(REPO)) for p in files if p.is_file())
    lines = "".join(f"{hashlib.sha256((REPO / r).read_bytes()).hexdigest()}  {r}\n" for r in rel)
    return hashlib.sha256(lines.encode()).hexdigest()


def image_label(image: str, label: str) -> Optional[str]:
    """The image's label value; None if the image (or the label) is missing."""
    proc = docker("image", "inspect", "-f", "{{json .Config.Labels}}", image, check=False)
    if proc.returncode != 0:
        return None
    labels = json.loads(proc.stdout.strip() or "null") or {}
    return labels.get(label)


def _python_for_wheels() -> Dict[str, str]:
    """The tests' own interpreter builds the wheelhouse when it matches the image's 3.11."""
    return {"PYTHON": sys.executable} if sys.version_info[:2] == (3, 11) else {}


def ensure_image(image: str = IMAGE) -> str:
    """Build the image with build-local.sh when it is missing or was built from other
    svcwrap sources (or SVCWRAP_TEST_REBUILD=1). Returns a line saying what happened."""
    wanted = source_hash()
    have = image_label(image, SOURCE_LABEL)
    if have == wanted and os.environ.get("SVCWRAP_TEST_REBUILD") != "1":
        return f"{image} is up to date with the svcwrap sources"
    started = time.monotonic()
    proc = subprocess.run(["bash", str(BUILD_SCRIPT)], stdin=subprocess.DEVNULL,
                          env={**os.environ, "IMAGE_TAG": image, **_python_for_wheels()},
                          capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise DockerError(f"{BUILD_SCRIPT} exited {proc.returncode}:\n{proc.stdout[-3000:]}"
                          f"\n{proc.stderr[-3000:]}")
    return f"built {image} in {time.monotonic() - started:.1f}s ({'missing' if have is None else 'stale'})"


def redis_ping(host: str, port: int, timeout: float = 2.0) -> Optional[str]:
    """Send an inline PING; return redis' first reply line ('+PONG') or None if unreachable."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(b"PING\r\n")
            data = b""
            while not data.endswith(b"\r\n"):
                chunk = s.recv(64)
                if not chunk:
                    break
                data += chunk
            return data.decode(errors="replace").strip() or None
    except OSError:
        return None


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def parse_docker_time(text: str) -> float:
    """Docker's RFC 3339 timestamp with nanoseconds -> seconds since the epoch."""
    m = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?Z", text.strip())
    if not m:
        raise ValueError(f"unexpected docker timestamp {text!r}")
    whole = datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc)
    return whole.timestamp() + float("0." + (m.group(2) or "0"))


class Container:
    """A container started with `docker run -d`; always removed by remove()."""

    def __init__(self, cid: str, name: str) -> None:
        self.id = cid
        self.name = name
        self.removed = False

    @classmethod
    def run(cls, image: str = IMAGE, env: Optional[Dict[str, str]] = None,
            args: Optional[List[str]] = None, docker_args: Optional[List[str]] = None,
            name: Optional[str] = None) -> "Container":
        name = name or unique("svcwrap-test")
        cmd = ["run", "-d", "--network", "host", "--name", name, "--label", CONTAINER_LABEL + "=1"]
        for key, value in (env or {}).items():
            cmd += ["-e", f"{key}={value}"]
        cmd += [*(docker_args or []), image, *(args or [])]
        proc = docker(*cmd, timeout=60)
        return cls(proc.stdout.strip(), name)

    def inspect(self, fmt: str) -> str:
        return docker("inspect", "-f", fmt, self.id).stdout.strip()

    def running(self) -> bool:
        return self.inspect("{{.State.Running}}") == "true"

    def exit_code(self) -> int:
        return int(self.inspect("{{.State.ExitCode}}"))

    def started_at(self) -> str:
        return self.inspect("{{.State.StartedAt}}")

    def finished_at(self) -> float:
        return parse_docker_time(self.inspect("{{.State.FinishedAt}}"))

    def host_pid(self) -> int:
        return int(self.inspect("{{.State.Pid}}"))

    def logs(self) -> str:
        proc = docker("logs", self.id, check=False)
        return proc.stdout + proc.stderr

    def stop(self, timeout: int = 10) -> None:
        docker("stop", "-t", str(timeout), self.id, timeout=timeout + 60)

    def kill(self, sig: str = "KILL") -> None:
        docker("kill", "-s", sig, self.id)

    def restart(self, timeout: int = 10) -> None:
        docker("restart", "-t", str(timeout), self.id, timeout=timeout + 60)

    def wait_exited(self, timeout: float = 30.0) -> int:
        wait_until(lambda: not self.running(), timeout, 0.05, f"container {self.name} to exit")
        return self.exit_code()

    def processes(self) -> List[Dict[str, str]]:
        """`docker top` rows as dicts (host PIDs): keys PID, PPID, CMD ..."""
        lines = docker("top", self.id, "-o", "pid,ppid,args").stdout.splitlines()
        rows = []
        for line in lines[1:]:
            pid, ppid, cmd = line.split(None, 2)
            rows.append({"PID": pid, "PPID": ppid, "CMD": cmd})
        return rows

    def remove(self) -> None:
        if not self.removed:
            docker("rm", "-f", "-v", self.id, check=False, timeout=60)
            self.removed = True

    def describe(self) -> str:
        """For assertion messages: state and the last lines of the log."""
        try:
            state = self.inspect("{{json .State}}")
        except DockerError as err:
            state = str(err)
        return f"container {self.name} state={state}\n--- logs ---\n{self.logs()[-4000:]}"


