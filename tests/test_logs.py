"""Log lines (issue 9): text from the child, probes or the agent can neither
break a line nor reach the operator's terminal as control characters."""
from __future__ import annotations

import json
import os
import signal

import pytest

from svcwrap.logs import Logger
from tests.support import wait_until

HOSTILE = "ok\rforged line\x1b[2J\x00\x07\x7f\x9b31m\u2028\u202eevil\udcff"


def logged(fmt: str, **fields: object) -> str:
    r, w = os.pipe()
    try:
        Logger(fmt, "info", w).warning("check critical", **fields)
        return os.read(r, 65536).decode("utf-8", "replace")
    finally:
        os.close(r)
        os.close(w)


def test_a_text_log_line_escapes_every_control_character_in_a_value():
    line = logged("text", output=HOSTILE)
    assert line.endswith("\n") and line.count("\n") == 1
    assert line[:-1].isprintable(), repr(line)
    assert ('output="ok\\rforged line\\x1b[2J\\x00\\x07\\x7f\\x9b31m\\u2028\\u202eevil\\xff"'
            in line)


@pytest.mark.parametrize("value,shown", [
    ("plain", "plain"),
    ("two words", '"two words"'),
    ('a "quote" and \\', '"a \\"quote\\" and \\\\"'),
    ("k=v", '"k=v"'),
    ("", '""'),
    ("ünïcødé", "ünïcødé"),
])
def test_printable_values_stay_readable(value, shown):
    assert logged("text", v=value).split(" critical ", 1)[1] == f"v={shown}\n"


def test_a_json_log_line_stays_one_valid_object_with_no_raw_control_character():
    line = logged("json", output=HOSTILE)
    assert line.count("\n") == 1 and line[:-1].isprintable(), repr(line)
    assert json.loads(line)["output"] == HOSTILE


def test_a_check_whose_output_holds_escape_sequences_is_logged_escaped(wrap, svc):
    check = "exec:sh -c \"printf 'down\\033[2J\\rnot really'; exit 2\""
    w = wrap(*svc.args("--check", check, "--ready", "none"), env=svc.env())
    wait_until(lambda: "check critical" in w.stderr_so_far(), timeout=10,
               message="the failing check logged")
    w.kill(signal.SIGTERM)
    w.wait()
    line = next(line for line in w.stderr.splitlines() if "check critical" in line)
    assert line.isprintable(), repr(line)
    assert 'output="down\\x1b[2J\\rnot really"' in line
