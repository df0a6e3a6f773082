"""The ACL token goes with every call and never shows: not in logs, errors or `ps`."""
from __future__ import annotations

import os
import signal

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
