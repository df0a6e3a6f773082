"""A throw-away CA and server certificate (openssl) for TLS tests."""
from __future__ import annotations

import http.server
import ssl
import subprocess
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory) -> dict[str, Path]:
    """A CA and a server certificate for consul.internal (and 127.0.0.1)."""
    d = tmp_path_factory.mktemp("tls")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out",
            "ca.pem", "-days", "2", "-subj", "/CN=test CA")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out",
            "server.csr", "-subj", "/CN=consul.internal")
    (d / "ext").write_text("subjectAltName=DNS:consul.internal\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "ext")
    return {"ca": d / "ca.pem", "cert": d / "server.pem", "key": d / "server.key"}


class Hello(http.server.BaseHTTPRequestHandler):
    """Answers every GET with 200 "hello PATH"."""
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802
        body = b"hello " + self.path.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@contextmanager
def https_server(host: str, files: dict[str, Path]) -> Iterator[str]:
    """An https server on host answering 200 "hello PATH"; yields its base URL."""
    server = http.server.ThreadingHTTPServer((host, 0), Hello)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(files["cert"], files["key"])
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                     daemon=True).start()
    try:
        yield f"https://{host}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
