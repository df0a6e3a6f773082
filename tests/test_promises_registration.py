"""What svcwrap registers and how it keeps the entry true, as the README states
it (issue 14): the definition, the address, retries, the status it reports."""
from __future__ import annotations

import shutil
import signal
import subprocess
import time

import pytest

from tests.consul_double.durations import SECOND, parse_duration
from tests.consul_fixture import REGISTER, started_double
from tests.lifecycle_support import Service
from tests.support import wait_until


def test_deregister_critical_service_after_is_sent_with_its_default_of_1m(wrap_pid1, double_svc):
    wrap_pid1(*double_svc.args(), env=double_svc.env())
    wait_until(double_svc.is_passing, timeout=10, message="service passing")
    register = next(r for r in double_svc.consul.double.requests if r.path == REGISTER)
    check = {k.lower(): v for k, v in register.body["Check"].items()}
    assert parse_duration(check["deregistercriticalserviceafter"]) == 60 * SECOND


def route_source(destination: str) -> str | None:
    """The source address `ip route get` names for destination (None: no route)."""
    if shutil.which("ip") is None:
        return None
    out = subprocess.run(["ip", "route", "get", destination], capture_output=True, text=True).stdout
    words = out.split()
    return words[words.index("src") + 1] if "src" in words else None


def test_address_auto_with_a_non_loopback_agent_registers_the_local_source_address_not_the_agents():
    from svcwrap.cli import parse
    from svcwrap.registry import Registry

    agent = "198.51.100.7"  # TEST-NET-2: not this machine, reached through its default route
    source = route_source(agent)
    if source is None:
        pytest.skip(f"no route to {agent} here")
    config = parse(["--name", "web", "--consul", f"{agent}:8500", "--", "true"], {})[0]
    assert Registry(config.consul, config.service, config.health, "").address == source != agent


def test_the_address_svcwrap_advertises_is_the_address_consul_lists_for_the_service(
        wrap_pid1, double_svc):
    # The test above pins what `auto` works out; this, that it is what the
    # registration carries (the same Registry.address, here given as an IP).
    wrap_pid1(*double_svc.args("--address", "192.0.2.7"), env=double_svc.env())
    wait_until(double_svc.is_passing, timeout=10, message="service passing")
    assert double_svc.consul.services()[double_svc.id]["Address"] == "192.0.2.7"


def test_registration_keeps_retrying_however_long_consul_is_down_with_the_backoff_capped_at_ttl_half(
        wrap_pid1, double_svc):
    double = double_svc.consul.double
    double.refuse_connections(True)
    w = wrap_pid1(*double_svc.args("--ready", "none", ttl="1s", child=["sleep", "30"]),
                  env=double_svc.env())  # the cap: min(5 s, TTL/2) = 500 ms
    wait_until(lambda: "consul unavailable" in w.stderr_so_far(), message="down noticed")
    # Still down, but answering now, so that every attempt can be seen.
    double.fail_with(503, "agent down for maintenance")
    double.refuse_connections(False)

    def attempts() -> list[float]:
        return [r.time for r in double.requests if r.path == REGISTER]

    wait_until(lambda: len(attempts()) >= 9, timeout=15, message="nine more registration attempts")
    tries = attempts()
    gaps = [b - a for a, b in zip(tries, tries[1:])]
    # Uncapped (tenacity's exponential: up to 0.8, 1.6, 3.2 s by now) the last
    # gaps would almost surely pass 0.85 s; capped, none can.
    assert max(gaps[4:]) < 0.5 + 0.35, gaps
    back = time.monotonic()
    double.fail_with(None)
    wait_until(double_svc.is_passing, timeout=5, message="registered once the agent is back")
    assert time.monotonic() - back < 0.5 + 1.0, "about one cap after the agent came back"


def test_a_registration_over_a_critical_leftover_is_reported_passing_at_once_not_at_the_first_heartbeat(
        wrap_pid1, svc):
    # An earlier run of the same container left the entry critical. Consul
    # keeps a check's status when it is registered again (Status is ignored
    # then), so only a status report right after the registration makes it
    # passing before the first heartbeat, 10 s later here.
    leftover = {"Name": svc.name, "ID": svc.id,
                "Check": {"CheckID": svc.check_id, "TTL": "30s", "Status": "critical"}}
    assert svc.consul.put(REGISTER, leftover)[0] == 200
    w = wrap_pid1(*svc.args(ttl="30s"), env=svc.env())
    wait_until(lambda: "registered" in w.stderr_so_far(), timeout=10, message="registered")
    wait_until(svc.is_passing, timeout=3, message="passing right after the registration")


def test_an_http_check_answering_4xx_makes_the_check_critical(wrap_pid1, svc):
    url = f"http://127.0.0.1:{svc.port}/no-such-page"
    wrap_pid1(*svc.args("--check", url, "--check-interval", "200ms", ttl="30s",
                        child=["python3", "-m", "http.server", str(svc.port), "--bind", "127.0.0.1",
                               "--directory", str(svc.tmp)]), env=svc.env())
    # Its timeout is the 200 ms interval: a loaded machine may time a call
    # out first (critical too, for another reason), so wait for the 404's.
    wait_until(lambda: svc.status() == "critical" and "404" in svc.check()["Output"],
               timeout=10, message="critical on a 404")


def test_a_consul_1_10_agents_500_for_an_unknown_check_leads_to_registering_again(wrap_pid1, tmp_path):
    with started_double(legacy=True) as legacy:
        svc = Service(legacy, tmp_path)
        w = wrap_pid1(*svc.args(), env=svc.env())  # heartbeat every 333 ms
        wait_until(svc.is_passing, timeout=10, message="service passing")
        legacy.double.forget_everything()
        wait_until(svc.is_passing, timeout=5, message="registered again")
        assert any(r.status == 500 and "/check/update/" in r.path for r in legacy.double.requests)
        w.kill(signal.SIGTERM)
        assert w.wait() == 0


def test_the_status_report_right_after_a_re_registration_carries_the_current_result_not_passing(
        wrap_pid1, double_svc):
    # The register body's Status counts only for a new check; the update that
    # follows it is what sets a known check's status, so it too must be the
    # current result (here critical: the exec check exits 2).
    double = double_svc.consul.double
    wrap_pid1(*double_svc.args("--ready", "none", "--check", "exec:sh -c 'exit 2'", ttl="3s"),
              env=double_svc.env())
    wait_until(lambda: double_svc.status() == "critical", timeout=10, message="critical")
    double.forget_everything()
    forgot_at = len(double.requests)

    def puts_since_forgetting() -> list:
        return [r for r in double.requests[forgot_at:] if r.method == "PUT" and r.status == 200]

    after = wait_until(lambda: [r.path for r in puts_since_forgetting()][:2] == [
        REGISTER, f"/v1/agent/check/update/{double_svc.check_id}"] and puts_since_forgetting(),
        timeout=10, message="registered again and the status reported")
    assert [after[0].body["Check"]["Status"], after[1].body["Status"]] == ["critical", "critical"]
