"""The child starts exactly as if it had been run directly."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from tests.support import PROGRAMS, REPO, wait_until


def describe(wrap, *args: str, stdin: bytes = b"", **popen) -> dict:
    w = wrap("--no-register", "--", sys.executable, str(PROGRAMS / "describe.py"), *args,
             stdin=subprocess.PIPE, stdout=subprocess.PIPE, **popen)
    out, _ = w.proc.communicate(stdin, timeout=10)
    assert w.proc.returncode == 0, w.stderr
    return json.loads(out)


def test_the_child_gets_its_argv_exactly(wrap):
    args = ["plain", "with space", "", "ünïcødé", "--", "-x", "$HOME", "*"]
    assert describe(wrap, *args)["argv"] == args


def run_from(directory: Path) -> str:
    """Make `python -m svcwrap` with cwd=directory find this checkout's
    svcwrap without PYTHONPATH (which svcwrap ignores: issue 9)."""
    (directory / "svcwrap").symlink_to(REPO / "svcwrap")
    return str(directory)


def test_the_child_gets_svcwraps_environment_exactly_and_its_working_directory(wrap, tmp_path):
    # No LANG or LC_*: the C locale, where CPython adds LC_CTYPE=C.UTF-8 to
    # its own environment (PEP 538). The child must not get it (issue 9).
    env = {"PATH": "/usr/bin:/bin", "ONLY_HERE": "42", "EMPTY": "", "BYTES": "caf\udce9"}
    seen = describe(wrap, env=env, cwd=run_from(tmp_path))
    assert seen["cwd"] == str(tmp_path)
    assert seen["env"] == env


def test_python_variables_for_the_service_reach_it_but_do_not_change_svcwrap(wrap, tmp_path):
    # PYTHONINSPECT would end svcwrap in an interactive prompt instead of
    # exiting with the child's status; PYTHONPATH would put this json.py in
    # place of the real one (issue 9).
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "json.py").write_text("raise ImportError('svcwrap imported the service\'s json')\n")
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(shadow), "PYTHONINSPECT": "1",
           "PYTHONWARNINGS": "error", "PYTHONDONTWRITEBYTECODE": "1"}
    w = wrap("--no-register", "--log-format", "json", "--log-level", "debug", "--",
             "sh", "-c", "env > env.out; exit 3", env=env, cwd=run_from(tmp_path),
             stdin=subprocess.DEVNULL)
    assert w.wait() == 3, w.stderr
    assert [json.loads(line)["event"] for line in w.stderr.splitlines()][-1] == "exit"
    lines = (tmp_path / "env.out").read_text().splitlines()
    assert {k: v for k, v in (line.split("=", 1) for line in lines)
            if k.startswith("PYTHON")} == {k: v for k, v in env.items() if k.startswith("PYTHON")}


@pytest.mark.parametrize("env,isolated", [
    ({"PYTHONPATH": "/nonexistent"}, True),
    ({"PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1", "PYTHON_VERSION": "3.11.7"}, False),
], ids=["PYTHONPATH re-executes", "what python images set costs nothing"])
def test_svcwrap_re_executes_itself_with_E_only_when_a_python_variable_matters(
        wrap, tmp_path, env, isolated):
    w = wrap("--no-register", "--", "sleep", "30", env={"PATH": "/usr/bin:/bin", **env},
             cwd=run_from(tmp_path))
    wait_until(lambda: w.children(), message="child running")
    cmdline = psutil.Process(w.pid).cmdline()
    if any(flag.startswith("-I") for flag in cmdline[1:2]):
        # Started isolated already (the /opt/svcwrap tree's launcher, -IS,
        # under SVCWRAP_TEST_EXECUTABLE): nothing to re-execute for.
        assert "-E" not in cmdline
    else:
        assert ("-E" in cmdline) == isolated


@pytest.mark.parametrize("keeps_flags", [True, False],
                         ids=["as setuptools installs it", "as pip installs it"])
def test_the_svcwrap_command_ignores_python_variables_however_it_was_installed(
        keeps_flags, tmp_path):
    # Installers replace `#!python` by the interpreter's path; setuptools keeps
    # the flags after it, pip drops them: then svcwrap re-executes itself.
    script = tmp_path / "svcwrap-command"
    first, rest = (REPO / "bin" / "svcwrap").read_text().split("\n", 1)
    assert first.startswith("#!python")
    flags = first[len("#!python"):] if keeps_flags else ""
    script.write_text(f"#!{sys.executable}{flags}\n{rest}")
    script.chmod(0o755)
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "json.py").write_text("raise ImportError('the service\'s json')\n")
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(shadow), "PYTHONINSPECT": "1"}
    if keeps_flags:
        env["PYTHONHOME"] = "/nonexistent"  # only the flag itself can survive this one
    result = subprocess.run([str(script), "--no-register", "--log-format", "json",
                             "--log-level", "debug", "--", "sh", "-c", "exit 3"],
                            cwd=run_from(tmp_path), env=env, stdin=subprocess.DEVNULL,
                            capture_output=True, text=True, timeout=20)
    assert result.returncode == 3, result.stderr
    assert json.loads(result.stderr.splitlines()[-1])["event"] == "exit"


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
