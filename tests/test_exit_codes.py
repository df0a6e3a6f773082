"""svcwrap passes on the main child's exit status, as a shell would report it."""
from __future__ import annotations

import signal

import pytest

from tests.support import program, wait_until


@pytest.mark.parametrize("code", [0, 1, 2, 3, 126, 127, 255])
def test_a_child_that_exits_n_makes_svcwrap_exit_n(wrap, code):
    w = wrap("--no-register", "--", "sh", "-c", f"exit {code}")
    assert w.wait() == code


@pytest.mark.parametrize("signo", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL, signal.SIGSEGV])
def test_a_child_killed_by_signal_n_makes_svcwrap_exit_128_plus_n(wrap, signo):
    w = wrap("--no-register", "--", "sh", "-c", f"kill -{int(signo)} $$")
    assert w.wait() == 128 + signo


def test_a_command_that_does_not_exist_exits_127_with_a_message(wrap):
    w = wrap("--no-register", "--", "no-such-command-svcwrap")
    assert w.wait() == 127
    assert "no-such-command-svcwrap: command not found" in w.stderr


def test_a_command_that_is_not_executable_exits_126_with_a_message(wrap, tmp_path):
    script = tmp_path / "not-executable.sh"
    script.write_text("#!/bin/sh\necho never\n")
    w = wrap("--no-register", "--", str(script))
    assert w.wait() == 126
    assert f"{script}: cannot execute: Permission denied" in w.stderr


def test_orphans_exit_statuses_never_replace_the_main_childs(wrap, tmp_path):
    gate = tmp_path / "gate"
    w = wrap("--no-register", "--", *program("orphans.py", 5, gate, 0))
    wait_until(lambda: len(w.children()) >= 6, message="5 orphans re-parented to svcwrap")
    gate.touch()
    (tmp_path / "gate.done").touch()
    assert w.wait() == 0  # the orphans exited 9
