"""The systemd notify protocol (sd_notify), for `--ready notify`.

Kept apart from probes.py because the socket must exist before the child is
spawned (Debian's redis-server sends READY=1 about 8 ms after it starts), so
this module is imported on the start-up path and imports only `socket`.

Who may talk (systemd's NotifyAccess=): the abstract socket is listed in
/proc/net/unix for every process in the network namespace (with --network
host, every process on the host), so the name is no secret. Each datagram
carries its sender's credentials (SO_PASSCRED: the kernel fills in the real
pid, which only CAP_SYS_ADMIN could forge) and only the child (`main`) or a
descendant of svcwrap (`all`) is heard. The socket stays bound for the
child's whole life and is drained, so no other user can bind the freed name
and collect the service's later messages (file descriptors included).
"""
import os
import socket
import sys
import time

CMSG_ROOM = 4096  # ancillary data: credentials and any file descriptors sent along


class NotifySocket:
    """The sd_notify protocol: the child sends READY=1 as a datagram to
    $NOTIFY_SOCKET. Abstract ("@name") by default, so there is no file to
    clean up; a filesystem path also works."""

    def __init__(self, address: str, access: str = "main") -> None:
        self.address = address
        self.access = access  # "main" or "all"
        self.child_pid = 0
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)  # close-on-exec
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        bind_to = "\0" + address[1:] if address.startswith("@") else address
        if not address.startswith("@"):
            try:
                os.unlink(address)
            except FileNotFoundError:
                pass
        self.sock.bind(bind_to)
        self.status = ""
        self.on_reject = None  # called with the pid of every datagram not heard

    def wait_ready(self, timeout: float | None) -> bool:
        """Read datagrams until one from an allowed sender says READY=1, or the timeout passes."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            lines = self._receive(left)
            if lines is None:
                return False
            for line in lines:
                if line.startswith("STATUS="):
                    self.status = line[7:]
                if line == "READY=1":
                    return True

    def drain(self, timeout: float = 0.0) -> None:
        """Read and drop whatever arrives within timeout (the service's later
        STATUS=, WATCHDOG=1, ...), so senders never block on a full queue."""
        deadline = time.monotonic() + timeout
        while self._receive(max(0.0, deadline - time.monotonic())) is not None:
            pass

    def _receive(self, timeout: float | None) -> list[str] | None:
        """One datagram's lines ([] if its sender is not allowed); None on timeout."""
        self.sock.settimeout(timeout)
        try:
            data, ancillary, _, _ = self.sock.recvmsg(4096, CMSG_ROOM)
        except (socket.timeout, BlockingIOError):
            return None
        except OSError:
            return None
        pid = 0
        for level, kind, payload in ancillary:
            if level != socket.SOL_SOCKET:
                continue
            if kind == socket.SCM_RIGHTS:
                # FDSTORE=1 and friends: svcwrap keeps no descriptors.
                for i in range(0, len(payload) - len(payload) % 4, 4):
                    try:
                        os.close(int.from_bytes(payload[i:i + 4], sys.byteorder, signed=True))
                    except OSError:
                        pass
            elif kind == socket.SCM_CREDENTIALS and len(payload) >= 4:
                pid = int.from_bytes(payload[0:4], sys.byteorder, signed=True)
        if not self.allowed(pid):
            if self.on_reject is not None:
                self.on_reject(pid)
            return []
        return data.decode("utf-8", "replace").splitlines()

    def allowed(self, pid: int) -> bool:
        # As with systemd, a descendant that exited before its datagram was
        # read can no longer be placed in the tree, and is not heard.
        if pid <= 0:
            return False  # from outside our PID namespace
        if pid == self.child_pid:
            return True
        return self.access == "all" and is_descendant(pid, os.getpid())

    def close(self) -> None:
        self.sock.close()
        if not self.address.startswith("@"):
            try:
                os.unlink(self.address)
            except OSError:
                pass


def is_descendant(pid: int, ancestor: int) -> bool:
    """Walk the parent chain in /proc up to `ancestor` (or to the top)."""
    for _ in range(4096):  # bounded: no cycle is possible, but be sure
        if pid == ancestor:
            return True
        if pid <= 1:
            return False
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            return False
        pid = int(stat[stat.rindex(b")") + 2:].split()[1])
    return False
