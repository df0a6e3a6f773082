"""--ignore-others (issue 9): when the main child exits, svcwrap exits at once
without stopping the other processes (tini; dumb-init -c). The default, TERM,
grace, KILL, is in test_reaping.py."""
from __future__ import annotations


import psutil
import pytest


def start_with_straggler(wrap, tmp_path, *args: str):
    """The child starts a process in its own session that writes its pid, and
    marks SIGTERM if it gets one, then exits 5."""
    pidfile, mark = tmp_path / "straggler.pid", tmp_path / "straggler-got-term"
    straggler = f"trap 'echo TERM > {mark}; exit 0' TERM; echo \\$\\$ > {pidfile}; " \
                "while :; do sleep 0.05; done"
    w = wrap("--no-register", *args, "--", "sh", "-c",
             f"setsid sh -c \"{straggler}\" & while [ ! -s {pidfile} ]; do sleep 0.01; done; exit 5")
    return w, pidfile, mark


def test_not_pid1_other_processes_keep_running_after_svcwrap_exits(wrap, mode, tmp_path):
    if mode == "pid1":
        pytest.skip("as PID 1 nothing outlives svcwrap: the next test")
    w, pidfile, mark = start_with_straggler(wrap, tmp_path, "--ignore-others")
    assert w.wait() == 5
    pid = int(pidfile.read_text())
    try:
        assert psutil.Process(pid).status() != "zombie"
        assert not mark.exists(), "the straggler got SIGTERM"
    finally:
        # Everything still running from this test (the shell and its loop).
        for proc in psutil.process_iter(["cmdline"]):
            if str(tmp_path) in " ".join(proc.info["cmdline"] or []):
                try:
                    proc.kill()
                except psutil.Error:
                    pass


def test_as_pid1_svcwrap_exits_at_once_and_leaves_the_rest_to_the_kernel(wrap_pid1, tmp_path):
    # The kernel SIGKILLs the namespace when PID 1 exits: no TERM, no grace.
    w, _, mark = start_with_straggler(wrap_pid1, tmp_path, "--ignore-others")
    assert w.wait() == 5
    assert not mark.exists(), "the straggler got SIGTERM"

