"""--success-exit CODE (issue 9), as tini's -e: svcwrap exits 0 when the main
child's status (N, or 128+N when killed by signal N) is CODE."""
from __future__ import annotations

import os
import signal

from tests.support import wait_until


def test_a_child_that_exits_143_makes_svcwrap_exit_0_with_success_exit_143(wrap):
    w = wrap("--no-register", "--success-exit", "143", "--", "sh", "-c", "exit 143")
    assert w.wait() == 0


def test_a_child_killed_by_sigterm_on_docker_stop_counts_as_143_and_exits_0(wrap):
    w = wrap("--no-register", "--success-exit", "143", "--", "sleep", "30")
    wait_until(lambda: w.children(), message="child")
    w.kill(signal.SIGTERM)
    assert w.wait() == 0


def test_other_statuses_are_passed_on_unchanged(wrap):
    w = wrap("--no-register", "--success-exit", "143", "--", "sh", "-c", "exit 3")
    assert w.wait() == 3


def test_success_exit_is_repeatable_and_read_from_its_variable(wrap):
    env = dict(os.environ, SVCWRAP_SUCCESS_EXIT="1,143")
    assert wrap("--no-register", "--", "sh", "-c", "exit 1", env=env).wait() == 0
    w = wrap("--no-register", "--success-exit", "2", "--success-exit", "143", "--",
             "sh", "-c", "exit 2")
    assert w.wait() == 0


def test_svcwraps_own_failures_are_never_remapped(wrap):
    w = wrap("--no-register", "--success-exit", "127", "--", "no-such-command-svcwrap")
    assert w.wait() == 127
