"""The template watches keep the token promises the registration keeps
(issue 9): a token file rotated after a 403 is read again, also under
--no-register where no registration would notice, and an agent's text that
echoes the token is never logged."""
from __future__ import annotations

import signal
from pathlib import Path

from tests.consul_fixture import started_double
from tests.support import wait_until
from tests.templates_support import Templated

TOKEN = "7emp1a7e-70ken-5ecre7-never-printed"
OLD = "01d-70ken-ro7a7ed-ou7"
SLEEPER = ["sleep", "120"]


def with_token_file(t: Templated, token: str) -> tuple[Path, dict[str, str]]:
    path = t.tmp / "token"
    path.write_text(token + "\n")
    env = t.env()
    env.pop("CONSUL_HTTP_TOKEN", None)
    return path, env


def test_under_no_register_the_watches_read_a_rotated_token_file_again_on_a_403(wrap, tmp_path):
    with started_double(acl_tokens=[TOKEN]) as acl:
        t = Templated(acl, tmp_path)
        dest = t.template("app.conf", "v={{ key('NAME/v') }}")
        t.put_key("v", "1")
        path, env = with_token_file(t, OLD)
        w = wrap(*t.args("--token-file", str(path), child=SLEEPER), env=env)
        wait_until(lambda: "ACL not found" in w.stderr_so_far(), timeout=10,
                   message="the old token refused")
        assert not dest.exists()
        path.write_text(TOKEN + "\n")   # the operator rotates the token
        wait_until(lambda: dest.exists() and dest.read_text() == "v=1", timeout=15,
                   message="rendered with the new token")
        w.kill(signal.SIGTERM)
        w.wait()
        assert TOKEN not in w.stderr and OLD not in w.stderr


def test_a_watch_error_that_echoes_the_token_is_redacted_in_the_log(wrap, tmp_path):
    with started_double(acl_tokens=[TOKEN]) as acl:
        t = Templated(acl, tmp_path)
        t.template("app.conf", "v={{ key('NAME/v') }}")
        acl.double.fail_with(403, f"Permission denied: token {TOKEN!r} lacks key:read")
        w = wrap(*t.args(child=SLEEPER), env=t.env())
        wait_until(lambda: "Permission denied" in w.stderr_so_far(), timeout=10,
                   message="the refusal logged")
        assert "<redacted>" in w.stderr_so_far()
        w.kill(signal.SIGTERM)
        w.wait()
        assert TOKEN not in w.stderr
