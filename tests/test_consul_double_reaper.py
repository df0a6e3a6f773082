"""Contract tests: DeregisterCriticalServiceAfter and the reaper (reference §6)."""
from __future__ import annotations

import time

from tests.consul_double import start
from tests.consul_fixture import ConsulUnderTest, wait_until

REG = "/v1/agent/service/register"


def reg(cut, dcsa="1s", ttl="10s", status="passing", sid="web-1"):
    body = {"Name": "web", "ID": sid, "Check": {"TTL": ttl, "Status": status, "DeregisterCriticalServiceAfter": dcsa}}
    assert cut.put(REG, body) == (200, "")


def test_defaults_are_consuls_one_minute_floor_and_thirty_second_reaper():
    """§6: check_deregister_interval_min = 1m, check_reap_interval = 30s by default."""
    with start() as d:
        assert (d.state.dcsa_min, d.state.reap_interval) == (60.0, 30.0)


def test_dcsa_below_the_minimum_is_raised_not_rejected():
    """§6: DCSA 10s with the default 1m floor is accepted and raised to 1m."""
    with start() as d:
        cut = ConsulUnderTest(d.addr, d, 60, 30)
        reg(cut, dcsa="10s")
        assert d.state.checks["service:web-1"].reap_after == 60.0


def test_fail_starts_the_clock_and_the_reaper_removes_the_service(consul_double):
    """§6: after a critical update, the service goes once critical for longer than DCSA."""
    reg(consul_double, dcsa="500ms")  # raised to the 1 s floor
    t0 = time.monotonic()
    consul_double.put("/v1/agent/check/fail/service:web-1")
    wait_until(lambda: "web-1" not in consul_double.services(), timeout=5)
    elapsed = time.monotonic() - t0
    assert elapsed > consul_double.dcsa_min
    assert consul_double.checks() == {}


def test_reaping_is_not_before_the_floor(consul_double):
    """§6: the effective timeout is max(DCSA, floor)."""
    reg(consul_double, dcsa="100ms")
    consul_double.put("/v1/agent/check/fail/service:web-1")
    time.sleep(consul_double.dcsa_min * 0.7)
    assert "web-1" in consul_double.services()


def test_default_critical_registration_without_updates_is_never_reaped(consul_double):
    """§6: a check registered critical has no CriticalTime until a critical *update*."""
    reg(consul_double, status="critical", ttl="1h")
    time.sleep(consul_double.dcsa_min + 3 * consul_double.reap_interval)
    assert "web-1" in consul_double.services()


def test_ttl_expiry_starts_the_clock(consul_double):
    """§6: TTL expiry counts as a critical update; reaped ≈ TTL + DCSA (+ reaper tick)."""
    reg(consul_double, status="critical", ttl="300ms")
    wait_until(lambda: "web-1" not in consul_double.services(), timeout=5)


def test_non_critical_update_clears_the_clock(consul_double):
    """§6: any non-critical update clears CriticalTime."""
    reg(consul_double)
    consul_double.put("/v1/agent/check/fail/service:web-1")
    time.sleep(consul_double.dcsa_min * 0.6)
    consul_double.put("/v1/agent/check/warn/service:web-1")
    consul_double.put("/v1/agent/check/fail/service:web-1")
    time.sleep(consul_double.dcsa_min * 0.6)  # 1.2 × floor since the first fail, 0.6 × since the second
    assert "web-1" in consul_double.services()


def test_repeated_fails_do_not_restart_the_clock(consul_double):
    """§6: CriticalTime is set by the *first* critical update and kept by later ones."""
    reg(consul_double)
    consul_double.put("/v1/agent/check/fail/service:web-1")
    for _ in range(5):
        time.sleep(consul_double.dcsa_min * 0.25)
        consul_double.put("/v1/agent/check/fail/service:web-1")
    wait_until(lambda: "web-1" not in consul_double.services(), timeout=3)


def test_reregistration_resets_the_critical_clock(consul_double):
    """§2.5/§6: re-registering creates a fresh state with no CriticalTime."""
    reg(consul_double, ttl="1h")
    consul_double.put("/v1/agent/check/fail/service:web-1")
    time.sleep(consul_double.dcsa_min * 0.7)
    reg(consul_double, ttl="1h")
    time.sleep(consul_double.dcsa_min * 0.7)
    assert "web-1" in consul_double.services()
    assert consul_double.checks()["service:web-1"]["Status"] == "critical"


def test_without_dcsa_a_critical_service_is_never_reaped(consul_double):
    """§6: DCSA 0 or none means never."""
    consul_double.put(REG, {"Name": "web", "Check": {"TTL": "1h"}})
    consul_double.put("/v1/agent/check/fail/service:web")
    time.sleep(consul_double.dcsa_min + 3 * consul_double.reap_interval)
    assert "web" in consul_double.services()


def test_reaping_removes_the_service_from_health_and_updates_then_404(consul_double):
    """§6: after reaping, updates get 404 and agent/service/<id> is 404."""
    reg(consul_double)
    consul_double.put("/v1/agent/check/fail/service:web-1")
    wait_until(lambda: "web-1" not in consul_double.services(), timeout=5)
    assert consul_double.put("/v1/agent/check/pass/service:web-1")[0] == 404
    assert consul_double.get("/v1/agent/service/web-1")[0] == 404
    assert consul_double.get("/v1/health/service/web") == (200, [])


def test_reaper_runs_only_on_its_interval():
    """§6: the reaper is periodic: nothing is removed between ticks."""
    with start(dcsa_min=0.2, reap_interval=1.5) as d:
        cut = ConsulUnderTest(d.addr, d, 0.2, 1.5)
        reg(cut, dcsa="200ms")
        cut.put("/v1/agent/check/fail/service:web-1")
        t0 = time.monotonic()
        wait_until(lambda: "web-1" not in cut.services(), timeout=4)
        # first tick is 1.5 s after start; the service was critical-for-long-enough well before
        assert time.monotonic() - t0 > 0.9


def test_maintenance_check_alone_never_reaps(consul_double):
    """§6: the maintenance check has no reap timeout."""
    consul_double.put(REG, {"Name": "web", "Check": {"TTL": "1h", "Status": "passing"}})
    consul_double.put("/v1/agent/service/maintenance/web?enable=true")
    time.sleep(consul_double.dcsa_min + 3 * consul_double.reap_interval)
    assert "web" in consul_double.services()
