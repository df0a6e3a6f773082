"""The command line: options before `--`, the command after, SVCWRAP_* variables,
and one clear line with exit status 2 for bad input."""
from __future__ import annotations

import os
import subprocess

import pytest

from svcwrap import __version__
from tests.support import REPO, SVCWRAP


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("SVCWRAP_", "CONSUL_"))}
    return subprocess.run(SVCWRAP + list(args), cwd=REPO, env=base | (env or {}),
                          capture_output=True, text=True, timeout=20)


BAD = [
    # (arguments, environment, text the error must contain)
    (["--no-register"], {}, "no command given"),
    (["--bogus", "--", "true"], {}, "unknown option --bogus"),
    (["--no-register", "--stop-timeout"], {}, "--stop-timeout needs a value"),
    (["--no-register", "--stop-timeout", "10", "--", "true"], {}, "--stop-timeout: missing unit"),
    (["--no-register", "--stop-timeout", "1d", "--", "true"], {}, "--stop-timeout: unknown unit"),
    (["--no-register", "--stop-timeout", "-1s", "--", "true"], {}, "--stop-timeout: -1s must not be negative"),
    (["--no-register", "--stop-signal", "SIGNOPE", "--", "true"], {}, "--stop-signal: unknown signal"),
    (["--no-register", "--stop-on", "TERM,NOPE", "--", "true"], {}, "--stop-on: unknown signal 'NOPE'"),
    (["--no-register", "--stop-on", "KILL", "--", "true"], {}, "--stop-on: KILL is never passed on"),
    (["--no-register", "--stop-on", ",", "--", "true"], {}, "--stop-on: name at least one signal"),
    (["--no-register", "--", "true"], {"SVCWRAP_STOP_ON": "CHLD"}, "SVCWRAP_STOP_ON: CHLD is never"),
    (["--no-register", "--rewrite", "TERM", "--", "true"], {}, "--rewrite: 'TERM' is not FROM:TO"),
    (["--no-register", "--rewrite", "STOP:TERM", "--", "true"], {}, "--rewrite: STOP is never passed"),
    (["--no-register", "--rewrite", "TERM:BOGUS", "--", "true"], {}, "--rewrite: unknown signal 'BOGUS'"),
    (["--no-register", "--", "true"], {"SVCWRAP_REWRITE": "HUP:1,x:2"}, "SVCWRAP_REWRITE: unknown signal 'x'"),
    (["--no-register", "--success-exit", "256", "--", "true"], {}, "--success-exit: '256' is not an exit"),
    (["--no-register", "--success-exit", "-1", "--", "true"], {}, "--success-exit: '-1' is not an exit"),
    (["--no-register", "--ignore-others=1", "--", "true"], {}, "--ignore-others takes no value"),
    (["--no-register", "--no-register=yes", "--", "true"], {}, "--no-register takes no value"),
    (["--no-register", "--", "true"], {"SVCWRAP_STOP_TIMEOUT": "soon"}, "SVCWRAP_STOP_TIMEOUT: invalid duration"),
    (["--", "true"], {"SVCWRAP_NO_REGISTER": "maybe"}, "SVCWRAP_NO_REGISTER: 'maybe' is not a boolean"),
    (["--", "true"], {}, "--name is required"),
    (["--name", "web", "--port", "0", "--", "true"], {}, "--port: '0' is not a port number"),
    (["--name", "web", "--port", "http", "--", "true"], {}, "--port: 'http' is not a port number"),
    (["--name", "web", "--ready", "udp:53", "--", "true"], {}, "--ready: unknown probe 'udp:53'"),
    (["--name", "web", "--ready", "tcp:host:99999", "--", "true"], {}, "--ready: '99999' is not a port"),
    (["--name", "web", "--check", "notify", "--", "true"], {}, "--check: notify is a readiness signal"),
    (["--name", "web", "--ttl", "0s", "--", "true"], {}, "--ttl: 0s must be greater than"),
    (["--name", "web", "--ttl", "5s", "--check-interval", "5s", "--", "true"], {},
     "--check-interval: 5s must be shorter than the TTL"),
    (["--name", "web", "--meta", "novalue", "--", "true"], {}, "--meta: 'novalue' is not KEY=VALUE"),
    (["--name", "web", "--meta", "consul-x=1", "--", "true"], {}, "reserved prefix consul-"),
    (["--name", "web", "--address", "0.0.0.0", "--", "true"], {}, "--address: 0.0.0.0 is not an address"),
    (["--name", "web", "--address", "nowhere", "--", "true"], {}, "--address: 'nowhere' is not auto"),
    (["--name", "web", "--consul", "unix://run/consul.sock", "--", "true"], {}, "--consul: 'unix://run/consul.sock': give unix:///absolute/path"),
    (["--name", "web", "--consul", "ftp://x:1", "--", "true"], {}, "unknown protocol scheme 'ftp'"),
    (["--name", "web", "--", "true"], {"CONSUL_HTTP_ADDR": "host:port"}, "CONSUL_HTTP_ADDR: 'port' is not a port"),
    (["--name", "web", "--", "true"], {"CONSUL_CLIENT_CERT": "/etc/hostname"},
     "both client cert and client key must be provided"),
    (["--name", "web", "--", "true"], {"CONSUL_HTTP_SSL": "yes please"}, "CONSUL_HTTP_SSL: 'yes please'"),
    (["--name", "web", "--token-file", "/nonexistent/token", "--", "true"], {},
     "--token-file: cannot read /nonexistent/token"),
    (["--no-register", "--log-format", "xml", "--", "true"], {}, "--log-format: 'xml' is not text or json"),
    (["--no-register", "--log-level", "loud", "--", "true"], {}, "--log-level: 'loud' is not debug"),
    (["--name", "web", "--ready-timeout", "5", "--", "true"], {}, "--ready-timeout: missing unit"),
    (["--name", "web", "--deregister-after", "-1m", "--", "true"], {}, "--deregister-after: -1m must not"),
    (["--name", "web", "--drain", "1x", "--", "true"], {}, "--drain: unknown unit"),
    (["--name", "web", "--check-interval", "0s", "--", "true"], {}, "--check-interval: 0s must be greater"),
    (["--name", "web", "--ready", "exec:", "--", "true"], {}, "--ready: exec: needs a command"),
    (["--name", "web", "--ready", "notify:relative.sock", "--", "true"], {}, "@abstract or an absolute path"),
    (["--name", "web", "--address", "iface:nosuch0", "--", "true"], {}, "no network interface named"),
    (["--", "true"], {"SVCWRAP_NAME": "web", "SVCWRAP_PORT": "99999"}, "SVCWRAP_PORT: '99999'"),
    (["--", "true"], {"SVCWRAP_NAME": "web", "SVCWRAP_META": "a=1,b"}, "SVCWRAP_META: 'b' is not KEY=VALUE"),
]


@pytest.mark.parametrize("args,env,expected", BAD, ids=[b[2] for b in BAD])
def test_bad_input_is_one_line_naming_the_flag_with_exit_status_2(args, env, expected):
    result = run(*args, env=env)
    assert result.returncode == 2
    assert result.stderr.startswith("svcwrap: error: ")
    assert result.stderr.count("\n") == 1, result.stderr
    assert expected in result.stderr
    assert "Traceback" not in result.stderr


def test_help_lists_every_option_and_exits_0():
    result = run("--help")
    assert result.returncode == 0
    for flag in ("--name", "--ready", "--ttl", "--deregister-after", "--drain", "--stop-signal",
                 "--stop-timeout", "--single-child", "--no-register", "--consul", "--token-file",
                 "--stop-on", "--rewrite", "--success-exit", "--ignore-others"):
        assert flag in result.stdout


def test_version_prints_the_version():
    result = run("--version")
    assert (result.returncode, result.stdout) == (0, f"svcwrap {__version__}\n")


def test_an_option_can_come_from_its_svcwrap_variable():
    result = run("--", "sh", "-c", "exit 3", env={"SVCWRAP_NO_REGISTER": "true"})
    assert result.returncode == 3


def test_the_flag_wins_over_its_variable():
    result = run("--no-register", "--log-format", "json", "--log-level", "debug", "--", "true",
                 env={"SVCWRAP_LOG_FORMAT": "xml"})
    assert result.returncode == 0
    assert result.stderr.startswith("{")


def test_the_command_may_follow_the_options_without_a_double_dash():
    assert run("--no-register", "sh", "-c", "exit 4").returncode == 4


def test_json_log_format_writes_one_json_object_per_line():
    import json

    result = run("--no-register", "--log-format", "json", "--log-level", "debug", "--",
                 "sh", "-c", "exit 0")
    events = [json.loads(line)["event"] for line in result.stderr.splitlines()]
    assert events == ["child started", "child exited", "exit"]


def test_a_short_deregister_after_is_accepted_with_a_warning_that_consul_raises_it():
    result = run("--name", "web", "--deregister-after", "10s", "--consul", "127.0.0.1:1",
                 "--", "true")
    assert "raises it to 1m" in result.stderr
