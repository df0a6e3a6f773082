"""Go-style durations ("500ms", "10s", "1m30s"), the syntax Consul uses.

Parsed by hand: this runs before the child is spawned, where importing `re`
would cost more than the whole parse.
"""
from __future__ import annotations

_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "\u00b5s": 1e-6,
    "\u03bcs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}


def parse_duration(text: str) -> float:
    """Return seconds for a Go duration string; raise ValueError otherwise.

    Like Go's time.ParseDuration: an optional sign, then one or more
    <decimal><unit> pieces; a bare "0" is zero; no whitespace, no day unit.
    """
    s = text
    if s in ("0", "+0", "-0"):
        return 0.0
    sign = 1.0
    if s[:1] in ("+", "-"):
        sign = -1.0 if s[0] == "-" else 1.0
        s = s[1:]
    if not s:
        raise ValueError(f'invalid duration "{text}"')
    total = 0.0
    i = 0
    while i < len(s):
        start = i
        while i < len(s) and (s[i].isdigit() or s[i] == "."):
            i += 1
        number = s[start:i]
        if not number or number == "." or number.count(".") > 1:
            raise ValueError(f'invalid duration "{text}"')
        ustart = i
        while i < len(s) and not (s[i].isdigit() or s[i] == "."):
            i += 1
        unit = s[ustart:i]
        if not unit:
            raise ValueError(f'missing unit in duration "{text}"')
        if unit not in _UNITS:
            raise ValueError(f'unknown unit "{unit}" in duration "{text}"')
        total += float(number) * _UNITS[unit]
    return sign * total


def format_duration(seconds: float) -> str:
    """Format seconds as a Go duration string that Consul accepts."""
    if seconds == 0:
        return "0s"
    ms = round(seconds * 1000)
    if ms % 1000 == 0:
        return f"{ms // 1000}s"
    return f"{ms}ms"
