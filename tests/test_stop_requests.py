"""Stop requests (issue 9): which signals ask svcwrap to stop (--stop-on), and
which signal the child then gets (the one that asked, or --stop-signal)."""
from __future__ import annotations

import json
import signal

from tests.signal_support import received, settle, start_recorder
from tests.support import program, wait_until

KILLED = 128 + signal.SIGKILL


def test_stop_on_makes_sigquit_a_stop_request_that_ends_in_sigquit(wrap, tmp_path):
    # nginx's image stops with SIGQUIT, its graceful stop. As a stop request
    # it ends with SIGKILL after --stop-timeout; merely forwarded, it would not.
    w, out = start_recorder(wrap, tmp_path, "--stop-on", "TERM,INT,QUIT",
                            "--stop-timeout", "500ms")
    w.kill(signal.SIGQUIT)
    assert w.wait() == KILLED
    assert received(out) == [signal.SIGQUIT]


def test_a_signal_left_out_of_stop_on_is_forwarded_at_once_and_unchanged(wrap, tmp_path):
    w, out = start_recorder(wrap, tmp_path, "--stop-on", "TERM")
    w.kill(signal.SIGINT)
    assert settle(w, out) == [signal.SIGINT]
    assert w.proc.poll() is None, "SIGINT stopped svcwrap although it is not in --stop-on"
    w.kill(signal.SIGTERM)
    assert w.wait() == 7


def test_stop_on_is_read_from_its_variable_too(wrap, tmp_path):
    import os

    env = dict(os.environ, SVCWRAP_STOP_ON="USR2", SVCWRAP_STOP_TIMEOUT="500ms")
    out = tmp_path / "signals"
    w = wrap("--no-register", "--", *program("sigrecorder.py", out), env=env)
    wait_until(lambda: (tmp_path / "signals.ready").exists(), message="recorder ready")
    w.kill(signal.SIGUSR2)
    assert w.wait() == KILLED
    assert received(out) == [signal.SIGUSR2]


def test_a_stop_request_after_the_stop_signal_is_passed_on_at_once(wrap, tmp_path):
    # TERM, then INT as an escalation: the child gets both, in order.
    w, out = start_recorder(wrap, tmp_path, "--stop-timeout", "2s",
                            recorder_args=["--ignore-term"])
    w.kill(signal.SIGTERM)
    wait_until(lambda: received(out) == [signal.SIGTERM], message="TERM forwarded")
    w.kill(signal.SIGINT)
    wait_until(lambda: received(out) == [signal.SIGTERM, signal.SIGINT], message="INT too")
    assert w.wait() == KILLED


def test_sigquit_in_stop_on_takes_the_service_out_of_consul_before_the_child_is_signalled(
        wrap, svc):
    # --stop-signal TERM, because the test service reports Consul's view on TERM.
    seen = svc.tmp / "seen-at-term"
    w = wrap(*svc.args("--stop-on", "TERM,QUIT", "--stop-signal", "TERM",
                       child_args=("--on-term-query", svc.passing_url, seen)), env=svc.env())
    wait_until(svc.is_passing, timeout=10, message="service passing")
    w.kill(signal.SIGQUIT)
    assert w.wait() == 0
    _, body = seen.read_text().split(" ", 1)
    assert json.loads(body) == [], "the child was signalled while still listed as passing"


def test_a_second_stop_request_during_the_drain_chooses_the_signal(wrap, svc):
    # TERM starts a long drain; INT cuts it short, and the child gets INT (a
    # Python service dies of it: 130), as an impatient operator meant.
    w = wrap(*svc.args("--drain", "30s"), env=svc.env())
    wait_until(svc.is_passing, timeout=10, message="service passing")
    w.kill(signal.SIGTERM)
    wait_until(lambda: not svc.registered(), timeout=5, message="deregistered")
    w.kill(signal.SIGINT)
    assert w.wait(timeout=5) == 128 + signal.SIGINT
