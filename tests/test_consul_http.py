"""svcwrap's HTTP transport to the agent (svcwrap/consul_http.py): every answer
is bounded in time and size, the token goes only in X-Consul-Token, and the
agent may be http, https or a unix socket (issue 9, section 3)."""
from __future__ import annotations

import gzip
import http.server
import socketserver
import subprocess
import threading
import time

import pytest

from svcwrap.cli import parse
from svcwrap.consul_http import AgentHTTP, ConsulUnavailable
from svcwrap.config import ConsulConfig, Secret
from tests.consul_double import start
from tests.consul_fixture import started_double
from tests.support import wait_until
from tests.tls_support import Hello, https_server, tls_files  # noqa: F401 (a fixture)

TOKEN = "70ken-for-the-transport"


def agent_for(addr: str, **env: str) -> AgentHTTP:
    config, _ = parse(["--name", "web", "--consul", addr, "--", "true"], env)
    return AgentHTTP(config.consul)


def test_a_request_returns_status_lower_case_headers_and_body(consul_double):
    answer = agent_for(consul_double.addr).request("GET", "/v1/status/leader")
    assert answer.status == 200
    assert answer.headers["content-type"].startswith("application/json")
    assert answer.body.startswith(b'"')


def test_error_statuses_are_returned_not_raised(consul_double):
    answer = agent_for(consul_double.addr).request("PUT", "/v1/agent/check/update/nope",
                                                   body=b'{"Status":"passing"}')
    assert answer.status == 404 and b"Unknown check ID" in answer.body


def test_the_token_travels_only_in_the_x_consul_token_header():
    with start(acl_tokens=[TOKEN]) as double:
        agent = agent_for(double.addr, CONSUL_HTTP_TOKEN=TOKEN)
        assert agent.request("PUT", "/v1/agent/service/register",
                             body=b'{"Name":"web"}').status == 200
        record = double.requests[-1]
        assert record.token == TOKEN
        assert TOKEN not in record.path and TOKEN not in str(record.query)


def test_a_dripping_agent_cannot_hold_a_call_past_its_overall_deadline(consul_double):
    consul_double.double.drip(0.05)  # a byte every 50 ms: no single read ever times out
    agent = agent_for(consul_double.addr)
    started = time.monotonic()
    with pytest.raises(ConsulUnavailable, match="within 0.5s"):
        agent.request("GET", "/v1/status/leader", deadline=0.5)
    assert time.monotonic() - started < 0.9


def test_an_oversized_answer_is_refused_without_reading_it(consul_double):
    consul_double.double.fail_with(500, "x" * 1_000_000)
    with pytest.raises(ConsulUnavailable, match="larger than 65536 bytes"):
        agent_for(consul_double.addr).request("GET", "/v1/status/leader", max_body=65536)


def test_a_gzip_answer_is_never_inflated(consul_double):
    bomb = gzip.compress(b"\0" * 50_000_000)  # 50 MB of zeros in about 50 kB
    consul_double.double.fail_with(200, bomb, {"Content-Encoding": "gzip"})
    answer = agent_for(consul_double.addr).request("GET", "/v1/status/leader",
                                                   max_body=len(bomb))
    assert answer.body == bomb


def test_a_kept_alive_connection_the_agent_dropped_is_reopened_once(consul_double):
    agent = agent_for(consul_double.addr)
    assert agent.request("GET", "/v1/status/leader").status == 200
    consul_double.double.refuse_connections(True)   # drops the kept-alive connection
    consul_double.double.refuse_connections(False)
    assert agent.request("GET", "/v1/status/leader").status == 200


def test_a_refused_connection_is_consul_unavailable_in_a_few_words(consul_double):
    consul_double.double.refuse_connections(True)
    with pytest.raises(ConsulUnavailable, match="^Connection refused$"):
        agent_for(consul_double.addr).request("GET", "/v1/status/leader")


def test_proxy_variables_in_svcwraps_environment_never_apply_to_a_loopback_agent(
        consul_double, monkeypatch):
    # Go's client never proxies loopback; the rules for other agents are in
    # tests/test_consul_proxy.py.
    trap = start()  # a "proxy" that must see nothing
    try:
        for var in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy"):
            monkeypatch.setenv(var, trap.url)
        assert agent_for(consul_double.addr).request("GET", "/v1/status/leader").status == 200
        assert trap.requests == []
    finally:
        trap.stop()


class _UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def get_request(self):
        conn, _ = super().get_request()
        return conn, ("unix", 0)


def serve(server) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    return thread


def test_a_unix_socket_agent_address_works_as_in_consuls_client(tmp_path):
    path = tmp_path / "consul.sock"
    server = _UnixServer(str(path), Hello)
    serve(server)
    try:
        agent = agent_for(f"unix://{path}")
        answer = agent.request("GET", "/v1/status/leader")
        assert (answer.status, answer.body) == (200, b"hello /v1/status/leader")
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def tls_agent(tls_files):
    with https_server("127.0.0.1", tls_files) as url:
        yield url


def test_https_verifies_against_consul_cacert_with_consul_tls_server_name(tls_agent, tls_files):
    agent = agent_for(tls_agent, CONSUL_CACERT=str(tls_files["ca"]),
                      CONSUL_TLS_SERVER_NAME="consul.internal:8501")
    assert agent.request("GET", "/v1/status/leader").status == 200


def test_https_refuses_a_certificate_for_another_name(tls_agent, tls_files):
    agent = agent_for(tls_agent, CONSUL_CACERT=str(tls_files["ca"]))  # 127.0.0.1 is not in it
    with pytest.raises(ConsulUnavailable, match="certificate verify failed"):
        agent.request("GET", "/v1/status/leader")


def test_https_refuses_an_unknown_ca_unless_consul_http_ssl_verify_is_false(tls_agent):
    with pytest.raises(ConsulUnavailable, match="certificate verify failed"):
        agent_for(tls_agent).request("GET", "/v1/status/leader")
    unverified = agent_for(tls_agent, CONSUL_HTTP_SSL_VERIFY="false")
    assert unverified.request("GET", "/v1/status/leader").status == 200


def test_a_capath_directory_is_a_set_of_trusted_cas(tls_agent, tls_files, tmp_path):
    subprocess.run(["openssl", "rehash", str(tmp_path)], check=False, capture_output=True)
    ca = tls_files["ca"].read_bytes()
    name = subprocess.run(["openssl", "x509", "-hash", "-noout", "-in", str(tls_files["ca"])],
                          capture_output=True, text=True, check=True).stdout.strip()
    (tmp_path / f"{name}.0").write_bytes(ca)
    agent = agent_for(tls_agent, CONSUL_CAPATH=str(tmp_path),
                      CONSUL_TLS_SERVER_NAME="consul.internal")
    assert agent.request("GET", "/v1/status/leader").status == 200


def test_an_error_message_never_holds_the_token(consul_double):
    config = ConsulConfig("http", "127.0.0.1", consul_double.double.port, Secret(TOKEN), True,
                          None, "")
    consul_double.double.refuse_connections(True)
    with pytest.raises(ConsulUnavailable) as err:
        AgentHTTP(config).request("GET", "/v1/status/leader")
    assert TOKEN not in str(err.value)


class _Shapes(http.server.BaseHTTPRequestHandler):
    """Answers in the three ways HTTP/1.1 frames a body."""
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802
        self.send_response(200)
        if self.path == "/chunked":
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for part in (b"alpha-", b"beta-", b"gamma"):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
        else:  # no length: the body ends when the connection does
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(b"until-close-" * 100)
            self.close_connection = True

    def log_message(self, *args) -> None:
        pass


class _QuietServer(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:
        pass  # a client that cut an answer short resets the connection: expected here


@pytest.fixture
def shapes():
    server = _QuietServer(("127.0.0.1", 0), _Shapes)
    serve(server)
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_chunked_answer_is_joined_and_capped(shapes):
    agent = agent_for(shapes)
    assert agent.request("GET", "/chunked").body == b"alpha-beta-gamma"
    assert agent.request("GET", "/chunked").body == b"alpha-beta-gamma"  # kept alive
    with pytest.raises(ConsulUnavailable, match="larger than 10 bytes"):
        agent.request("GET", "/chunked", max_body=10)
    assert agent.request("GET", "/chunked", max_body=10, cut=True).body == b"alpha-beta"


def test_an_answer_without_length_ends_with_the_connection_and_is_capped(shapes):
    agent = agent_for(shapes)
    assert agent.request("GET", "/close").body == b"until-close-" * 100
    with pytest.raises(ConsulUnavailable, match="larger than 100 bytes"):
        agent.request("GET", "/close", max_body=100)
    assert agent.request("GET", "/close", max_body=12, cut=True).body == b"until-close-"


def test_cut_keeps_the_first_bytes_of_a_long_answer(consul_double):
    consul_double.double.fail_with(200, "x" * 100_000)
    answer = agent_for(consul_double.addr).request("GET", "/v1/status/leader", max_body=4096,
                                                   cut=True)
    assert answer.body == b"x" * 4096


def test_a_connection_opened_ahead_that_the_agent_dropped_is_reopened_once(consul_double):
    agent = agent_for(consul_double.addr)
    agent.connect()
    consul_double.double.refuse_connections(True)   # drops the idle connection
    consul_double.double.refuse_connections(False)
    assert agent.request("GET", "/v1/status/leader").status == 200


def test_the_retry_after_a_403_with_a_rotated_token_stays_within_the_calls_deadline(tmp_path):
    token = tmp_path / "token"
    token.write_text("01d-70ken\n")
    with started_double(acl_tokens=["n3w-70ken"]) as acl:
        agent = agent_for(acl.addr, CONSUL_HTTP_TOKEN_FILE=str(token))
        token.write_text("n3w-70ken\n")   # rotated: the 403 makes svcwrap read it again
        acl.double.delay(1.5)             # each answer: 1.5 s of the call's 2 s
        started = time.monotonic()
        with pytest.raises(ConsulUnavailable, match="no complete answer"):
            agent.request("PUT", "/v1/agent/service/register", body=b'{"Name": "web"}',
                          deadline=2.0)
        assert time.monotonic() - started < 2.6
        # the double logs a request once it has answered it
        wait_until(lambda: [r.token for r in acl.double.requests] == ["01d-70ken", "n3w-70ken"],
                   timeout=5, message="the retry went out with the new token")
