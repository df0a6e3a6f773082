"""Contract tests: Go durations (§12)."""
from __future__ import annotations

import pytest

from tests.consul_double.durations import DurationError, format_duration, parse_duration

S = 10 ** 9


@pytest.mark.parametrize("text,ns", [
    ("15s", 15 * S), ("1m30s", 90 * S), ("500ms", S // 2), ("1.5h", 5400 * S), ("2h45m", 9900 * S),
    ("-1.5s", -3 * S // 2), ("0", 0), ("+5s", 5 * S), ("1us", 1000), ("1\u00b5s", 1000), ("1\u03bcs", 1000),
    ("10ns", 10), (".5s", S // 2), ("1.s", S),
])
def test_parse_accepts_go_durations(text, ns):
    """§12: grammar and units ns, us/µs/μs, ms, s, m, h."""
    assert parse_duration(text) == ns


@pytest.mark.parametrize("text,message", [
    ("10", 'time: missing unit in duration "10"'),
    ("abc", 'time: invalid duration "abc"'),
    ("1d", 'time: unknown unit "d" in duration "1d"'),
    ("", 'time: invalid duration ""'),
    (" 1s", 'time: invalid duration " 1s"'),
    ("1s ", 'time: unknown unit "s " in duration "1s "'),
    (".s", 'time: invalid duration ".s"'),
])
def test_parse_refuses_what_go_refuses(text, message):
    """§12: bare numbers, d unit and whitespace are errors, with Go's message."""
    with pytest.raises(DurationError) as err:
        parse_duration(text)
    assert str(err.value) == message


@pytest.mark.parametrize("ns,text", [
    (0, "0s"), (15 * S, "15s"), (60 * S, "1m0s"), (5400 * S, "1h30m0s"), (S // 2, "500ms"),
    (3 * S // 2, "1.5s"), (1500, "1.5\u00b5s"), (10, "10ns"), (-S, "-1s"),
])
def test_format_is_go_canonical(ns, text):
    """§12: responses print durations in Go's canonical form."""
    assert format_duration(ns) == text
