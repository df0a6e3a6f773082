"""svcwrap as PID 1 of a real container: the redis-with-wrapper:local image.

Run alone with `pytest -m docker` (CI runs docker/engine.sh first). The image
is built by docker/redis-with-wrapper/build-local.sh when it is missing or was
built from other svcwrap sources; the tests skip only when no Docker engine
answers. Containers use --network host and talk to 127.0.0.1 only: each runs
redis on its own free port and registers in the Consul agent of the `consul`
fixture (the in-repo double with fast reaping, or SVCWRAP_TEST_CONSUL_ADDR).
"""
from __future__ import annotations

import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Dict, Iterator, List, Optional

import pytest

from tests.consul_fixture import ConsulUnderTest, wait_until  # `consul` comes from conftest.py
from tests.docker_support import (
    IMAGE, TERM_REPORTER, TREE_PYTHON, Container, DockerError, engine_problem, ensure_image,
    redis_ping, unique,
)
from tests.support import free_port
from tests.terminal import PtySession

pytestmark = pytest.mark.docker

TTL = 2.0                 # SVCWRAP_TTL of every container here
PREFIX = "svcwrap-test-"  # of every service ID (and container name) started here
START_TIMEOUT = 30.0      # docker run -> passing in Consul (python start-up on 2 busy cores)


# ---------------------------------------------------------------- fixtures
@pytest.fixture(scope="session")
def redis_image() -> str:
    problem = engine_problem()
    if problem:
        pytest.skip(problem)
    try:
        ensure_image(IMAGE)
    except DockerError as err:
        pytest.fail(f"cannot build {IMAGE}: {err}", pytrace=False)
    return IMAGE


class Redis:
    """One redis-with-wrapper container registered as service `redis` under `sid`."""

    def __init__(self, container: Container, sid: str, port: int) -> None:
        self.container = container
        self.sid = sid
        self.port = port


RunRedis = Callable[..., Redis]


@pytest.fixture
def run_redis(redis_image: str, consul: ConsulUnderTest) -> Iterator[RunRedis]:
    """Start redis-with-wrapper containers registered in `consul`; `docker rm -f -v` them all
    at teardown."""
    started: List[Container] = []
    lock = threading.Lock()

    def run(sid: Optional[str] = None, cmd: Optional[List[str]] = None, **env: str) -> Redis:
        sid = sid or unique(PREFIX + "redis")
        port = free_port()
        environ = {
            "CONSUL_HTTP_ADDR": consul.addr,
            "SVCWRAP_PORT": str(port),
            "SVCWRAP_ID": sid,
            "SVCWRAP_TTL": f"{TTL:g}s",
            # the agent's own minimum: 1s on the fast double, 1m on a real agent
            "SVCWRAP_DEREGISTER_AFTER": f"{consul.dcsa_min:g}s",
            # with --network host, `auto` would advertise the host's address; keep to loopback
            "SVCWRAP_ADDRESS": "127.0.0.1",
        }
        if consul.token:
            environ["CONSUL_HTTP_TOKEN"] = consul.token
        environ.update(env)
        container = Container.run(redis_image, environ, args=cmd, name=sid)
        with lock:
            started.append(container)
        return Redis(container, sid, port)

    try:
        yield run
    finally:
        for container in started:
            container.remove()


# ---------------------------------------------------------------- Consul look-ups
def ours(ids: Any) -> List[str]:
    """The service IDs these tests registered (a real agent may hold others)."""
    return [sid for sid in ids if sid.startswith(PREFIX)]


def health_entries(consul: ConsulUnderTest, passing: bool) -> List[Dict[str, Any]]:
    status, entries = consul.get("/v1/health/service/redis" + ("?passing" if passing else ""))
    assert status == 200, (status, entries)
    return entries


def wait_passing(consul: ConsulUnderTest, redis: Redis, timeout: float = START_TIMEOUT) -> None:
    try:
        wait_until(lambda: redis.sid in consul.passing("redis"), timeout, 0.05,
                   f"{redis.sid} to be passing in Consul")
    except AssertionError as err:
        raise AssertionError(f"{err}\n{redis.container.describe()}") from None


def check_statuses(consul: ConsulUnderTest, sid: str) -> List[str]:
    """Statuses of the service's checks as the agent sees them."""
    return [c["Status"] for c in consul.checks().values() if c.get("ServiceID") == sid]


def gone_from_passing(consul: ConsulUnderTest, sid: str) -> bool:
    return sid not in consul.passing("redis")


def find_through_consul(consul: ConsulUnderTest, sid: str) -> tuple:
    """(address, port) of instance `sid` as a client would find it: from ?passing, where
    an empty Service.Address means the node's address."""
    for entry in health_entries(consul, passing=True):
        if entry["Service"]["ID"] == sid:
            return entry["Service"]["Address"] or entry["Node"]["Address"], entry["Service"]["Port"]
    raise AssertionError(f"{sid} is not in /v1/health/service/redis?passing")


# ---------------------------------------------------------------- the tests
def test_the_image_runs_redis_as_the_direct_child_of_svcwrap_without_consul(redis_image: str) -> None:
    port = free_port()
    container = Container.run(redis_image, {"SVCWRAP_NO_REGISTER": "true",
                                            "SVCWRAP_PORT": str(port)})
    try:
        wait_until(lambda: redis_ping("127.0.0.1", port) == "+PONG", START_TIMEOUT, 0.05,
                   f"redis on port {port}")
        init = container.host_pid()
        rows = container.processes()
        assert "svcwrap" in next(r["CMD"] for r in rows if int(r["PID"]) == init), rows
        redis_rows = [r for r in rows if r["CMD"].startswith("redis-server")]
        assert len(redis_rows) == 1 and int(redis_rows[0]["PPID"]) == init, rows
        assert f":{port}" in redis_rows[0]["CMD"], rows  # one SVCWRAP_PORT set redis' port
        container.stop(10)
        assert container.exit_code() == 0, container.describe()
    finally:
        container.remove()


def test_docker_run_registers_redis_and_clients_find_it_through_consul(
        run_redis: RunRedis, consul: ConsulUnderTest) -> None:
    redis = run_redis()
    wait_passing(consul, redis)
    address, port = find_through_consul(consul, redis.sid)
    assert port == redis.port
    # the tests told svcwrap to advertise loopback; never dial anything else
    assert address == "127.0.0.1", address
    assert redis_ping(address, port) == "+PONG"
    assert check_statuses(consul, redis.sid) == ["passing"]


def test_docker_stop_leaves_consul_before_the_container_exits(
        run_redis: RunRedis, consul: ConsulUnderTest) -> None:
    # A drain opens a window that polling can see: svcwrap must leave Consul, keep redis
    # serving for the drain, and only then stop it. A wrapper that signalled first (redis
    # acts on SIGTERM within ~100 ms) or never deregistered cannot show a long window of
    # "gone from ?passing and still answering PING".
    drain = 2.0
    redis = run_redis(SVCWRAP_DRAIN=f"{drain:g}s")
    wait_passing(consul, redis)
    stopper = ThreadPoolExecutor(1)
    stop = stopper.submit(redis.container.stop, 10)
    samples = []  # (time, listed as passing, redis answered PING)
    try:
        deadline = time.monotonic() + 30
        while not stop.done() and time.monotonic() < deadline:
            listed = redis.sid in consul.passing("redis")
            samples.append((time.monotonic(), listed,
                            redis_ping("127.0.0.1", redis.port) == "+PONG"))
        stop.result(timeout=30)
    finally:
        stopper.shutdown()
    summary = [(round(t - samples[0][0], 3), listed, pong) for t, listed, pong in samples]
    gone = [i for i, (_, listed, _) in enumerate(samples) if not listed]
    assert gone, f"never saw it gone from ?passing before docker stop returned: {summary}"
    # once gone it never came back, and it was never advertised while not answering
    assert not any(listed for _, listed, _ in samples[gone[0]:]), summary
    assert not any(listed and not pong for _, listed, pong in samples), summary
    served = [t for t, _, pong in samples[gone[0]:] if pong]
    assert served and served[-1] - samples[gone[0]][0] >= drain / 2, \
        f"redis did not keep serving for the drain after leaving Consul: {summary}"
    assert redis.container.exit_code() == 0, redis.container.describe()
    assert redis.sid not in consul.services()
    if consul.double is not None:  # the deregistration reached the agent before the exit
        dereg = [r for r in consul.double.requests
                 if r.method == "PUT" and r.path == "/v1/agent/service/deregister/"
                 + urllib.parse.quote(redis.sid, safe="")]
        assert dereg, [(r.method, r.path) for r in consul.double.requests]
        wall = time.time() - time.monotonic()
        assert dereg[0].time + wall < redis.container.finished_at(), "deregistered after the exit"


def test_docker_stop_signals_the_child_only_after_it_left_consul(
        run_redis: RunRedis, consul: ConsulUnderTest) -> None:
    # No drain: the child itself looks at Consul the moment SIGTERM arrives.
    # The image has no Python of its own: the child runs on the tree's interpreter.
    redis = run_redis(cmd=[TREE_PYTHON, "-I", "-c", TERM_REPORTER, "redis"])
    wait_passing(consul, redis)
    redis.container.stop(10)
    assert redis.container.exit_code() == 0, redis.container.describe()
    logs = redis.container.logs()
    assert "at SIGTERM listed=False" in logs, logs


def test_docker_kill_turns_the_check_critical_within_the_ttl_and_consul_reaps_it(
        run_redis: RunRedis, consul: ConsulUnderTest) -> None:
    redis = run_redis()
    wait_passing(consul, redis)
    killed = time.monotonic()
    redis.container.kill("KILL")  # svcwrap itself gets SIGKILL: no chance to deregister
    wait_until(lambda: "critical" in check_statuses(consul, redis.sid),
               TTL + 1.0, 0.05, f"{redis.sid}'s check to turn critical within TTL + 1 s")
    critical = time.monotonic()
    assert critical - killed <= TTL + 1.0
    assert gone_from_passing(consul, redis.sid)
    assert redis.sid in consul.services(), "only the agent's reaper may remove it"
    reap_deadline = max(consul.dcsa_min, 1.0) + consul.reap_interval + 1.0
    wait_until(lambda: redis.sid not in consul.services(), reap_deadline, 0.05,
               f"the agent to reap {redis.sid} (DeregisterCriticalServiceAfter + reap interval)")
    assert redis.container.exit_code() == 137


def test_docker_restart_leaves_one_passing_instance_under_the_same_id(
        run_redis: RunRedis, consul: ConsulUnderTest) -> None:
    redis = run_redis()
    wait_passing(consul, redis)
    first_start = redis.container.started_at()
    if consul.double is not None:
        consul.double.clear_requests()
    redis.container.restart(5)
    assert redis.container.started_at() != first_start
    wait_passing(consul, redis)
    assert ours(e["Service"]["ID"] for e in health_entries(consul, passing=False)) == [redis.sid]
    assert ours(consul.passing("redis")) == [redis.sid]
    assert ours(consul.services()) == [redis.sid]
    assert check_statuses(consul, redis.sid) == ["passing"]
    address, port = find_through_consul(consul, redis.sid)
    assert redis_ping(address, port) == "+PONG"
    if consul.double is not None:  # it left on the stop, then came back on the start
        writes = [r.path for r in consul.double.requests if r.method == "PUT"
                  and ("/service/deregister/" in r.path or r.path == "/v1/agent/service/register")]
        assert writes[:1] == ["/v1/agent/service/deregister/" + redis.sid], writes
        assert "/v1/agent/service/register" in writes[1:], writes


def test_twenty_start_stop_cycles_of_three_containers_leave_no_stale_entry(
        run_redis: RunRedis, consul: ConsulUnderTest) -> None:
    cycles, workers = 20, 3
    prefix = unique(PREFIX + "cycle")
    problems: List[str] = []

    def worker(w: int) -> None:
        for c in range(cycles):
            redis = run_redis(f"{prefix}-{w}-{c}")
            wait_passing(consul, redis)
            redis.container.stop(5)
            code = redis.container.exit_code()
            # docker stop returns after the exit, so the deregistration must be done by now:
            # neither the TTL (2 s) nor the reaper could have removed it this fast
            if redis.sid in consul.services():
                problems.append(f"{redis.sid} still registered after docker stop")
            if code != 0:
                problems.append(f"{redis.sid} exited {code}:\n{redis.container.describe()}")
            redis.container.remove()

    with ThreadPoolExecutor(workers) as pool:
        for future in [pool.submit(worker, w) for w in range(workers)]:
            future.result()
    assert not problems, "\n".join(problems)
    assert ours(consul.passing("redis")) == []
    assert [sid for sid in consul.services() if sid.startswith(prefix)] == []
    assert [c for c in consul.checks().values() if c.get("ServiceID", "").startswith(prefix)] == []


def test_docker_run_it_gives_the_shell_a_terminal_that_takes_input_and_ctrl_c(
        redis_image: str) -> None:
    name = unique("svcwrap-tty")
    session = PtySession(["docker", "run", "-it", "--rm", "--network", "host", "--name", name,
                          "--entrypoint", "svcwrap", redis_image, "--no-register", "--", "sh"])
    prompt = rb"[$#] "
    try:
        at = session.expect(prompt, timeout=START_TIMEOUT)
        # What is typed echoes as hel''lo, caught-"in"t, rea""dy; only what the shell
        # prints reads hello, caught-int, ready.
        session.send(b"echo hel''lo\r")
        at = session.expect(rb"\bhello\r?\n", start=at)
        at = session.expect(prompt, start=at)
        session.send(b"trap 'echo caught-\"in\"t' INT\r")
        at = session.expect(prompt, start=at)
        # Ctrl-C at the prompt: the container's terminal sends SIGINT to the shell, which
        # runs the trap once it has read the next line (dash defers traps until then).
        session.send(b"\x03")
        at = session.expect(rb"\^C", start=at)
        session.send(b"\r")
        at = session.expect(rb"caught-int", start=at)
        # Ctrl-C interrupts a foreground program too; its trap is set before it says ready.
        session.send(b"sh -c 'trap \"exit 7\" INT; echo rea\"\"dy; while :; do sleep 0.05; done';"
                     b" echo status-$?\r")
        at = session.expect(rb"\bready\r?\n", start=at)
        session.send(b"\x03")
        at = session.expect(rb"status-(7|130)\b", start=at)
        session.send(b"exit 3\r")
        assert session.wait() == 3, session.output[-2000:]  # the shell's status, through svcwrap
    finally:
        session.close()
        Container(name, name).remove()
