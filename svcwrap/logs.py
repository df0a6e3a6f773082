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
        else:
            parts = [ts, "svcwrap", level, event]
            parts += [f"{k}={_quote(v)}" for k, v in fields.items()]
            line = " ".join(parts)
        try:
            os.write(self.fd, (line + "\n").encode("utf-8", "replace"))
        except OSError:
            pass  # stderr gone: logging must never take the supervisor down


def _quote(value: object) -> str:
    text = str(value)
    if text == "" or any(c in text for c in ' "=\n\t'):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return text
