"""The lifecycle in-process, against backend.FakeBackend (issue 10: "the
lifecycle against the fake backend: every transition, including the races
the suite already covers"). The worker thread is real; the supervisor is a
stand-in that plays the main thread's part of the stop sequence."""
from __future__ import annotations

import socket
import threading
from contextlib import contextmanager
from typing import Iterator

import pytest

from svcwrap.backend import FakeBackend
from svcwrap.cli import parse
from svcwrap.control import Request
from svcwrap.lifecycle import ServiceLifecycle, LocalCheck
from svcwrap.states import ServiceState
from tests.consul_fixture import wait_until
from tests.control_support import LogFile, observer
from tests.support import assert_stays_false

S = ServiceState


class Listener:
    """The service's port, which the test opens and closes: the tcp check."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]

    def close(self) -> None:
        self.sock.close()

    def reopen(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", self.port))


class MainThread:
    """What ServiceLifecycle needs from the supervisor, and its stop sequence."""

    def __init__(self, obs) -> None:
        self.obs = obs
        self.on_other_reaped = None
        self.stops: list[tuple[int, str]] = []

    def wake(self) -> None:
        pass

    def request_stop(self, code: int, reason: str) -> None:
        self.stops.append((code, reason))

    def stop(self, discovery: ServiceLifecycle) -> float:
        """A SIGTERM: leaving first (as begin_stop), then discovery.leave()."""
        self.obs.transition(S.LEAVING, "stopping", reason="SIGTERM")
        return discovery.leave()


@contextmanager
def lifecycle(*flags: str, start: bool = True, fake: FakeBackend | None = None
              ) -> Iterator[tuple[ServiceLifecycle, FakeBackend, MainThread, LogFile, Listener]]:
    port = Listener()
    config, _ = parse(["--name", "web", "--id", "web-1", "--ready", "none",
                       "--check", f"tcp:127.0.0.1:{port.port}", "--ttl", "1s",
                       "--check-interval", "50ms", *flags, "--", "true"], {})
    log = LogFile()
    obs = observer(log)
    fake = fake or FakeBackend(timeout=0.3)
    fake._observer = obs
    discovery = ServiceLifecycle(config, log.logger, None, obs, make_backend=lambda: fake)
    main = MainThread(obs)
    before = set(threading.enumerate())
    if start:
        discovery.start(0, main)  # type: ignore[arg-type]
    try:
        yield discovery, fake, main, log, port
    finally:
        discovery.leaving.set()
        discovery.stage.set()
        fake.release()
        port.close()
        # The log's descriptor closes with `log`: a thread still running could
        # write a line into whatever reuses its number (another test's socket).
        started = [t for t in threading.enumerate() if t not in before]
        for t in started:
            t.join(10)
        assert not any(t.is_alive() for t in started), "the lifecycle's threads ended"


def state(d: ServiceLifecycle) -> str:
    return d.observer.snapshot()["state"]


def updates(fake: FakeBackend) -> int:
    return [c[0] for c in fake.calls].count("update")


def test_a_ready_service_goes_starting_registering_registered_and_is_passing():
    with lifecycle(start=False) as (d, fake, main, log, _):
        assert state(d) == "starting"
        d.start(0, main)  # type: ignore[arg-type]
        wait_until(lambda: state(d) == "registered", message="registered")
        assert fake.passing
        moves = [line.split()[5:7] for line in log.lines() if " state changed " in line]
        assert moves == [["from=starting", "to=registering"]]
        assert log.events().count("registered") == 1


def test_heartbeats_report_each_check_result_and_status_counts_them():
    with lifecycle() as (d, fake, _, log, port):
        wait_until(lambda: updates(fake) >= 3, message="three heartbeats")
        port.close()
        wait_until(lambda: fake.status == "critical", message="critical reported")
        snap = d.observer.snapshot()
        assert (snap["check_status"], snap["state"]) == ("critical", "registered")
        assert "Connection refused" in snap["check_output"]
        port.reopen()
        wait_until(lambda: fake.status == "passing", message="passing again")
        assert log.events().count("check critical") == 1
        assert log.events().count("check passing") == 1
        assert snap["counts"]["heartbeats"] >= 3


def test_a_stop_deregisters_the_registered_service_and_then_has_left():
    with lifecycle("--drain", "2s") as (d, fake, main, log, _):
        wait_until(lambda: state(d) == "registered", message="registered")
        assert main.stop(d) == 2.0, "a registered service drains"
        wait_until(d.has_left, message="left")
        assert not fake.registered
        assert "deregistered" in log.events()
        assert state(d) == "leaving"


def test_a_stop_before_readiness_has_left_at_once_and_calls_nothing():
    with lifecycle("--ready", "tcp:127.0.0.1:1") as (d, fake, main, _, _port):
        assert main.stop(d) == 0.0, "nothing registered: no drain"
        assert d.has_left()
        assert_stays_false(lambda: fake.calls, 0.3, "the backend was called")


def test_not_ready_in_time_asks_the_supervisor_to_stop_with_1():
    with lifecycle("--ready", "tcp:127.0.0.1:1", "--ready-timeout", "200ms") as (_, fake,
                                                                                   main, _l, _p):
        wait_until(lambda: main.stops, message="stop requested")
        assert main.stops == [(1, "not ready in time")]
        assert fake.calls == []


def test_a_registration_in_flight_when_the_stop_comes_is_undone_and_not_reported():
    # The race of test_consul_leave's in-flight test: the stop wins while the
    # register call is on its way; the registration lands, then is taken back.
    fake = FakeBackend(timeout=5)
    fake.hold("register")
    with lifecycle(fake=fake) as (d, fake, main, log, _):
        wait_until(lambda: d.in_flight == "register", message="registration on its way")
        main.stop(d)
        wait_until(lambda: ("deregister",) in fake.calls, message="deregistered at once")
        assert not d.has_left(), "the held registration must be outlasted"
        fake.release()
        wait_until(d.has_left, message="left")
        # deregistered at once, and again once the held registration has landed
        assert [c[0] for c in fake.calls] == ["deregister", "register", "deregister"]
        assert not fake.registered
        assert state(d) == "leaving", "a late registration must not claim registered"


def test_an_agent_that_forgot_the_service_gets_it_registered_again():
    with lifecycle() as (d, fake, _, log, _p):
        wait_until(lambda: state(d) == "registered", message="registered")
        fake.forget()
        # (the backend has it before the worker logs it)
        wait_until(lambda: log.events().count("registered") == 2, message="registered again")
        assert fake.passing
        assert "agent does not know the service, registering again" in log.events()
        assert d.observer.snapshot()["counts"]["registrations"] == 2
        moves = [line.split()[5:7] for line in log.lines() if " state changed " in line]
        assert moves == [["from=starting", "to=registering"],
                         ["from=registered", "to=registering"]]
        assert state(d) == "registered"


def test_an_agent_down_at_start_is_retried_and_reported_unreachable_once():
    fake = FakeBackend()
    fake.fail_next(3)
    with lifecycle(fake=fake) as (d, fake, _, log, _p):
        wait_until(lambda: state(d) == "registered", message="registered")
        assert log.events().count("consul unavailable, retrying") == 1
        assert log.events().count("consul available again") == 1
        assert d.observer.snapshot()["consul_reachable"] is True


def test_an_agent_down_for_two_hundred_attempts_at_start_is_still_retried_until_the_service_registers():
    # However long the agent is down, never a fixed number of tries: with a
    # 20 ms TTL the backoff is capped at 10 ms, so 200 refusals take about 1 s.
    fake = FakeBackend()
    fake.fail_next(200)
    with lifecycle("--ttl", "20ms", "--check-interval", "10ms", fake=fake) as (d, fake, _, log, _p):
        wait_until(lambda: state(d) == "registered", timeout=15, message="registered at last")
        assert [c[0] for c in fake.calls].count("register") >= 201
        assert fake.passing


def test_a_slow_agent_counts_failed_heartbeats_and_the_service_stays_registered():
    with lifecycle() as (d, fake, _, log, _p):
        wait_until(lambda: state(d) == "registered", message="registered")
        fake.hold("update")  # each update times out after 0.3 s
        wait_until(lambda: d.observer.snapshot()["counts"]["heartbeat_failures"] >= 1,
                   message="a failed heartbeat")
        assert d.observer.snapshot()["consul_reachable"] is False
        fake.release()
        wait_until(lambda: d.observer.snapshot()["consul_reachable"], message="reachable again")
        assert state(d) == "registered"


def maintenance(d: ServiceLifecycle, on: bool, reason: str = "") -> dict:
    request = Request("maintenance", {"on": on, "reason": reason})
    d.maintenance(on, reason, request)
    answer = request.wait(5)
    assert answer is not None, "maintenance not answered"
    return answer


def test_maintenance_takes_the_service_out_of_passing_shows_in_status_and_off_brings_it_back():
    with lifecycle() as (d, fake, _, log, _p):
        wait_until(lambda: fake.passing, message="passing")
        assert maintenance(d, True, "disk swap") == {"ok": True, "message": "maintenance on"}
        assert not fake.passing and fake.maintenance_reason == "disk swap"
        snap = d.observer.snapshot()
        assert (snap["maintenance"], snap["maintenance_reason"]) == (True, "disk swap")
        assert maintenance(d, False)["ok"]
        assert fake.passing and not d.observer.snapshot()["maintenance"]
        assert ["maintenance on", "maintenance off"] == \
            [e for e in log.events() if e.startswith("maintenance")]


def test_maintenance_survives_an_agent_that_forgot_the_service():
    with lifecycle() as (d, fake, _, _log, _p):
        wait_until(lambda: fake.passing, message="passing")
        maintenance(d, True, "disk swap")
        fake.forget()
        wait_until(lambda: fake.registered, message="registered again")
        wait_until(lambda: fake.maintenance_reason == "disk swap", message="maintenance back")
        assert not fake.passing


def test_maintenance_asked_before_the_registration_applies_once_registered():
    with lifecycle("--ready", "tcp:127.0.0.1:1") as (d, fake, _, _log, _p):
        wait_until(lambda: d.backend is not None, message="backend in place")
        answer = maintenance(d, True, "early")
        assert answer == {"ok": True, "message": "maintenance on: applies once registered"}


def test_maintenance_the_agent_did_not_take_is_applied_by_the_next_heartbeat():
    with lifecycle() as (d, fake, _, _log, _p):
        wait_until(lambda: fake.passing, message="passing")
        fake.hold("maintenance")  # times out after 0.3 s, like a slow agent
        answer = maintenance(d, True, "disk swap")
        assert not answer["ok"] and "svcwrap keeps trying" in answer["error"]
        assert fake.passing
        fake.release()
        wait_until(lambda: fake.maintenance_reason == "disk swap", message="applied later")


def test_maintenance_is_refused_once_the_service_is_leaving():
    with lifecycle() as (d, fake, main, _log, _p):
        wait_until(lambda: fake.passing, message="passing")
        main.stop(d)
        assert maintenance(d, True) == {"ok": False, "error": "svcwrap is leaving Consul"}


@pytest.mark.parametrize("up, status", [(True, "passing"), (False, "critical")])
def test_without_registration_a_check_still_runs_and_feeds_the_status(up, status):
    port = Listener()
    if not up:
        port.close()
    config, _ = parse(["--no-register", "--check", f"tcp:127.0.0.1:{port.port}",
                       "--check-interval", "50ms", "--", "true"], {})
    obs = observer(LogFile(), register=False, initial=S.RUNNING)
    check = LocalCheck(config, obs)
    check.start(0, MainThread(obs))  # type: ignore[arg-type]
    try:
        wait_until(lambda: obs.snapshot()["check_status"] == status, message=status)
    finally:
        check.leave()
        port.close()
