"""svcwrap forwards every catchable signal, and SIGTERM/SIGINT stop the child
(more on stop requests in test_stop_requests.py, on --rewrite in test_rewrite.py)."""
from __future__ import annotations

import signal
from pathlib import Path

from tests.signal_support import received, start_recorder
from tests.support import wait_until

RTMIN = signal.SIGRTMIN
# Everything but the stop requests (TERM, INT), SIGCHLD and the uncatchable
# KILL/STOP; TSTP/TTIN/TTOU have their own test below.
FORWARDED = [
    signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2, signal.SIGALRM,
    signal.SIGWINCH, signal.SIGCONT, signal.SIGURG, signal.SIGPIPE, signal.SIGPWR,
    signal.SIGSEGV, signal.SIGBUS, signal.SIGILL, signal.SIGFPE, signal.SIGABRT,
    signal.SIGTRAP, signal.SIGSYS, signal.SIGXCPU, signal.SIGXFSZ, signal.SIGVTALRM,
    signal.SIGPROF, signal.SIGIO, signal.SIGSTKFLT, RTMIN, RTMIN + 5, signal.SIGRTMAX,
]


def test_every_catchable_signal_reaches_the_child_in_the_order_sent(wrap, tmp_path):
    w, out = start_recorder(wrap, tmp_path)
    for n, signo in enumerate(FORWARDED, start=1):
        w.kill(signo)
        wait_until(lambda: len(received(out)) >= n, message=f"child got {signo!r}")
    assert received(out) == [int(s) for s in FORWARDED]
    w.kill(signal.SIGTERM)
    assert w.wait() == 7


def test_a_burst_of_queued_real_time_signals_arrives_complete(wrap, tmp_path):
    w, out = start_recorder(wrap, tmp_path)
    for _ in range(50):
        w.kill(RTMIN + 2)
    wait_until(lambda: len(received(out)) >= 50, message="50 real-time signals")
    assert received(out) == [RTMIN + 2] * 50


def test_sigterm_reaches_the_child_and_svcwrap_exits_with_its_status(wrap, tmp_path):
    w, out = start_recorder(wrap, tmp_path)
    w.kill(signal.SIGTERM)
    assert w.wait() == 7
    assert received(out) == [signal.SIGTERM]


def test_sigint_to_svcwrap_reaches_the_child_as_sigint(wrap, tmp_path):
    # issue 9: PostgreSQL's image stops with SIGINT, its fast shutdown; made
    # into SIGTERM (its smart one) `docker stop` would hang until SIGKILL.
    w, out = start_recorder(wrap, tmp_path, "--stop-timeout", "500ms")
    w.kill(signal.SIGINT)
    assert w.wait() == 128 + signal.SIGKILL  # the recorder exits only on TERM
    assert received(out) == [signal.SIGINT]


def test_stop_signal_chooses_what_the_child_receives_on_every_stop_request(wrap, tmp_path):
    for request in (signal.SIGTERM, signal.SIGINT):
        w, out = start_recorder(wrap, tmp_path / request.name, "--stop-signal", "SIGQUIT",
                                "--stop-timeout", "500ms")
        w.kill(request)
        assert w.wait() == 128 + signal.SIGKILL
        assert received(out) == [signal.SIGQUIT]


def test_a_child_that_ignores_the_stop_signal_is_killed_after_the_stop_timeout(wrap, tmp_path):
    w, out = start_recorder(wrap, tmp_path, "--stop-timeout", "500ms",
                            recorder_args=["--ignore-term"])
    w.kill(signal.SIGTERM)
    assert w.wait() == 128 + signal.SIGKILL
    assert received(out) == [signal.SIGTERM]
    assert "stop timeout, killing child" in w.stderr


def test_signals_reach_the_childs_whole_process_group_by_default(wrap, tmp_path):
    w, out = start_recorder(wrap, tmp_path, recorder_args=["--forks", "2"])
    for i in range(2):
        wait_until(lambda: Path(f"{out}.{i}.ready").exists(), message=f"forked recorder {i}")
    w.kill(signal.SIGUSR1)
    for path in (out, Path(f"{out}.0"), Path(f"{out}.1")):
        wait_until(lambda: received(path) == [signal.SIGUSR1], message=f"USR1 in {path.name}")


def test_single_child_sends_signals_to_the_child_alone(wrap, tmp_path):
    w, out = start_recorder(wrap, tmp_path, "--single-child", recorder_args=["--forks", "1"])
    wait_until(lambda: Path(f"{out}.0.ready").exists(), message="forked recorder")
    w.kill(signal.SIGUSR1)
    wait_until(lambda: received(out) == [signal.SIGUSR1], message="USR1 to the main child")
    w.kill(signal.SIGUSR2)
    wait_until(lambda: received(out) == [signal.SIGUSR1, signal.SIGUSR2], message="USR2 too")
    assert received(Path(f"{out}.0")) == []


def test_sigtstp_stops_the_child_and_sigcont_resumes_it(wrap_pid1, tmp_path):
    w = wrap_pid1("--no-register", "--", "sleep", "30")
    child = wait_until(lambda: w.children(), message="child")[0]
    w.kill(signal.SIGTSTP)
    wait_until(lambda: child.status() == "stopped", message="child stopped")
    w.kill(signal.SIGCONT)
    wait_until(lambda: child.status() != "stopped", message="child running again")
    w.kill(signal.SIGTERM)
    assert w.wait() == 128 + signal.SIGTERM


def test_a_child_that_exits_on_its_own_does_not_wait_for_a_signal(wrap):
    w = wrap("--no-register", "--", "sh", "-c", "sleep 0.2; exit 4")
    assert w.wait() == 4
