"""With a terminal (`docker run -it`), the child is the foreground process
group: it reads the input and gets ^C."""
from __future__ import annotations

import fcntl
import os
import select
import subprocess
import termios
import time

from tests.support import PROGRAMS, SVCWRAP


class Terminal:
    def __init__(self, argv: list[str]) -> None:
        self.master, slave = os.openpty()

        def take_terminal() -> None:  # runs in the new session: make the pty ours
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        self.proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave,
                                     start_new_session=True, preexec_fn=take_terminal)
        os.close(slave)
        self.seen = b""

    def type(self, data: bytes) -> None:
        os.write(self.master, data)

    def expect(self, text: bytes, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.seen:
            left = deadline - time.monotonic()
            assert left > 0, f"{text!r} not seen on the terminal; got {self.seen!r}"
            if select.select([self.master], [], [], left)[0]:
                try:
                    self.seen += os.read(self.master, 4096)
                except OSError:  # EIO: the other side has closed
                    assert text in self.seen, f"{text!r} never came; got {self.seen!r}"

    def close(self) -> int:
        code = self.proc.wait(10)
        os.close(self.master)
        return code


def test_in_a_terminal_the_child_reads_input_and_ctrl_c_reaches_it(mode):
    prefix = ["unshare", "--pid", "--fork", "--mount-proc"] if mode == "pid1" else []
    term = Terminal(prefix + SVCWRAP + ["--no-register", "--", "python3",
                                        str(PROGRAMS / "interactive.py")])
    term.expect(b"prompt>")
    term.type(b"hello\n")
    term.expect(b"got:hello")
    term.type(b"\x03")  # ^C
    term.expect(b"caught-int")
    term.type(b"still here\n")
    term.expect(b"got:still here")
    term.type(b"\x04")  # ^D: end of input, the child exits 0
    term.expect(b"bye")
    assert term.close() == 0
