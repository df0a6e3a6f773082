"""One line per event on stderr, as text or as JSON lines.

    2026-11-22T08:00:00.123Z svcwrap info registered id=redis-1 check=service:redis-1
    {"ts": "2026-11-22T08:00:00.123Z", "level": "info", "event": "registered", "id": ...}

Written with a single os.write per line so lines from several threads never
interleave. The standard `logging` package is not used: it costs more to
import than svcwrap's whole start-up budget before the child is spawned.
Never pass a secret here; config.Secret prints itself as <redacted> anyway.
"""
import os
import time

LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}


class Logger:
    def __init__(self, fmt: str = "text", level: str = "info", fd: int = 2) -> None:
        self.fmt = fmt
        self.threshold = LEVELS[level]
        self.fd = fd

    def debug(self, event: str, **fields: object) -> None:
        self.emit("debug", event, fields)

    def info(self, event: str, **fields: object) -> None:
        self.emit("info", event, fields)

    def warning(self, event: str, **fields: object) -> None:
        self.emit("warning", event, fields)

    def error(self, event: str, **fields: object) -> None:
        self.emit("error", event, fields)

    def emit(self, level: str, event: str, fields: dict[str, object]) -> None:
        if LEVELS[level] < self.threshold:
            return
        now = time.time()
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"
        if self.fmt == "json":
            import json

            record = {"ts": ts, "level": level, "event": event}
            record.update({k: v if isinstance(v, (int, float, bool, type(None))) else str(v)
                           for k, v in fields.items()})
            line = json.dumps(record, ensure_ascii=False)
            if not line.isprintable():  # json leaves DEL, C1, U+2028, ... raw
                line = "".join(c if c.isprintable() else _json_escape(c) for c in line)
        else:
            parts = [ts, "svcwrap", level, event]
            parts += [f"{k}={_quote(v)}" for k, v in fields.items()]
            line = " ".join(parts)
        try:
            os.write(self.fd, (line + "\n").encode("utf-8", "replace"))
        except OSError:
            pass  # stderr gone: logging must never take the supervisor down


def _quote(value: object) -> str:
    """A field value as one unambiguous token: bare when plain, else quoted
    with every character that is not printable escaped.

    Values carry text from the child, probes and the agent: a raw CR or
    ESC in it could forge or hide log lines, or drive the operator's
    terminal. "Not printable" is str.isprintable()'s definition, as repr()
    uses it: Unicode's control, format and separator characters (C0, DEL,
    C1, bidi overrides, U+2028, ...) but the ASCII space. Bytes that were
    not valid text (surrogateescape) show as the raw byte, \\xff.
    """
    text = str(value)
    if text and text.isprintable() and not any(c in text for c in ' "=\\'):
        return text
    return '"' + "".join(c if c.isprintable() and c not in '"\\' else _escape(c)
                         for c in text) + '"'


_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t", '"': '\\"', "\\": "\\\\"}


def _escape(c: str) -> str:
    n = ord(c)
    if c in _ESCAPES:
        return _ESCAPES[c]
    if 0xDC80 <= n <= 0xDCFF:  # a byte that os.fsdecode could not decode
        return f"\\x{n - 0xDC00:02x}"
    if n < 0x100:
        return f"\\x{n:02x}"
    return f"\\u{n:04x}" if n < 0x10000 else f"\\U{n:08x}"


def _json_escape(c: str) -> str:
    n = ord(c)
    if n < 0x10000:
        return f"\\u{n:04x}"
    n -= 0x10000  # JSON spells the others as a UTF-16 surrogate pair
    return f"\\u{0xD800 + (n >> 10):04x}\\u{0xDC00 + (n & 0x3FF):04x}"
