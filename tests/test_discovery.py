"""The seed's whole system under load (issue 13): redis, two or more apps and an nginx lb,
each with svcwrap as PID 1, finding each other only through Consul — the apps' redis
address and the lb's upstreams are files svcwrap renders from Consul (issue 11).

One system per module (examples/discovery/: redis-with-wrapper, discovery-app,
discovery-lb; --network host; the Consul double, or SVCWRAP_TEST_CONSUL_ADDR), a steady
POST load of 200 requests/s through the lb (examples/discovery/loadgen.py), and one test
per scenario of the issue; each leaves the system as it found it (lb, redis, two apps).
The figures go into a table printed at the end (and written to
$SVCWRAP_TEST_DISCOVERY_REPORT). Run alone with `pytest -m docker tests/test_discovery.py`;
SVCWRAP_TEST_CHURN_CYCLES changes scenario 7's 30 cycles. The two tests at the end check the
app alone, on this machine's Python with a fake redis, and need no Docker.
"""
from __future__ import annotations

import http.client
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterator, List, Optional, Tuple

import pytest

from examples.discovery.loadgen import LoadGenerator, Result, summary
from tests.consul_fixture import (
    ConsulUnderTest, agent_under_test, wait_until,
)
from tests.discovery_support import (
    APP_DRAIN, LB_WAIT, PREFIX, SERVER_OPTIONS_KEY, START_TIMEOUT, TTL, Instance, Report, System,
    describe_failures, ensure_images, load, redis_count, under_load,
)
from tests.docker_support import REPO, DockerError, docker, engine_problem
from tests.support import free_port

RELOADED = r"\(SIGHUP\) received.*reconfiguring"   # nginx's line when svcwrap reloads it
SIGNALLED = r"^app: SIGTERM received"              # the app's line at its stop signal
AFTER_STOP = 200       # requests answered after a stop or kill before a load is ended
APP = REPO / "examples" / "discovery" / "app" / "app.py"


class Cluster:
    """The running system: the lb, the current redis and the two lasting apps."""

    def __init__(self, system: System, lb: Instance, redis: Instance, apps: List[Instance],
                 report: Report) -> None:
        self.system = system
        self.lb = lb
        self.redis = redis
        self.apps = apps
        self.report = report

    @property
    def app_ids(self) -> set:
        return {a.sid for a in self.apps}

    def restore(self) -> None:
        """Remove every other container a test started (one that failed half-way, too) and
        wait until the lb's upstreams are the lasting apps again."""
        keep = {self.lb.container.id, self.redis.container.id, *(a.container.id for a in self.apps)}
        for container in self.system.containers:
            if container.id not in keep:
                container.remove()
        if self.lb.container.running():
            self.system.wait_upstreams(self.lb, self.app_ids, TTL + LB_WAIT[1] + 5)


# ---------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def images() -> None:
    problem = engine_problem()
    if problem:
        pytest.skip(problem)
    try:
        ensure_images()
    except DockerError as err:
        pytest.fail(f"cannot build the discovery images: {err}", pytrace=False)


@pytest.fixture(scope="module")
def agent() -> Iterator[ConsulUnderTest]:
    """The `consul` fixture's agent, for a whole module: the double with fast reaping, or
    $SVCWRAP_TEST_CONSUL_ADDR (what appeared there is deregistered at the end)."""
    with agent_under_test() as cut:
        yield cut


@pytest.fixture(scope="module")
def system_up(images: None, agent: ConsulUnderTest, tmp_path_factory: pytest.TempPathFactory,
              request: pytest.FixtureRequest) -> Iterator[Cluster]:
    # leftovers of an interrupted run of this module (names are ours alone)
    stale = docker("ps", "-aq", "--filter", f"name=^{PREFIX}", check=False).stdout.split()
    if stale:
        docker("rm", "-f", "-v", *stale, check=False)
    system = System(agent, tmp_path_factory.mktemp("discovery"))
    report = Report()
    try:
        redis = system.run_redis()
        wait_started(system, "redis", redis)
        apps = [system.run_app() for _ in range(2)]
        for app in apps:
            wait_started(system, "app", app)
        lb = system.run_lb()
        wait_started(system, "lb", lb)
        system.wait_upstreams(lb, {a.sid for a in apps}, START_TIMEOUT)
        yield Cluster(system, lb, redis, apps, report)
    finally:
        system.remove_all()
        report.write()
        terminal = request.config.pluginmanager.getplugin("terminalreporter")
        if terminal is not None and report.rows:
            terminal.write_line("")
            terminal.write_line("discovery example under load (issue 13):")
            for line in report.lines():
                terminal.write_line(line)


@pytest.fixture
def cluster(system_up: Cluster) -> Iterator[Cluster]:
    """The module's system; each scenario starts from lb, redis and the two lasting apps,
    whatever the one before did."""
    yield system_up
    system_up.restore()


def wait_started(system: System, name: str, instance: Instance) -> float:
    """Until passing in Consul; fails at once, with the container's log, if it exited (an
    lb whose site.conf svcwrap never rendered: nginx cannot start without it)."""
    def up() -> bool:
        if instance.sid in system.passing(name):
            return True
        if not instance.container.running():
            raise AssertionError(f"{instance.sid} exited before it was passing in Consul")
        return False

    try:
        wait_until(up, START_TIMEOUT, 0.1, f"{instance.sid} to be passing in Consul as {name}")
    except AssertionError as err:
        raise AssertionError(f"{err}\n{instance.container.describe()}") from None
    return time.monotonic()


def served(generator: LoadGenerator, app: Instance) -> Result:
    return wait_until(lambda: generator.first_served_by(app.sid), START_TIMEOUT, 0.02,
                      f"a request served by {app.sid} through the lb")


def answered_more(generator: LoadGenerator, count: int = AFTER_STOP) -> None:
    target = generator.answered() + count
    wait_until(lambda: generator.answered() >= target, 30, 0.02, f"{count} more answers")


def stop_in_background(instance: Instance) -> Future:
    pool = ThreadPoolExecutor(1)
    future = pool.submit(instance.container.stop, 10)
    pool.shutdown(wait=False)
    return future


def while_stopping(stop: Future, poll) -> None:
    """Call poll() until the docker stop is done (it raises if the stop failed)."""
    while not stop.done():
        poll()
        time.sleep(0.01)
    stop.result()


def third_app(cluster: Cluster, generator: LoadGenerator) -> Instance:
    """One more app, started under load; returns once it has served a request."""
    app = cluster.system.run_app()
    wait_started(cluster.system, "app", app)
    served(generator, app)
    return app


# ---------------------------------------------------------------- the scenarios
@pytest.mark.docker
def test_up_every_request_through_the_lb_is_answered_by_both_apps_and_counted_by_redis(
        cluster: Cluster) -> None:
    before = redis_count(cluster.redis.port)
    results = load(cluster.lb, duration=3.0).wait(timeout=60)
    s = summary(results)
    assert s["sent"] >= 550 and s["failed"] == 0, describe_failures(results)
    assert set(s["by_instance"]) == cluster.app_ids, s["by_instance"]
    # every 200 is one INCR on the redis the apps found through Consul, and nothing else is
    assert redis_count(cluster.redis.port) - before == s["sent"]
    assert all(f"redis=127.0.0.1:{cluster.redis.port}" in r.body for r in results)
    cluster.report.add("1. up: lb, redis, 2 apps", results)


@pytest.mark.docker
def test_scale_out_a_third_app_gets_traffic_within_readiness_plus_quiescence_plus_1s_and_no_request_fails(
        cluster: Cluster) -> None:
    with under_load(cluster.lb) as generator:
        t_run = time.monotonic()
        app = cluster.system.run_app()
        t_ready = wait_started(cluster.system, "app", app)
        first = served(generator, app)
        answered_more(generator)
    results = generator.wait()
    readiness = t_ready - t_run
    bound = readiness + LB_WAIT[1] + 1.0
    assert first.done - t_run <= bound, \
        f"first served {first.done - t_run:.2f}s after docker run; readiness took {readiness:.2f}s"
    assert summary(results)["failed"] == 0, describe_failures(results)
    cluster.report.add("2. scale out: a 3rd app", results, run_to_served=first.done - t_run,
                       notes=f"readiness {readiness:.2f} s, bound {bound:.2f} s")


def scale_in(cluster: Cluster, lb: Instance, app: Instance, generator: LoadGenerator
             ) -> Tuple[float, float, float]:
    """docker stop `app` under load; (when it left ?passing, when lb's rendered upstreams
    dropped it, when docker stop returned), each in seconds from docker stop."""
    t_stop = time.monotonic()
    marks = {}

    def poll() -> None:
        now = time.monotonic()
        if "consul" not in marks and app.sid not in cluster.system.passing("app"):
            marks["consul"] = now
        if "upstreams" not in marks and app.sid not in lb.upstream_ids():
            marks["upstreams"] = now

    while_stopping(stop_in_background(app), poll)
    stopped = time.monotonic()
    poll()
    answered_more(generator)
    assert "consul" in marks, f"{app.sid} was still passing when docker stop returned"
    return marks["consul"] - t_stop, marks.get("upstreams", stopped) - t_stop, stopped - t_stop


@pytest.mark.docker
def test_scale_in_docker_stop_takes_the_app_out_of_nginx_before_it_is_signalled_and_no_request_fails(
        cluster: Cluster) -> None:
    lb = cluster.lb
    with under_load(lb) as generator:
        app = third_app(cluster, generator)
        wall_stop = time.time()
        left, out, stopped = scale_in(cluster, lb, app, generator)
    results = generator.wait()
    assert summary(results)["failed"] == 0, describe_failures(results)
    assert app.container.exit_code() == 0, app.container.describe()
    # the order the issue asks for: out of Consul, out of nginx (reloaded), then SIGTERM
    assert out < stopped, f"lb's upstreams still listed {app.sid} when docker stop returned"
    signalled = app.log_time(SIGNALLED)
    reloaded = lb.log_time(RELOADED, after=wall_stop)
    assert signalled is not None and reloaded is not None, (app.container.logs(), lb.container.logs())
    assert reloaded < signalled, \
        f"nginx reloaded {reloaded - signalled:+.3f}s after the app was signalled"
    assert signalled - wall_stop >= APP_DRAIN, "the app was signalled before its drain ended"
    assert "0 after the stop signal" in app.container.logs(), app.container.logs()
    assert left <= out <= left + LB_WAIT[1] + 1.0, (left, out)
    assert app.sid not in cluster.system.consul.services()
    cluster.report.add("3. scale in: docker stop an app", results, stop_to_out=out,
                       notes=f"out of Consul {left:.2f} s, nginx reloaded {reloaded - wall_stop:.2f} s, "
                             f"SIGTERM {signalled - wall_stop:.2f} s after docker stop")


@pytest.mark.docker
def test_docker_kill_fails_requests_only_while_nginx_lists_the_app_which_leaves_within_ttl_plus_quiescence_plus_1s(
        cluster: Cluster) -> None:
    lb = cluster.lb
    with under_load(lb) as generator:
        app = third_app(cluster, generator)
        t_kill = time.monotonic()
        app.container.kill("KILL")  # svcwrap too: nobody deregisters, the TTL must run out
        wait_until(lambda: cluster.system.check(app.sid)[0] in ("critical", ""), TTL + 1.0, 0.05,
                   f"{app.sid}'s check to turn critical within the TTL + 1 s")
        t_out = cluster.system.wait_upstreams(lb, cluster.app_ids, TTL + LB_WAIT[1] + 1.0)
        answered_more(generator)
    results = generator.wait()
    failed = [r for r in results if not r.ok]
    # a failure is a request that nginx sent to the killed app and could not retry elsewhere:
    # it was in flight at the kill, or sent while the upstreams still listed the app
    late = [r for r in failed if not (r.done >= t_kill - 0.05 and r.sent <= t_out + 1.0)]
    assert not late, describe_failures(late)
    cluster.report.add("4. kill: docker kill an app", results, stop_to_out=t_out - t_kill,
                       notes=f"{len(failed)} failed (goal 0); out of upstreams after TTL {TTL:g} s")


@pytest.mark.docker
def test_redis_moves_the_apps_follow_and_reload_and_requests_keep_succeeding(cluster: Cluster) -> None:
    system, old = cluster.system, cluster.redis
    new = system.run_redis()  # its ID sorts after the old one's: the apps keep the old one for now
    wait_started(system, "redis", new)
    moved = f"redis=127.0.0.1:{new.port}"
    with under_load(cluster.lb) as generator:
        stop = stop_in_background(old)
        cluster.redis = new
        firsts = {}

        def poll() -> None:
            for app in cluster.apps:
                if app.sid not in firsts:
                    hits = [r for r in list(generator.results)
                            if r.ok and r.instance == app.sid and moved in r.body]
                    if hits:
                        firsts[app.sid] = min(r.done for r in hits)

        while_stopping(stop, poll)
        wait_until(lambda: poll() or len(firsts) == len(cluster.apps), 10, 0.05,
                   "every app to serve from the new redis")
        answered_more(generator)
    results = generator.wait()
    for app in cluster.apps:  # each app re-read its rendered file on svcwrap's SIGHUP
        assert app.log_time(rf"^app: redis is now 127\.0\.0\.1:{new.port}$") is not None, \
            app.container.logs()
    switched = max(firsts.values())
    after = [r for r in results if r.sent > switched]
    assert after and all(r.ok and moved in r.body for r in after), describe_failures(after)
    failed = [r for r in results if not r.ok]
    cluster.report.add("5. redis moves: a 2nd redis, stop the 1st", results,
                       notes=f"{len(failed)} failed (0 after the apps' reload)")
    assert not failed, describe_failures(failed)


@pytest.mark.docker
def test_a_change_nginx_rejects_is_rolled_back_lb_keeps_serving_and_its_check_warns_until_fixed(
        cluster: Cluster) -> None:
    system, lb = cluster.system, cluster.lb
    good = lb.site()
    assert "max_fails=1 fail_timeout=2s" in good, good

    def warning() -> Optional[Tuple[str, str]]:
        check = system.check(lb.sid)
        return check if check[0] == "warning" else None

    try:
        with under_load(lb) as generator:
            wall_put = time.time()
            system.kv_put(SERVER_OPTIONS_KEY, "weight=banana")  # nginx: invalid parameter
            status = wait_until(warning, LB_WAIT[1] + 5, 0.05, "lb's check to turn warning")
            assert 'invalid parameter "weight=banana"' in status[1], status
            answered_more(generator)
            assert lb.site() == good, "the rejected file was not rolled back"
            assert lb.log_time(RELOADED, after=wall_put) is None, "nginx was reloaded with a bad file"
            assert lb.container.running()
            system.kv_delete(SERVER_OPTIONS_KEY)
            wait_until(lambda: system.check(lb.sid)[0] == "passing", LB_WAIT[1] + 5, 0.05,
                       "lb's check to be passing again once the key is fixed")
            answered_more(generator)
    finally:
        system.kv_delete(SERVER_OPTIONS_KEY)
    results = generator.wait()
    assert summary(results)["failed"] == 0, describe_failures(results)
    assert lb.site() == good
    cluster.report.add("6. a bad change: nginx -t fails", results,
                       notes="rolled back, check warning, then passing")


@pytest.mark.docker
def test_thirty_cycles_of_scale_out_and_in_under_load_fail_no_request_and_leave_nothing_stale(
        cluster: Cluster) -> None:
    cycles = int(os.environ.get("SVCWRAP_TEST_CHURN_CYCLES", "30"))
    system, lb = cluster.system, cluster.lb
    run_to_served: List[float] = []
    stop_to_out: List[float] = []
    started: List[Instance] = []
    problems: List[str] = []
    lock = threading.Lock()

    def retire(app: Instance) -> None:
        """docker stop, timing the lb's upstreams dropping it; then check how it ended."""
        t_stop, out = time.monotonic(), []

        def poll() -> None:
            if not out and app.sid not in lb.upstream_ids():
                out.append(time.monotonic() - t_stop)

        try:
            while_stopping(stop_in_background(app), poll)
            logs, code = app.container.logs(), app.container.exit_code()
        except DockerError as err:
            logs, code = str(err), -1
        with lock:
            stop_to_out.extend(out)
            if code != 0 or "0 after the stop signal" not in logs:
                problems.append(f"{app.sid} exited {code}:\n{logs[-1500:]}")
        app.container.remove()

    with under_load(lb, duration=600.0) as generator, ThreadPoolExecutor(4) as pool:
        previous: Optional[Instance] = None
        retiring: List[Future] = []
        for _ in range(cycles):
            t_run = time.monotonic()
            app = system.run_app()
            started.append(app)
            wait_started(system, "app", app)
            run_to_served.append(served(generator, app).done - t_run)
            if previous is not None:
                retiring.append(pool.submit(retire, previous))
            previous = app
        if previous is not None:
            retiring.append(pool.submit(retire, previous))
        for future in retiring:
            future.result(timeout=60)
        system.wait_upstreams(lb, cluster.app_ids, LB_WAIT[1] + 5)
        settled = time.monotonic()
        answered_more(generator)
    results = generator.wait()
    assert summary(results)["failed"] == 0, describe_failures(results)
    assert not problems, "\n".join(problems)
    churned = {a.sid for a in started}
    assert churned.isdisjoint(system.consul.services()), "stale entries in Consul"
    assert not [c for c in system.consul.checks().values() if c.get("ServiceID") in churned]
    assert lb.upstream_ids() == cluster.app_ids, lb.site()
    # nginx itself holds no stale upstream: once settled, only the lasting apps serve
    late = {r.instance for r in results if r.sent > settled + 0.5}
    assert late and late <= cluster.app_ids, late
    cluster.report.add(f"7. churn: {cycles} cycles of scale out/in", results,
                       run_to_served=statistics.median(run_to_served),
                       stop_to_out=statistics.median(stop_to_out) if stop_to_out else None,
                       notes=f"medians; max run → served {max(run_to_served):.2f} s")


@pytest.mark.docker
def test_a_naive_scale_in_without_drain_or_template_reload_is_measured_beside_svcwraps(
        cluster: Cluster) -> None:
    """The comparison the issue asks for: the app stopped at once (no drain) and nginx never
    told (reload none), as with a plain init plus Registrator and an lb configured once."""
    system = cluster.system
    app = system.run_app(SVCWRAP_DRAIN="0s")
    wait_started(system, "app", app)
    naive = system.run_lb(SVCWRAP_RELOAD="none")  # renders the 3 apps once, at its start
    wait_started(system, "lb", naive)
    system.wait_upstreams(naive, cluster.app_ids | {app.sid}, 10)
    with under_load(naive) as generator:
        served(generator, app)
        wall_stop = time.time()
        _, out, stopped = scale_in(cluster, naive, app, generator)
    results = generator.wait()
    assert naive.log_time(RELOADED, after=wall_stop) is None, "reload none still reloaded nginx"
    s = summary(results)
    assert s["by_instance"].keys() >= cluster.app_ids, s
    assert app.container.exit_code() == 0, app.container.describe()
    logs = app.container.logs()
    after_term = next(line.split("requests, ")[1] for line in logs.splitlines()
                      if "after the stop signal" in line)
    cluster.report.add("3'. scale in, naive: no drain, no reload", results,
                       notes=f"{s['failed']} failed (502: sent to the app as it closed); the app "
                             f"got {after_term}; docker stop took {stopped:.2f} s; file "
                             f"re-rendered {out:.2f} s after stop, nginx never told")


# ---------------------------------------------------------------- the app alone (no Docker)
class FakeRedis:
    """Answers PING and INCR/INCRBY in RESP, on a port of its own, counting per key."""

    def __init__(self) -> None:
        import socketserver

        counts: dict = {}
        lock = threading.Lock()

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                while True:
                    head = self.rfile.readline()
                    if not head.startswith(b"*"):
                        return
                    args = []
                    for _ in range(int(head[1:])):
                        size = int(self.rfile.readline()[1:])
                        args.append(self.rfile.read(size + 2)[:-2])
                    if args[0].upper() == b"PING":
                        self.wfile.write(b"+PONG\r\n")
                        continue
                    with lock:
                        counts[args[1]] = counts.get(args[1], 0) + int(args[2] if len(args) > 2 else 1)
                        self.wfile.write(b":%d\r\n" % counts[args[1]])

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_redis() -> Iterator[Callable[[], FakeRedis]]:
    started: List[FakeRedis] = []

    def start() -> FakeRedis:
        started.append(FakeRedis())
        return started[-1]

    yield start
    for redis in started:
        redis.close()


class AppProcess:
    """examples/discovery/app/app.py on this machine's Python, with a notify socket."""

    def __init__(self, tmp: Path) -> None:
        self.conf = tmp / "redis.conf"
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(str(tmp / "notify.sock"))
        self.port = free_port()
        env = {**os.environ, "SVCWRAP_PORT": str(self.port), "SVCWRAP_ID": "app-alone",
               "NOTIFY_SOCKET": str(tmp / "notify.sock")}
        self.proc = subprocess.Popen([sys.executable, str(APP), str(self.conf)], env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def point_at(self, port: int) -> None:
        self.conf.write_text(f"host = 127.0.0.1\nport = {port}\n")

    def ready(self, timeout: float) -> bool:
        self.notify.settimeout(timeout)
        try:
            return self.notify.recv(64) == b"READY=1"
        except socket.timeout:
            return False

    def listening(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
        except ConnectionRefusedError:
            return False
        return True

    def ask(self, path: str = "/") -> Tuple[int, str]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            conn.request("POST", path, headers={"Content-Length": "0"})
            answer = conn.getresponse()
            return answer.status, answer.read().decode().strip()
        finally:
            conn.close()

    def close(self) -> str:
        if self.proc.poll() is None:
            self.proc.kill()
        out = self.proc.communicate(timeout=10)[0]
        self.notify.close()
        return out


@pytest.fixture
def app_alone(tmp_path: Path) -> Iterator[AppProcess]:
    app = AppProcess(tmp_path)
    yield app
    app.close()


def test_the_app_says_ready_only_once_redis_answers_then_counts_each_request_there(
        app_alone: AppProcess, fake_redis: Callable[[], FakeRedis]) -> None:
    app_alone.point_at(free_port())  # nothing listens there
    # (a loaded machine may take more than that second to start the app at all)
    wait_until(app_alone.listening, timeout=15, message="the app listening")
    assert not app_alone.ready(0.5), "READY=1 before redis answered"
    assert app_alone.ask("/health")[0] == 503
    redis = fake_redis()
    app_alone.point_at(redis.port)
    app_alone.proc.send_signal(signal.SIGHUP)
    assert app_alone.ready(10.0)
    assert app_alone.ask() == (200, f"instance=app-alone count=1 redis=127.0.0.1:{redis.port}")
    assert app_alone.ask() == (200, f"instance=app-alone count=2 redis=127.0.0.1:{redis.port}")


def test_the_app_follows_its_redis_file_on_sighup_and_stops_cleanly_on_sigterm(
        app_alone: AppProcess, fake_redis: Callable[[], FakeRedis]) -> None:
    first, second = fake_redis(), fake_redis()
    app_alone.point_at(first.port)
    assert app_alone.ready(10.0)
    assert app_alone.ask()[1].endswith(f"redis=127.0.0.1:{first.port}")
    app_alone.point_at(second.port)
    assert app_alone.ask()[1].endswith(f"redis=127.0.0.1:{first.port}"), "read before SIGHUP"
    app_alone.proc.send_signal(signal.SIGHUP)
    try:
        wait_until(lambda: app_alone.ask()[1].endswith(f"redis=127.0.0.1:{second.port}"), 5, 0.02,
                   "the app to use the second redis")
    except AssertionError as err:
        raise AssertionError(f"{err}\n{app_alone.close()}") from None
    app_alone.proc.send_signal(signal.SIGTERM)
    assert app_alone.proc.wait(timeout=10) == 0
    out = app_alone.close()
    assert re.search(r"served \d+ requests, 0 after the stop signal", out), out
