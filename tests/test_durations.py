"""Durations are written in Go syntax, as in Consul's own configuration."""
from __future__ import annotations

import pytest

from svcwrap.config import format_duration, parse_duration


@pytest.mark.parametrize("text,seconds", [
    ("0", 0.0), ("500ms", 0.5), ("10s", 10.0), ("1m30s", 90.0), ("1.5h", 5400.0),
    ("2h45m", 9900.0), ("300us", 0.0003), ("300µs", 0.0003), ("1000ns", 1e-6), ("-1.5s", -1.5),
    ("+2s", 2.0),
])
def test_go_durations_parse_to_seconds(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "10", "1d", "s", "1.2.3s", " 1s", "1s ", "1 s", "ms", "-", "1sm"])
def test_what_go_rejects_is_rejected(text):
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize("seconds,text", [(10.0, "10s"), (0.5, "500ms"), (90.0, "90s"),
                                          (0.0, "0s"), (1.25, "1250ms")])
def test_durations_are_sent_to_consul_in_a_form_it_parses_back(seconds, text):
    assert format_duration(seconds) == text
    assert parse_duration(text) == seconds
