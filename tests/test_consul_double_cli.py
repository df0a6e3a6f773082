"""Contract tests: ``python -m tests.consul_double`` (CLI)."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def spawn(*args):
    return subprocess.Popen([sys.executable, "-m", "tests.consul_double", "--http-addr", "127.0.0.1:0", *args],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture
def proc():
    p = spawn("--dcsa-min", "1s", "--reap-interval", "200ms", "--acl-token", "s3cret")
    yield p
    if p.poll() is None:
        p.kill()
        p.wait(5)


def first_line_url(p):
    line = p.stdout.readline().strip()
    assert line.startswith("listening http://127.0.0.1:"), line
    return line.split(" ", 1)[1]


def test_first_stdout_line_is_listening_url_and_it_serves(proc):
    """CLI: first line "listening http://HOST:PORT"; the agent answers there."""
    url = first_line_url(proc)
    with urllib.request.urlopen(url + "/v1/status/leader", timeout=5) as r:
        assert json.load(r) == "127.0.0.1:8300"


def test_acl_token_option_enables_acls(proc):
    """CLI: --acl-token turns ACLs on; the token has full rights."""
    url = first_line_url(proc)
    req = urllib.request.Request(url + "/v1/agent/self", headers={"X-Consul-Token": "s3cret"})
    with urllib.request.urlopen(req, timeout=5) as r:
        assert r.status == 200
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(url + "/v1/agent/self", timeout=5)
    assert err.value.code == 403


def test_sigterm_exits_zero_and_stderr_says_test_stand_in(proc):
    """CLI: SIGTERM → exit 0; stderr warns it is a TEST STAND-IN."""
    first_line_url(proc)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0
    assert "TEST STAND-IN" in proc.stderr.read()


def test_sigint_exits_zero(proc):
    """CLI: SIGINT → exit 0."""
    first_line_url(proc)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(10) == 0


def test_bad_duration_option_is_a_usage_error():
    """CLI: durations are Go durations; "10" has no unit."""
    p = spawn("--dcsa-min", "10")
    assert p.wait(10) == 2
    assert "missing unit" in p.stderr.read()
