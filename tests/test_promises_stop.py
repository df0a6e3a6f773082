"""The stop sequence as the README states it: leave Consul, drain, stop signal,
SIGKILL after --stop-timeout; a second request cuts the drain short (issue 14)."""
from __future__ import annotations

import signal
import time

import psutil
import pytest

from tests.support import wait_until

# Exits 0 about 0.4 s after SIGTERM (the group's TERM ends the loop's sleep,
# then the trap runs): a child that needs a little of its grace.
SLOW_TO_STOP = ["sh", "-c", "trap 'sleep 0.4; exit 0' TERM; while :; do sleep 0.05; done"]


@pytest.mark.parametrize("second", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_a_second_stop_request_during_a_long_drain_cuts_the_drain_short(wrap_pid1, svc, second):
    w = wrap_pid1(*svc.args("--drain", "30s"), env=svc.env())
    wait_until(svc.is_passing, timeout=10, message="service passing")
    w.kill(signal.SIGTERM)
    wait_until(lambda: " draining " in w.stderr_so_far(), message="drain begun")
    w.kill(second)
    assert w.wait(timeout=5) == 0, "the child was not stopped until the 30 s drain ran out"
    assert not svc.registered()


def test_stop_timeout_counts_from_the_stop_signal_so_a_drain_does_not_eat_the_childs_grace(
        wrap_pid1, svc):
    w = wrap_pid1(*svc.args("--ready", "none", "--drain", "1500ms", "--stop-timeout", "1200ms",
                            child=SLOW_TO_STOP), env=svc.env())
    wait_until(svc.is_passing, timeout=10, message="service passing")
    w.kill(signal.SIGTERM)
    # Counted from the request, the 1.2 s would be over when the drain ends:
    # SIGKILL (137) at once instead of the 0.4 s the child needs.
    assert w.wait(timeout=10) == 0
    assert "killing child" not in w.stderr


def test_sigterm_while_the_registration_is_in_flight_leaves_no_entry_in_consul(wrap_pid1, double_svc):
    double = double_svc.consul.double
    double.delay(0.15)  # every answer: the registration is on its way for 150 ms
    w = wrap_pid1(*double_svc.args("--ready", "none", child=["sleep", "30"]), env=double_svc.env())

    def talking_to_the_agent() -> bool:
        return any(c.raddr and c.raddr.port == double.port and c.status == psutil.CONN_ESTABLISHED
                   for c in psutil.Process(w.pid).net_connections("tcp"))

    # Its first connection to the agent carries the registration.
    wait_until(talking_to_the_agent, message="svcwrap sending the registration")
    term_at = time.monotonic()
    w.kill(signal.SIGTERM)
    assert w.wait() == 128 + signal.SIGTERM
    double.delay(0)
    registrations = wait_until(lambda: [r for r in double.requests
                                        if r.path == "/v1/agent/service/register"],
                               message="the registration landed, if only after svcwrap's exit")
    assert [r.status for r in registrations] == [200]
    assert registrations[0].time + 0.15 > term_at, "it landed after the SIGTERM"
    # The deregistration svcwrap sent before it exited may still be on its
    # way through the slow agent; without one the entry stays for good.
    wait_until(lambda: not double_svc.registered(), timeout=2,
               message="no entry left by a stop during the registration")
