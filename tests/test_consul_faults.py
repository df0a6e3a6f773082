"""Consul down, slow, forgetful or erroring never stops the service and never
delays signals. These need the double's fault injection."""
from __future__ import annotations

import signal
import urllib.request
from pathlib import Path

import pytest

from tests.lifecycle_support import Service
from tests.support import program, wait_until


def serving(svc: Service) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{svc.port}/", timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


def test_consul_down_at_start_registers_the_service_once_it_is_up(wrap_pid1, double_svc):
    double = double_svc.consul.double
    double.refuse_connections(True)
    w = wrap_pid1(*double_svc.args(), env=double_svc.env())
    wait_until(lambda: serving(double_svc), timeout=10,
               message="the child serves while Consul is down")
    wait_until(lambda: "consul unavailable" in w.stderr_so_far(), message="logged")
    assert "Connection refused" in w.stderr_so_far()
    double.refuse_connections(False)
    wait_until(double_svc.is_passing, timeout=10, message="registered once Consul is up")


def test_consul_down_mid_life_leaves_the_child_serving_and_passing_again_after(wrap_pid1, double_svc):
    double = double_svc.consul.double
    w = wrap_pid1(*double_svc.args(), env=double_svc.env())
    wait_until(double_svc.is_passing, timeout=10, message="passing")
    double.refuse_connections(True)
    wait_until(lambda: "consul unavailable" in w.stderr_so_far(), timeout=5, message="noticed")
    assert serving(double_svc)
    double.refuse_connections(False)
    wait_until(double_svc.is_passing, timeout=10, message="passing again")
    wait_until(lambda: "consul available again" in w.stderr_so_far(), message="recovery logged")
    assert w.stderr_so_far().count("consul unavailable") == 1, "logged once, not every retry"


def test_an_agent_that_forgot_the_service_gets_it_again_within_one_heartbeat(wrap_pid1, double_svc):
    double = double_svc.consul.double
    w = wrap_pid1(*double_svc.args(ttl="3s"), env=double_svc.env())  # heartbeat every 1s
    wait_until(double_svc.is_passing, timeout=10, message="passing")
    double.forget_everything()
    forgot_at = len(double.requests)
    assert not double_svc.registered()
    wait_until(double_svc.is_passing, timeout=10, message="registered again")

    def puts_since_forgetting():
        return [(r.method, r.path.split("/")[3], r.status) for r in double.requests[forgot_at:]
                if r.method == "PUT"]

    after = wait_until(lambda: len(puts_since_forgetting()) >= 3 and puts_since_forgetting(),
                       message="the status update after registering again")
    # The very next heartbeat meets the 404 and registers the whole definition again.
    assert after[:3] == [("PUT", "check", 404), ("PUT", "service", 200), ("PUT", "check", 200)]
    assert "registering again" in w.stderr_so_far()


@pytest.mark.parametrize("status,body", [(500, "rpc error: No cluster leader"),
                                         (403, "Permission denied")])
def test_an_agent_answering_errors_leaves_the_child_serving(wrap_pid1, double_svc, status, body):
    double = double_svc.consul.double
    w = wrap_pid1(*double_svc.args(), env=double_svc.env())
    wait_until(double_svc.is_passing, timeout=10, message="passing")
    double.fail_with(status, body)
    wait_until(lambda: body in w.stderr_so_far(), timeout=5, message="error logged")
    assert serving(double_svc)
    double.fail_with(None)
    wait_until(double_svc.is_passing, timeout=10, message="passing again")
    assert w.stderr_so_far().count("consul unavailable") == 1


def test_a_slow_agent_never_delays_signal_forwarding(wrap_pid1, double_svc):
    out = double_svc.tmp / "signals"
    double_svc.consul.double.delay(5.0)  # longer than any of svcwrap's Consul timeouts
    w = wrap_pid1(*double_svc.args("--ready", "none", child=program("sigrecorder.py", out)),
                  env=double_svc.env())
    wait_until(lambda: Path(f"{out}.ready").exists(), message="recorder ready")
    wait_until(lambda: " ready " in w.stderr_so_far(), message="registration under way")
    w.kill(signal.SIGUSR1)
    # Consul answers in 5 s at the earliest: well before that, the child has the signal.
    wait_until(lambda: out.exists() and out.read_text() == f"{int(signal.SIGUSR1)}\n",
               timeout=2.0, message="USR1 forwarded while Consul hangs")


def test_a_stop_while_the_agent_hangs_still_signals_the_child_promptly(wrap_pid1, double_svc):
    w = wrap_pid1(*double_svc.args(), env=double_svc.env())
    wait_until(double_svc.is_passing, timeout=10, message="passing")
    double_svc.consul.double.delay(30.0)
    w.kill(signal.SIGTERM)
    assert w.wait(timeout=4) == 0  # the deregistration is given about a second
    # Either the deregistration's own timeout or the supervisor's gave up on it.
    assert "deregister failed" in w.stderr or "leave timed out" in w.stderr, w.stderr


def test_svcwrap_sends_register_then_passing_updates_then_deregister_in_that_order(wrap_pid1, double_svc):
    w = wrap_pid1(*double_svc.args(ttl="600ms"), env=double_svc.env())
    wait_until(double_svc.is_passing, timeout=10, message="passing")
    wait_until(lambda: sum("/check/update/" in r.path for r in double_svc.consul.double.requests) >= 3,
               message="a few heartbeats")
    w.kill(signal.SIGTERM)
    assert w.wait() == 0
    sent = [r for r in double_svc.consul.double.requests if r.method == "PUT"]  # the test only GETs
    calls = [(r.method, r.path) for r in sent]
    assert calls[0] == ("PUT", "/v1/agent/service/register")
    assert calls[-1] == ("PUT", f"/v1/agent/service/deregister/{double_svc.id}")
    updates = [r for r in sent if r.path.startswith("/v1/agent/check/update/")]
    assert {r.path for r in updates} == {f"/v1/agent/check/update/{double_svc.check_id}"}
    assert {r.body["Status"] for r in updates} == {"passing"}
    register = sent[0]
    check = {k.lower(): v for k, v in register.body["checks"][0].items()}
    assert check["ttl"] == "600ms" and check["status"] == "passing"
