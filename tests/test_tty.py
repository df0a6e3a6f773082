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


def test_under_an_interactive_shell_ctrl_z_stops_the_job_and_fg_resumes_it():
    term = PtySession(["bash", "--norc", "--noprofile", "-i"])
    try:
        term.send(b"PS1='$ '\n")
        at = term.expect(rb"\$ ")
        command = " ".join(SVCWRAP + ["--no-register", "--", "python3",
                                      str(PROGRAMS / "interactive.py")])
        term.send(command.encode() + b"\n")
        at = term.expect(b"prompt>", start=at)
        term.send(b"\x1a")  # ^Z: the child stops, and svcwrap with it, so bash takes over
        at = term.expect(rb"Stopped", start=at)
        term.send(b"fg\n")
        term.send(b"hello\n")  # back in the foreground: the child reads again
        at = term.expect(b"got:hello", start=at)
        term.send(b"\x04")
        at = term.expect(b"bye", start=at)
        term.send(b"echo status=$?\n")
        term.expect(b"status=0", start=at)
    finally:
        term.close()
