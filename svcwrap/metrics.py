"""Prometheus metrics for `--metrics HOST:PORT` (off by default).

Imported only when the option is set: prometheus_client is the heaviest
import svcwrap has. The metrics live in their own registry (no global
state) and are written by the observer alone (observer.py), under its
lock, so they always agree with the log and with `svcwrap status`.

    svcwrap_state{state}                  1 for the current state, 0 for the others
    svcwrap_check_status{status}          1 for the last check result, 0 for the others
    svcwrap_heartbeats_total              check updates the agent accepted
    svcwrap_heartbeat_failures_total      check updates that failed
    svcwrap_consul_request_seconds{call}  how long calls to the agent took
    svcwrap_registrations_total           registrations accepted (again after the agent forgot)
    svcwrap_signals_forwarded_total{signal}
    svcwrap_child_restarts_total
    process_*                             svcwrap's own CPU, memory, file descriptors

The HTTP server answers GET /metrics (and /) on its own thread; bind it to
loopback (`--metrics 127.0.0.1:9100`) unless Prometheus scrapes from outside.
"""
import http.server
import socket
import threading

from prometheus_client import (CollectorRegistry, Counter, Gauge, Histogram,
                               ProcessCollector)
from prometheus_client.exposition import choose_encoder

from svcwrap.states import CheckStatus, ServiceState

# Calls to a local agent take milliseconds; the 2 s timeout is the top.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0)
CALLS = ("register", "update", "deregister", "maintenance")


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        ProcessCollector(registry=r)
        self._state = Gauge("svcwrap_state", "1 for svcwrap's current state, 0 for the others",
                            ["state"], registry=r)
        self._check = Gauge("svcwrap_check_status",
                            "1 for the health check's last status, 0 for the others",
                            ["status"], registry=r)
        self._heartbeats = Counter("svcwrap_heartbeats", "check updates the agent accepted",
                                   registry=r)
        self._heartbeat_failures = Counter("svcwrap_heartbeat_failures",
                                           "check updates that failed", registry=r)
        self._requests = Histogram("svcwrap_consul_request_seconds",
                                   "duration of calls to the Consul agent", ["call"],
                                   buckets=BUCKETS, registry=r)
        self._registrations = Counter("svcwrap_registrations",
                                      "registrations the agent accepted", registry=r)
        self._signals = Counter("svcwrap_signals_forwarded", "signals forwarded to the child",
                                ["signal"], registry=r)
        self._restarts = Counter("svcwrap_child_restarts", "restarts of the child", registry=r)
        # Every label value exists from the start: a scrape shows the zeros.
        for state in ServiceState:
            self._state.labels(state.value).set(0)
        for status in CheckStatus:
            self._check.labels(status.value).set(0)
        for call in CALLS:
            self._requests.labels(call)
        self._server: http.server.ThreadingHTTPServer | None = None

    # -- fed by the observer (under its lock) ---------------------------------
    def state(self, current: str) -> None:
        for state in ServiceState:
            self._state.labels(state.value).set(1 if state.value == current else 0)

    def check_status(self, current: str) -> None:
        for status in CheckStatus:
            self._check.labels(status.value).set(1 if status.value == current else 0)

    def catch_up(self, state: str, check: str | None, counts: dict[str, int],
                 signals: dict[str, int]) -> None:
        """Start from what the observer saw before these metrics existed."""
        self.state(state)
        if check is not None:
            self.check_status(check)
        self._heartbeats.inc(counts["heartbeats"])
        self._heartbeat_failures.inc(counts["heartbeat_failures"])
        self._registrations.inc(counts["registrations"])
        self._restarts.inc(counts["child_restarts"])
        for signal, n in signals.items():
            self._signals.labels(signal).inc(n)

    def heartbeat(self, ok: bool) -> None:
        (self._heartbeats if ok else self._heartbeat_failures).inc()

    def consul_request(self, call: str, seconds: float) -> None:
        self._requests.labels(call).observe(seconds)

    def registration(self) -> None:
        self._registrations.inc()

    def signal_forwarded(self, signal: str) -> None:
        self._signals.labels(signal).inc()

    def child_restarted(self) -> None:
        self._restarts.inc()

    # -- the HTTP endpoint -----------------------------------------------------
    def serve(self, host: str, port: int) -> tuple[str, int]:
        """Listen on host:port (port 0: any free one) on a daemon thread;
        return the address bound. Raises OSError if it cannot bind."""
        registry = self.registry

        class Handler(http.server.BaseHTTPRequestHandler):
            timeout = 5  # a client that sends nothing does not hold a thread

            def do_GET(self) -> None:
                if self.path.split("?")[0] not in ("/", "/metrics"):
                    self.send_error(404)
                    return
                # The text format (or OpenMetrics) as the scraper's Accept asks.
                encode, content_type = choose_encoder(self.headers.get("Accept"))
                body = encode(registry)
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass  # scrapes are not events: a plain init is silent

        server_class = _HTTPServerV6 if ":" in host else http.server.ThreadingHTTPServer
        self._server = server_class((host, port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="svcwrap-metrics",
                         daemon=True).start()
        bound = self._server.server_address
        return bound[0], bound[1]

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class _HTTPServerV6(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6
