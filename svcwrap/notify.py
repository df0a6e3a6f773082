"""The systemd notify protocol (sd_notify), for `--ready notify`.

Kept apart from probes.py because the socket must exist before the child is
spawned (Debian's redis-server sends READY=1 about 8 ms after it starts), so
this module is imported on the start-up path and imports only `socket`.
"""
import os
import socket
import time


class NotifySocket:
    """The sd_notify protocol: the child sends READY=1 as a datagram to
    $NOTIFY_SOCKET. Abstract ("@name") by default, so there is no file to
    clean up; a filesystem path also works."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)  # close-on-exec
        bind_to = "\0" + address[1:] if address.startswith("@") else address
        if not address.startswith("@"):
            try:
                os.unlink(address)
            except FileNotFoundError:
                pass
        self.sock.bind(bind_to)
        self.status = ""

    def wait_ready(self, timeout: float | None) -> bool:
        """Read datagrams until one says READY=1, or the timeout passes."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                return False
            for line in data.decode("utf-8", "replace").splitlines():
                if line.startswith("STATUS="):
                    self.status = line[7:]
                if line == "READY=1":
                    return True

    def close(self) -> None:
        self.sock.close()
        if not self.address.startswith("@"):
            try:
                os.unlink(self.address)
            except OSError:
                pass
