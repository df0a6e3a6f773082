"""Leaving Consul under a slow agent (issue 9, section 2): the deregistration
goes at once on its own connection, a stop waits --leave-timeout for it, and
it keeps trying until svcwrap exits. These need the double's fault injection."""
from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

import psutil

from tests.lifecycle_support import Service
from tests.support import wait_until

# A child that notes when SIGTERM came (CLOCK_MONOTONIC, the double's clock
# too) and exits after HOLD seconds.
TERM_CLOCK = """
import signal, sys, time
out, hold = sys.argv[1], float(sys.argv[2])
def on_term(*_):
    open(out, "w").write(repr(time.monotonic()))
    time.sleep(hold)
    sys.exit(0)
signal.signal(signal.SIGTERM, on_term)
while True:
    time.sleep(1)
"""


def term_clock(out: Path, hold: float = 0.0) -> list[str]:
    return [sys.executable, "-c", TERM_CLOCK, str(out), str(hold)]


def deregistrations(svc: Service) -> list:
    return [r for r in svc.consul.double.requests
            if r.path == f"/v1/agent/service/deregister/{svc.id}"]


def test_twenty_stops_on_an_agent_answering_in_0_9s_all_signal_the_child_after_it_left(
        wrap_pid1, consul_double, tmp_path):
    # Issue 9: the deregistration queued behind a heartbeat in flight, so the
    # child was signalled before it left Consul in 2 of 3 stops.
    double = consul_double.double
    services = [Service(consul_double, tmp_path) for _ in range(20)]
    runs = [wrap_pid1(*svc.args("--ready", "none", ttl="1s",
                                child=term_clock(tmp_path / f"term-{i}")), env=svc.env())
            for i, svc in enumerate(services)]
    wait_until(lambda: all(svc.is_passing() for svc in services), timeout=30,
               message="all 20 passing")
    double.delay(0.9)
    slowed = time.monotonic()
    # Heartbeats (every 333 ms) now take 0.9 s: one is in flight almost always.
    wait_until(lambda: all(any(r.time > slowed and "/check/update/" in r.path
                               and svc.check_id in r.path for r in double.requests)
                           for svc in services), timeout=15, message="slow heartbeats")
    for w in runs:
        w.kill(signal.SIGTERM)
    assert [w.wait(timeout=20) for w in runs] == [0] * 20
    for i, svc in enumerate(services):
        (gone,) = [r for r in deregistrations(svc) if r.status == 200][:1]
        term_at = float((tmp_path / f"term-{i}").read_text())
        assert term_at >= gone.time + 0.9, f"instance {i}: signalled before it left Consul"
        assert not svc.registered()


def test_a_stop_waits_only_leave_timeout_for_a_hanging_agent(wrap_pid1, consul_double, tmp_path):
    svc = Service(consul_double, tmp_path)
    out = tmp_path / "term"
    w = wrap_pid1(*svc.args("--ready", "none", "--leave-timeout", "300ms",
                            child=term_clock(out)), env=svc.env())
    wait_until(svc.is_passing, timeout=10, message="passing")
    consul_double.double.delay(30.0)
    sent = time.monotonic()
    w.kill(signal.SIGTERM)
    wait_until(out.exists, timeout=5, message="child signalled")
    assert float(out.read_text()) - sent < 0.8, "the default 1s leave timeout was used"
    assert w.wait() == 0
    assert "leave timed out" in w.stderr and "waited=0.3s" in w.stderr


def test_a_deregistration_past_the_leave_timeout_keeps_trying_until_svcwrap_exits(
        wrap_pid1, consul_double, tmp_path):
    # Issue 9: an agent away for the stop kept the entry until its TTL expired.
    svc = Service(consul_double, tmp_path)
    w = wrap_pid1(*svc.args("--ready", "none", child=term_clock(tmp_path / "term", hold=4)),
                  env=svc.env())
    wait_until(svc.is_passing, timeout=10, message="passing")
    consul_double.double.refuse_connections(True)  # and drops the connections svcwrap holds
    w.kill(signal.SIGTERM)
    wait_until(lambda: "leave timed out" in w.stderr_so_far(), timeout=5,
               message="the child is signalled without waiting for Consul")
    consul_double.double.refuse_connections(False)
    wait_until(lambda: not svc.registered(), timeout=3.5,
               message="deregistered while the child still stops (its TTL is far off)")
    assert w.wait() == 0
    assert "deregistered" in w.stderr


def test_a_deregistration_the_agent_processed_late_is_never_logged_as_failed(
        wrap_pid1, consul_double, tmp_path):
    svc = Service(consul_double, tmp_path)
    w = wrap_pid1(*svc.args("--ready", "none", ttl="30s",
                            child=term_clock(tmp_path / "term", hold=1.5)), env=svc.env())
    wait_until(lambda: " registered " in w.stderr_so_far(), timeout=10, message="registered")
    consul_double.double.delay(1.5)  # past the 1 s leave timeout
    w.kill(signal.SIGTERM)
    assert w.wait() == 0
    assert [r.status for r in deregistrations(svc)] == [200]
    assert "deregister failed" not in w.stderr
    assert "deregistered" in w.stderr, w.stderr


def test_a_stop_starts_no_thread_and_opens_no_connection(wrap_pid1, consul_double, tmp_path):
    # Issue 9: 300 stops at once cost 56-68 ms of CPU each, partly a leave
    # thread and a TCP connection made only at stop time.
    svc = Service(consul_double, tmp_path)
    w = wrap_pid1(*svc.args("--drain", "3s", ttl="30s"), env=svc.env())
    wait_until(svc.is_passing, timeout=10, message="passing")
    proc = psutil.Process(w.pid)
    port = consul_double.double.port

    def to_agent() -> set:
        return {c.laddr for c in proc.net_connections("tcp")
                if c.raddr and c.raddr.port == port and c.status == "ESTABLISHED"}

    connections = wait_until(lambda: len(to_agent()) == 2 and to_agent(), timeout=5,
                             message="the worker's connection and the stop's, opened ahead")
    threads = proc.num_threads()
    w.kill(signal.SIGTERM)
    wait_until(lambda: deregistrations(svc), timeout=5, message="deregistered")
    # svcwrap drains for 3 s: still running, with nothing new.
    assert proc.num_threads() <= threads
    assert to_agent() <= connections, "a connection opened at stop time"
    assert w.wait() == 0
