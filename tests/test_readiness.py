"""Each kind of readiness probe holds registration back until the service is ready."""
from __future__ import annotations

import shutil
import signal
import socket

import pytest

from tests.support import assert_stays_false, wait_until


def assert_registered_only_after_gate(wrap_pid1, svc, *ready: str, child_args=(), gate=None):
    gate = gate or svc.tmp / "gate"
    w = wrap_pid1(*svc.args(*ready, child_args=("--gate", gate, *child_args)), env=svc.env())
    wait_until(lambda: w.children(), message="child running")
    assert_stays_false(svc.registered, seconds=0.3, message="registered before ready")
    gate.touch()
    wait_until(svc.is_passing, timeout=10, message="passing once ready")
    return w


def test_a_tcp_probe_waits_for_the_port_to_accept_connections(wrap_pid1, svc):
    assert_registered_only_after_gate(wrap_pid1, svc, "--ready", f"tcp:127.0.0.1:{svc.port}")


def test_an_http_probe_waits_for_a_2xx_answer(wrap_pid1, svc):
    assert_registered_only_after_gate(wrap_pid1, svc, "--ready", f"http://127.0.0.1:{svc.port}/")


def test_an_exec_probe_waits_for_the_command_to_exit_0(wrap_pid1, svc):
    flag = svc.tmp / "flag"
    w = wrap_pid1(*svc.args("--ready", f"exec:test -e {flag}"), env=svc.env())
    wait_until(lambda: w.children(), message="child running")
    assert_stays_false(svc.registered, seconds=0.3, message="registered before ready")
    flag.touch()
    wait_until(svc.is_passing, timeout=10, message="passing once the command exits 0")


@pytest.mark.parametrize("form", ["abstract", "path"])
def test_notify_waits_for_ready_1_on_notify_socket(wrap_pid1, svc, form):
    ready = "notify" if form == "abstract" else f"notify:{svc.tmp / 'notify.sock'}"
    assert_registered_only_after_gate(wrap_pid1, svc, "--ready", ready, child_args=("--notify",))


def test_none_registers_as_soon_as_the_child_runs(wrap_pid1, svc):
    wrap_pid1(*svc.args("--ready", "none", child=["sleep", "30"]), env=svc.env())
    wait_until(svc.is_passing, timeout=10, message="passing without a probe")


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="Debian's redis-server is not installed")
def test_a_real_redis_server_with_supervised_systemd_is_registered_on_ready_1(wrap_pid1, svc):
    w = wrap_pid1(*svc.args("--ready", "notify", child=[
        "redis-server", "--port", str(svc.port), "--supervised", "systemd", "--save", "",
        "--appendonly", "no", "--bind", "127.0.0.1"]), env=svc.env())
    entry = wait_until(lambda: svc.consul.get(f"/v1/health/service/{svc.name}?passing")[1],
                       timeout=10, message="redis passing")[0]
    address = entry["Service"]["Address"] or entry["Node"]["Address"]
    with socket.create_connection((address, entry["Service"]["Port"]), timeout=5) as conn:
        conn.sendall(b"PING\r\n")
        assert conn.recv(64) == b"+PONG\r\n"
    w.kill(signal.SIGTERM)
    assert w.wait() == 0
    assert not svc.registered()
