"""Helpers for the Docker tests (tests/test_docker.py, tests/test_dist.py): the docker CLI,
the redis-with-wrapper:local and svcwrap-dist:local images, containers, raw redis PING and a pty driver.

Everything talks to 127.0.0.1 only: containers run with --network host.
"""
from __future__ import annotations

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
#: the self-contained /opt/svcwrap (docker/svcwrap-dist), as an image and a tarball
DIST_IMAGE = os.environ.get("SVCWRAP_TEST_DIST_IMAGE", "svcwrap-dist:local")
DIST_BUILD_SCRIPT = REPO / "docker" / "svcwrap-dist" / "build-local.sh"
DIST_TARBALL = REPO / "docker" / "svcwrap-dist" / "out" / "svcwrap-dist.tar.gz"
#: the tree's interpreter: the only Python in images built on the tree
TREE_PYTHON = "/opt/svcwrap/bin/python3.11"
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


def input_hash(which: str = "REDIS_INPUTS") -> str:
    """The hash the build scripts label their image with: docker/inputs.sh's
    svcwrap_input_hash over the svcwrap sources and the files in array `which`
    (REDIS_INPUTS or DIST_INPUTS). Computed by that same shell function, so the list
    of inputs lives in one place."""
    proc = subprocess.run(["bash", "-c", f'source docker/inputs.sh && svcwrap_input_hash "${{{which}[@]}}"'],
                          cwd=REPO, capture_output=True, text=True, check=True, timeout=30)
    return proc.stdout.strip()


def image_label(image: str, label: str) -> Optional[str]:
    """The image's label value; None if the image (or the label) is missing."""
    proc = docker("image", "inspect", "-f", "{{json .Config.Labels}}", image, check=False)
    if proc.returncode != 0:
        return None
    labels = json.loads(proc.stdout.strip() or "null") or {}
    return labels.get(label)


def _run_build(script: Path, env: Dict[str, str]) -> None:
    proc = subprocess.run(["bash", str(script)], stdin=subprocess.DEVNULL,
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise DockerError(f"{script} exited {proc.returncode}:\n{proc.stdout[-3000:]}"
                          f"\n{proc.stderr[-3000:]}")


def ensure_image(image: str = IMAGE, script: Path = BUILD_SCRIPT, inputs: str = "REDIS_INPUTS",
                 tag_variable: str = "IMAGE_TAG", also: Optional[Path] = None) -> str:
    """Build the image with its build-local.sh when it is missing or was built from other
    inputs (or SVCWRAP_TEST_REBUILD=1), or when the file `also` that the same build makes is
    missing. Returns a line saying what happened."""
    have = image_label(image, SOURCE_LABEL)
    if (have == input_hash(inputs) and os.environ.get("SVCWRAP_TEST_REBUILD") != "1"
            and (also is None or also.is_file())):
        return f"{image} is up to date with its inputs"
    started = time.monotonic()
    _run_build(script, {tag_variable: image})
    return f"built {image} in {time.monotonic() - started:.1f}s ({'missing' if have is None else 'stale'})"


def ensure_dist() -> str:
    """svcwrap-dist:local and its tarball, rebuilt when svcwrap or the build changed. The
    image alone is not enough: an engine that kept the image from an earlier checkout has
    it up to date while this checkout has no tarball (CI once failed so, 37 test_dist errors)."""
    return ensure_image(DIST_IMAGE, DIST_BUILD_SCRIPT, "DIST_INPUTS", "DIST_TAG", also=DIST_TARBALL)


def ensure_base(suite: str, tag: str, packages: str = "") -> None:
    """A debootstrap base image (docker/base-image.sh: rebuilt only when its inputs change)."""
    script = REPO / "docker" / "base-image.sh"
    proc = subprocess.run(["bash", str(script), suite, tag, packages], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise DockerError(f"{script} {suite} {tag} exited {proc.returncode}:\n{proc.stdout[-3000:]}"
                          f"\n{proc.stderr[-3000:]}")


def build_image(tag: str, dockerfile: str, context: Path) -> None:
    """docker build (the legacy builder: no buildx, no network) of `dockerfile` in `context`."""
    (context / "Dockerfile").write_text(dockerfile)
    proc = subprocess.run(["docker", "build", "-q", "-t", tag, str(context)], stdin=subprocess.DEVNULL,
                          env={**os.environ, "DOCKER_BUILDKIT": "0"}, capture_output=True, text=True,
                          timeout=300)
    if proc.returncode != 0:
        raise DockerError(f"docker build -t {tag} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")


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

    def exec(self, *command: str) -> str:
        """`docker exec` in the running container; its stdout."""
        return docker("exec", self.id, *command).stdout

    def output(self) -> str:
        """What the container wrote to stdout (svcwrap logs to stderr)."""
        return docker("logs", self.id).stdout

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




# A child for the stop-order tests: listens on SVCWRAP_PORT and, on SIGTERM, asks Consul
# whether service argv[1] instance SVCWRAP_ID is still listed as passing, prints the answer
# and exits 0. Run with the tree's own interpreter (TREE_PYTHON -I -c TERM_REPORTER NAME):
# the images have no other Python.
TERM_REPORTER = r"""
import http.client, json, os, signal, socket, sys
name, sid, port = sys.argv[1], os.environ["SVCWRAP_ID"], int(os.environ["SVCWRAP_PORT"])
headers = {"X-Consul-Token": os.environ["CONSUL_HTTP_TOKEN"]} if os.environ.get("CONSUL_HTTP_TOKEN") else {}
agent = http.client.HTTPConnection(os.environ["CONSUL_HTTP_ADDR"], timeout=10)
def listed():
    agent.request("GET", "/v1/health/service/%s?passing" % name, headers=headers)
    return sid in [e["Service"]["ID"] for e in json.load(agent.getresponse())]
listed()  # connect now: the answer at SIGTERM must not wait for a new connection
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", port))
server.listen(16)
def on_term(signo, frame):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    print("at SIGTERM listed=%s" % listed(), flush=True)
    sys.exit(0)
signal.signal(signal.SIGTERM, on_term)
while True:
    server.accept()[0].close()
"""
