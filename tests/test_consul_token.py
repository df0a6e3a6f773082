"""The ACL token goes with every call and never shows: not in logs, errors or `ps`."""
from __future__ import annotations

import os
import signal
import sys

import pytest

from tests.consul_double import start
from tests.consul_fixture import FAST_DCSA_MIN, FAST_REAP_INTERVAL, REAL_AGENT_ENV, ConsulUnderTest
from tests.lifecycle_support import Service
from tests.support import wait_until

TOKEN = "5ecre7-a11ce-70ken-d0-not-print"


@pytest.fixture
def acl_consul():
    if os.environ.get(REAL_AGENT_ENV):
        pytest.skip("needs a double started with ACLs; a real agent is configured")
    double = start(dcsa_min=FAST_DCSA_MIN, reap_interval=FAST_REAP_INTERVAL, acl_tokens=[TOKEN])
    try:
        yield ConsulUnderTest(double.addr, double, FAST_DCSA_MIN, FAST_REAP_INTERVAL, token=TOKEN)
    finally:
        double.stop()


def assert_secret_kept(w, token: str) -> None:
    with open(f"/proc/{w.pid}/cmdline", "rb") as f:
        assert token.encode() not in f.read(), "token in the process list"
    w.kill(signal.SIGTERM)
    w.wait()
    assert token not in w.stderr, "token in the log"


def test_every_call_carries_the_token_from_consul_http_token(wrap_pid1, acl_consul, tmp_path):
    svc = Service(acl_consul, tmp_path)
    w = wrap_pid1(*svc.args("--log-level", "debug", ttl="600ms"), env=svc.env(CONSUL_HTTP_TOKEN=TOKEN))
    wait_until(svc.is_passing, timeout=10, message="passing with the token")
    wait_until(lambda: sum("/check/update/" in r.path for r in acl_consul.double.requests) >= 2,
               message="heartbeats")
    assert_secret_kept(w, TOKEN)
    sent = [r for r in acl_consul.double.requests if r.method == "PUT"]
    assert sent[0].path == "/v1/agent/service/register"
    assert {r.token for r in sent} == {TOKEN}
    assert sent[-1].path.startswith("/v1/agent/service/deregister/")


def test_the_token_file_wins_over_consul_http_token(wrap_pid1, acl_consul, tmp_path):
    svc = Service(acl_consul, tmp_path)
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    w = wrap_pid1(*svc.args(), env=svc.env(CONSUL_HTTP_TOKEN="wrong-token",
                                           CONSUL_HTTP_TOKEN_FILE=str(token_file)))
    wait_until(svc.is_passing, timeout=10, message="passing with the file's token")
    assert_secret_kept(w, TOKEN)


def test_a_rejected_token_leaves_the_child_running_and_is_never_printed(wrap_pid1, acl_consul, tmp_path):
    svc = Service(acl_consul, tmp_path)
    bad = "bad-70ken-that-must-not-leak"
    w = wrap_pid1(*svc.args("--log-level", "debug"), env=svc.env(CONSUL_HTTP_TOKEN=bad))
    wait_until(lambda: "ACL not found" in w.stderr_so_far(), timeout=10, message="403 logged")
    assert w.children(), "the child keeps running"
    assert not svc.registered()
    assert_secret_kept(w, bad)


ENV_DUMP = "import os, sys; open(sys.argv[1], 'w').write(repr(dict(os.environ)))"


def dumped_env(path) -> dict:
    return eval(wait_until(lambda: path.exists() and path.read_text(), message="env dumped"))


@pytest.mark.parametrize("pass_token", [False, True])
def test_the_child_and_exec_probes_get_the_token_only_with_pass_token(wrap_pid1, acl_consul,
                                                                      tmp_path, pass_token):
    # Issue 9: a child that drops privileges shows its environ to others.
    svc = Service(acl_consul, tmp_path)
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    token_file.chmod(0o600)
    child_env, probe_env = tmp_path / "child-env", tmp_path / "probe-env"
    probe = f"exec:{sys.executable} -c \"{ENV_DUMP}\" {probe_env}"
    w = wrap_pid1(*svc.args("--ready", probe, *(["--pass-token"] if pass_token else []),
                            child=[sys.executable, "-c", ENV_DUMP + "; import time; "
                                   "time.sleep(60)", str(child_env)]),
                  env=svc.env(CONSUL_HTTP_TOKEN=TOKEN, CONSUL_HTTP_TOKEN_FILE=str(token_file)))
    wait_until(svc.is_passing, timeout=10, message="passing with the token")
    for env in (dumped_env(child_env), dumped_env(probe_env)):
        inherited = {k: env[k] for k in ("CONSUL_HTTP_TOKEN", "CONSUL_HTTP_TOKEN_FILE")
                     if k in env}
        assert inherited == ({"CONSUL_HTTP_TOKEN": TOKEN,
                              "CONSUL_HTTP_TOKEN_FILE": str(token_file)} if pass_token else {})
    assert_secret_kept(w, TOKEN)


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_an_agent_error_that_echoes_the_token_is_redacted_in_the_log(wrap_pid1, acl_consul,
                                                                     tmp_path, log_format):
    svc = Service(acl_consul, tmp_path)
    w = wrap_pid1(*svc.args("--log-format", log_format), env=svc.env(CONSUL_HTTP_TOKEN=TOKEN))
    wait_until(svc.is_passing, timeout=10, message="passing")
    acl_consul.double.fail_with(403, f"Permission denied: token {TOKEN!r} lacks service:write")
    wait_until(lambda: "Permission denied" in w.stderr_so_far(), timeout=5, message="logged")
    assert "<redacted>" in w.stderr_so_far()
    acl_consul.double.fail_with(None)
    assert_secret_kept(w, TOKEN)


def test_a_403_rereads_the_token_file_so_a_rotated_token_works_without_a_restart(
        wrap_pid1, acl_consul, tmp_path):
    svc = Service(acl_consul, tmp_path)
    token_file = tmp_path / "token"
    token_file.write_text("0ld-70ken-revoked")
    token_file.chmod(0o600)
    w = wrap_pid1(*svc.args(), env=svc.env(CONSUL_HTTP_TOKEN_FILE=str(token_file)))
    wait_until(lambda: "ACL not found" in w.stderr_so_far(), timeout=10, message="403 logged")
    token_file.write_text(TOKEN + "\n")  # rotated by whoever manages tokens
    wait_until(svc.is_passing, timeout=10, message="registered with the new token")
    assert_secret_kept(w, "0ld-70ken-revoked")
    assert TOKEN not in w.stderr


@pytest.mark.parametrize("problem", ["mode", "owner"])
def test_a_token_file_others_can_read_or_owned_by_another_user_is_warned_about_once(
        wrap_pid1, acl_consul, tmp_path, problem):
    svc = Service(acl_consul, tmp_path)
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    token_file.chmod(0o644 if problem == "mode" else 0o600)
    if problem == "owner":
        os.chown(token_file, 65534, 65534)
    w = wrap_pid1(*svc.args(ttl="600ms"), env=svc.env(CONSUL_HTTP_TOKEN_FILE=str(token_file)))
    wait_until(svc.is_passing, timeout=10, message="passing")
    wait_until(lambda: sum("/check/update/" in r.path for r in acl_consul.double.requests) >= 3,
               message="heartbeats")
    log = w.stderr_so_far()
    assert log.count("token file exposed") == 1
    assert ("readable by group or others" if problem == "mode" else "owned by uid 65534") in log
    assert_secret_kept(w, TOKEN)


def test_a_private_token_file_gets_no_warning(wrap_pid1, acl_consul, tmp_path):
    svc = Service(acl_consul, tmp_path)
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    token_file.chmod(0o600)
    w = wrap_pid1(*svc.args(), env=svc.env(CONSUL_HTTP_TOKEN_FILE=str(token_file)))
    wait_until(svc.is_passing, timeout=10, message="passing")
    assert_secret_kept(w, TOKEN)
    assert "token file" not in w.stderr
