"""The child starts exactly as if it had been run directly."""
from __future__ import annotations

import json
import signal
import subprocess
import sys

from tests.support import PROGRAMS


def describe(wrap, *args: str, stdin: bytes = b"", **popen) -> dict:
    w = wrap("--no-register", "--", sys.executable, str(PROGRAMS / "describe.py"), *args,
             stdin=subprocess.PIPE, stdout=subprocess.PIPE, **popen)
    out, _ = w.proc.communicate(stdin, timeout=10)
    assert w.proc.returncode == 0, w.stderr
    return json.loads(out)


def test_the_child_gets_its_argv_exactly(wrap):
    args = ["plain", "with space", "", "ünïcødé", "--", "-x", "$HOME", "*"]
    assert describe(wrap, *args)["argv"] == args


def test_the_child_gets_svcwraps_environment_and_working_directory(wrap, tmp_path):
    env = {"PATH": "/usr/bin:/bin", "ONLY_HERE": "42", "EMPTY": ""}
    seen = describe(wrap, env=env | {"PYTHONPATH": str(PROGRAMS.parent.parent)}, cwd=str(tmp_path))
    assert seen["cwd"] == str(tmp_path)
    assert seen["env"]["ONLY_HERE"] == "42" and seen["env"]["EMPTY"] == ""
    assert set(seen["env"]) - {"PYTHONPATH", "LC_CTYPE"} == set(env)


def test_the_child_reads_svcwraps_standard_input(wrap):
    assert describe(wrap, stdin=b"line one\nline two\n")["stdin"] == "line one\nline two\n"


def test_no_file_descriptor_of_svcwraps_leaks_into_the_child(wrap):
    # 0-2 and the one describe.py opens to list /proc/self/fd
    assert len(describe(wrap)["fds"]) == 4


def test_the_child_starts_with_an_empty_signal_mask(wrap):
    # svcwrap itself blocks every catchable signal; the child must not inherit that.
    assert int(describe(wrap)["blocked"], 16) == 0


def ignore_hup_and_usr1() -> None:
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)


def test_the_child_starts_with_default_signal_dispositions(wrap):
    # Python ignores SIGPIPE for itself, and here svcwrap's own parent leaves
    # HUP and USR1 ignored too; grep reading /proc shows what the child got.
    w = wrap("--no-register", "--", "grep", "SigIgn", "/proc/self/status", stdout=subprocess.PIPE,
             preexec_fn=ignore_hup_and_usr1)
    out, _ = w.proc.communicate(timeout=10)
    assert int(out.split()[1], 16) == 0


def test_the_child_leads_its_own_process_group(wrap):
    seen = describe(wrap)
    assert seen["pgid"] == seen["pid"]
