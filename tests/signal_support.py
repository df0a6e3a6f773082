"""Helpers for the signal tests: a wrapped child that records every signal it gets."""
from __future__ import annotations

import signal
from pathlib import Path

from tests.support import program, wait_until

# A real-time signal sent after the signal under test: svcwrap takes pending
# signals lowest number first (sigtimedwait), so once the child has this one,
# svcwrap has dealt with every standard signal sent before it.
MARKER = signal.SIGRTMIN + 1


def received(path: Path) -> list[int]:
    try:
        return [int(line) for line in path.read_text().split()]
    except FileNotFoundError:
        return []


def start_recorder(wrap, tmp_path: Path, *svcwrap_args: str, recorder_args=()):
    """svcwrap --no-register ARGS -- sigrecorder.py: returns (Wrapped, record file).
    The recorder exits 7 on SIGTERM (unless --ignore-term), records all else."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    out = tmp_path / "signals"
    w = wrap("--no-register", *svcwrap_args, "--", *program("sigrecorder.py", out, *recorder_args))
    wait_until(lambda: Path(f"{out}.ready").exists(), message="recorder ready")
    return w, out


def settle(w, out: Path) -> list[int]:
    """Send MARKER and wait for it: everything sent before is dealt with.
    Returns what the child received before the marker."""
    before = len(received(out))
    w.kill(MARKER)
    wait_until(lambda: MARKER in received(out)[before:], message="marker signal forwarded")
    got = received(out)
    return got[:before] + [s for s in got[before:] if s != MARKER]
