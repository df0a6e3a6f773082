"""The control socket: where `svcwrap status`, `healthcheck`, `maintenance`
and `reload` reach a running svcwrap.

Where it lives (the supervisor and the verbs apply the same rule):

* `--control PATH` or `SVCWRAP_CONTROL=PATH`: there (`off`: no socket).
* Otherwise, as PID 1 (in a container): `/run/svcwrap/control.sock` when
  svcwrap may create or owns `/run/svcwrap` (root, or an image that made it
  for its USER), else `/tmp/svcwrap-UID/control.sock` (a non-root USER),
  else `/dev/shm/svcwrap-UID/control.sock` (`docker run --read-only`
  leaves only /dev/shm writable). The directory is svcwrap's own, mode
  0700; one it does not own is not used. None of them: a warning.
* Otherwise (a plain process below a shell or a test): no socket, so two
  svcwraps on one machine never fight over a path.

The verbs, without a setting, try `/run/svcwrap/control.sock`, then
`/tmp/svcwrap-UID/` and `/dev/shm/svcwrap-UID/` for their own uid and for
the uid PID 1 runs as (so `docker exec -u root` also finds a non-root
svcwrap).

Who may talk: both ends check the other's credentials (SO_PEERCRED). The
server answers only its own uid and root (and the socket file is 0600); the
client believes only a server running as root, as its own uid, or as PID 1
of its PID namespace, so a socket squatted by another user is not taken
for svcwrap.

The protocol: one JSON object per line each way, then the server closes.
A request is at most REQUEST_LIMIT bytes and must arrive within IO_TIMEOUT.

    {"verb": "status"}                      -> {"ok": true, "status": {...}}
    {"verb": "healthcheck"}                 -> {"ok": true, "healthy": false, "why": "..."}
    {"verb": "maintenance", "on": true, "reason": "..."} -> {"ok": true, ...}
    anything refused                        -> {"ok": false, "error": "..."}

The server runs on its own threads; status and healthcheck are answered
from the observer's snapshot, never by the main thread. What needs the
supervisor (maintenance, reload) goes into its Requests queue, and the
answer comes back through the Request, or "did not answer" after
ANSWER_TIMEOUT: the main loop is never waited on.

This module is shared with the client, which must start fast (Docker runs
it every few seconds), so at module level it imports only C modules:
`socket` and `json` would each pull in `enum` and `re`.
"""
import _socket
import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable

    from svcwrap.logs import Logger
    from svcwrap.observer import Observer

RUN_DIR = "/run/svcwrap"
SOCKET_NAME = "control.sock"
REQUEST_LIMIT = 4096       # bytes of one request line
ANSWER_LIMIT = 1 << 20     # bytes of one answer line (a status is ~1 KB)
IO_TIMEOUT = 2.0           # for a request (server) to arrive
ANSWER_TIMEOUT = 4.0       # for the main loop to answer a queued request
CLIENT_TIMEOUT = ANSWER_TIMEOUT + 2.0
# `reload` answers once its pass has rendered and validated, which may take
# a while (templating.RELOAD_ANSWER_TIMEOUT, 60 s, answers first).
RELOAD_TIMEOUT = 62.0
MAX_CLIENTS = 4            # served at once; more are told "busy"


class ControlError(Exception):
    """Why the client got no answer: one line, exit status 1."""


def tmp_dir(uid: int) -> str:
    return f"/tmp/svcwrap-{uid}"


def shm_dir(uid: int) -> str:
    return f"/dev/shm/svcwrap-{uid}"


# -- where the socket is -----------------------------------------------------------
def server_path(setting: str | None, pid1: bool) -> str | None:
    """The path the supervisor binds, or None for no socket (see the docstring)."""
    if setting == "off":
        return None
    if setting:
        return setting
    if not pid1:
        return None
    uid = os.geteuid()
    for directory in (RUN_DIR, tmp_dir(uid), shm_dir(uid)):
        if own_private_dir(directory):
            return f"{directory}/{SOCKET_NAME}"
    return None


def own_private_dir(directory: str) -> bool:
    """Create `directory` 0700, or accept it if it exists, is a real
    directory (not a symlink) and is ours; then make sure it is 0700."""
    try:
        os.mkdir(directory, 0o700)
    except FileExistsError:
        pass
    except OSError:
        return False
    try:
        st = os.lstat(directory)
        if (st.st_mode & 0o170000) != 0o040000 or st.st_uid != os.geteuid():
            return False
        if st.st_mode & 0o077:
            os.chmod(directory, 0o700)
    except OSError:
        return False
    return True


def client_paths(setting: str | None) -> list[str]:
    """Where the verbs look, in order (see the docstring)."""
    if setting:
        return [setting]
    uids = [os.geteuid()]
    try:
        pid1_uid = os.stat("/proc/1").st_uid
    except OSError:
        pid1_uid = None
    if pid1_uid is not None and pid1_uid not in uids:
        uids.append(pid1_uid)
    return [f"{RUN_DIR}/{SOCKET_NAME}"] + [f"{where(uid)}/{SOCKET_NAME}"
                                           for uid in uids for where in (tmp_dir, shm_dir)]


# -- both ends -----------------------------------------------------------------------
def peer_credentials(sock: "_socket.socket") -> tuple[int, int, int]:
    """(pid, uid, gid) of the process at the other end (struct ucred)."""
    raw = sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_PEERCRED, 12)
    return tuple(int.from_bytes(raw[i:i + 4], sys.byteorder, signed=True)  # type: ignore
                 for i in (0, 4, 8))


def read_line(sock: "_socket.socket", limit: int, timeout: float) -> bytes:
    """One line (without its newline), at most `limit` bytes, within `timeout`."""
    import time

    deadline = time.monotonic() + timeout
    data = b""
    while b"\n" not in data:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no complete line in time")
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:  # socket.timeout is TimeoutError since 3.10
            raise TimeoutError("no complete line in time") from None
        if not chunk:
            break
        data += chunk
        if len(data) > limit and b"\n" not in data[:limit + 1]:
            raise ValueError(f"longer than {limit} bytes")
    return data.split(b"\n", 1)[0]


def decode(line: bytes) -> object:
    """JSON text -> object, with the C scanner behind `json` (which itself
    would import `re`); raises ValueError on anything else."""
    text = line.decode("utf-8", "replace")
    try:
        import _json
    except ImportError:  # not CPython
        import json

        return json.loads(text)
    try:
        value, end = _json.make_scanner(_ScanContext())(text, 0)
    except Exception:  # StopIteration, or json's own error class
        raise ValueError("not JSON") from None
    if text[end:].strip():
        raise ValueError("not one JSON value")
    return value


class _ScanContext:
    """The settings json.JSONDecoder hands its C scanner: plain json.loads."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = float


def encode_request(verb: str, **args: "str | bool") -> bytes:
    """A request line: a flat object of strings and booleans."""
    import _json

    fields = [f'"verb": {_json.encode_basestring_ascii(verb)}']
    for key, value in args.items():
        text = ("true" if value else "false") if isinstance(value, bool) \
            else _json.encode_basestring_ascii(value)
        fields.append(f'"{key}": {text}')
    return ("{" + ", ".join(fields) + "}\n").encode("ascii")


# -- the client ----------------------------------------------------------------------
def ask(paths: list[str], request: bytes, timeout: float = CLIENT_TIMEOUT) -> dict:
    """Send one request to the first path that exists; return the answer,
    or raise ControlError saying why there is none."""
    path = _first_existing(paths)
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        try:
            sock.connect(path)
        except ConnectionRefusedError:
            raise ControlError(f"no svcwrap listening at {path} (a stale socket)") from None
        except PermissionError:
            raise ControlError(f"permission denied: {path}") from None
        except OSError as err:
            raise ControlError(f"cannot connect to {path}: {err.strerror or err}") from None
        pid, uid, _ = peer_credentials(sock)
        if uid not in (0, os.geteuid()) and pid != 1:
            raise ControlError(f"{path} is served by uid {uid} (pid {pid}), not by svcwrap "
                               "running as root, as this user or as PID 1; not asking it")
        try:
            try:
                sock.sendall(request)
            except (BrokenPipeError, ConnectionResetError):
                pass  # a server that refuses us answers before reading: read that
            line = read_line(sock, ANSWER_LIMIT, timeout)
        except (OSError, TimeoutError) as err:
            raise ControlError(f"no answer from {path}: {err}") from None
        except ValueError as err:
            raise ControlError(f"bad answer from {path}: {err}") from None
    finally:
        sock.close()
    try:
        answer = decode(line)
    except ValueError as err:
        raise ControlError(f"bad answer from {path}: {err}") from None
    if not isinstance(answer, dict):
        raise ControlError(f"bad answer from {path}: not an object")
    if not answer.get("ok"):
        raise ControlError(str(answer.get("error") or "refused"))
    return answer


def _first_existing(paths: list[str]) -> str:
    denied = None
    for path in paths:
        try:
            os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            continue
        except PermissionError:  # another uid's 0700 directory: look further
            denied = denied or path
            continue
        return path
    if denied is not None:
        raise ControlError(f"permission denied: {denied}")
    raise ControlError(f"no svcwrap control socket at {' or '.join(paths)}")


# -- what the server answers ---------------------------------------------------------
def is_stopping(state: str) -> bool:
    """Whether a snapshot's state is past the stop request (states.py decides;
    imported here, on the server's side only: the client stays light)."""
    from svcwrap.states import STOPPING_STATES

    return state in {s.value for s in STOPPING_STATES}


def health(status: dict) -> tuple[bool, str]:
    """`svcwrap healthcheck`'s verdict on a status snapshot, and one line of why.

    Healthy: registered and passing; or in maintenance (deliberate: Docker
    must not restart the container for it); or, under --no-register, the
    child running and its --check passing. Never while stopping."""
    state = status["state"]
    check = status.get("check_status")
    output = (status.get("check_output") or "").strip().splitlines()
    detail = f": {output[0][:200]}" if output else ""
    if is_stopping(state):
        return False, f"{state}: svcwrap is stopping the service"
    if status.get("maintenance"):
        reason = status.get("maintenance_reason")
        return True, "in maintenance" + (f": {reason}" if reason else "")
    if state == "registered":
        if check == "passing":
            return True, "registered and passing"
        return False, f"registered, check {check or 'not reported yet'}{detail}"
    if state == "running":
        if status.get("child_pid") is None:
            return False, "no child running"
        if status.get("check") is None:
            return True, f"running (pid {status['child_pid']}), no --check"
        if check == "passing":
            return True, f"running, check passing{detail}"
        return False, f"running, check {check or 'not run yet'}{detail}"
    return False, f"{state}: not registered yet"


class Request:
    """A request for the supervisor's main loop, answered from any thread."""

    __slots__ = ("verb", "args", "_done", "_answer")

    def __init__(self, verb: str, args: dict) -> None:
        import threading

        self.verb = verb
        self.args = args
        self._done = threading.Event()
        self._answer: dict | None = None

    def answer(self, ok: bool, **fields: object) -> None:
        """The first answer counts; later ones are dropped."""
        if not self._done.is_set():
            self._answer = {"ok": ok, **fields}
            self._done.set()

    def wait(self, timeout: float) -> dict | None:
        return self._answer if self._done.wait(timeout) else None


class Requests:
    """The queue into the supervisor's main loop. put() may be called from
    any thread and rings `wake` (Supervisor.wake: a SIGCHLD to the main
    thread); the main loop calls take_all() each time it wakes, and must
    answer each request, or hand it to whoever will, without blocking."""

    def __init__(self, wake: "Callable[[], None]") -> None:
        from collections import deque

        self._queue: deque[Request] = deque()
        self._wake = wake

    def put(self, verb: str, **args: object) -> Request:
        request = Request(verb, args)
        self._queue.append(request)  # deque.append is atomic
        self._wake()
        return request

    def take_all(self) -> list[Request]:
        taken = []
        while self._queue:
            taken.append(self._queue.popleft())
        return taken


def _answers(path: str) -> bool:
    """Whether something accepts connections on the socket at path."""
    probe = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        probe.settimeout(0.5)
        probe.connect(path)
        return True
    except OSError:
        return False
    finally:
        probe.close()


class ControlServer:
    def __init__(self, path: str, observer: "Observer", requests: Requests,
                 log: "Logger", answer_timeout: float = ANSWER_TIMEOUT) -> None:
        self.path = path
        self.observer = observer
        self.requests = requests
        self.log = log
        self.answer_timeout = answer_timeout
        self.uid = os.geteuid()
        self._listener: "_socket.socket | None" = None
        self._inode: tuple[int, int] | None = None
        self._slots = None

    def start(self) -> None:
        """Bind and serve on a daemon thread; raises OSError if it cannot bind."""
        import threading

        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            pass
        else:
            if (st.st_mode & 0o170000) != 0o140000:
                raise FileExistsError(17, "exists and is not a socket", self.path)
            if _answers(self.path):  # another svcwrap's (two on one host): never take it over
                raise OSError(98, "another svcwrap is listening there", self.path)
            os.unlink(self.path)  # a stale socket, left by a SIGKILLed svcwrap
        listener = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        try:
            listener.bind(self.path)
            # The peer check below is what guards the socket; 0600 is a second
            # fence (and the default directory is 0700 anyway).
            os.chmod(self.path, 0o600)
            listener.listen(16)
        except OSError:
            listener.close()
            raise
        st = os.lstat(self.path)
        self._inode = (st.st_dev, st.st_ino)
        self._listener = listener
        self._slots = threading.BoundedSemaphore(MAX_CLIENTS)
        threading.Thread(target=self._serve, name="svcwrap-control", daemon=True).start()
        self.log.debug("control socket", path=self.path)  # a plain init is silent

    def close(self) -> None:
        """Stop listening and remove the socket file, if it is still ours."""
        listener, self._listener = self._listener, None
        if listener is not None:
            try:
                listener.shutdown(_socket.SHUT_RDWR)  # wakes the accept() below
            except OSError:
                pass
            listener.close()
        try:
            st = os.lstat(self.path)
            if (st.st_dev, st.st_ino) == self._inode:
                os.unlink(self.path)
        except OSError:
            pass

    def _serve(self) -> None:
        import threading
        import time

        listener = self._listener
        while listener is not None and self._listener is listener:
            try:
                fd, _ = listener._accept()  # _socket's accept: a close-on-exec fd
            except OSError:
                if self._listener is not listener:
                    return  # closed
                time.sleep(0.1)  # out of file descriptors, say: do not spin
                continue
            conn = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM, fileno=fd)
            assert self._slots is not None
            if not self._slots.acquire(blocking=False):
                self._reply(conn, {"ok": False, "error": "svcwrap is busy: too many clients"})
                continue
            threading.Thread(target=self._connection, args=(conn,), name="svcwrap-control-client",
                             daemon=True).start()

    def _connection(self, conn: "_socket.socket") -> None:
        try:
            self._reply(conn, self._answer(conn))
        except Exception as err:  # a bug here must not end the server
            self.log.error("control request failed", error=f"{type(err).__name__}: {err}")
            self._reply(conn, {"ok": False, "error": "internal error"})
        finally:
            assert self._slots is not None
            self._slots.release()

    def _answer(self, conn: "_socket.socket") -> dict:
        pid, uid, _ = peer_credentials(conn)
        if uid not in (0, self.uid):
            self.log.warning("control refused", pid=pid, uid=uid)
            return {"ok": False, "error": f"permission denied: svcwrap answers only uid "
                                          f"{self.uid} and root, not uid {uid}"}
        try:
            request = decode(read_line(conn, REQUEST_LIMIT, IO_TIMEOUT))
        except (OSError, TimeoutError, ValueError) as err:
            return {"ok": False, "error": f"bad request: {err}"}
        if not isinstance(request, dict) or not isinstance(request.get("verb"), str):
            return {"ok": False, "error": "bad request: no verb"}
        return self.dispatch(request)

    def dispatch(self, request: dict) -> dict:
        verb = request["verb"]
        if verb == "status":
            return {"ok": True, "status": self.observer.snapshot()}
        if verb == "healthcheck":
            healthy, why = health(self.observer.snapshot())
            return {"ok": True, "healthy": healthy, "why": why}
        if verb == "maintenance":
            on = request.get("on")
            reason = request.get("reason", "")
            if not isinstance(on, bool) or not isinstance(reason, str):
                return {"ok": False, "error": "bad request: maintenance needs on (a boolean) "
                                              "and reason (a string)"}
            snapshot = self.observer.snapshot()
            if snapshot["service_id"] is None:
                return {"ok": False, "error": "no maintenance without Consul (--no-register)"}
            if is_stopping(snapshot["state"]):
                return {"ok": False, "error": f"svcwrap is {snapshot['state']}"}
            return self._queued("maintenance", on=on, reason=reason[:512])
        if verb == "reload":
            if not self.observer.snapshot()["templates"]:
                return {"ok": False, "error": "no templates configured"}
            return self._queued("reload", timeout=max(self.answer_timeout, RELOAD_TIMEOUT))
        return {"ok": False, "error": f"unknown verb {verb!r}"}

    def _queued(self, verb: str, timeout: float | None = None, **args: object) -> dict:
        timeout = self.answer_timeout if timeout is None else timeout
        answer = self.requests.put(verb, **args).wait(timeout)
        if answer is None:
            return {"ok": False, "error": f"svcwrap did not answer {verb} within {timeout:g}s"}
        return answer

    def _reply(self, conn: "_socket.socket", answer: dict) -> None:
        import json

        try:
            conn.settimeout(IO_TIMEOUT)
            conn.sendall((json.dumps(answer) + "\n").encode())
        except OSError:
            pass  # the client went away
        finally:
            conn.close()
