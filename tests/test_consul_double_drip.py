"""Contract tests: the double's drip fault and fail_with's raw bodies and headers (§1 transport)."""
from __future__ import annotations

import socket
import time
import urllib.request


def test_drip_sends_the_answer_one_byte_at_a_time(consul_double):
    consul_double.double.drip(0.01)
    with socket.create_connection(("127.0.0.1", consul_double.double.port), timeout=5) as conn:
        conn.sendall(b"GET /v1/status/leader HTTP/1.1\r\nHost: x\r\n\r\n")
        started = time.monotonic()
        sizes = []
        while len(sizes) < 20:
            sizes.append(len(conn.recv(1024)))
        assert set(sizes) == {1} and time.monotonic() - started >= 0.15
    consul_double.double.drip(0)
    assert consul_double.get("/v1/status/leader")[0] == 200


def test_fail_with_sends_raw_bytes_and_extra_headers(consul_double):
    consul_double.double.fail_with(200, b"\x1f\x8b raw", {"Content-Encoding": "gzip"})
    req = urllib.request.Request(consul_double.url + "/v1/status/leader")
    with urllib.request.urlopen(req, timeout=5) as resp:
        assert resp.headers["Content-Encoding"] == "gzip"
        assert resp.read() == b"\x1f\x8b raw"
