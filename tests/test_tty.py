"""With a terminal (`docker run -it`), the child is the foreground process
group: it reads the input and gets ^C."""
from __future__ import annotations

from tests.support import PID1, PROGRAMS, SVCWRAP
from tests.terminal import PtySession


def test_in_a_terminal_the_child_reads_input_and_ctrl_c_reaches_it(mode):
    term = PtySession((PID1 if mode == "pid1" else []) + SVCWRAP + [
        "--no-register", "--", "python3", str(PROGRAMS / "interactive.py")])
    try:
        at = term.expect(b"prompt>")
        term.send(b"hello\n")
        at = term.expect(b"got:hello", start=at)
        term.send(b"\x03")  # ^C
        at = term.expect(b"caught-int", start=at)
        term.send(b"still here\n")
        at = term.expect(b"got:still here", start=at)
        term.send(b"\x04")  # ^D: end of input, the child exits 0
        term.expect(b"bye", start=at)
        assert term.wait() == 0
    finally:
        term.close()
