"""Go ``time.ParseDuration`` / ``Duration.String`` for the Consul double (reference §12).

Durations are handled as integer nanoseconds, like Go's ``time.Duration``.
"""
from __future__ import annotations

from typing import Optional

NANOSECOND = 1
MICROSECOND = 1000 * NANOSECOND
MILLISECOND = 1000 * MICROSECOND
SECOND = 1000 * MILLISECOND
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE

_MAX_DURATION = (1 << 63) - 1

_UNITS = {
    "ns": NANOSECOND,
    "us": MICROSECOND,
    "\u00b5s": MICROSECOND,  # micro sign
    "\u03bcs": MICROSECOND,  # Greek small letter mu
    "ms": MILLISECOND,
    "s": SECOND,
    "m": MINUTE,
    "h": HOUR,
}


class DurationError(ValueError):
    """Raised with Go's exact error text, e.g. ``time: invalid duration "abc"``."""


def _quote(s: str) -> str:
    """Go's ``time.quote``: double quotes with backslash escapes."""
    out = ['"']
    for ch in s:
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch.isprintable():
            out.append(ch)
        else:
            out.append("\\x%02x" % ord(ch) if ord(ch) < 0x100 else "\\u%04x" % ord(ch))
    out.append('"')
    return "".join(out)


def parse_duration(text: str) -> int:
    """Parse a Go duration string into nanoseconds, or raise :class:`DurationError`."""
    orig = text
    s = text
    neg = False
    if s and s[0] in "+-":
        neg = s[0] == "-"
        s = s[1:]
    if s == "0":
        return 0
    if s == "":
        raise DurationError("time: invalid duration " + _quote(orig))
    total = 0
    while s:
        if not (s[0] == "." or s[0].isdigit() and s[0].isascii()):
            raise DurationError("time: invalid duration " + _quote(orig))
        i = 0
        while i < len(s) and s[i] in "0123456789":
            i += 1
        pre = i > 0
        whole = int(s[:i]) if pre else 0
        s = s[i:]
        frac, scale, post = 0, 1, False
        if s.startswith("."):
            s = s[1:]
            i = 0
            while i < len(s) and s[i] in "0123456789":
                i += 1
            post = i > 0
            if post:
                frac, scale = int(s[:i]), 10 ** i
            s = s[i:]
        if not pre and not post:
            raise DurationError("time: invalid duration " + _quote(orig))
        i = 0
        while i < len(s) and s[i] != "." and s[i] not in "0123456789":
            i += 1
        if i == 0:
            raise DurationError("time: missing unit in duration " + _quote(orig))
        unit_text = s[:i]
        s = s[i:]
        unit = _UNITS.get(unit_text)
        if unit is None:
            raise DurationError("time: unknown unit " + _quote(unit_text) + " in duration " + _quote(orig))
        value = whole * unit + (frac * unit) // scale
        total += value
        if total > _MAX_DURATION + (1 if neg else 0):
            raise DurationError("time: invalid duration " + _quote(orig))
    return -total if neg else total


def _fmt_frac(value: int, digits: int) -> str:
    whole, frac = divmod(value, 10 ** digits)
    if not frac:
        return str(whole)
    return "%d.%s" % (whole, ("%0*d" % (digits, frac)).rstrip("0"))


def format_duration(ns: int) -> str:
    """Go's ``Duration.String``: ``0s``, ``500ms``, ``15s``, ``1m0s``, ``1h30m0s``."""
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    u = abs(ns)
    if u < SECOND:
        if u < MICROSECOND:
            return "%s%dns" % (sign, u)
        if u < MILLISECOND:
            return sign + _fmt_frac(u, 3) + "\u00b5s"
        return sign + _fmt_frac(u, 6) + "ms"
    secs, frac = divmod(u, SECOND)
    out = _fmt_frac((secs % 60) * SECOND + frac, 9) + "s"
    mins = secs // 60
    if mins:
        out = "%dm" % (mins % 60) + out
        if mins // 60:
            out = "%dh" % (mins // 60) + out
    return sign + out


def json_duration(value: object) -> Optional[int]:
    """Decode a duration field of a check the way Consul's CheckType.UnmarshalJSON does.

    A JSON string is parsed with :func:`parse_duration` (errors propagate); a JSON number is
    nanoseconds (truncated toward zero); anything else (null, bool, list, object) is ignored
    and gives ``None``.
    """
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str):
        return parse_duration(value)
    if isinstance(value, (int, float)):
        return int(value)
    return None


def seconds(ns: int) -> float:
    return ns / SECOND
