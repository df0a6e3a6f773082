"""A command on a pseudo-terminal, driven like a user at a keyboard."""
from __future__ import annotations

import fcntl
import os
import re
import select
import signal
import struct
import subprocess
import termios
import time
from typing import List


class PtySession:
    """A command run with a pty as its stdin/stdout/stderr, like a terminal user
    typing into `docker run -it`. Output is read with deadlines (expect())."""

    def __init__(self, argv: List[str]) -> None:
        master, slave = os.openpty()
        # A sensible window size; docker -t copies it into the container's pty.
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
        self.master = master
        self.output = b""
        # A new session whose controlling terminal is the pty, as in a terminal emulator.
        self.proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave,
                                     start_new_session=True, close_fds=True,
                                     preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0))
        os.close(slave)

    def send(self, data: bytes) -> None:
        os.write(self.master, data)

    def _read_some(self, timeout: float) -> bool:
        """Read what arrives within `timeout`; False once the terminal is closed."""
        ready, _, _ = select.select([self.master], [], [], max(0.0, timeout))
        if not ready:
            return True
        try:
            chunk = os.read(self.master, 4096)
        except OSError:  # EIO: every slave fd is closed (the command exited)
            chunk = b""
        if not chunk:
            time.sleep(min(timeout, 0.05))  # do not spin on a closed terminal
            return False
        self.output += chunk
        return True

    def expect(self, pattern: bytes, timeout: float = 10.0, start: int = 0) -> int:
        """Wait until `pattern` (a regex) shows in the output after offset `start`;
        return the offset just past the match."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            m = regex.search(self.output, start)
            if m:
                return m.end()
            left = deadline - time.monotonic()
            closed = not self._read_some(min(left, 0.2)) if left > 0 else False
            if left <= 0 or (closed and self.proc.poll() is not None):
                raise AssertionError(f"timed out after {timeout}s waiting for {pattern!r} "
                                     f"in the terminal output; got {self.output[-2000:]!r}")

    def wait(self, timeout: float = 20.0) -> int:
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            self._read_some(0.1)
        try:
            return self.proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the command did not exit within {timeout}s; "
                                 f"terminal output: {self.output[-2000:]!r}") from None

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        try:
            os.close(self.master)
        except OSError:
            pass
