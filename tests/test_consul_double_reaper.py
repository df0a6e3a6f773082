"""Contract tests: DeregisterCriticalServiceAfter and the reaper (reference §6).

Timing is driven by the double's manual clock (``manual_double``: Consul's own 1m floor and 30s
reaper, at no real cost); one test keeps the real clock to show the reaper thread runs by itself."""
from __future__ import annotations

import time

from tests.consul_double import start
from tests.consul_fixture import (
    ConsulUnderTest, ManualClock, register_ttl_service, started_double, wait_until,
)

FAIL = "/v1/agent/check/fail/service:web-1"


def reg(cut, dcsa="1s", ttl="10s", status="passing", sid="web-1"):
    register_ttl_service(cut, sid, ttl=ttl, Status=status, DeregisterCriticalServiceAfter=dcsa)


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


def test_the_reaper_runs_on_the_real_clock(consul_double):
    """§6: without a manual clock, the ticker reaps a service critical for longer than DCSA."""
    reg(consul_double, dcsa="500ms")  # raised to the fixture's 1 s floor
    t0 = time.monotonic()
    consul_double.put(FAIL)
    wait_until(lambda: "web-1" not in consul_double.services(), timeout=5)
    assert time.monotonic() - t0 > consul_double.dcsa_min
    assert consul_double.checks() == {}


def test_fail_starts_the_clock_and_the_reaper_removes_the_service(manual_double):
    """§6: after a critical update, the service goes once critical for longer than DCSA."""
    reg(manual_double, dcsa="90s")
    manual_double.put(FAIL)
    manual_double.clock.advance(90)
    assert "web-1" in manual_double.services(), "critical for exactly DCSA is not longer than it"
    manual_double.clock.advance(manual_double.reap_interval)  # the next reaper pass
    assert manual_double.services() == {} and manual_double.checks() == {}


def test_reaping_is_not_before_the_floor(manual_double):
    """§6: the effective timeout is max(DCSA, floor)."""
    reg(manual_double, dcsa="100ms")
    manual_double.put(FAIL)
    manual_double.clock.advance(manual_double.dcsa_min - manual_double.reap_interval / 2)
    manual_double.clock.advance(manual_double.reap_interval / 4)
    assert "web-1" in manual_double.services()
    manual_double.clock.advance(manual_double.reap_interval)
    assert "web-1" not in manual_double.services()


def test_default_critical_registration_without_updates_is_never_reaped(manual_double):
    """§6: a check registered critical has no CriticalTime until a critical *update*."""
    reg(manual_double, status="critical", ttl="1h")
    for _ in range(4):
        manual_double.clock.advance(manual_double.dcsa_min)
    assert "web-1" in manual_double.services()


def test_ttl_expiry_starts_the_clock(manual_double):
    """§6: TTL expiry counts as a critical update; reaped ≈ TTL + DCSA (+ reaper tick)."""
    reg(manual_double, status="passing", ttl="300ms", dcsa="1m")
    manual_double.clock.advance(0.3)
    assert manual_double.checks()["service:web-1"]["Status"] == "critical"
    manual_double.clock.advance(manual_double.dcsa_min + manual_double.reap_interval)
    assert "web-1" not in manual_double.services()


def test_non_critical_update_clears_the_clock(manual_double):
    """§6: any non-critical update clears CriticalTime."""
    reg(manual_double, dcsa="1m")
    manual_double.put(FAIL)
    manual_double.clock.advance(manual_double.dcsa_min * 0.6)
    manual_double.put("/v1/agent/check/warn/service:web-1")
    manual_double.put(FAIL)
    manual_double.clock.advance(manual_double.dcsa_min * 0.6)  # 1.2 × floor since the first fail
    assert "web-1" in manual_double.services()


def test_repeated_fails_do_not_restart_the_clock(manual_double):
    """§6: CriticalTime is set by the *first* critical update and kept by later ones."""
    reg(manual_double, dcsa="1m")
    manual_double.put(FAIL)
    for _ in range(5):
        manual_double.clock.advance(manual_double.dcsa_min * 0.25)
        manual_double.put(FAIL)
    manual_double.clock.advance(manual_double.reap_interval)  # 1.75 × DCSA since the first fail
    assert "web-1" not in manual_double.services()


def test_reregistration_resets_the_critical_clock(manual_double):
    """§2.5/§6: re-registering creates a fresh state with no CriticalTime."""
    reg(manual_double, ttl="1h", dcsa="1m")
    manual_double.put(FAIL)
    manual_double.clock.advance(manual_double.dcsa_min * 0.7)
    reg(manual_double, ttl="1h", dcsa="1m")
    manual_double.clock.advance(manual_double.dcsa_min * 0.7)
    assert "web-1" in manual_double.services()
    assert manual_double.checks()["service:web-1"]["Status"] == "critical"


def test_without_dcsa_a_critical_service_is_never_reaped(manual_double):
    """§6: DCSA 0 or none means never."""
    register_ttl_service(manual_double, "web", ttl="1h")
    manual_double.put("/v1/agent/check/fail/service:web")
    for _ in range(4):
        manual_double.clock.advance(manual_double.dcsa_min)
    assert "web" in manual_double.services()


def test_reaping_removes_the_service_from_health_and_updates_then_404(manual_double):
    """§6: after reaping, updates get 404 and agent/service/<id> is 404."""
    reg(manual_double, dcsa="1m")
    manual_double.put(FAIL)
    manual_double.clock.advance(manual_double.dcsa_min + manual_double.reap_interval)
    assert "web-1" not in manual_double.services()
    assert manual_double.put("/v1/agent/check/pass/service:web-1")[0] == 404
    assert manual_double.get("/v1/agent/service/web-1")[0] == 404
    assert manual_double.get("/v1/health/service/web") == (200, [])


def test_reaper_runs_only_on_its_interval():
    """§6: the reaper is periodic: nothing is removed between ticks."""
    clock = ManualClock()
    with started_double(dcsa_min=0.2, reap_interval=1.5, clock=clock) as cut:
        reg(cut, dcsa="200ms")
        cut.put(FAIL)
        clock.advance(1.0)  # critical for long enough, but the first pass is 1.5 s after start
        assert "web-1" in cut.services()
        clock.advance(0.5)
        assert "web-1" not in cut.services()


def test_maintenance_check_alone_never_reaps(manual_double):
    """§6: the maintenance check has no reap timeout."""
    register_ttl_service(manual_double, "web", ttl="1h", Status="passing")
    manual_double.put("/v1/agent/service/maintenance/web?enable=true")
    for _ in range(4):
        manual_double.clock.advance(manual_double.dcsa_min)
    assert "web" in manual_double.services()
