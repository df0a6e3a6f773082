"""svcwrap reaps every zombie, orphans included, and stops what is left
when the main child exits."""
from __future__ import annotations

import signal
import time

from tests.support import program, wait_until


def zombies(w) -> list:
    return [c for c in w.children() if c.status() == "zombie"]


def test_a_hundred_orphans_are_reaped_and_no_zombie_is_left(wrap, tmp_path):
    gate = tmp_path / "gate"
    w = wrap("--no-register", "--", *program("orphans.py", 100, gate))
    # The orphans are re-parented to svcwrap (PID 1, or the subreaper) ...
    wait_until(lambda: len(w.children()) == 101, message="100 orphans adopted by svcwrap")
    gate.touch()
    # ... and once they exit, svcwrap reaps every one of them.
    wait_until(lambda: len(w.children()) == 1 and not zombies(w), timeout=10,
               message="orphans reaped")
    (tmp_path / "gate.done").touch()
    assert w.wait() == 0


def test_processes_left_when_the_main_child_exits_get_sigterm_before_svcwrap_exits(wrap, tmp_path):
    mark = tmp_path / "straggler-got-term"
    ready = tmp_path / "straggler-ready"
    # A background job in its own session, so it is not in the child's group.
    straggler = (f"trap 'echo TERM > {mark}; exit 0' TERM; touch {ready}; "
                 "while :; do sleep 0.05; done")
    w = wrap("--no-register", "--", "sh", "-c",
             f"setsid sh -c \"{straggler}\" & while [ ! -e {ready} ]; do sleep 0.01; done; exit 5")
    assert w.wait() == 5
    assert mark.read_text() == "TERM\n"
    assert "stopping other processes" in w.stderr


def test_processes_that_ignore_sigterm_are_killed_after_a_grace_bounded_by_stop_timeout(wrap, tmp_path):
    ready = tmp_path / "straggler-ready"
    straggler = f"trap '' TERM; touch {ready}; while :; do sleep 0.05; done"
    started = time.monotonic()
    w = wrap("--no-register", "--stop-timeout", "1s", "--", "sh", "-c",
             f"setsid sh -c \"{straggler}\" & while [ ! -e {ready} ]; do sleep 0.01; done; exit 0")
    assert w.wait(timeout=8) == 0
    assert time.monotonic() - started < 6, "the grace is bounded by --stop-timeout (1s)"
    assert "killing other processes" in w.stderr


def test_svcwrap_exits_as_soon_as_the_main_child_and_stragglers_are_gone(wrap):
    w = wrap("--no-register", "--stop-timeout", "30s", "--", "sh", "-c",
             "sleep 0.3 & exit 0")
    started = time.monotonic()
    assert w.wait(timeout=10) == 0
    assert time.monotonic() - started < 5, "no waiting out the whole grace"


def test_a_stopped_child_still_stops_on_sigterm(wrap_pid1):
    w = wrap_pid1("--no-register", "--", "sleep", "30")
    child = wait_until(lambda: w.children(), message="child")[0]
    w.kill(signal.SIGTSTP)
    wait_until(lambda: child.status() == "stopped", message="child stopped")
    w.kill(signal.SIGTERM)
    assert w.wait() == 128 + signal.SIGTERM
