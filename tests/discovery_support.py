"""Helpers for tests/test_discovery.py: the discovery example (examples/discovery/) as
containers — redis-with-wrapper, the app and the lb, each with svcwrap as PID 1, all on
--network host against the Consul under test — plus the figures the tests report.

Ports: the lb and the apps take ports in 18000-18999 (the range this suite keeps to);
redis too. Everything talks to 127.0.0.1 only.
"""
from __future__ import annotations

import os
import re
import subprocess
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Set, Tuple

from examples.discovery.app.app import COUNTER, redis_call
from examples.discovery.loadgen import LoadGenerator, Result, summary
from tests.consul_fixture import ConsulUnderTest, wait_until
from tests.docker_support import (
    DIST_IMAGE, IMAGE as REDIS_IMAGE, REPO, SOURCE_LABEL, TREE_PYTHON, Container, DockerError,
    docker, image_label, input_hash, parse_docker_time,
)
from tests.support import bindable

BUILD_SCRIPT = REPO / "examples" / "discovery" / "build.sh"
APP_IMAGE = os.environ.get("SVCWRAP_TEST_DISCOVERY_APP_IMAGE", "discovery-app:local")
LB_IMAGE = os.environ.get("SVCWRAP_TEST_DISCOVERY_LB_IMAGE", "discovery-lb:local")

TTL = 2.0                # SVCWRAP_TTL of every container here
LB_WAIT = (0.5, 2.0)     # the lb image's SVCWRAP_TEMPLATE_WAIT (MIN, MAX)
APP_DRAIN = 3.0          # the app image's SVCWRAP_DRAIN: > LB_WAIT MAX + nginx -t + reload
REDIS_DRAIN = 3.0        # given to redis here: > the app's template-wait MAX (2s) + its reload
START_TIMEOUT = 30.0     # docker run -> passing in Consul, on 2 busy cores
SERVER_OPTIONS_KEY = "discovery/lb/server-options"   # read by examples/discovery/lb/site.conf.j2
RATE = 200.0             # requests per second through the lb
PREFIX = "discovery-test-"   # of every service ID and container name started here


# ---------------------------------------------------------------- images
def build_hash() -> str:
    """What build.sh labels the app and lb images with (it computes it: one place)."""
    proc = subprocess.run(["bash", str(BUILD_SCRIPT), "--print-hash"], capture_output=True,
                          text=True, check=True, timeout=60)
    return proc.stdout.strip()


def ensure_images() -> str:
    """Build the redis, app and lb images with build.sh when one is missing or was built from
    other inputs (or SVCWRAP_TEST_REBUILD=1); then check that svcwrap's tree can render
    templates. Returns a line saying what happened."""
    want = build_hash()
    fresh = (image_label(APP_IMAGE, SOURCE_LABEL) == want
             and image_label(LB_IMAGE, SOURCE_LABEL) == want
             and image_label(REDIS_IMAGE, SOURCE_LABEL) == input_hash("REDIS_INPUTS")
             and os.environ.get("SVCWRAP_TEST_REBUILD") != "1")
    what = "the discovery images are up to date"
    if not fresh:
        started = time.monotonic()
        env = {**os.environ, "REDIS_TAG": REDIS_IMAGE, "DIST_TAG": DIST_IMAGE,
               "APP_TAG": APP_IMAGE, "LB_TAG": LB_IMAGE}
        proc = subprocess.run(["bash", str(BUILD_SCRIPT)], stdin=subprocess.DEVNULL, env=env,
                              capture_output=True, text=True, timeout=1200)
        if proc.returncode != 0:
            raise DockerError(f"{BUILD_SCRIPT} exited {proc.returncode}:\n{proc.stdout[-3000:]}"
                              f"\n{proc.stderr[-3000:]}")
        what = f"built the discovery images in {time.monotonic() - started:.0f}s"
    probe = docker("run", "--rm", "--network", "none", "--entrypoint", TREE_PYTHON, APP_IMAGE,
                   "-I", "-c", "import jinja2", check=False)
    if probe.returncode != 0:
        raise DockerError(f"svcwrap's tree in {APP_IMAGE} cannot render templates (jinja2 does not "
                          f"import: {probe.stderr.strip().splitlines()[-1:]}); it comes from "
                          f"docker/svcwrap-dist/requirements.txt")
    return what


# ---------------------------------------------------------------- small tools
class Ports:
    """Distinct free ports in 18100-18999, never handed out twice in a run."""

    def __init__(self, low: int = 18100, high: int = 18999) -> None:
        self.next = low
        self.high = high
        self.lock = threading.Lock()

    def take(self) -> int:
        with self.lock:
            while self.next <= self.high:
                port, self.next = self.next, self.next + 1
                if bindable(port):
                    return port
        raise RuntimeError("no free port left in 18100-18999")


def redis_count(port: int) -> int:
    """The app's counter on that redis (INCRBY 0: an integer reply, 0 when never counted)."""
    reply = redis_call(("127.0.0.1", port), b"INCRBY", COUNTER, b"0")
    assert reply.startswith(b":"), reply
    return int(reply[1:])


def timed_lines(container: Container) -> List[Tuple[float, str]]:
    """(time, line) of everything the container wrote, stdout and stderr, by Docker's clock."""
    proc = docker("logs", "-t", container.id, check=False)
    lines = []
    for line in (proc.stdout + proc.stderr).splitlines():
        stamp, _, text = line.partition(" ")
        try:
            lines.append((parse_docker_time(stamp), text))
        except ValueError:
            continue
    return sorted(lines)


def first_line_time(container: Container, pattern: str, after: float = 0.0) -> Optional[float]:
    for at, text in timed_lines(container):
        if at >= after and re.search(pattern, text):
            return at
    return None


# ---------------------------------------------------------------- the system
class Instance:
    """One container of the system: its service ID (also its name) and port."""

    def __init__(self, container: Container, sid: str, port: int, rundir: Optional[Path] = None) -> None:
        self.container = container
        self.sid = sid
        self.port = port
        self.rundir = rundir  # the lb's /run/discovery, bind-mounted from the host

    def site(self) -> str:
        """The lb's rendered nginx site (upstreams and server)."""
        assert self.rundir is not None
        try:
            return (self.rundir / "site.conf").read_text()
        except FileNotFoundError:
            return ""

    def upstream_ids(self) -> Set[str]:
        """The app instances in the lb's rendered upstreams (each line names its ID)."""
        return set(re.findall(r"^\s*server \S+ .*;\s*# (\S+)$", self.site(), re.M))

    def log_time(self, pattern: str, after: float = 0.0) -> Optional[float]:
        return first_line_time(self.container, pattern, after)


class System:
    """The containers of one test module, against one Consul; remove_all() at the end."""

    def __init__(self, consul: ConsulUnderTest, tmp: Path) -> None:
        self.consul = consul
        self.tmp = tmp
        self.ports = Ports()
        self.run_id = uuid.uuid4().hex[:6]
        self.containers: List[Container] = []
        self.lock = threading.Lock()
        self.serial = 0

    def new_sid(self, role: str) -> str:
        with self.lock:
            self.serial += 1
            return f"{PREFIX}{self.run_id}-{role}-{self.serial:03d}"

    def environment(self, sid: str, port: int, extra: Dict[str, str]) -> Dict[str, str]:
        env = {
            "CONSUL_HTTP_ADDR": self.consul.addr,
            "SVCWRAP_ID": sid,
            "SVCWRAP_PORT": str(port),
            "SVCWRAP_TTL": f"{TTL:g}s",
            # the agent's own minimum: 1s on the fast double, 1m on a real agent
            "SVCWRAP_DEREGISTER_AFTER": f"{self.consul.dcsa_min:g}s",
            # with --network host, `auto` would advertise the host's address; keep to loopback
            "SVCWRAP_ADDRESS": "127.0.0.1",
        }
        if self.consul.token:
            env["CONSUL_HTTP_TOKEN"] = self.consul.token
        env.update(extra)
        return env

    def _run(self, image: str, role: str, env: Dict[str, str], docker_args: Optional[List[str]] = None,
             rundir: Optional[Path] = None, args: Optional[List[str]] = None) -> Instance:
        sid = self.new_sid(role)
        port = self.ports.take()
        container = Container.run(image, self.environment(sid, port, env), args=args,
                                  docker_args=docker_args, name=sid)
        with self.lock:
            self.containers.append(container)
        return Instance(container, sid, port, rundir)

    def run_redis(self, **env: str) -> Instance:
        env.setdefault("SVCWRAP_DRAIN", f"{REDIS_DRAIN:g}s")
        return self._run(REDIS_IMAGE, "redis", env)

    def run_app(self, **env: str) -> Instance:
        return self._run(APP_IMAGE, "app", env)

    def run_lb(self, **env: str) -> Instance:
        rundir = self.tmp / f"lb-{uuid.uuid4().hex[:8]}"
        rundir.mkdir(mode=0o755)
        return self._run(LB_IMAGE, "lb", env, docker_args=["-v", f"{rundir}:/run/discovery"],
                         rundir=rundir)

    def remove_all(self) -> None:
        for container in self.containers:
            container.remove()

    # -- Consul -----------------------------------------------------------------------
    def passing(self, name: str) -> List[str]:
        return self.consul.passing(name)

    def check(self, sid: str) -> Tuple[str, str]:
        """(Status, Output) of the service's check, ("", "") when it has none."""
        for c in self.consul.checks().values():
            if c.get("ServiceID") == sid:
                return c["Status"], c.get("Output", "")
        return "", ""

    def kv_put(self, key: str, value: str) -> None:
        status, _, body = self.consul.request("PUT", "/v1/kv/" + key, value.encode())
        assert status == 200, (status, body)

    def kv_delete(self, key: str) -> None:
        status, _, body = self.consul.request("DELETE", "/v1/kv/" + key)
        assert status == 200, (status, body)

    # -- waiting ---------------------------------------------------------------------
    def wait_upstreams(self, lb: Instance, ids: Set[str], timeout: float) -> float:
        """Until the lb's rendered upstreams are exactly `ids`; returns when (monotonic)."""
        try:
            wait_until(lambda: lb.upstream_ids() == ids, timeout, 0.02,
                       f"the lb's upstreams to be {sorted(ids)}")
        except AssertionError as err:
            raise AssertionError(f"{err}\nsite.conf:\n{lb.site()}\n{lb.container.describe()}") from None
        return time.monotonic()


def describe_failures(results: List[Result], limit: int = 10) -> str:
    failed = [r for r in results if not r.ok]
    return f"{len(failed)} failed: " + "; ".join(r.describe() for r in failed[:limit])


# ---------------------------------------------------------------- the report
class Report:
    """The table issue 13 asks for: one row per scenario, printed at the end of the module
    (and written to $SVCWRAP_TEST_DISCOVERY_REPORT when set, for bench/RESULTS.md)."""

    HEADER = ("| scenario | requests | failed | p50 ms | p99 ms | docker run → first served "
              "| docker stop → out of upstreams | notes |")

    def __init__(self) -> None:
        self.rows: List[str] = []

    def add(self, scenario: str, results: List[Result], run_to_served: Optional[float] = None,
            stop_to_out: Optional[float] = None, notes: str = "") -> None:
        s = summary(results)

        def seconds(value: Optional[float]) -> str:
            return "" if value is None else f"{value:.2f} s"

        self.rows.append(f"| {scenario} | {s['sent']} | {s['failed']} | {s['p50_ms']:.1f} "
                         f"| {s['p99_ms']:.1f} | {seconds(run_to_served)} | {seconds(stop_to_out)} "
                         f"| {notes} |")

    def lines(self) -> List[str]:
        return [self.HEADER, "|" + "---|" * 8, *self.rows]

    def write(self) -> None:
        path = os.environ.get("SVCWRAP_TEST_DISCOVERY_REPORT")
        if path and self.rows:
            Path(path).write_text("\n".join(self.lines()) + "\n")


def load(lb: Instance, duration: float, rate: float = RATE) -> LoadGenerator:
    """A steady load through the lb, bounded in time (stop() ends it sooner)."""
    return LoadGenerator("127.0.0.1", lb.port, rate=rate, duration=duration).start()


@contextmanager
def under_load(lb: Instance, duration: float = 60.0) -> Iterator[LoadGenerator]:
    """A steady load through the lb for the block (at most `duration`); its results are
    `generator.wait()` after the block."""
    generator = load(lb, duration)
    try:
        yield generator
    finally:
        generator.stop()
        generator.wait(timeout=30)

