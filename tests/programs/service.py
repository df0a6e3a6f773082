"""A small service for svcwrap's tests: HTTP on 127.0.0.1:PORT.

usage: service.py PORT [--gate FILE] [--notify] [--on-term-query URL OUT]
                       [--health-file FILE]

--gate FILE      listen only once FILE exists (not ready until then)
--notify         send READY=1 to $NOTIFY_SOCKET once listening
--on-term-query  on SIGTERM, GET URL first and write "<monotonic> <body>"
                 to OUT (lets a test see what Consul said when TERM came)
--health-file    GET /health answers 200 while FILE exists, 503 otherwise
Exits 0 on SIGTERM.
"""
import http.server
import os
import signal
import socket
import sys
import threading
import time
import urllib.request


def option(name: str, count: int = 1):
    if name not in sys.argv:
        return None
    i = sys.argv.index(name)
    return sys.argv[i + 1:i + 1 + count] if count > 1 else sys.argv[i + 1]


def main() -> None:
    port = int(sys.argv[1])
    gate, health = option("--gate"), option("--health-file")
    term_query = option("--on-term-query", 2)

    def on_term(*_):
        if term_query:
            url, out = term_query
            with urllib.request.urlopen(url, timeout=5) as resp:
                body = resp.read().decode()
            with open(out + ".tmp", "w") as f:
                f.write(f"{time.monotonic()} {body}")
            os.rename(out + ".tmp", out)
        os._exit(0)

    signal.signal(signal.SIGTERM, on_term)
    while gate and not os.path.exists(gate):
        time.sleep(0.01)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            ok = self.path != "/health" or health is None or os.path.exists(health)
            self.send_response(200 if ok else 503)
            self.end_headers()
            self.wfile.write(b"ok" if ok else b"unhealthy")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    if "--notify" in sys.argv:
        address = os.environ["NOTIFY_SOCKET"]
        target = "\0" + address[1:] if address.startswith("@") else address
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.sendto(b"STATUS=serving\nREADY=1\n", target)
    while True:
        signal.pause()


main()
