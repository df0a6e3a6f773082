"""Consul down, slow, forgetful or erroring never stops the service and never
delays signals. These need the double's fault injection."""
from __future__ import annotations

import gzip
import signal
import socket
import threading
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import psutil
import pytest

from tests.consul_double import start
from tests.consul_fixture import ConsulUnderTest
from tests.lifecycle_support import Service
from tests.support import program, relay, wait_until

LEGACY_TOKEN = "l3gacy-70ken"


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
    check = {k.lower(): v for k, v in register.body["Check"].items()}
    assert check["ttl"] == "600ms" and check["status"] == "passing"


def test_an_agent_before_1_11_answering_unknown_check_with_a_500_gets_the_service_again(
        wrap_pid1, tmp_path):
    # Issue 9: with ACLs, Consul <= 1.10 answers `500 Unknown check "<id>"`.
    with start(acl_tokens=[LEGACY_TOKEN], legacy=True) as double:
        consul = ConsulUnderTest(double.addr, double, 1.0, 0.25, token=LEGACY_TOKEN)
        svc = Service(consul, tmp_path)
        w = wrap_pid1(*svc.args(ttl="3s"), env=svc.env())
        wait_until(svc.is_passing, timeout=10, message="passing")
        double.forget_everything()
        wait_until(lambda: any(r.status == 500 and "/check/update/" in r.path
                               for r in double.requests), timeout=5,
                   message="the old answer, 500 Unknown check")
        wait_until(svc.is_passing, timeout=10, message="registered again")
        assert "registering again" in w.stderr_so_far()


def test_a_re_registration_carries_the_current_check_result_never_passing(wrap_pid1, svc):
    code = svc.tmp / "code"
    code.write_text("2")
    w = wrap_pid1(*svc.args("--ready", "none", "--check", f"exec:sh -c 'exit $(cat {code})'",
                            ttl="3s"), env=svc.env())
    wait_until(lambda: svc.status() == "critical", timeout=10, message="critical")
    double = svc.consul.double
    double.forget_everything()
    forgot_at = len(double.requests)
    wait_until(lambda: svc.status() == "critical", timeout=10, message="registered again")
    registers = [r for r in double.requests[forgot_at:] if r.path == "/v1/agent/service/register"]
    assert [r.body["Check"]["Status"] for r in registers] == ["critical"]
    assert w.children()


def test_a_dripping_agent_is_noticed_within_the_call_deadline(wrap_pid1, svc):
    # Issue 9: with per-read timeouts a dripping answer held the worker forever.
    w = wrap_pid1(*svc.args(), env=svc.env())
    wait_until(svc.is_passing, timeout=10, message="passing")
    svc.consul.double.drip(0.1)
    wait_until(lambda: "consul unavailable" in w.stderr_so_far(), timeout=6,
               message="the dripping agent logged")
    assert "no complete answer within 2s" in w.stderr_so_far()
    svc.consul.double.drip(0)
    wait_until(lambda: "consul available again" in w.stderr_so_far(), timeout=10,
               message="back")


def test_a_gzip_bomb_from_the_agent_is_refused_without_inflating_it(wrap_pid1, svc):
    # Issue 9: a 0.5 MB gzip answer drove svcwrap to 1.5 GB RSS.
    bomb = gzip.compress(b"\0" * 200_000_000, compresslevel=1)
    w = wrap_pid1(*svc.args(), env=svc.env())
    wait_until(svc.is_passing, timeout=10, message="passing")
    svc.consul.double.fail_with(500, bomb, {"Content-Encoding": "gzip"})
    wait_until(lambda: "larger than" in w.stderr_so_far(), timeout=5, message="refused")
    assert psutil.Process(w.pid).memory_info().rss < 100_000_000
    svc.consul.double.fail_with(None)
    wait_until(svc.is_passing, timeout=10, message="passing again")


def test_http_proxy_is_never_used_for_the_agent(wrap_pid1, svc):
    # Issue 9: Go's client never proxies loopback, and neither does svcwrap
    # (the rules for other agents: tests/test_consul_proxy.py).
    with start() as trap:
        w = wrap_pid1(*svc.args(), env=svc.env(HTTP_PROXY=trap.url, http_proxy=trap.url,
                                               HTTPS_PROXY=trap.url, https_proxy=trap.url))
        wait_until(svc.is_passing, timeout=10, message="registered directly")
        assert trap.requests == []
        w.kill(signal.SIGTERM)
        assert w.wait() == 0


def test_a_unix_socket_agent_address_registers_the_service(wrap_pid1, svc):
    path = svc.tmp / "consul.sock"
    with unix_to_tcp(path, svc.consul.double.port):
        w = wrap_pid1(*svc.args("--consul", f"unix://{path}"), env=svc.env())
        wait_until(svc.is_passing, timeout=10, message="registered over the unix socket")
        w.kill(signal.SIGTERM)
        assert w.wait() == 0
        assert not svc.registered()


@contextmanager
def unix_to_tcp(path: Path, port: int):
    """A unix socket in front of the double (which listens on TCP only)."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(16)

    def accept() -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", port))
            threading.Thread(target=relay, args=(client, upstream), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield
    finally:
        listener.shutdown(socket.SHUT_RDWR)
        listener.close()
