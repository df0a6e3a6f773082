"""The Consul lifecycle: ready -> register -> heartbeat -> drain -> deregister.

svcwrap runs as a real PID 1 against the `consul` fixture: the in-repo
double, or a real agent when SVCWRAP_TEST_CONSUL_ADDR is set.
"""
from __future__ import annotations

import json
import signal
import time


from tests.support import assert_stays_false, wait_until


def test_a_ready_service_is_registered_with_a_passing_ttl_check(wrap_pid1, svc):
    w = wrap_pid1(*svc.args("--tag", "primary", "--tag", "v7", "--meta", "team=infra",
                            "--deregister-after", "2m"), env=svc.env())
    wait_until(svc.is_passing, timeout=10, message="service passing")
    service = svc.consul.services()[svc.id]
    assert (service["Service"], service["Port"]) == (svc.name, svc.port)
    assert service["Tags"] == ["primary", "v7"] and service["Meta"] == {"team": "infra"}
    check = svc.check()
    assert check["Type"] == "ttl" and check["ServiceID"] == svc.id
    assert "svcwrap" in check["Notes"]
    assert service["Address"] == "", "a local agent: Consul uses its node's address"
    w.kill(signal.SIGTERM)
    assert w.wait() == 0


def test_the_service_is_not_registered_before_it_is_ready(wrap_pid1, svc):
    gate = svc.tmp / "gate"
    wrap_pid1(*svc.args(child_args=("--gate", gate)), env=svc.env())
    # The child runs at once but does not listen yet: nothing may be registered.
    assert_stays_false(svc.registered, seconds=0.5, message="registered before ready")
    gate.touch()
    wait_until(svc.is_passing, timeout=10, message="passing once ready")


def test_sigterm_takes_the_service_out_of_discovery_before_the_child_gets_term(wrap_pid1, svc):
    seen = svc.tmp / "seen-at-term"
    w = wrap_pid1(*svc.args(child_args=("--on-term-query", svc.passing_url, seen)),
                  env=svc.env())
    wait_until(svc.is_passing, timeout=10, message="service passing")
    w.kill(signal.SIGTERM)
    assert w.wait() == 0
    _, body = seen.read_text().split(" ", 1)
    assert json.loads(body) == [], "the child got TERM while still listed as passing"
    assert not svc.registered()


def test_drain_waits_between_leaving_discovery_and_signalling_the_child(wrap_pid1, svc):
    seen = svc.tmp / "seen-at-term"
    w = wrap_pid1(*svc.args("--drain", "700ms", "--log-level", "debug",  # "signal child"
                            child_args=("--on-term-query", svc.passing_url, seen)),
                  env=svc.env())
    wait_until(svc.is_passing, timeout=10, message="service passing")
    sent = time.monotonic()
    w.kill(signal.SIGTERM)
    assert w.wait() == 0
    term_at, body = seen.read_text().split(" ", 1)
    assert float(term_at) - sent >= 0.7
    assert json.loads(body) == [], "gone from Consul when TERM came"
    logged = {line.split()[3]: line.split()[0] for line in w.stderr.splitlines()
              if line.split()[3:4] in (["deregistered"], ["signal"])}
    assert seconds(logged["signal"]) - seconds(logged["deregistered"]) >= 0.699


def seconds(timestamp: str) -> float:
    """2026-11-22T08:33:18.501Z -> seconds within the day."""
    h, m, s = timestamp.split("T")[1].rstrip("Z").split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


def test_a_child_that_exits_on_its_own_is_deregistered_and_its_status_passed_on(wrap_pid1, svc):
    die = svc.tmp / "die"
    w = wrap_pid1(*svc.args(child=["sh", "-c", f"python3 -m http.server {svc.port} "
                                                f"--bind 127.0.0.1 & while [ ! -e {die} ]; "
                                                "do sleep 0.02; done; exit 3"]),
                  env=svc.env())
    wait_until(svc.is_passing, timeout=10, message="service passing")
    die.touch()
    assert w.wait() == 3
    assert not svc.registered()


def test_kill_9_makes_the_check_critical_within_the_ttl_and_consul_then_removes_it(wrap_pid1, svc):
    consul = svc.consul
    w = wrap_pid1(*svc.args("--deregister-after", f"{consul.dcsa_min:g}s", ttl="1s"),
                  env=svc.env())
    wait_until(svc.is_passing, timeout=10, message="service passing")
    w.kill(signal.SIGKILL)  # PID 1 dies: the whole namespace dies, nothing can clean up
    w.wait()
    wait_until(lambda: svc.status() == "critical", timeout=1 + 1.5, message="critical after TTL")
    assert "TTL expired" in svc.check()["Output"]
    wait_until(lambda: not svc.registered(), timeout=consul.dcsa_min + consul.reap_interval + 3,
               message="reaped after DeregisterCriticalServiceAfter")


def test_a_failing_check_goes_critical_at_once_not_when_the_ttl_runs_out(wrap_pid1, svc):
    healthy = svc.tmp / "healthy"
    healthy.touch()
    url = f"http://127.0.0.1:{svc.port}/health"
    wrap_pid1(*svc.args("--check", url, "--check-interval", "200ms", ttl="30s",
                        child_args=("--health-file", healthy)), env=svc.env())
    wait_until(svc.is_passing, timeout=10, message="service passing")
    healthy.unlink()
    # (a call timed out on a loaded machine is critical too: wait for the 503's)
    wait_until(lambda: svc.status() == "critical" and "503" in svc.check()["Output"], timeout=3,
               message="critical at once")
    healthy.touch()
    wait_until(svc.is_passing, timeout=3, message="passing again")


def test_an_exec_check_exiting_1_is_a_warning_with_its_output(wrap_pid1, svc):
    code = svc.tmp / "code"
    code.write_text("0")
    check = f"exec:sh -c 'echo load is high; exit $(cat {code})'"
    wrap_pid1(*svc.args("--check", check, "--check-interval", "200ms", ttl="30s"), env=svc.env())
    wait_until(svc.is_passing, timeout=10, message="service passing")
    code.write_text("1")
    wait_until(lambda: svc.status() == "warning", timeout=3, message="warning")
    assert svc.check()["Output"].strip() == "load is high"
    assert not svc.is_passing(), "?passing leaves out warning instances"
    code.write_text("2")
    wait_until(lambda: svc.status() == "critical", timeout=3, message="critical")


def test_heartbeats_keep_a_short_ttl_check_passing(wrap_pid1, svc):
    wrap_pid1(*svc.args(ttl="1s"), env=svc.env())
    wait_until(svc.is_passing, timeout=10, message="service passing")
    assert_stays_false(lambda: svc.status() != "passing", seconds=3.5,  # three and a half TTLs
                       message="the check left passing")


def test_a_ready_timeout_stops_the_child_and_exits_1(wrap_pid1, svc):
    w = wrap_pid1(*svc.args("--ready-timeout", "500ms", child=["sleep", "30"]), env=svc.env())
    assert w.wait(timeout=10) == 1
    assert "not ready" in w.stderr
    assert not svc.registered()


def test_check_notes_name_the_probe_kind_and_target_never_its_arguments(wrap_pid1, svc):
    # Issue 9: `exec:redis-cli -a PASSWORD ping` was readable by every catalog reader.
    w = wrap_pid1(*svc.args("--check", "exec:sh -c 'exit 0' --password=hunter2"), env=svc.env())
    wait_until(svc.is_passing, timeout=10, message="service passing")
    notes = svc.check()["Notes"]
    assert "exec:sh" in notes and "hunter2" not in notes
    w.kill(signal.SIGTERM)
    assert w.wait() == 0


def test_check_notes_leave_out_an_http_probes_credentials_and_query(wrap_pid1, svc):
    url = f"http://user:s3cret@127.0.0.1:{svc.port}/?key=s3cret"
    wrap_pid1(*svc.args("--check", url), env=svc.env())
    wait_until(svc.is_passing, timeout=10, message="service passing")
    notes = svc.check()["Notes"]
    assert f"http://127.0.0.1:{svc.port}/" in notes and "s3cret" not in notes
