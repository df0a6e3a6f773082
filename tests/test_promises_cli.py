"""Options and log lines as the README states them (issue 14)."""
from __future__ import annotations

import json
import os
import subprocess

import pytest

from svcwrap.logs import Logger
from tests.support import REPO, SVCWRAP


@pytest.mark.parametrize("false", ["false", "0"])
def test_a_switch_given_as_a_flag_wins_over_its_svcwrap_variable(false):
    # Were the variable to win, svcwrap would want Consul and a --name: exit 2.
    env = {k: v for k, v in os.environ.items() if not k.startswith("SVCWRAP_")}
    done = subprocess.run(SVCWRAP + ["--no-register", "--", "true"], cwd=REPO, capture_output=True,
                          text=True, timeout=10, env=env | {"SVCWRAP_NO_REGISTER": false})
    assert done.returncode == 0, done.stderr
    assert "error" not in done.stderr


AWKWARD = 'say "hi" \\ back\\slash\nnew line\ttab \u00e9\u00e8 \u2603 \x01'


def test_every_json_log_line_parses_whatever_the_command_line_holds():
    argv = ["sh", "-c", "exit 0", AWKWARD, '"', "\\", "{}", "\udcff"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SVCWRAP_")}
    done = subprocess.run(SVCWRAP + ["--no-register", "--log-format", "json", "--log-level", "debug",
                                     "--", *argv], cwd=REPO, capture_output=True, timeout=10,
                          env=env)
    assert done.returncode == 0
    lines = done.stderr.decode("utf-8").splitlines()
    records = [json.loads(line) for line in lines]  # one JSON document per line
    started = next(r for r in records if r["event"] == "child started")
    assert started["command"].startswith(" ".join(argv[:3] + [AWKWARD, '"', "\\", "{}"]))


def test_json_log_fields_keep_booleans_null_and_numbers_as_json_types_and_text_exact():
    read, write = os.pipe()
    try:
        Logger("json", "debug", fd=write).info("event", yes=True, no=False, none=None, n=3,
                                               x=0.5, text=AWKWARD)
        line = os.read(read, 65536).decode("utf-8")
    finally:
        os.close(read)
        os.close(write)
    assert line.endswith("\n") and line.count("\n") == 1
    record = json.loads(line)
    assert {k: record[k] for k in ("yes", "no", "none", "n", "x", "text")} == {
        "yes": True, "no": False, "none": None, "n": 3, "x": 0.5, "text": AWKWARD}
