"""--rewrite FROM:TO (issue 9), as dumb-init's: the child gets TO when svcwrap
receives FROM, forwarded at once or at the end of the stop request FROM
started; TO = 0 drops FROM altogether."""
from __future__ import annotations

import signal

import psutil
import pytest

from tests.signal_support import MARKER, received, settle, start_recorder
from tests.support import wait_until

KILLED = 128 + signal.SIGKILL


@pytest.mark.parametrize("rewrites,sent,expected", [
    (["HUP:USR1"], [signal.SIGHUP, signal.SIGUSR2], [signal.SIGUSR1, signal.SIGUSR2]),
    # swapped pairs and numbers, as dumb-init's tests write them
    (["1:31", "31:1"], [signal.SIGHUP, signal.SIGSYS], [signal.SIGSYS, signal.SIGHUP]),
    (["QUIT:QUIT", "SIGWINCH:SIGRTMIN+3"], [signal.SIGQUIT, signal.SIGWINCH],
     [signal.SIGQUIT, signal.SIGRTMIN + 3]),
])
def test_rewrite_changes_what_the_child_receives(wrap, tmp_path, rewrites, sent, expected):
    args = [a for r in rewrites for a in ("--rewrite", r)]
    w, out = start_recorder(wrap, tmp_path, *args)
    for n, signo in enumerate(sent, start=1):
        w.kill(signo)
        wait_until(lambda: len(received(out)) >= n, message=f"child got something for {signo!r}")
    assert received(out) == expected


def test_a_signal_rewritten_to_0_never_reaches_the_child(wrap, tmp_path):
    w, out = start_recorder(wrap, tmp_path, "--rewrite", "WINCH:0", "--rewrite", "USR1:0")
    w.kill(signal.SIGWINCH)
    w.kill(signal.SIGUSR1)
    w.kill(signal.SIGHUP)
    assert settle(w, out) == [signal.SIGHUP]


def test_a_stop_request_rewritten_to_0_is_ignored_not_begun(wrap, tmp_path):
    # dumb-init users write --rewrite TERM:0 to make SIGTERM do nothing; a
    # stop that then signalled nothing would only end in SIGKILL.
    w, out = start_recorder(wrap, tmp_path, "--rewrite", "TERM:0")
    w.kill(signal.SIGTERM)
    assert settle(w, out) == []
    assert w.proc.poll() is None, "svcwrap stopped on a dropped SIGTERM"
    w.kill(signal.SIGINT)  # still a stop request; the recorder outlives INT
    wait_until(lambda: received(out)[-1:] == [signal.SIGINT], message="INT as the stop signal")


def test_the_rewrite_applies_to_the_signal_that_ends_a_stop_request(wrap, tmp_path):
    # Kubernetes always sends TERM; this service stops gracefully on QUIT.
    # Still a stop request (SIGKILL after --stop-timeout), ending in QUIT.
    w, out = start_recorder(wrap, tmp_path, "--rewrite", "TERM:QUIT", "--stop-timeout", "500ms")
    w.kill(signal.SIGTERM)
    assert w.wait() == KILLED
    assert received(out) == [signal.SIGQUIT]


def test_an_explicit_stop_signal_is_sent_as_given_and_not_rewritten(wrap, tmp_path):
    # --stop-signal names what the child gets; --rewrite maps received signals.
    w, out = start_recorder(wrap, tmp_path, "--stop-signal", "QUIT", "--rewrite", "QUIT:HUP",
                            "--stop-timeout", "500ms")
    w.kill(signal.SIGQUIT)  # not a stop request: forwarded, rewritten
    assert settle(w, out) == [signal.SIGHUP]
    w.kill(signal.SIGTERM)
    assert w.wait() == KILLED
    assert [s for s in received(out) if s != MARKER] == [signal.SIGHUP, signal.SIGQUIT]


def test_a_job_control_signal_rewritten_to_0_stops_neither_the_child_nor_svcwrap(wrap, tmp_path):
    # dumb-init suspends itself on TSTP/TTIN/TTOU even when rewritten; svcwrap
    # follows what the child actually does instead.
    w, out = start_recorder(wrap, tmp_path, "--rewrite", "TSTP:0")
    w.kill(signal.SIGTSTP)
    assert settle(w, out) == []
    assert psutil.Process(w.pid).status() != "stopped"


def test_sigtstp_rewritten_to_sigstop_stops_a_child_that_handles_tstp(wrap, tmp_path):
    # The recorder catches TSTP, so only SIGSTOP stops it (dumb-init rewrites
    # TSTP/TTIN/TTOU to STOP by default; svcwrap needs not: see the README).
    w, out = start_recorder(wrap, tmp_path, "--rewrite", "TSTP:STOP")
    child = wait_until(lambda: w.children(), message="child")[0]
    w.kill(signal.SIGTSTP)
    wait_until(lambda: child.status() == "stopped", message="child stopped")
    w.kill(signal.SIGCONT)
    wait_until(lambda: child.status() != "stopped", message="child running again")
    assert settle(w, out) == [signal.SIGCONT]
