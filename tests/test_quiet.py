"""Quiet by default (issue 9): a plain init prints nothing at all, like tini and
dumb-init; with Consul the default level shows what an operator needs."""
from __future__ import annotations

import signal
import subprocess

from tests.signal_support import received, start_recorder
from tests.support import wait_until


def test_a_plain_run_writes_zero_bytes_to_stdout_and_stderr(wrap):
    w = wrap("--no-register", "--", "true", stdout=subprocess.PIPE)
    out, err = w.proc.communicate(timeout=10)
    assert (w.proc.returncode, out, err) == (0, b"", b"")


def test_forwarding_signals_and_stopping_are_silent_without_consul(wrap, tmp_path):
    w, out = start_recorder(wrap, tmp_path)
    w.kill(signal.SIGUSR1)
    wait_until(lambda: received(out) == [signal.SIGUSR1], message="USR1 forwarded")
    w.kill(signal.SIGTERM)
    assert w.wait() == 7
    assert w.stderr == ""


def test_stopping_leftover_processes_is_silent_too(wrap):
    w = wrap("--no-register", "--", "sh", "-c", "setsid sleep 30 & exit 0")
    assert w.wait() == 0
    assert w.stderr == ""


def test_errors_always_show(wrap):
    w = wrap("--no-register", "--log-level", "error", "--", "no-such-command-svcwrap")
    assert w.wait() == 127
    assert "no-such-command-svcwrap: command not found" in w.stderr


def test_debug_shows_the_child_and_the_signal_traffic(wrap, tmp_path):
    w, out = start_recorder(wrap, tmp_path, "--log-level", "debug")
    w.kill(signal.SIGUSR1)
    wait_until(lambda: received(out) == [signal.SIGUSR1], message="USR1 forwarded")
    w.kill(signal.SIGTERM)
    assert w.wait() == 7
    events = [line.split()[3] for line in w.stderr.splitlines()]
    for event in ("child", "forward", "stopping", "signal", "exit"):
        assert event in events, w.stderr


def test_with_consul_the_default_level_shows_operator_events_only(wrap, svc):
    w = wrap(*svc.args(), env=svc.env())
    wait_until(lambda: " registered " in w.stderr_so_far(), timeout=10, message="registered")
    w.kill(signal.SIGWINCH)  # forwarded; ignored by the test service
    w.kill(signal.SIGTERM)
    assert w.wait() == 0
    events = [line.split()[3] for line in w.stderr.splitlines()]
    assert "registered" in events and "deregistered" in events, w.stderr
    assert not {"child", "forward", "stopping", "signal", "exit"} & set(events), w.stderr
