"""The example application server: one HTTP request, one redis round trip.

    python3 app.py REDIS_CONF        (port: $SVCWRAP_PORT, instance name: $SVCWRAP_ID)

Every request but /health does one `INCR discovery:requests` on redis and answers
200 with a line naming the instance that served it and the count redis returned:

    instance=app-1 count=1234 redis=127.0.0.1:18379

/health answers 200 when redis answers PING, else 503. Once listening and once redis
answers, the app tells svcwrap it is ready (systemd's READY=1 on $NOTIFY_SOCKET, svcwrap's
`--ready notify`): it is registered in Consul only when it can serve. Redis is found only through REDIS_CONF,
which svcwrap renders from Consul (`service("redis")`); the app reads it at start and
again on SIGHUP (svcwrap's `--reload signal:HUP`). SIGTERM: stop accepting, finish
the requests in progress, print how many requests came after the signal (0 when svcwrap
took the instance out of the load balancer before signalling it), exit 0.

Standard library only; it runs on any Python 3 (the example image uses the interpreter
of the svcwrap tree it already carries, /opt/svcwrap/bin/python3.11).
"""
from __future__ import annotations

import os
import signal
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Optional, Tuple

COUNTER = b"discovery:requests"
REDIS_TIMEOUT = 2.0  # seconds, connect + reply
MAX_REPLY = 512      # bytes of one redis reply line; more is an error


def log(message: str) -> None:
    print(f"app: {message}", flush=True)


def read_config(path: str) -> Optional[Tuple[str, int]]:
    """`host = H` and `port = P` lines (comments with #); None when no redis is listed."""
    values = {}
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                key, eq, value = line.partition("#")[0].partition("=")
                if eq:
                    values[key.strip()] = value.strip()
    except OSError as err:
        log(f"cannot read {path}: {err.strerror}")
        return None
    if "host" not in values or not values.get("port", "").isdigit():
        return None
    return values["host"], int(values["port"])


def redis_call(address: Tuple[str, int], *args: bytes) -> bytes:
    """One command in RESP, one reply line (without CRLF). A new connection per call:
    the address may change at any SIGHUP, and loopback connects cost microseconds."""
    command = b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)
    with socket.create_connection(address, timeout=REDIS_TIMEOUT) as s:
        s.sendall(command)
        reply = b""
        while not reply.endswith(b"\r\n"):
            chunk = s.recv(MAX_REPLY)
            if not chunk:
                raise ConnectionError("redis closed the connection")
            reply += chunk
            if len(reply) > MAX_REPLY:
                raise ConnectionError("redis reply too long")
    return reply[:-2]


def notify_ready() -> None:
    """systemd's readiness notification, as `svcwrap --ready notify` expects it."""
    target = os.environ.get("NOTIFY_SOCKET")
    if not target:
        return
    if target.startswith("@"):
        target = "\0" + target[1:]  # an abstract socket
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.sendto(b"READY=1", target)


class App:
    def __init__(self, config_path: str, instance: str) -> None:
        self.config_path = config_path
        self.instance = instance
        self.redis = read_config(config_path)
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.served = 0
        self.served_after_term = 0

    def reload(self) -> None:
        redis = read_config(self.config_path)
        if redis != self.redis:
            log(f"redis is now {'%s:%d' % redis if redis else 'none'}")
        self.redis = redis

    def count(self) -> None:
        with self.lock:
            self.served += 1
            if self.stopping.is_set():
                self.served_after_term += 1


def make_handler(app: App):
    class Handler(BaseHTTPRequestHandler):
        server_version = "discovery-app"
        # A connection that sends nothing is dropped after 5 s: at SIGTERM, server_close()
        # waits for every request thread, and svcwrap kills the app after --stop-timeout.
        timeout = 5

        def do_GET(self) -> None:
            redis = app.redis
            if redis is None:
                self.answer(503, "no redis in " + app.config_path)
                return
            try:
                if self.path == "/health":
                    reply = redis_call(redis, b"PING")
                    self.answer(200 if reply == b"+PONG" else 503, reply.decode(errors="replace"))
                    return
                reply = redis_call(redis, b"INCR", COUNTER)
            except OSError as err:
                self.answer(503, f"instance={app.instance} redis={redis[0]}:{redis[1]} error={err}")
                return
            if not reply.startswith(b":"):
                self.answer(503, f"instance={app.instance} redis says {reply.decode(errors='replace')}")
                return
            app.count()
            self.answer(200, f"instance={app.instance} count={int(reply[1:])} "
                             f"redis={redis[0]}:{redis[1]}")

        do_POST = do_GET

        def answer(self, status: int, text: str) -> None:
            body = (text + "\n").encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("X-Instance", app.instance)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # one line per request at 200/s would drown the events

    return Handler


class Server(ThreadingHTTPServer):
    # The default backlog of 5 overflows under a burst, and the kernel then drops SYNs:
    # the client waits a second for its retransmission instead of being served.
    request_queue_size = 256
    daemon_threads = False  # server_close() waits for the requests in progress


SIGNALS = {signal.SIGHUP, signal.SIGTERM, signal.SIGINT}


def handle(app: App, signo: int) -> bool:
    """SIGHUP: read the configuration again. SIGTERM, SIGINT: True (stop)."""
    if signo == signal.SIGHUP:
        app.reload()
        return False
    log(f"{signal.Signals(signo).name} received, finishing requests in progress")
    app.stopping.set()
    return True


def redis_answers(redis: Optional[Tuple[str, int]]) -> bool:
    try:
        return redis is not None and redis_call(redis, b"PING") == b"+PONG"
    except OSError:
        return False


def main(argv: list) -> int:
    if len(argv) != 2:
        print("usage: app.py REDIS_CONF", file=sys.stderr)
        return 2
    port = int(os.environ.get("SVCWRAP_PORT", "8000"))
    app = App(argv[1], os.environ.get("SVCWRAP_ID") or socket.gethostname())
    server = Server((os.environ.get("APP_BIND", "127.0.0.1"), port), make_handler(app))
    # The signals are blocked in every thread and taken by the main thread with sigwait.
    # With handlers instead, the kernel may deliver a signal to a request thread, and a
    # main thread blocked in a wait is then not woken to run the handler: a SIGHUP or
    # SIGTERM would sit unhandled. The mask is set before any thread starts (they inherit it).
    signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
    serving = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    serving.start()
    log(f"instance {app.instance} listening on port {port}, redis "
        f"{'%s:%d' % app.redis if app.redis else 'none'}")
    # Ready once redis answers (its address may come later, with a SIGHUP).
    stop = False
    while not stop and not redis_answers(app.redis):
        info = signal.sigtimedwait(SIGNALS, 0.1)
        stop = info is not None and handle(app, info.si_signo)
    if not stop:
        notify_ready()
        log("ready")
    while not stop:
        stop = handle(app, signal.sigwait(SIGNALS))
    server.shutdown()      # no new connections are accepted ...
    serving.join()
    server.server_close()  # ... and those in progress are answered
    log(f"stopped: served {app.served} requests, {app.served_after_term} after the stop signal")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
