"""Templates end to end (issue 11 "Behaviour", "Tests and measurements"):
svcwrap as PID 1 and as a subreaper renders from the Consul under test,
starts the child only once every template has rendered, and reloads it
(signal, exec, restart) once per quiet window when a file changes."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from tests.signal_support import MARKER, received
from tests.support import REPO, assert_stays_false, program, wait_until
from tests.templates_support import Templated

HUP = signal.SIGHUP


@pytest.fixture
def t(consul, tmp_path):
    templated = Templated(consul, tmp_path)
    yield templated
    templated.delete_keys()


def recorder(tmp_path: Path, *args: str) -> tuple[list[str], Path]:
    out = tmp_path / "signals"
    return program("sigrecorder.py", out, *args), out


def ready(out: Path) -> None:
    wait_until(lambda: Path(f"{out}.ready").exists(), message="the child ready")


def started(wrap, t: Templated, *args: str, recorder_args: tuple = (), **keys: str):
    """svcwrap ARGS with the signal recorder as its child, once the child
    runs; each key=value is put in the test's KV prefix first."""
    for key, value in keys.items():
        t.put_key(key, value)
    child, out = recorder(t.tmp, *recorder_args)
    w = wrap(*t.args(*args, child=child), env=t.env())
    ready(out)
    return w, out


def slow_validation(path: Path, seconds: float) -> list[str]:
    """A validation that passes, taking `seconds` (as `sleep`) when the
    file holds the word "slow", at once otherwise (the first render)."""
    return ["sh", "-c", f'grep -q slow "$1" && exec sleep {seconds:g}; exit 0', "sh", str(path)]


def hups_after_settling(w, out: Path) -> int:
    """How many SIGHUPs the child has had, once svcwrap has dealt with every
    signal sent before a marker (see signal_support.settle)."""
    before = len(received(out))
    w.kill(MARKER)
    wait_until(lambda: MARKER in received(out)[before:], message="the marker")
    return received(out).count(HUP)


def runs(w, name: str) -> bool:
    """Whether one of svcwrap's children is the program `name`."""
    for child in w.children():
        try:
            if child.name() == name:
                return True
        except psutil.Error:
            pass
    return False


def copier(dest: Path, out: Path) -> list[str]:
    """A child that copies dest to out when it starts, then waits to be stopped.
    The copy is renamed into place, so out exists only once it is complete."""
    return [sys.executable, "-c", "import os, shutil, sys, time;"
            " shutil.copy(sys.argv[1], sys.argv[2] + '.part'); os.rename(sys.argv[2] + '.part',"
            " sys.argv[2]); time.sleep(120)", str(dest), str(out)]


# -- first render before the child ------------------------------------------------
def test_the_child_starts_only_once_every_template_has_rendered_and_reads_them(wrap, t):
    dest = t.template("app.conf", "max={{ key('NAME/max') }}")
    other = t.template("other.conf", "static")
    seen = t.tmp / "seen"
    w = wrap(*t.args(child=copier(dest, seen)), env=t.env())
    # Until the first pass has run the template, nothing says what it needs.
    status = wait_until(lambda: t.control.exists() and (s := t.status())["templates"][0]
                        ["waiting_for"] and s, message="status naming what app.conf waits for")
    assert status["state"] == "waiting_templates" and status["child_pid"] is None
    waiting = {e["destination"]: e["waiting_for"] for e in status["templates"]}
    assert waiting == {str(dest): [f"key('{t.name}/max')"], str(other): []}
    assert_stays_false(seen.exists, 0.5, "the child started before its template rendered")
    t.put_key("max", "15")
    wait_until(seen.exists, message="the child started")
    assert seen.read_text() == "max=15"
    assert t.status()["state"] == "running"
    w.kill(signal.SIGTERM)
    assert w.wait() == 128 + signal.SIGTERM


def test_a_stop_request_while_waiting_exits_at_once_with_128_plus_n_and_no_child(wrap, t):
    dest = t.template("app.conf", "{{ key('NAME/never') }}")
    seen = t.tmp / "seen"
    w = wrap(*t.args(child=copier(dest, seen)), env=t.env())
    wait_until(lambda: t.control.exists() and t.status()["state"] == "waiting_templates",
               message="waiting")
    w.kill(signal.SIGINT)
    assert w.wait(5) == 128 + signal.SIGINT
    assert not seen.exists()


def test_template_timeout_exits_1_naming_the_queries_still_missing(wrap, t):
    t.template("app.conf", "{{ key('NAME/never') }}{{ key_or_default('NAME/x', '1') }}")
    w = wrap(*t.args("--template-timeout", "500ms", child=["true"]), env=t.env())
    assert w.wait(10) == 1
    line = next(line for line in w.stderr.splitlines() if "not rendered in time" in line)
    assert f"key('{t.name}/never')" in line and "/x" not in line


def test_consul_down_at_start_is_waited_out_with_backoff_and_logged_once(wrap, t, consul_double):
    dest = t.template("app.conf", "max={{ key('NAME/max') }}")
    t.put_key("max", "3")
    seen = t.tmp / "seen"
    consul_double.double.refuse_connections(True)
    w = wrap(*t.args(child=copier(dest, seen)), env=t.env())
    wait_until(lambda: "consul unavailable" in w.stderr_so_far(), message="the outage noticed")
    assert_stays_false(seen.exists, 1.0, "the child started without its template")
    consul_double.double.refuse_connections(False)
    wait_until(seen.exists, timeout=15, message="the child started after the outage")
    assert seen.read_text() == "max=3"
    assert w.stderr_so_far().count("consul unavailable") == 1


# -- reloads --------------------------------------------------------------------------
def test_a_change_in_consul_rewrites_the_file_and_the_child_gets_sighup(wrap, t):
    dest = t.template("app.conf", "max={{ key('NAME/max') }}", reload="signal:HUP")
    w, out = started(wrap, t, max="1")
    assert dest.read_text() == "max=1" and hups_after_settling(w, out) == 0  # not for the first
    t.put_key("max", "2")
    wait_until(lambda: HUP in received(out), message="SIGHUP after the change")
    assert dest.read_text() == "max=2"


def test_a_burst_of_changes_makes_one_render_and_one_reload(wrap, t):
    dest = t.template("app.conf", "max={{ key('NAME/max') }}", reload="signal")
    w, out = started(wrap, t, "--template-wait", "400ms:5s", max="0")
    for i in range(1, 11):
        t.put_key("max", str(i))
    wait_until(lambda: dest.read_text() == "max=10", message="the last value")
    assert_stays_false(lambda: received(out).count(HUP) > 1, 1.0, "a second reload")
    assert hups_after_settling(w, out) == 1
    assert w.stderr_so_far().count("template rendered") == 2   # the first render, and one


def test_changes_to_several_templates_within_the_window_make_one_reload(wrap, t):
    a = t.template("a.conf", "{{ key('NAME/a') }}", reload="signal:HUP")
    b = t.template("b.conf", "{{ key('NAME/b') }}")   # the global --reload
    t.put_key("a", "0")
    t.put_key("b", "0")
    child, out = recorder(t.tmp)
    w = wrap(*t.args("--template-wait", "400ms:5s", "--reload", "signal", child=child),
             env=t.env())
    ready(out)
    t.put_key("a", "1")
    t.put_key("b", "1")
    wait_until(lambda: a.read_text() == b.read_text() == "1", message="both rewritten")
    assert_stays_false(lambda: received(out).count(HUP) > 1, 1.0, "a second reload")
    assert hups_after_settling(w, out) == 1


def test_a_reload_signal_goes_through_rewrite_like_any_forwarded_signal(wrap, t):
    t.template("app.conf", "{{ key('NAME/v') }}", reload="signal:HUP")
    w, out = started(wrap, t, "--rewrite", "HUP:USR2", v="0")
    t.put_key("v", "1")
    wait_until(lambda: signal.SIGUSR2 in received(out), message="the rewritten signal")
    assert HUP not in received(out)


def test_exec_reload_runs_the_command_once_per_change_and_never_for_the_first_render(wrap, t):
    log = t.tmp / "reloads"
    dest = t.template("app.conf", "{{ key('NAME/v') }}",
                      reload=f"exec:{sys.executable} -c \"import sys; open(sys.argv[1], 'a')"
                             f".write(open(sys.argv[2]).read() + ' ')\" {log} {t.tmp / 'app.conf'}")
    w, out = started(wrap, t, v="0")
    assert_stays_false(log.exists, 0.5, "a reload for the first render")
    t.put_key("v", "1")
    wait_until(lambda: log.exists() and log.read_text() == "1 ", message="the command ran")
    t.put_key("v", "2")
    wait_until(lambda: log.read_text() == "1 2 ", message="the command ran again")
    assert dest.read_text() == "2" and "reload command failed" not in w.stderr_so_far()


def test_a_blocking_query_the_agent_drops_midway_is_asked_again_and_the_change_lands(
        wrap, t, consul_double):
    t.template("app.conf", "{{ key('NAME/v') }}", reload="signal:HUP")
    w, out = started(wrap, t, v="0")
    double = consul_double.double
    wait_until(lambda: double.state.blocking_queries >= 1, message="a blocking query")
    double.refuse_connections(True)   # drops the held connection
    wait_until(lambda: "consul unavailable" in w.stderr_so_far(), message="the drop seen")
    double.refuse_connections(False)
    t.put_key("v", "1")
    wait_until(lambda: HUP in received(out), timeout=15, message="the change after the drop")


def test_svcwrap_reload_rereads_the_sources_and_reloads_once(wrap, t):
    dest = t.template("app.conf", "v={{ key('NAME/v') }}", reload="signal:HUP")
    w, out = started(wrap, t, "--template-wait", "1s:2s", v="1")
    (t.tmp / "app.conf.j2").write_text("value={{ key('" + t.name + "/v') }}")
    done = t.verb("reload")
    assert done.returncode == 0, done.stderr
    assert "1 changed" in done.stdout and dest.read_text() == "value=1"
    assert hups_after_settling(w, out) == 1
    done = t.verb("reload")
    assert done.returncode == 0 and "nothing changed" in done.stdout
    assert hups_after_settling(w, out) == 1


def test_a_change_waiting_in_the_quiet_window_lands_with_svcwrap_reload_and_only_then(wrap, t):
    dest = t.template("app.conf", "v={{ key('NAME/v') }}", reload="signal:HUP")
    w, out = started(wrap, t, "--template-wait", "1500ms:3s", v="1")
    t.put_key("v", "2")
    # Each reload before the watch has the new value changes nothing.
    wait_until(lambda: "1 changed" in t.verb("reload").stdout, message="the change landed")
    assert dest.read_text() == "v=2" and hups_after_settling(w, out) == 1
    assert_stays_false(lambda: received(out).count(HUP) > 1, 3.5, "a second reload")


def test_svcwrap_reload_waits_for_a_slow_validation_and_says_what_changed(wrap, t):
    # Longer than the 4 s other queued verbs get: it must not say "did not answer".
    dest = t.template("app.conf", "v={{ key('NAME/v') }}", reload="signal:HUP",
                      validate=slow_validation(t.tmp / "app.conf", 5))
    started(wrap, t, "--template-wait", "30s:60s", v="1")
    t.put_key("v", "slow")
    answers: list[tuple[int, str]] = []

    def reloaded() -> bool:
        done = t.verb("reload")
        answers.append((done.returncode, done.stdout + done.stderr))
        return "1 changed" in done.stdout

    wait_until(reloaded, timeout=30, message="the slow change landed")
    assert [code for code, _ in answers] == [0] * len(answers), answers
    assert dest.read_text() == "v=slow"


# -- validation -----------------------------------------------------------------------
# Passes unless the file holds the word "bad"; says why on stdout.
VALIDATE = [sys.executable, "-c", "import sys; t = open(sys.argv[1]).read();"
            "sys.exit(print('invalid upstream in', sys.argv[1]) or 1) if 'bad' in t else 0"]


def test_a_file_that_fails_validation_is_rolled_back_warned_in_consul_and_recovers(
        wrap, t, svc):
    dest = t.template("app.conf", "{{ key('NAME/v') }}", reload="signal:HUP",
                      validate=VALIDATE + [str(t.tmp / "app.conf")])
    t.put_key("v", "good")
    child, out = recorder(t.tmp)
    w = wrap(*t.args("--name", svc.name, "--id", svc.id, "--ttl", "1s", "--ready", "none",
                     child=child, register=True), env=t.env())
    ready(out)
    wait_until(svc.is_passing, timeout=10, message="registered and passing")
    t.put_key("v", "bad")
    wait_until(lambda: svc.status() == "warning", message="the check warns")
    assert "invalid upstream" in svc.check()["Output"]
    assert dest.read_text() == "good"
    failure = t.status()["templates"][0]["failure"]
    assert "invalid upstream" in failure
    assert hups_after_settling(w, out) == 0
    assert w.stderr_so_far().count("invalid upstream") == 1   # logged once
    t.put_key("v", "better")
    wait_until(lambda: svc.status() == "passing", message="the check passing again")
    assert dest.read_text() == "better" and t.status()["templates"][0]["failure"] is None
    assert hups_after_settling(w, out) == 1


def test_a_failed_validation_warns_in_consul_at_once_not_at_the_next_heartbeat(wrap, t, svc):
    t.template("app.conf", "{{ key('NAME/v') }}", validate=VALIDATE + [str(t.tmp / "app.conf")])
    t.put_key("v", "good")
    child, out = recorder(t.tmp)
    w = wrap(*t.args("--name", svc.name, "--id", svc.id, "--ttl", "90s", "--check-interval", "30s",
                     "--ready", "none", child=child, register=True), env=t.env())
    ready(out)
    wait_until(svc.is_passing, timeout=10, message="registered and passing")
    t.put_key("v", "bad")
    # The next heartbeat is up to 30 s away: the warning must not wait for it.
    wait_until(lambda: svc.status() == "warning", timeout=10, message="the check warns")
    t.put_key("v", "better")
    wait_until(lambda: svc.status() == "passing", timeout=10, message="passing again")
    assert w.proc.poll() is None, w.stderr_so_far()


# -- the cost of none -----------------------------------------------------------------
def test_without_a_template_nothing_of_the_templates_is_imported():
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "svcwrap", "--no-register",
                           "--", "true"], cwd=str(REPO), capture_output=True, text=True,
                          timeout=20)
    assert done.returncode == 0
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines()
                if line.startswith("import time:")}
    assert "svcwrap.cli" in imported
    assert not {m for m in imported if m.startswith(("svcwrap.templat", "jinja2"))}


def test_status_of_a_running_instance_lists_its_templates(wrap, t):
    dest = t.template("app.conf", "{{ key('NAME/v') }}")
    t.put_key("v", "1")
    child, out = recorder(t.tmp)
    wrap(*t.args(child=child), env=t.env())
    ready(out)
    entry = json.loads(t.verb("status", "--json").stdout)["templates"][0]
    assert (entry["destination"], entry["rendered"], entry["waiting_for"], entry["failure"]) \
        == (str(dest), True, [], None)
    assert "app.conf" in t.verb("status").stdout



# -- restart --------------------------------------------------------------------------
def test_restart_leaves_consul_stops_the_child_and_starts_it_again_under_the_same_id(
        wrap, t, svc):
    t.template("app.conf", "{{ key('NAME/v') }}", reload="restart")
    t.put_key("v", "1")
    w = wrap(*t.args("--name", svc.name, "--id", svc.id, "--port", str(svc.port), "--ttl", "1s",
                     child=program("service.py", svc.port), register=True), env=t.env())
    wait_until(svc.is_passing, timeout=10, message="registered and passing")
    first = wait_until(lambda: [c.pid for c in w.children()], message="the child")
    svcwrap_pid = w.pid
    t.put_key("v", "2")
    wait_until(lambda: not svc.registered(), message="left Consul before the stop")
    wait_until(lambda: [c.pid for c in w.children()] not in ([], first), timeout=10,
               message="a new child")
    wait_until(svc.is_passing, timeout=10, message="registered again, passing")
    assert w.pid == svcwrap_pid and w.proc.poll() is None
    status = wait_until(lambda: (s := t.status())["state"] == "registered" and s,
                        message="registered again in status")
    assert status["service_id"] == svc.id and status["counts"]["child_restarts"] == 1
    assert status["child_pid"] not in first
    w.kill(signal.SIGTERM)
    assert w.wait() in (0, 143)


def test_maintenance_asked_while_the_templates_wait_applies_once_registered(wrap, t, svc):
    t.template("app.conf", "{{ key('NAME/v') }}")
    w = wrap(*t.args("--name", svc.name, "--id", svc.id, "--port", str(svc.port), "--ttl", "1s",
                     child=program("service.py", svc.port), register=True), env=t.env())
    wait_until(lambda: t.control.exists() and t.status()["state"] == "waiting_templates",
               message="waiting for the template")
    p = t.verb("maintenance", "on", "--reason", "warming up")
    assert (p.returncode, p.stdout) == (0, "maintenance on: applies once registered\n"), p.stderr
    t.put_key("v", "1")
    maint = f"_service_maintenance:{svc.id}"
    wait_until(lambda: maint in svc.consul.checks(), timeout=10,
               message="registered, in maintenance")
    assert not svc.is_passing(), "listed as passing although maintenance was asked for"
    assert svc.consul.checks()[maint]["Notes"] == "warming up"
    w.kill(signal.SIGTERM)
    assert w.wait() in (0, 143)


def test_maintenance_stays_on_across_a_restart_reload(wrap, t, svc):
    t.template("app.conf", "{{ key('NAME/v') }}", reload="restart")
    t.put_key("v", "1")
    w = wrap(*t.args("--name", svc.name, "--id", svc.id, "--port", str(svc.port), "--ttl", "1s",
                     child=program("service.py", svc.port), register=True), env=t.env())
    wait_until(svc.is_passing, timeout=10, message="registered and passing")
    assert t.verb("maintenance", "on", "--reason", "disk swap").returncode == 0
    t.put_key("v", "2")
    wait_until(lambda: t.status()["counts"]["child_restarts"] == 1, message="restarted")
    maint = f"_service_maintenance:{svc.id}"
    wait_until(lambda: svc.registered() and maint in svc.consul.checks(), timeout=10,
               message="registered again, still in maintenance")
    assert not svc.is_passing()
    assert t.status()["maintenance"] is True
    w.kill(signal.SIGTERM)
    assert w.wait() in (0, 143)


def test_a_restart_stops_what_the_old_child_left_in_its_group_before_starting_again(wrap, t):
    # A worker that ignores SIGTERM would keep the old child's port or files.
    t.template("app.conf", "{{ key('NAME/v') }}", reload="restart")
    t.put_key("v", "1")
    child, out = recorder(t.tmp)
    w = wrap(*t.args("--stop-timeout", "1s", child=[
        "sh", "-c", '(trap "" TERM; exec sleep 1000) & exec "$@"', "sh", *child]), env=t.env())
    ready(out)

    def workers() -> list[psutil.Process]:
        try:
            below = psutil.Process(w.pid).children(recursive=True)
        except psutil.Error:
            return []
        alive = []
        for proc in below:
            try:
                if proc.name() == "sleep" and proc.status() != psutil.STATUS_ZOMBIE:
                    alive.append(proc)
            except psutil.Error:
                pass
        return alive

    old = {proc.pid for proc in wait_until(workers, message="the old child's worker")}
    t.put_key("v", "2")
    wait_until(lambda: t.status()["counts"]["child_restarts"] == 1, timeout=10,
               message="restarted")
    assert not old & {proc.pid for proc in workers()}, \
        "the old child's worker still runs beside the new child"
    wait_until(lambda: workers(), message="the new child's own worker")
    w.kill(signal.SIGTERM)
    w.wait()


def test_a_stop_request_during_a_restart_stops_for_good(wrap, t):
    t.template("app.conf", "{{ key('NAME/v') }}", reload="restart")
    w, out = started(wrap, t, "--stop-timeout", "1s", recorder_args=("--ignore-term",), v="1")
    t.put_key("v", "2")
    wait_until(lambda: t.status()["state"] == "stopping", message="the restart under way")
    w.kill(signal.SIGINT)
    # SIGKILLed at --stop-timeout, and not started again.
    assert w.wait() == 128 + signal.SIGKILL
    assert received(out).count(signal.SIGTERM) == 1 and signal.SIGINT in received(out)


def test_a_template_that_does_not_compile_is_one_error_line_and_exit_2(wrap, t):
    t.template("app.conf", "ok\n{% for %}")
    w = wrap(*t.args(child=["true"]), env=t.env())
    assert w.wait(10) == 2
    assert w.stderr.strip().splitlines()[-1].startswith("svcwrap: error: ")
    assert "app.conf.j2:2:" in w.stderr and "Traceback" not in w.stderr


def test_after_a_restart_ready_1_comes_from_the_new_child_and_it_registers_again(wrap, t, svc):
    t.template("app.conf", "{{ key('NAME/v') }}", reload="restart")
    t.put_key("v", "1")
    w = wrap(*t.args("--name", svc.name, "--id", svc.id, "--ttl", "1s", "--ready", "notify",
                     child=program("service.py", svc.port, "--notify"), register=True),
             env=t.env())
    wait_until(svc.is_passing, timeout=10, message="registered and passing")
    t.put_key("v", "2")
    wait_until(lambda: t.status()["counts"]["child_restarts"] == 1, message="restarted")
    wait_until(svc.is_passing, timeout=10, message="passing again after READY=1")
    assert "notify message ignored" not in w.stderr_so_far()


def test_a_validation_that_takes_its_time_delays_no_signal_forwarding(wrap, t):
    t.template("app.conf", "{{ key('NAME/v') }}", reload="signal:HUP",
               validate=slow_validation(t.tmp / "app.conf", 4))
    w, out = started(wrap, t, v="1")
    t.put_key("v", "slow")
    wait_until(lambda: runs(w, "sleep"), message="the validation running")
    before = len(received(out))
    w.kill(MARKER)
    wait_until(lambda: MARKER in received(out)[before:], timeout=1.0,
               message="the signal forwarded while the validation runs")
    assert runs(w, "sleep") and HUP not in received(out)
    wait_until(lambda: HUP in received(out), timeout=10, message="the reload once validated")
