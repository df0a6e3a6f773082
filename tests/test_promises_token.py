"""A token read from a file goes with every call, the deregistration on stop
included, and never shows in a log line (issue 14). With CONSUL_HTTP_TOKEN in
the environment py-consul would find the token by itself, so these tests pass
it only through the file."""
from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.consul_fixture import started_double
from tests.lifecycle_support import Service
from tests.support import wait_until

TOKEN = "f11e-70ken-5ecre7-never-printed"


def through_a_file(svc: Service, token: str, given: str) -> tuple[list[str], dict[str, str]]:
    """svcwrap arguments and environment that hand it token in a file, as `given`."""
    path = Path(svc.tmp) / "token"
    path.write_text(token + "\n")
    env = svc.env()
    env.pop("CONSUL_HTTP_TOKEN", None)
    if given == "--token-file":
        return ["--token-file", str(path)], env
    return [], env | {"CONSUL_HTTP_TOKEN_FILE": str(path)}


@pytest.mark.parametrize("given", ["--token-file", "CONSUL_HTTP_TOKEN_FILE"])
def test_with_a_token_file_the_deregistration_on_stop_carries_the_token(wrap_pid1, tmp_path, given):
    with started_double(acl_tokens=[TOKEN]) as acl:
        svc = Service(acl, tmp_path)
        args, env = through_a_file(svc, TOKEN, given)
        w = wrap_pid1(*svc.args(*args, "--log-level", "debug"), env=env)
        wait_until(svc.is_passing, timeout=10, message="passing with the file's token")
        w.kill(signal.SIGTERM)
        assert w.wait() == 0
        leaving = [(r.token, r.status) for r in acl.double.requests
                   if r.path.startswith("/v1/agent/service/deregister/")]
        # Passing shows as soon as the agent has the registration, perhaps
        # before svcwrap has its answer: a stop then deregisters once more
        # after the registration's answer (one of the two meets a 404).
        assert leaving and all(token == TOKEN for token, _ in leaving), leaving
        assert 200 in [status for _, status in leaving] and len(leaving) <= 2, leaving
        assert not svc.registered()
        assert TOKEN not in w.stderr


@pytest.mark.parametrize("given", ["--token-file", "CONSUL_HTTP_TOKEN_FILE"])
def test_no_log_line_contains_a_token_from_a_file_even_after_a_403(wrap_pid1, tmp_path, given):
    with started_double(acl_tokens=[TOKEN]) as acl:
        svc = Service(acl, tmp_path)
        rejected = "re7ected-f11e-70ken-not-in-logs"
        args, env = through_a_file(svc, rejected, given)
        w = wrap_pid1(*svc.args(*args, "--log-level", "debug"), env=env)
        wait_until(lambda: "ACL not found" in w.stderr_so_far(), timeout=10, message="the 403 logged")
        w.kill(signal.SIGTERM)
        w.wait()
        assert rejected not in w.stderr


@pytest.mark.parametrize("given", ["--token-file", "CONSUL_HTTP_TOKEN_FILE"])
def test_a_token_rotated_out_of_the_file_stays_redacted_when_a_later_403_echoes_it(
        wrap_pid1, tmp_path, given):
    # The 403 makes svcwrap read the file again; the agent's text on the retry
    # echoes both the token it held before and the one it holds now.
    rotated = "r07a7ed-f11e-70ken-also-secret"
    with started_double(acl_tokens=[TOKEN, rotated]) as acl:
        svc = Service(acl, tmp_path)
        args, env = through_a_file(svc, TOKEN, given)
        w = wrap_pid1(*svc.args(*args, "--log-level", "debug"), env=env)
        wait_until(svc.is_passing, timeout=10, message="passing with the file's first token")
        (Path(svc.tmp) / "token").write_text(rotated + "\n")
        acl.double.fail_with(403, f"Permission denied: token {TOKEN!r} (then {rotated!r}) "
                                  "lacks service:write")
        wait_until(lambda: any(r.token == rotated for r in acl.double.requests), timeout=10,
                   message="the file read again after the 403")
        wait_until(lambda: "Permission denied" in w.stderr_so_far(), timeout=10,
                   message="the echoing 403 logged")
        acl.double.fail_with(None)
        w.kill(signal.SIGTERM)
        w.wait()
        assert "<redacted>" in w.stderr
        assert TOKEN not in w.stderr, "the token rotated out of the file shows in the log"
        assert rotated not in w.stderr, "the file's current token shows in the log"
