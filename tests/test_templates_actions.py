"""Reload actions (issue 11 "Reload actions"): what --reload and a
template's reload accept, and exec:CMD run without a shell, its output
captured and bounded. Plus `svcwrap reload` through the manager's thread."""
from __future__ import annotations

import sys

import pytest

from svcwrap.logs import Logger
from svcwrap.templates.actions import OUTPUT_LIMIT, run_command
from svcwrap.templates.manager import TemplateManager
from svcwrap.templates.spec import TemplateError, TemplateSpec, parse_reload
from tests.consul_fixture import wait_until
from tests.templates_support import FakeConsul
from tests.templates_support import run_command as runner


@pytest.mark.parametrize("raw,kind,signal,argv", [
    ("signal", "signal", 1, []),
    ("signal:HUP", "signal", 1, []),
    ("signal:SIGUSR1", "signal", 10, []),
    ("signal:RTMIN+2", "signal", 36, []),
    ("exec:nginx -s reload", "exec", 0, ["nginx", "-s", "reload"]),
    ("restart", "restart", 0, []),
    ("none", "none", 0, []),
])
def test_a_reload_action_is_a_signal_a_command_a_restart_or_nothing(raw, kind, signal, argv):
    action = parse_reload(raw)
    assert (action.kind, action.signal, action.argv) == (kind, signal, argv)


def test_an_unknown_reload_action_is_refused():
    with pytest.raises(TemplateError, match="'reboot' is not signal:SIG"):
        parse_reload("reboot")


def test_exec_runs_without_a_shell():
    result = run_command(["echo", "$HOME", ";", "false"], runner)
    assert result.ok and result.output == "$HOME ; false"


def test_a_failing_command_reports_its_exit_status_and_output():
    result = run_command([sys.executable, "-c", "print('upstream broken'); raise SystemExit(3)"],
                         runner)
    assert not result.ok and result.output == f"{sys.executable}: exit 3\nupstream broken"


def test_a_command_that_does_not_exist_is_a_failure_not_a_crash():
    result = run_command(["/nonexistent/reload"], runner)
    assert not result.ok and "No such file or directory" in result.output


def test_a_command_that_runs_too_long_is_a_failure_saying_so():
    result = run_command(["sleep", "5"], runner, timeout=0.2)
    assert not result.ok and result.output.startswith("sleep: timed out after 0.2s")


def test_a_commands_output_is_bounded():
    result = run_command([sys.executable, "-c", "print('x' * 100000)"], runner)
    assert len(result.output) == OUTPUT_LIMIT


def test_svcwrap_reload_rerenders_on_the_managers_thread_and_reloads_once(tmp_path):
    consul = FakeConsul()
    consul.put("v", "1")
    source = tmp_path / "out.j2"
    source.write_text("{{ key('v') }}")
    reloads: list[list[str]] = []
    manager = TemplateManager(
        [TemplateSpec(str(source), str(tmp_path / "out"))], connect=lambda: consul, environ={},
        log=Logger(level="error"), runner=runner,
        on_rendered=lambda changed, failures: reloads.append([s.destination for s in changed]),
        wait=(60.0, 600.0), floor=0.02)
    manager.start()
    try:
        assert manager.first_render_done.wait(5)
        consul.put("v", "2")
        asked = len(consul.calls)
        # A call begun after the put has answered once the next one begins.
        wait_until(lambda: len(consul.calls) >= asked + 2, message="the watch saw the change")
        changed = manager.reload_now(timeout=5)
        assert [s.destination for s in changed] == [str(tmp_path / "out")]
        assert (tmp_path / "out").read_text() == "2"
        assert reloads == [[str(tmp_path / "out")]]
        assert manager.reload_now(timeout=5) == [] and len(reloads) == 1
    finally:
        manager.stop()
