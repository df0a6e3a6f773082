"""Readiness and health probes: tcp, http(s), exec and systemd notify.

Each probe returns a Result: a Consul check status and the text that
becomes the check's Output. Probes run on svcwrap's worker thread, never on
the supervisor's, and every one is bounded by a timeout.
"""
from __future__ import annotations

import os
import select
import socket
import threading
import time
import urllib.parse
from typing import Callable

from svcwrap.config import ProbeSpec
from svcwrap.supervisor import CATCHABLE

PASSING, WARNING, CRITICAL = "passing", "warning", "critical"
OUTPUT_LIMIT = 4096  # Consul keeps no more of a check's output than this


class Result:
    __slots__ = ("status", "output")

    def __init__(self, status: str, output: str) -> None:
        self.status = status
        self.output = output[:OUTPUT_LIMIT]

    @property
    def ok(self) -> bool:
        return self.status == PASSING

    def __repr__(self) -> str:
        return f"Result({self.status!r}, {self.output!r})"


class ExitStatuses:
    """Exit statuses of svcwrap's own helper processes (exec probes).

    The supervisor reaps *every* child with waitpid(-1), including the
    processes an exec probe starts, so the probe cannot wait for them itself
    (subprocess would race the supervisor and, losing, report exit 0). The
    supervisor hands each status it reaps here instead; a probe announces
    itself before it spawns and waits for its pid. Statuses are kept only
    while some probe is running, so orphans reaped meanwhile cannot pile up.
    """

    def __init__(self, environ: dict[str, str]) -> None:
        self._cond = threading.Condition()
        self._waiting = 0
        self._statuses: dict[int, int] = {}
        self._environ = environ

    def reaped(self, pid: int, status: int) -> None:
        """Called by the supervisor for every non-main child it reaps."""
        with self._cond:
            if self._waiting:
                self._statuses[pid] = status
                self._cond.notify_all()

    def run(self, argv: list[str], timeout: float) -> tuple[int | None, str]:
        """Run argv; return (exit code, or None on timeout; combined output)."""
        with self._cond:
            self._waiting += 1
        try:
            return self._run(argv, timeout)
        finally:
            with self._cond:
                self._waiting -= 1
                if not self._waiting:
                    self._statuses.clear()

    def _run(self, argv: list[str], timeout: float) -> tuple[int | None, str]:
        deadline = time.monotonic() + timeout
        out_r, out_w = os.pipe()
        try:
            pid = os.posix_spawnp(
                argv[0], argv, self._environ,
                file_actions=[(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                              (os.POSIX_SPAWN_DUP2, out_w, 1), (os.POSIX_SPAWN_DUP2, out_w, 2)],
                setsid=True,
                # This thread blocks every signal (see supervisor.py) and Python
                # ignores SIGPIPE: the probe must start with neither.
                setsigmask=(), setsigdef=CATCHABLE)
        finally:
            os.close(out_w)
        output = b""
        timed_out = False
        with os.fdopen(out_r, "rb", buffering=0) as pipe:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    timed_out = True
                    break
                if not select.select([pipe], [], [], left)[0]:
                    continue
                chunk = pipe.read(65536)
                if not chunk:
                    break
                output = (output + chunk)[-2 * OUTPUT_LIMIT:]
        if timed_out:
            try:
                os.killpg(pid, 9)
            except ProcessLookupError:
                pass
        with self._cond:
            # Bounded: after SIGKILL the supervisor reaps the probe at once.
            while pid not in self._statuses and self._cond.wait(timeout + 5):
                pass
            status = self._statuses.pop(pid, None)
        text = output.decode("utf-8", "replace")
        if timed_out or status is None:
            return None, text
        code = os.waitstatus_to_exitcode(status)
        return (code if code >= 0 else 128 - code), text


def tcp(host: str, port: int, timeout: float) -> Result:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return Result(PASSING, f"TCP connect {host}:{port}: Success")
    except OSError as err:
        return Result(CRITICAL, f"TCP connect {host}:{port}: {err.strerror or err}")


class HTTPProbe:
    """GET url: 2xx and 3xx pass (redirects are not followed), like Consul's HTTP check.

    The whole exchange has one deadline (a trickling endpoint cannot hold
    the probe past it) and only the first OUTPUT_LIMIT bytes of the body are
    read. HTTPS certificates are verified unless the target is a loopback
    address (svcwrap's own child, often with a self-signed certificate) or
    --probe-insecure is given. Built once per probe (the TLS context loads
    the CA store), with a fresh connection for every run.
    """

    def __init__(self, url: str, timeout: float, insecure: bool = False) -> None:
        from svcwrap.config import ConsulConfig, Secret
        from svcwrap.consul_http import AgentHTTP

        self.url = url
        self.timeout = timeout
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname or "127.0.0.1"
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            port = 0  # every run reports the bad port
        verify = parts.scheme == "https" and not insecure and not is_loopback(host)
        # The bounded agent transport serves the probe too: an endpoint, no token.
        self.http = AgentHTTP(ConsulConfig(parts.scheme, host, port, Secret(""), verify,
                                           None, ""))
        self.path = urllib.parse.unquote(parts.path or "/")
        self.params = dict(urllib.parse.parse_qsl(parts.query, keep_blank_values=True)) or None

    def __call__(self) -> Result:
        from svcwrap.consul_http import ConsulUnavailable

        if not self.http.config.port:
            return Result(CRITICAL, f"HTTP GET {self.url}: bad port")
        try:
            response = self.http.request("GET", self.path, params=self.params,
                                         deadline=self.timeout, max_body=OUTPUT_LIMIT, cut=True)
        except ConsulUnavailable as err:
            return Result(CRITICAL, f"HTTP GET {self.url}: {err}")
        finally:
            self.http.close()
        status = PASSING if 200 <= response.status < 400 else CRITICAL
        reason = REASONS.get(response.status, "")
        return Result(status, f"HTTP GET {self.url}: {response.status} {reason} "
                              f"Output: {response.text}")


# The common ones, for Consul's Output format ("503 Service Unavailable"):
# http.client's full table costs 40 ms of imports (the email package).
REASONS = {200: "OK", 201: "Created", 202: "Accepted", 204: "No Content",
           301: "Moved Permanently", 302: "Found", 304: "Not Modified",
           307: "Temporary Redirect", 308: "Permanent Redirect", 400: "Bad Request",
           401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 429: "Too Many Requests",
           500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable",
           504: "Gateway Timeout"}


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    import ipaddress

    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def describe(spec: ProbeSpec) -> str:
    """What a check's Notes may say about a probe: its kind and target, never
    an exec probe's arguments (`redis-cli -a PASSWORD ping`) or a URL's
    credentials and query, which every catalog reader can see."""
    if spec.kind == "exec":
        return f"exec:{os.path.basename(spec.argv[0])}"
    if spec.kind == "http":
        parts = urllib.parse.urlsplit(spec.url)
        netloc = parts.hostname or ""
        netloc = f"[{netloc}]" if ":" in netloc else netloc
        try:
            netloc += f":{parts.port}" if parts.port else ""
        except ValueError:
            pass
        return f"{parts.scheme}://{netloc}{parts.path}"
    return spec.text


def run_exec(argv: list[str], timeout: float, statuses: ExitStatuses) -> Result:
    """Consul's script-check convention: 0 passing, 1 warning, else critical."""
    try:
        code, output = statuses.run(argv, timeout)
    except OSError as err:
        return Result(CRITICAL, f"{argv[0]}: {err.strerror or err}")
    if code is None:
        return Result(CRITICAL, f"{argv[0]}: timed out after {timeout:g}s\n{output}")
    status = PASSING if code == 0 else WARNING if code == 1 else CRITICAL
    return Result(status, output)


def make_probe(spec: ProbeSpec, timeout: float, statuses: ExitStatuses,
               insecure: bool = False) -> Callable[[], Result]:
    """A callable that runs the probe once; a probe that fails in an
    unexpected way reports critical rather than stopping the heartbeat."""
    probe = _probe(spec, timeout, statuses, insecure)

    def run() -> Result:
        try:
            return probe()
        except Exception as err:
            return Result(CRITICAL, f"{spec.text}: {type(err).__name__}: {err}")

    return run


def _probe(spec: ProbeSpec, timeout: float, statuses: ExitStatuses,
           insecure: bool) -> Callable[[], Result]:
    # notify is not here: READY=1 is read by notify.NotifySocket.
    if spec.kind == "tcp":
        return lambda: tcp(spec.host, spec.port, timeout)
    if spec.kind == "http":
        return HTTPProbe(spec.url, timeout, insecure)
    if spec.kind == "exec":
        return lambda: run_exec(spec.argv, timeout, statuses)
    return lambda: Result(PASSING, "service process is running")
