"""Discovery behind the backend interface (issue 10): the in-memory fake the
lifecycle will be tested against, and Consul through the same four calls,
against the agent under test (the double, or a real one)."""
from __future__ import annotations

import threading

import pytest

from svcwrap.backend import BackendUnavailable, ConsulBackend, FakeBackend, NotRegistered
from svcwrap.config import ConsulConfig, HealthConfig, ProbeSpec, Secret, ServiceConfig
from svcwrap.states import ServiceState
from tests.consul_fixture import wait_until
from tests.control_support import LogFile, observer


# -- the fake ---------------------------------------------------------------------------
def test_the_fake_lists_a_registered_passing_instance_and_drops_it_on_deregister():
    fake = FakeBackend()
    fake.register("passing", "ready")
    assert fake.passing
    assert fake.deregister() is True
    assert not fake.registered
    assert fake.deregister() is False
    assert [c[0] for c in fake.calls] == ["register", "deregister", "deregister"]


def test_maintenance_takes_the_instance_out_of_passing_and_off_brings_it_back():
    fake = FakeBackend()
    fake.register("passing", "ready")
    fake.maintenance(True, "disk swap")
    assert not fake.passing and fake.maintenance_reason == "disk swap"
    fake.maintenance(False)
    assert fake.passing


def test_maintenance_survives_an_agent_that_forgot_the_instance():
    fake = FakeBackend()
    fake.register("passing", "ready")
    fake.maintenance(True, "disk swap")
    fake.forget()
    with pytest.raises(NotRegistered):
        fake.report("passing", "ok")
    fake.register("passing", "ok")
    assert fake.registered and fake.maintenance_reason == "disk swap"
    assert not fake.passing


def test_maintenance_asked_before_the_registration_applies_once_registered():
    fake = FakeBackend()
    with pytest.raises(NotRegistered):
        fake.maintenance(True, "not yet")
    fake.register("passing", "ready")
    assert fake.maintenance_reason == "not yet"


def test_maintenance_asked_while_the_agent_is_down_is_applied_by_the_next_heartbeat():
    fake = FakeBackend()
    fake.register("passing", "ready")
    fake.fail_next(1)
    with pytest.raises(BackendUnavailable):
        fake.maintenance(True, "disk swap")
    assert fake.passing
    fake.report("passing", "ok")
    assert fake.maintenance_reason == "disk swap" and not fake.passing
    fake.report("passing", "ok")
    assert [c[0] for c in fake.calls].count("maintenance") == 2, "applied once, not every beat"


def test_maintenance_off_before_a_registration_is_not_put_back():
    fake = FakeBackend()
    fake.register("passing", "ready")
    fake.maintenance(True, "x")
    fake.maintenance(False)
    fake.forget()
    fake.register("passing", "ready")
    assert fake.passing


def test_an_unavailable_backend_fails_the_next_calls_then_recovers():
    fake = FakeBackend()
    fake.fail_next(2)
    for _ in range(2):
        with pytest.raises(BackendUnavailable):
            fake.register("passing", "ready")
    fake.register("passing", "ready")
    assert fake.passing


def test_a_held_backend_times_out_like_a_slow_agent():
    fake = FakeBackend(timeout=0.05)
    fake.hold()
    with pytest.raises(BackendUnavailable, match="timed out"):
        fake.register("passing", "ready")
    fake.release()
    fake.register("passing", "ready")
    assert fake.passing


def test_a_slow_maintenance_call_does_not_hold_up_the_heartbeat_or_the_leave():
    fake = FakeBackend(timeout=10)
    fake.register("passing", "ready")
    fake.hold("maintenance")
    outcome: list[BaseException] = []

    def maintenance_on() -> None:
        try:
            fake.maintenance(True, "x")
        except NotRegistered as err:  # deregistered meanwhile
            outcome.append(err)

    stuck = threading.Thread(target=maintenance_on)
    stuck.start()
    try:
        # The call holds the backend's lock while the agent keeps it waiting.
        wait_until(fake._lock.locked, message="maintenance under way")
        fake.report("passing", "ok")
        assert fake.deregister() is True
        assert stuck.is_alive(), "the maintenance call was still stuck meanwhile"
    finally:
        fake.release()
        stuck.join()
    assert len(outcome) == 1


def test_each_call_is_timed_and_maintenance_is_reported_to_the_observer():
    from svcwrap.metrics import Metrics

    metrics = Metrics()
    obs = observer(LogFile(), metrics=metrics, initial=ServiceState.REGISTERED)
    fake = FakeBackend(observer=obs)
    fake.register("passing", "ready")
    fake.report("passing", "ok")
    fake.maintenance(True, "disk swap")
    assert obs.snapshot()["maintenance_reason"] == "disk swap"
    count = {call: metrics.registry.get_sample_value("svcwrap_consul_request_seconds_count",
                                                     {"call": call})
             for call in ("register", "update", "maintenance", "deregister")}
    assert count == {"register": 1, "update": 1, "maintenance": 1, "deregister": 0}


# -- Consul -------------------------------------------------------------------------------
@pytest.fixture
def consul_backend(consul, svc):
    from svcwrap.registry import Registry

    host, _, port = consul.addr.rpartition(":")
    config = ConsulConfig("http", host, int(port), Secret(consul.token or ""), True, None, "")
    service = ServiceConfig(svc.name, svc.id, svc.port, [], {}, "auto")
    health = HealthConfig(ProbeSpec("none"), 0, ProbeSpec("none"), 1.0, 10.0, 60.0, 0.0)
    backend = ConsulBackend(Registry(config, service, health, "svcwrap test"))
    yield backend
    try:
        backend.deregister()
    except BackendUnavailable:
        pass


def test_consul_maintenance_takes_the_service_out_of_passing_and_off_brings_it_back(
        consul_backend, svc):
    consul_backend.register("passing", "ready")
    assert svc.is_passing()
    consul_backend.maintenance(True, "disk swap")
    assert not svc.is_passing()
    maint = svc.consul.checks()[f"_service_maintenance:{svc.id}"]
    assert (maint["Status"], maint["Notes"]) == ("critical", "disk swap")
    consul_backend.maintenance(False)
    assert svc.is_passing()


def test_consul_maintenance_is_put_back_when_the_service_registers_again(consul_backend, svc):
    consul_backend.register("passing", "ready")
    consul_backend.maintenance(True, "disk swap")
    consul_backend.register("passing", "ready")  # as after an agent that forgot us
    assert f"_service_maintenance:{svc.id}" in svc.consul.checks()
    assert not svc.is_passing()


def test_consul_maintenance_of_an_unknown_service_is_not_registered(consul_backend):
    with pytest.raises(NotRegistered):
        consul_backend.maintenance(True, "too early")
