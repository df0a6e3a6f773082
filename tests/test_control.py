"""The control socket and the verbs of issue 10: `svcwrap status [--json]`,
`healthcheck`, `maintenance on|off`, `reload`, run the way `docker exec`
runs them, against a control server fed by an observer."""
from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from svcwrap import __version__, control
from svcwrap.control import health
from svcwrap.states import CheckStatus, ServiceState
from tests.consul_fixture import wait_until
from tests.control_support import LogFile, control_server, observer, verb
from tests.support import REPO, SVCWRAP

S = ServiceState
NOBODY = 65534

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="switching uid needs root")


@pytest.fixture
def sock(tmp_path: Path) -> Path:
    return tmp_path / "control.sock"


@pytest.fixture
def shared_dir():
    """A directory every uid may use, like /tmp (sticky, world-writable)."""
    path = Path(tempfile.mkdtemp(prefix="svcwrap-test-", dir="/tmp"))
    path.chmod(0o1777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def registered(log: LogFile | None = None, status: CheckStatus = CheckStatus.PASSING,
               output: str = "TCP connect 127.0.0.1:6379: Success"):
    obs = observer(log or LogFile(), initial=S.REGISTERING)
    obs.child_started(7, "redis-server")
    obs.registration(id="web-1")
    obs.check_result(status, output)
    obs.heartbeat_ok()
    return obs


def nobody(argv: list[str], **popen) -> subprocess.Popen:
    """Start argv as uid 65534, with an interpreter that uid may run (the
    test's own may live below a private home)."""
    for python in (sys.executable, "/usr/bin/python3"):
        try:
            return subprocess.Popen([python, *argv], user=NOBODY, group=NOBODY, extra_groups=[],
                                    **popen)
        except PermissionError:
            continue
    pytest.skip(f"no Python that uid {NOBODY} may run")


def as_nobody(*args: str) -> subprocess.CompletedProcess:
    """`svcwrap ARGS` run as uid 65534, as another user in the container would."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SVCWRAP_")}
    p = nobody(["-m", "svcwrap", *args], cwd=str(REPO), env=env, stdout=subprocess.PIPE,
               stderr=subprocess.PIPE, text=True)
    out, err = p.communicate(timeout=20)
    return subprocess.CompletedProcess(p.args, p.returncode, out, err)


# -- status ---------------------------------------------------------------------------
def test_status_json_is_one_object_with_the_documented_fields(sock):
    with control_server(sock, registered()):
        p = verb("status", "--json", "--control", str(sock))
    assert p.returncode == 0, p.stderr
    status = json.loads(p.stdout)
    assert (status["state"], status["service_id"], status["service_name"]) == \
        ("registered", "web-1", "web")
    assert (status["check_status"], status["consul_reachable"], status["child_pid"]) == \
        ("passing", True, 7)
    assert status["version"] == __version__
    assert status["last_heartbeat_age_s"] is not None


def test_status_for_people_is_a_few_lines_naming_state_service_check_and_child(sock):
    obs = registered()
    obs.maintenance(True, "disk swap")
    with control_server(sock, obs):
        p = verb("status", f"--control={sock}")
    assert p.returncode == 0, p.stderr
    lines = dict(line.split(None, 1) for line in p.stdout.replace("last heartbeat", "heartbeat")
                 .splitlines())
    assert lines["state"].startswith("registered")
    assert lines["service"] == "web (id web-1)"
    assert lines["check"] == "passing: TCP connect 127.0.0.1:6379: Success"
    assert lines["maintenance"] == "on: disk swap"
    assert lines["child"].startswith("pid 7, up ")


def test_the_verbs_find_the_socket_through_svcwrap_control(sock):
    with control_server(sock, registered()):
        p = verb("status", "--json", env={"SVCWRAP_CONTROL": str(sock)})
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["state"] == "registered"


# -- healthcheck ----------------------------------------------------------------------
def test_healthcheck_is_0_when_registered_and_passing(sock):
    with control_server(sock, registered()):
        p = verb("healthcheck", "--control", str(sock))
    assert (p.returncode, p.stdout) == (0, "registered and passing\n")


def test_healthcheck_is_1_with_the_checks_output_when_the_check_fails(sock):
    obs = registered(status=CheckStatus.CRITICAL, output="TCP connect 127.0.0.1:6379: "
                                                         "Connection refused\nmore")
    with control_server(sock, obs):
        p = verb("healthcheck", "--control", str(sock))
    assert p.returncode == 1
    assert p.stdout == "registered, check critical: TCP connect 127.0.0.1:6379: " \
                       "Connection refused\n"


def test_healthcheck_stays_0_in_maintenance_even_with_a_failing_check(sock):
    obs = registered(status=CheckStatus.CRITICAL)
    obs.maintenance(True, "upgrade")
    with control_server(sock, obs):
        p = verb("healthcheck", "--control", str(sock))
    assert (p.returncode, p.stdout) == (0, "in maintenance: upgrade\n")


@pytest.mark.parametrize("state", [S.LEAVING, S.DRAINING, S.STOPPING])
def test_healthcheck_is_1_while_svcwrap_stops_the_service_even_in_maintenance(sock, state):
    obs = registered()
    obs.maintenance(True, "upgrade")
    obs.transition(S.LEAVING)
    if state is not S.LEAVING:
        obs.transition(S.DRAINING)
    if state is S.STOPPING:
        obs.transition(S.STOPPING)
    with control_server(sock, obs):
        p = verb("healthcheck", "--control", str(sock))
    assert (p.returncode, p.stdout) == (1, f"{state.value}: svcwrap is stopping the service\n")


def test_healthcheck_is_1_until_the_service_is_registered(sock):
    with control_server(sock, observer(LogFile())):
        p = verb("healthcheck", "--control", str(sock))
    assert (p.returncode, p.stdout) == (1, "starting: not registered yet\n")


def test_without_consul_healthy_means_the_child_runs_and_its_check_passes():
    base = {"state": "running", "child_pid": 7, "maintenance": False, "check_output": ""}
    assert health(base | {"check": None, "check_status": None}) == \
        (True, "running (pid 7), no --check")
    assert health(base | {"check": "tcp:80", "check_status": "passing"})[0] is True
    assert health(base | {"check": "tcp:80", "check_status": None}) == \
        (False, "running, check not run yet")
    assert health(base | {"check": "tcp:80", "check_status": "critical",
                          "check_output": "refused"}) == (False, "running, check critical: refused")
    assert health(base | {"state": "exited", "check": None, "check_status": None})[0] is False


def test_without_consul_healthcheck_answers_from_the_running_child(sock):
    obs = observer(LogFile(), register=False, initial=S.RUNNING, check=None)
    obs.child_started(7, "app")
    with control_server(sock, obs):
        p = verb("healthcheck", "--control", str(sock))
    assert (p.returncode, p.stdout) == (0, "running (pid 7), no --check\n")


# -- maintenance and reload -----------------------------------------------------------
def test_maintenance_on_with_a_reason_reaches_the_main_loop_and_shows_in_status(sock):
    obs = registered()
    with control_server(sock, obs) as taken:
        on = verb("maintenance", "on", "--reason", "disk swap", "--control", str(sock))
        status = json.loads(verb("status", "--json", "--control", str(sock)).stdout)
        off = verb("maintenance", "off", "--control", str(sock))
    assert (on.returncode, on.stdout) == (0, "maintenance on\n")
    assert (status["maintenance"], status["maintenance_reason"]) == (True, "disk swap")
    assert (off.returncode, off.stdout) == (0, "maintenance off\n")
    assert [(r.verb, r.args) for r in taken] == [
        ("maintenance", {"on": True, "reason": "disk swap"}),
        ("maintenance", {"on": False, "reason": ""})]
    assert obs.snapshot()["maintenance"] is False


def test_maintenance_is_refused_without_consul(sock):
    with control_server(sock, observer(LogFile(), register=False, initial=S.RUNNING)) as taken:
        p = verb("maintenance", "on", "--control", str(sock))
    assert p.returncode == 1
    assert p.stderr == "svcwrap: error: no maintenance without Consul (--no-register)\n"
    assert taken == []


def test_maintenance_is_refused_while_svcwrap_stops_the_service(sock):
    obs = registered()
    obs.transition(S.LEAVING)
    with control_server(sock, obs):
        p = verb("maintenance", "on", "--control", str(sock))
    assert (p.returncode, p.stderr) == (1, "svcwrap: error: svcwrap is leaving\n")


def test_reload_says_no_templates_are_configured(sock):
    with control_server(sock, registered()) as taken:
        p = verb("reload", "--control", str(sock))
    assert (p.returncode, p.stderr) == (1, "svcwrap: error: no templates configured\n")
    assert taken == []


# -- svcwrap busy ---------------------------------------------------------------------
def test_while_the_main_loop_does_not_answer_status_and_healthcheck_still_do(sock):
    obs = registered()
    obs.transition(S.LEAVING)
    obs.transition(S.DRAINING)
    with control_server(sock, obs, answer_timeout=0.3, main_loop=False):
        status = verb("status", "--json", "--control", str(sock))
        check = verb("healthcheck", "--control", str(sock))
    assert json.loads(status.stdout)["state"] == "draining"
    assert (check.returncode, check.stdout) == (1, "draining: svcwrap is stopping the service\n")


def test_a_request_the_main_loop_never_takes_fails_after_the_answer_timeout(sock):
    with control_server(sock, registered(), answer_timeout=0.3, main_loop=False):
        started = time.monotonic()
        p = verb("maintenance", "on", "--control", str(sock))
    assert (p.returncode, p.stderr) == \
        (1, "svcwrap: error: svcwrap did not answer maintenance within 0.3s\n")
    assert time.monotonic() - started < 10


def test_a_client_that_sends_nothing_does_not_hold_up_the_next_one(sock):
    with control_server(sock, registered()):
        silent = socket.socket(socket.AF_UNIX)
        silent.connect(str(sock))
        try:
            p = verb("healthcheck", "--control", str(sock), timeout=control.IO_TIMEOUT)
        finally:
            silent.close()
    assert p.returncode == 0, p.stderr


def test_more_clients_at_once_than_svcwrap_serves_are_told_it_is_busy(sock):
    with control_server(sock, registered()):
        silent = [socket.socket(socket.AF_UNIX) for _ in range(control.MAX_CLIENTS)]
        for s in silent:
            s.connect(str(sock))
        try:
            # The server takes the silent clients in turn; once all slots are
            # held, the next client hears "busy" at once.
            def busy():
                p = verb("status", "--control", str(sock))
                return p if "busy" in p.stderr else None
            p = wait_until(busy, timeout=control.IO_TIMEOUT, message="a busy answer")
        finally:
            for s in silent:
                s.close()
    assert (p.returncode, p.stderr) == (1, "svcwrap: error: svcwrap is busy: too many clients\n")


# -- not running, bad usage, bad requests ---------------------------------------------
def test_without_svcwrap_the_verb_names_the_missing_socket_and_exits_1(sock):
    p = verb("status", "--control", str(sock))
    assert (p.returncode, p.stderr) == (1, f"svcwrap: error: no svcwrap control socket at "
                                           f"{sock}\n")


def test_a_socket_left_by_a_killed_svcwrap_is_reported_as_stale(sock):
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(str(sock))
    dead.close()
    p = verb("healthcheck", "--control", str(sock))
    assert (p.returncode, p.stderr) == \
        (1, f"svcwrap: error: no svcwrap listening at {sock} (a stale socket)\n")


def test_the_server_replaces_a_stale_socket_but_not_another_file(sock):
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(str(sock))
    dead.close()
    with control_server(sock, registered()):
        assert verb("healthcheck", "--control", str(sock)).returncode == 0
    sock.write_text("not a socket")
    with pytest.raises(FileExistsError):
        with control_server(sock, registered()):
            pass
    assert sock.read_text() == "not a socket"


def test_the_server_removes_its_socket_when_it_closes(sock):
    with control_server(sock, registered()):
        assert sock.exists()
    assert not sock.exists()


@pytest.mark.parametrize("args, message", [
    (["maintenance"], "maintenance: say on or off"),
    (["maintenance", "sideways"], "maintenance: say on or off"),
    (["maintenance", "off", "--reason", "x"], "maintenance: --reason goes with on"),
    (["status", "--bogus"], "status: unknown option --bogus"),
    (["healthcheck", "--json"], "healthcheck: unknown option --json"),
    (["reload", "now"], "reload: unexpected argument 'now'"),
    (["status", "--control"], "status: --control needs a value"),
])
def test_bad_usage_of_a_verb_is_one_line_and_exit_2(args, message):
    p = verb(*args)
    assert p.returncode == 2
    assert p.stderr.startswith(f"svcwrap: error: {message} (usage: svcwrap {args[0]}")
    assert p.stderr.count("\n") == 1


@pytest.mark.parametrize("args, env, message", [
    (["--control", "relative.sock"], {}, "--control: 'relative.sock' must be an absolute path"),
    ([], {"SVCWRAP_CONTROL": "/" + "x" * 107}, "SVCWRAP_CONTROL: '/xxx"),
])
def test_a_bad_control_path_for_the_supervisor_is_one_line_and_exit_2(args, env, message):
    p = verb("--no-register", *args, "--", "true", env=env)
    assert p.returncode == 2
    assert p.stderr.startswith(f"svcwrap: error: {message}")
    assert p.stderr.count("\n") == 1


@needs_root
def test_a_socket_in_another_uids_private_directory_is_reported_as_not_permitted(shared_dir):
    private = shared_dir / "private"
    private.mkdir(mode=0o700)
    p = as_nobody("status", "--control", str(private / "control.sock"))
    assert (p.returncode, p.stderr) == \
        (1, f"svcwrap: error: permission denied: {private / 'control.sock'}\n")


def test_a_verb_with_help_shows_its_usage_and_exits_0():
    p = verb("maintenance", "--help")
    assert p.returncode == 0
    assert p.stdout.startswith("usage: svcwrap maintenance on [--reason TEXT] | off")


def raw_request(path: Path, data: bytes) -> dict:
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(str(path))
        s.sendall(data)
        return json.loads(s.makefile("rb").readline())


def test_an_unknown_verb_is_refused_by_name(sock):
    with control_server(sock, registered()):
        answer = raw_request(sock, b'{"verb": "explode"}\n')
    assert answer == {"ok": False, "error": "unknown verb 'explode'"}


@pytest.mark.parametrize("data, error", [
    (b"status\n", "bad request: not JSON"),
    (b'["status"]\n', "bad request: no verb"),
    (b'{"verb": "maintenance", "on": "yes"}\n', "bad request: maintenance needs on"),
    (b'{"verb": "status"' + b" " * control.REQUEST_LIMIT + b"}\n",
     f"bad request: longer than {control.REQUEST_LIMIT} bytes"),
])
def test_a_bad_request_gets_one_line_saying_what_is_wrong(sock, data, error):
    with control_server(sock, registered()):
        answer = raw_request(sock, data)
    assert answer["ok"] is False and answer["error"].startswith(error)


def test_a_request_that_never_ends_is_cut_off_after_the_timeout(sock, monkeypatch):
    monkeypatch.setattr(control, "IO_TIMEOUT", 0.2)
    with control_server(sock, registered()):
        answer = raw_request(sock, b'{"verb": ')
    assert answer == {"ok": False, "error": "bad request: no complete line in time"}


def test_a_wrapped_command_named_like_a_verb_still_runs_after_the_double_dash(tmp_path):
    command = tmp_path / "status"
    command.write_text("#!/bin/sh\nexit 7\n")
    command.chmod(0o755)
    env = {"PATH": f"{tmp_path}:{os.environ['PATH']}"}
    assert verb("--no-register", "--", "status", env=env).returncode == 7
    assert verb("--no-register", "status", env=env).returncode == 7
    assert verb("status", "--control", str(tmp_path / "none"), env=env).returncode == 1


# -- who may talk -----------------------------------------------------------------------
def test_the_socket_file_is_0600(sock):
    with control_server(sock, registered()):
        assert stat.S_IMODE(os.stat(sock).st_mode) == 0o600


@needs_root
def test_another_uid_cannot_open_the_socket_file(shared_dir):
    path = shared_dir / "control.sock"
    with control_server(path, registered()):
        p = as_nobody("status", "--control", str(path))
    assert (p.returncode, p.stderr) == (1, f"svcwrap: error: permission denied: {path}\n")


@needs_root
def test_another_uid_is_refused_by_its_credentials_even_if_the_file_mode_lets_it_in(shared_dir):
    path = shared_dir / "control.sock"
    log = LogFile()
    with control_server(path, registered(), log=log):
        path.chmod(0o666)
        p = as_nobody("healthcheck", "--control", str(path))
    assert p.returncode == 1
    assert p.stderr == (f"svcwrap: error: permission denied: svcwrap answers only uid "
                        f"{os.geteuid()} and root, not uid {NOBODY}\n")
    assert log.events()[-1] == "control refused"
    assert log.lines()[-1].endswith(f"uid={NOBODY}")


# Answers anything with "healthy": a squatter, or a svcwrap of uid 65534.
ANY_SERVER = textwrap.dedent("""
    import socket, sys
    s = socket.socket(socket.AF_UNIX)
    s.bind(sys.argv[1])
    s.listen(1)
    while True:
        c, _ = s.accept()
        c.recv(4096)
        c.sendall(b'{"ok": true, "healthy": true, "why": "all fine, trust me"}\\n')
        c.close()
""")


@needs_root
def test_a_socket_served_by_another_uid_is_not_taken_for_svcwrap(shared_dir):
    path = shared_dir / "control.sock"
    squatter = nobody(["-c", ANY_SERVER, str(path)])
    try:
        wait_until(path.exists, message="the squatter's socket")
        p = verb("healthcheck", "--control", str(path))
    finally:
        squatter.kill()
        squatter.wait()
    assert p.returncode == 1
    assert p.stderr.startswith(f"svcwrap: error: {path} is served by uid {NOBODY} (pid "
                               f"{squatter.pid}), not by svcwrap")
    assert "trust me" not in p.stdout


ASK_AS_NOBODY = textwrap.dedent("""
    import sys
    sys.path.insert(0, sys.argv[1])
    from svcwrap.control import ask, encode_request
    print(ask(sys.argv[2:], encode_request("healthcheck"))["why"])
""")


@needs_root
def test_a_candidate_behind_a_private_directory_does_not_hide_the_next_one(shared_dir):
    # /run/svcwrap left by a root svcwrap; this one runs as uid 65534 in /tmp.
    private = shared_dir / "private"
    private.mkdir(mode=0o700)
    path = shared_dir / "control.sock"
    server = nobody(["-c", ANY_SERVER, str(path)])
    try:
        wait_until(path.exists, message="the socket of uid 65534's svcwrap")
        client = nobody(["-I", "-c", ASK_AS_NOBODY, str(REPO), str(private / "control.sock"),
                         str(path)], cwd="/", stdout=subprocess.PIPE, text=True)
        out = client.communicate(timeout=20)[0]
    finally:
        server.kill()
        server.wait()
    assert (client.returncode, out) == (0, "all fine, trust me\n")


# -- where the socket is ----------------------------------------------------------------
def test_a_plain_process_has_no_socket_unless_asked_for_one():
    assert control.server_path(None, pid1=False) is None
    assert control.server_path("/x/control.sock", pid1=False) == "/x/control.sock"
    assert control.server_path("off", pid1=True) is None


PATHS_AS_NOBODY = textwrap.dedent("""
    import json, sys
    sys.path.insert(0, sys.argv[1])
    from svcwrap import control
    print(json.dumps([control.server_path(None, pid1=True), control.client_paths(None)]))
""")


@needs_root
def test_as_pid1_under_a_non_root_user_the_socket_is_in_tmp_and_the_verbs_look_there():
    private = Path(f"/tmp/svcwrap-{NOBODY}")
    existed = private.exists()
    try:
        p = nobody(["-I", "-c", PATHS_AS_NOBODY, str(REPO)], cwd="/", stdout=subprocess.PIPE,
                   text=True)
        out = p.communicate(timeout=20)[0]
        assert p.returncode == 0
        server, client = json.loads(out)
        assert server == f"/tmp/svcwrap-{NOBODY}/control.sock"
        assert stat.S_IMODE(private.stat().st_mode) == 0o700
        pid1_uid = os.stat("/proc/1").st_uid
        expected = ["/run/svcwrap/control.sock", f"/tmp/svcwrap-{NOBODY}/control.sock",
                    f"/dev/shm/svcwrap-{NOBODY}/control.sock"]
        if pid1_uid != NOBODY:
            expected += [f"/tmp/svcwrap-{pid1_uid}/control.sock",
                         f"/dev/shm/svcwrap-{pid1_uid}/control.sock"]
        assert client == expected
    finally:
        if not existed:
            shutil.rmtree(private, ignore_errors=True)


def test_a_symlink_is_not_used_as_the_sockets_directory(tmp_path):
    link = tmp_path / "link"
    link.symlink_to(tmp_path)
    assert not control.own_private_dir(str(link))


@needs_root
def test_a_directory_of_another_uid_is_not_used_for_the_socket(tmp_path):
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o700)
    os.chown(theirs, NOBODY, NOBODY)
    assert not control.own_private_dir(str(theirs))


def test_an_open_directory_of_ours_is_closed_to_0700_before_use(tmp_path):
    ours = tmp_path / "ours"
    ours.mkdir(mode=0o777)
    ours.chmod(0o777)
    assert control.own_private_dir(str(ours))
    assert stat.S_IMODE(ours.stat().st_mode) == 0o700


def test_the_verbs_import_neither_enum_re_json_nor_socket():
    # Docker runs `svcwrap healthcheck` every few seconds: it must start fast.
    code = ("import sys; sys.path.insert(0, %r); import svcwrap.cli, svcwrap.verbs; "
            "print(sorted(m for m in ('enum', 're', 'json', 'socket', 'threading') "
            "if m in sys.modules))" % str(REPO))
    out = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True,
                         text=True, check=True).stdout
    assert out.strip() == "[]"
