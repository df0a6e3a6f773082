"""The verbs of issue 10 against a running svcwrap, in both modes (PID 1
and subreaper): `status [--json]`, `healthcheck`, `maintenance on|off`,
`reload`, and `--metrics`, checked against the agent under test. (The
control socket's own rules, where it lives and who may use it, are in
test_control.py, against a server fed by an observer alone.)"""
from __future__ import annotations

import json
import signal
import urllib.request
from pathlib import Path

import pytest

from svcwrap import __version__
from tests.control_support import verb
from tests.lifecycle_support import Service
from tests.support import free_port, wait_until


@pytest.fixture
def sock(tmp_path: Path) -> str:
    return str(tmp_path / "control.sock")


def status(sock: str) -> dict:
    p = verb("status", "--json", "--control", sock)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def answered(sock: str) -> bool:
    return verb("status", "--control", sock).returncode == 0


def start(wrap, svc: Service, sock: str, *extra: str, **args):
    w = wrap("--control", sock, *svc.args(*extra, **args), env=svc.env())
    wait_until(svc.is_passing, timeout=10, message="service passing")
    wait_until(lambda: answered(sock), message="control socket answering")
    return w


def test_status_json_of_a_registered_service_has_every_documented_field(wrap, svc, sock):
    w = start(wrap, svc, sock)
    s = status(sock)
    assert (s["state"], s["service_id"], s["service_name"]) == ("registered", svc.id, svc.name)
    assert (s["check_status"], s["consul_reachable"], s["maintenance"]) == ("passing", True, False)
    assert s["consul_address"] == f"http://{svc.consul.addr}"
    assert s["maintenance_reason"] == "" and s["version"] == __version__
    assert isinstance(s["child_pid"], int) and s["child_uptime_s"] >= 0
    assert 0 <= s["last_heartbeat_age_s"] < 2, "heartbeats every TTL/3"
    assert "check_output" in s
    w.kill(signal.SIGTERM)
    assert w.wait() == 0


def test_status_for_people_names_the_state_and_the_service(wrap, svc, sock):
    start(wrap, svc, sock)
    p = verb("status", "--control", sock)
    assert p.returncode == 0
    assert p.stdout.splitlines()[0].split()[:2] == ["state", "registered"]
    assert f"{svc.name} (id {svc.id})" in p.stdout


def test_healthcheck_is_0_while_passing_and_1_with_the_output_once_the_check_fails(
        wrap, svc, sock, tmp_path):
    healthy = tmp_path / "healthy"
    healthy.touch()
    start(wrap, svc, sock, "--check", f"exec:test -e {healthy}")
    p = verb("healthcheck", "--control", sock)
    assert (p.returncode, p.stdout) == (0, "registered and passing\n")
    healthy.unlink()
    wait_until(lambda: svc.status() != "passing", timeout=5, message="check failing in Consul")
    wait_until(lambda: verb("healthcheck", "--control", sock).returncode == 1,
               message="healthcheck failing")
    assert verb("healthcheck", "--control", sock).stdout.startswith("registered, check warning")


def test_maintenance_on_takes_the_service_out_of_passing_and_off_brings_it_back(
        wrap, svc, sock):
    start(wrap, svc, sock)
    p = verb("maintenance", "on", "--reason", "disk swap", "--control", sock)
    assert (p.returncode, p.stdout) == (0, "maintenance on\n"), p.stderr
    assert not svc.is_passing(), "maintenance takes effect at once"
    s = status(sock)
    assert (s["maintenance"], s["maintenance_reason"]) == (True, "disk swap")
    assert verb("healthcheck", "--control", sock).returncode == 0, \
        "maintenance is deliberate: Docker must not restart the container for it"
    p = verb("maintenance", "off", "--control", sock)
    assert (p.returncode, p.stdout) == (0, "maintenance off\n"), p.stderr
    assert svc.is_passing()
    assert status(sock)["maintenance"] is False


def test_maintenance_survives_an_agent_that_forgot_the_service(wrap, double_svc, sock):
    svc = double_svc
    start(wrap, svc, sock)
    assert verb("maintenance", "on", "--reason", "disk swap", "--control", sock).returncode == 0
    svc.consul.double.forget_everything()
    wait_until(svc.registered, timeout=5, message="registered again")
    maint = f"_service_maintenance:{svc.id}"
    wait_until(lambda: maint in svc.consul.checks(), timeout=5, message="maintenance put back")
    assert svc.consul.checks()[maint]["Notes"] == "disk swap"
    assert not svc.is_passing()
    assert status(sock)["maintenance"] is True


def test_while_draining_status_answers_healthcheck_fails_and_maintenance_is_refused(
        wrap, svc, sock):
    w = start(wrap, svc, sock, "--drain", "3s")
    w.kill(signal.SIGTERM)
    wait_until(lambda: status(sock)["state"] == "draining", message="draining")
    p = verb("healthcheck", "--control", sock)
    assert (p.returncode, p.stdout) == (1, "draining: svcwrap is stopping the service\n")
    p = verb("maintenance", "on", "--control", sock)
    assert (p.returncode, p.stderr) == (1, "svcwrap: error: svcwrap is draining\n")
    w.kill(signal.SIGTERM)  # a second stop request cuts the drain short
    assert w.wait() == 0


def test_the_socket_is_gone_once_svcwrap_has_exited(wrap, svc, sock):
    w = start(wrap, svc, sock)
    w.kill(signal.SIGTERM)
    assert w.wait() == 0
    assert not Path(sock).exists()
    p = verb("status", "--control", sock)
    assert (p.returncode, p.stderr) == (1, f"svcwrap: error: no svcwrap control socket at "
                                           f"{sock}\n")


def test_without_consul_status_says_running_and_maintenance_and_reload_are_refused(wrap, sock):
    w = wrap("--no-register", "--control", sock, "--", "sleep", "30")
    wait_until(lambda: answered(sock), message="control socket answering")
    s = status(sock)
    assert (s["state"], s["service_id"], s["consul_address"]) == ("running", None, None)
    p = verb("healthcheck", "--control", sock)
    assert p.returncode == 0 and p.stdout.startswith("running (pid ")
    p = verb("maintenance", "on", "--control", sock)
    assert (p.returncode, p.stderr) == (1, "svcwrap: error: no maintenance without Consul "
                                           "(--no-register)\n")
    p = verb("reload", "--control", sock)
    assert (p.returncode, p.stderr) == (1, "svcwrap: error: no templates configured\n")
    w.kill(signal.SIGTERM)
    assert w.wait() == 128 + signal.SIGTERM


def test_without_consul_a_failing_check_makes_healthcheck_1(wrap, sock):
    wrap("--no-register", "--control", sock, "--check", "tcp:127.0.0.1:1",
         "--check-interval", "100ms", "--", "sleep", "30")
    wait_until(lambda: answered(sock), message="control socket answering")
    wait_until(lambda: status(sock)["check_status"] == "critical", message="check ran")
    p = verb("healthcheck", "--control", sock)
    assert p.returncode == 1 and p.stdout.startswith("running, check critical: TCP connect")


def test_the_verbs_find_the_socket_through_svcwrap_control(wrap, svc, sock):
    start(wrap, svc, sock)
    p = verb("healthcheck", env={"SVCWRAP_CONTROL": sock})
    assert p.returncode == 0, p.stderr


# -- metrics ----------------------------------------------------------------------------
def scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def scraped(port: int) -> bool:
    try:
        scrape(port)
        return True
    except OSError:
        return False


def test_metrics_agree_with_the_agents_request_log(wrap, double_svc, sock):
    svc = double_svc
    port = free_port()
    start(wrap, svc, sock, "--metrics", f"127.0.0.1:{port}", ttl="600ms")
    wait_until(lambda: scraped(port), message="metrics served")
    updates_path = f"/v1/agent/check/update/{svc.check_id}"

    def accepted_updates() -> int:
        return sum(1 for r in svc.consul.double.requests
                   if r.path == updates_path and r.status == 200)
    wait_until(lambda: accepted_updates() >= 3, message="three heartbeats")
    # Heartbeats go on meanwhile: the scrape lies between two reads of the log.
    before = accepted_updates()
    m = scrape(port)
    after = accepted_updates()
    # The double logs an update as it answers; svcwrap counts it once the
    # answer is read: one heartbeat may be between the two.
    assert before - 1 <= m["svcwrap_heartbeats_total"] <= after
    assert m["svcwrap_heartbeat_failures_total"] == 0
    registers = sum(1 for r in svc.consul.double.requests
                    if r.path == "/v1/agent/service/register")
    assert m["svcwrap_registrations_total"] == registers == 1
    assert m['svcwrap_state{state="registered"}'] == 1
    assert m['svcwrap_state{state="starting"}'] == 0
    assert m['svcwrap_check_status{status="passing"}'] == 1
    assert m['svcwrap_consul_request_seconds_count{call="register"}'] == 1
    assert m["process_resident_memory_bytes"] > 0


def test_metrics_count_forwarded_signals_and_a_re_registration(wrap, double_svc, sock):
    svc = double_svc
    port = free_port()
    w = start(wrap, svc, sock, "--metrics", f"127.0.0.1:{port}")
    wait_until(lambda: scraped(port), message="metrics served")
    w.kill(signal.SIGWINCH)  # ignored by the test service
    wait_until(lambda: scrape(port).get('svcwrap_signals_forwarded_total{signal="SIGWINCH"}') == 1,
               message="SIGWINCH counted")
    svc.consul.double.forget_everything()
    wait_until(lambda: scrape(port)["svcwrap_registrations_total"] == 2,
               timeout=5, message="the re-registration counted")


def test_a_metrics_port_in_use_is_one_error_line_and_the_service_runs_on(wrap, svc, sock):
    import socket

    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        w = start(wrap, svc, sock, "--metrics", f"127.0.0.1:{port}")
        wait_until(lambda: "cannot serve metrics" in w.stderr_so_far(), message="error logged")
        assert status(sock)["state"] == "registered"
        w.kill(signal.SIGTERM)
        assert w.wait() == 0


def test_a_second_svcwrap_on_the_same_path_does_not_take_the_socket_over(wrap, sock):
    wrap("--no-register", "--control", sock, "--", "sleep", "30")
    wait_until(lambda: answered(sock), message="first svcwrap answering")
    second = wrap("--no-register", "--control", sock, "--", "sleep", "30")
    wait_until(lambda: "no control socket" in second.stderr_so_far(), message="second refused")
    assert "another svcwrap is listening there" in second.stderr_so_far()
    second.kill(signal.SIGTERM)
    second.wait()
    assert answered(sock), "the second svcwrap took the first one's socket with it"
