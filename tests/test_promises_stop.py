"""The stop sequence as the README states it: leave Consul, drain, stop signal,
SIGKILL after --stop-timeout; a second request cuts the drain short (issue 14)."""
from __future__ import annotations

import signal

import pytest

from tests.support import HeldProxy, assert_stays_false, wait_until

# Exits 0 about 0.4 s after SIGTERM (the group's TERM ends the loop's sleep,
# then the trap runs): a child that needs a little of its grace.
SLOW_TO_STOP = ["sh", "-c", "trap 'sleep 0.4; exit 0' TERM; while :; do sleep 0.05; done"]


@pytest.mark.parametrize("second", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_a_second_stop_request_during_a_long_drain_cuts_the_drain_short(wrap_pid1, svc, second):
    w = wrap_pid1(*svc.args("--drain", "30s", "--log-level", "debug"), env=svc.env())
    wait_until(svc.is_passing, timeout=10, message="service passing")
    w.kill(signal.SIGTERM)
    wait_until(lambda: " draining " in w.stderr_so_far(), message="drain begun")
    w.kill(second)
    # The child gets the second request's signal (issue 9): the test service
    # exits 0 on SIGTERM and dies of SIGINT (130).
    expected = 0 if second == signal.SIGTERM else 128 + signal.SIGINT
    assert w.wait(timeout=5) == expected, "the child was not stopped until the 30 s drain ran out"
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


def test_sigterm_while_the_registration_is_in_flight_leaves_no_entry_in_consul(wrap_pid1, svc):
    agent = HeldProxy(svc.consul.host, svc.consul.port)  # holds the registration on its way
    try:
        w = wrap_pid1(*svc.args("--ready", "none", "--consul", agent.addr, "--log-level", "debug",
                                child=["sleep", "30"]),
                      env=svc.env())
        # The first thing svcwrap sends the agent is the registration.
        assert agent.holding.wait(10), "no registration sent"
        w.kill(signal.SIGTERM)
        wait_until(lambda: " stopping " in w.stderr_so_far(), message="stop begun")
        # The deregistration sent at once passes (and finds nothing); only
        # then does the registration land: svcwrap must take it back too.
        assert agent.answered_later.wait(10), "no deregistration answered"
        agent.release()
        assert w.wait() == 128 + signal.SIGTERM
    finally:
        agent.close()
    # Released, the registration may land a moment after svcwrap is gone.
    assert_stays_false(svc.registered, seconds=0.5,
                       message="left in Consul by a stop during its registration")
