"""HTTP_PROXY/HTTPS_PROXY/NO_PROXY for the agent, as Go's ProxyFromEnvironment
(golang.org/x/net/http/httpproxy), which Consul's CLI uses; never for a
loopback agent (issue 9, section 3, "Proxies").

The integration tests reach the agent as consul.internal, a name only the test
proxy (on 127.0.0.1) can resolve: success proves the client sent the name to
the proxy instead of looking it up, and no traffic leaves loopback."""
from __future__ import annotations

import base64
import signal
import socket
import ssl
import threading
import time
import urllib.parse
from contextlib import contextmanager
from typing import Iterator

import pytest

from svcwrap.cli import parse
from svcwrap.consul_http import AgentHTTP, ConsulUnavailable, ProxyURL, proxy_for, proxy_warning
from tests.support import relay, wait_until
from tests.tls_support import https_server, tls_files  # noqa: F401 (a fixture)

TOKEN = "70ken-past-the-proxy"
P = ProxyURL("http", "proxy.corp", 3128)

# (sentence of Go's rules, agent scheme, host, port, environment, proxy expected)
RULES = [
    ("HTTP_PROXY applies to an http agent",
     "http", "consul.internal", 8500, {"HTTP_PROXY": "http://proxy.corp:3128"}, P),
    ("HTTPS_PROXY applies to an https agent and HTTP_PROXY does not",
     "https", "consul.internal", 8501, {"HTTP_PROXY": "http://other:1", "HTTPS_PROXY":
                                        "http://proxy.corp:3128"}, P),
    ("HTTPS_PROXY does not apply to an http agent",
     "http", "consul.internal", 8500, {"HTTPS_PROXY": "http://proxy.corp:3128"}, None),
    ("the lower-case http_proxy is read too",
     "http", "consul.internal", 8500, {"http_proxy": "http://proxy.corp:3128"}, P),
    ("upper case wins over lower case",
     "http", "consul.internal", 8500, {"HTTP_PROXY": "http://proxy.corp:3128",
                                       "http_proxy": "http://other:1"}, P),
    ("an empty upper-case variable falls through to the lower-case one",
     "http", "consul.internal", 8500, {"HTTP_PROXY": "", "http_proxy": "proxy.corp:3128"}, P),
    ("a proxy without a scheme is http",
     "http", "consul.internal", 8500, {"HTTP_PROXY": "proxy.corp:3128"}, P),
    ("an http proxy without a port is on port 80",
     "http", "consul.internal", 8500, {"HTTP_PROXY": "http://proxy.corp"},
     ProxyURL("http", "proxy.corp", 80)),
    ("an https proxy without a port is on port 443",
     "http", "consul.internal", 8500, {"HTTP_PROXY": "https://proxy.corp"},
     ProxyURL("https", "proxy.corp", 443)),
    ("userinfo becomes a basic Proxy-Authorization, percent-decoded",
     "http", "consul.internal", 8500, {"HTTP_PROXY": "http://svc:s%3Acret@proxy.corp:3128"},
     ProxyURL("http", "proxy.corp", 3128, "Basic " + base64.b64encode(b"svc:s:cret").decode())),
    ("an unparsable proxy means no proxy",
     "http", "consul.internal", 8500, {"HTTP_PROXY": "http://proxy.corp:port"}, None),
    ("under CGI (REQUEST_METHOD set) HTTP_PROXY is ignored",
     "http", "consul.internal", 8500, {"HTTP_PROXY": "proxy.corp:3128",
                                       "REQUEST_METHOD": "GET"}, None),
    ("under CGI HTTPS_PROXY still applies",
     "https", "consul.internal", 8501, {"HTTPS_PROXY": "proxy.corp:3128",
                                        "REQUEST_METHOD": "GET"}, P),
    ("localhost is never proxied",
     "http", "localhost", 8500, {"HTTP_PROXY": "proxy.corp:3128"}, None),
    ("any 127.0.0.0/8 address is never proxied",
     "http", "127.3.2.1", 8500, {"HTTP_PROXY": "proxy.corp:3128"}, None),
    ("::1 is never proxied",
     "https", "::1", 8501, {"HTTPS_PROXY": "proxy.corp:3128"}, None),
    ("a v4-mapped loopback address is never proxied",
     "http", "::ffff:127.0.0.1", 8500, {"HTTP_PROXY": "proxy.corp:3128"}, None),
    ("a unix socket agent is never proxied",
     "unix", "/run/consul.sock", 0, {"HTTP_PROXY": "proxy.corp:3128",
                                     "HTTPS_PROXY": "proxy.corp:3128"}, None),
    ("NO_PROXY=* excludes every host",
     "http", "consul.internal", 8500, {"HTTP_PROXY": "proxy.corp:3128", "NO_PROXY": "*"}, None),
    ("NO_PROXY is a comma-separated list with spaces allowed",
     "http", "consul.internal", 8500, {"HTTP_PROXY": "proxy.corp:3128",
                                       "NO_PROXY": "a.example, consul.internal ,b"}, None),
    ("the lower-case no_proxy is read too",
     "http", "consul.internal", 8500, {"HTTP_PROXY": "proxy.corp:3128",
                                       "no_proxy": "consul.internal"}, None),
    ("a NO_PROXY domain matches the host itself",
     "http", "internal", 8500, {"HTTP_PROXY": "proxy.corp:3128", "NO_PROXY": "internal"}, None),
    ("a NO_PROXY domain matches its subdomains",
     "http", "consul.internal", 8500, {"HTTP_PROXY": "proxy.corp:3128",
                                       "NO_PROXY": "internal"}, None),
    ("a NO_PROXY domain does not match a name it merely ends",
     "http", "notinternal", 8500, {"HTTP_PROXY": "proxy.corp:3128", "NO_PROXY": "internal"}, P),
    ("a NO_PROXY domain with a leading dot matches subdomains only",
     "http", "internal", 8500, {"HTTP_PROXY": "proxy.corp:3128", "NO_PROXY": ".internal"}, P),
    ("a NO_PROXY domain with a leading dot matches a subdomain",
     "http", "consul.internal", 8500, {"HTTP_PROXY": "proxy.corp:3128",
                                       "NO_PROXY": ".internal"}, None),
    ("a NO_PROXY domain with a leading star-dot matches subdomains only",
     "http", "internal", 8500, {"HTTP_PROXY": "proxy.corp:3128", "NO_PROXY": "*.internal"}, P),
    ("NO_PROXY matching ignores case",
     "http", "Consul.Internal", 8500, {"HTTP_PROXY": "proxy.corp:3128",
                                       "NO_PROXY": "CONSUL.internal"}, None),
    ("a NO_PROXY domain with a port matches only that port",
     "http", "consul.internal", 8500, {"HTTP_PROXY": "proxy.corp:3128",
                                       "NO_PROXY": "consul.internal:8501"}, P),
    ("a NO_PROXY domain with the agent's port matches",
     "http", "consul.internal", 8500, {"HTTP_PROXY": "proxy.corp:3128",
                                       "NO_PROXY": "consul.internal:8500"}, None),
    ("a NO_PROXY IP address matches that address",
     "http", "10.1.2.3", 8500, {"HTTP_PROXY": "proxy.corp:3128", "NO_PROXY": "10.1.2.3"}, None),
    ("a NO_PROXY IP address does not match another",
     "http", "10.1.2.4", 8500, {"HTTP_PROXY": "proxy.corp:3128", "NO_PROXY": "10.1.2.3"}, P),
    ("a NO_PROXY IP address with a port matches only that port",
     "http", "10.1.2.3", 8500, {"HTTP_PROXY": "proxy.corp:3128",
                                "NO_PROXY": "10.1.2.3:8501"}, P),
    ("a NO_PROXY bracketed IPv6 address with a port matches",
     "https", "fd00::5", 8501, {"HTTPS_PROXY": "proxy.corp:3128",
                                "NO_PROXY": "[fd00::5]:8501"}, None),
    ("a NO_PROXY bare IPv6 address matches",
     "https", "fd00::5", 8501, {"HTTPS_PROXY": "proxy.corp:3128", "NO_PROXY": "fd00::5"}, None),
    ("a NO_PROXY CIDR range matches the addresses in it",
     "http", "10.9.8.7", 8500, {"HTTP_PROXY": "proxy.corp:3128", "NO_PROXY": "10.0.0.0/8"}, None),
    ("a NO_PROXY CIDR range does not match addresses outside it",
     "http", "11.9.8.7", 8500, {"HTTP_PROXY": "proxy.corp:3128", "NO_PROXY": "10.0.0.0/8"}, P),
    ("a NO_PROXY IPv6 CIDR range matches the addresses in it",
     "https", "fd00::5", 8501, {"HTTPS_PROXY": "proxy.corp:3128", "NO_PROXY": "fd00::/8"}, None),
    ("a NO_PROXY CIDR range never matches a host name",
     "http", "consul.internal", 8500, {"HTTP_PROXY": "proxy.corp:3128",
                                       "NO_PROXY": "10.0.0.0/8"}, P),
    ("a NO_PROXY entry without a host is ignored",
     "http", "consul.internal", 8500, {"HTTP_PROXY": "proxy.corp:3128", "NO_PROXY": ":8500"}, P),
]


@pytest.mark.parametrize("scheme, host, port, environ, expected",
                         [rule[1:] for rule in RULES], ids=[rule[0] for rule in RULES])
def test_the_proxy_is_chosen_by_gos_rules(scheme, host, port, environ, expected):
    assert proxy_for(scheme, host, port, environ) == expected


def test_a_proxy_is_shown_without_its_userinfo():
    proxy = proxy_for("http", "consul.internal", 8500,
                      {"HTTP_PROXY": "http://svc:s3cret@proxy.corp:3128"})
    assert repr(proxy) == "http://proxy.corp:3128"


# -- a tiny forward proxy on 127.0.0.1 ------------------------------------------
class ForwardProxy:
    """Absolute-form requests and CONNECT, to the names in `names` only (its own
    DNS); records each request's line and headers."""

    def __init__(self, names: dict[str, tuple[str, int]],
                 tls: ssl.SSLContext | None = None) -> None:
        self.names = names
        self.seen: list[tuple[str, dict[str, str]]] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        if tls is not None:  # an https proxy
            self.listener = tls.wrap_socket(self.listener, server_side=True)
        scheme = "https" if tls else "http"
        self.url = f"{scheme}://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self.listener.close()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buf = b""
        with conn:
            while True:
                while b"\r\n\r\n" not in buf:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                head, _, buf = buf.partition(b"\r\n\r\n")
                line, *rest = head.decode("latin-1").split("\r\n")
                headers = {k.strip().lower(): v.strip()
                           for k, _, v in (h.partition(":") for h in rest)}
                self.seen.append((line, headers))
                method, target, _ = line.split(" ")
                authority = target if method == "CONNECT" else urllib.parse.urlsplit(target).netloc
                where = self.names.get(authority.rpartition(":")[0])
                if where is None:
                    conn.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
                    continue
                upstream = socket.create_connection(where, timeout=10)
                if method == "CONNECT":
                    conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    relay(conn, upstream)
                    return
                length = int(headers.get("content-length", "0"))
                while len(buf) < length:
                    buf += conn.recv(65536)
                body, buf = buf[:length], buf[length:]
                parts = urllib.parse.urlsplit(target)
                origin = parts.path + (f"?{parts.query}" if parts.query else "")
                kept = [h for h in rest if not h.lower().startswith(("proxy-", "connection:"))]
                upstream.sendall(("\r\n".join([f"{method} {origin} HTTP/1.1", *kept,
                                               "Connection: close"]) + "\r\n\r\n").encode()
                                 + body)
                with upstream:  # one upstream connection per request: relay until it closes
                    while chunk := upstream.recv(65536):
                        conn.sendall(chunk)


@contextmanager
def forward_proxy(tls: ssl.SSLContext | None = None,
                  **names: tuple[str, int]) -> Iterator[ForwardProxy]:
    proxy = ForwardProxy({name.replace("_", "."): where for name, where in names.items()}, tls)
    try:
        yield proxy
    finally:
        proxy.close()


def agent_for(addr: str, **env: str) -> AgentHTTP:
    config, _ = parse(["--name", "web", "--consul", addr, "--", "true"], env)
    return AgentHTTP(config.consul, env)


def test_an_agent_only_the_proxy_can_resolve_is_reached_through_http_proxy(consul):
    with forward_proxy(consul_internal=(consul.host, consul.port)) as proxy:
        agent = agent_for("http://consul.internal:8500", HTTP_PROXY=proxy.url)
        assert agent.request("GET", "/v1/status/leader").status == 200
        assert agent.request("GET", "/v1/agent/self").status in (200, 403)  # kept alive
        assert [line for line, _ in proxy.seen] == [
            "GET http://consul.internal:8500/v1/status/leader HTTP/1.1",
            "GET http://consul.internal:8500/v1/agent/self HTTP/1.1"]


def test_the_proxys_userinfo_is_sent_as_basic_proxy_authorization(consul):
    with forward_proxy(consul_internal=(consul.host, consul.port)) as proxy:
        url = proxy.url.replace("http://", "http://svc:s%3Acret@")
        agent_for("http://consul.internal:8500", HTTP_PROXY=url).request(
            "GET", "/v1/status/leader")
        auth = proxy.seen[0][1]["proxy-authorization"]
        assert base64.b64decode(auth.removeprefix("Basic ")) == b"svc:s:cret"


def test_an_https_proxy_is_spoken_to_over_tls(consul, tls_files):
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(tls_files["cert"], tls_files["key"])
    with forward_proxy(server, consul_internal=(consul.host, consul.port)) as proxy:
        # The test certificate names consul.internal, not 127.0.0.1: verified off.
        agent = agent_for("http://consul.internal:8500", HTTP_PROXY=proxy.url,
                          CONSUL_HTTP_SSL_VERIFY="false")
        assert agent.request("GET", "/v1/status/leader").status == 200
        assert proxy.seen[0][0] == "GET http://consul.internal:8500/v1/status/leader HTTP/1.1"
        verified = agent_for("http://consul.internal:8500", HTTP_PROXY=proxy.url,
                             CONSUL_CACERT=str(tls_files["ca"]))
        with pytest.raises(ConsulUnavailable, match="certificate verify failed"):
            verified.request("GET", "/v1/status/leader")


@pytest.mark.parametrize("addr, var, proxy, problem", [
    ("http://consul.internal:8500", "HTTP_PROXY", "socks5://127.0.0.1:1",
     "scheme socks5 not supported"),
    ("https://consul.internal:8501", "HTTPS_PROXY", "https://127.0.0.1:1",
     "an https agent through an https proxy is not supported"),
], ids=["a socks5 proxy is refused by name", "an https agent through an https proxy is refused"])
def test_a_proxy_this_client_cannot_use_is_an_error_not_a_silent_bypass(addr, var, proxy,
                                                                        problem):
    with pytest.raises(ConsulUnavailable, match=problem):
        agent_for(addr, **{var: proxy}).request("GET", "/v1/status/leader")


def test_a_refusing_proxy_is_named_in_the_error_without_its_userinfo():
    closed = socket.create_server(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    agent = agent_for("http://consul.internal:8500",
                      HTTP_PROXY=f"http://svc:s3cret@127.0.0.1:{port}")
    with pytest.raises(ConsulUnavailable) as err:
        agent.request("GET", "/v1/status/leader")
    assert str(err.value) == f"proxy http://127.0.0.1:{port}: Connection refused"


def test_the_overall_deadline_covers_a_proxy_that_never_answers():
    silent = socket.create_server(("127.0.0.1", 0))  # accepts (backlog), never answers
    try:
        agent = agent_for("http://consul.internal:8500",
                          HTTP_PROXY=f"127.0.0.1:{silent.getsockname()[1]}")
        started = time.monotonic()
        with pytest.raises(ConsulUnavailable, match="within 0.3s"):
            agent.request("GET", "/v1/status/leader", deadline=0.3)
        assert time.monotonic() - started < 0.8
    finally:
        silent.close()


@pytest.fixture
def tls_agent(tls_files):
    with https_server("127.0.0.1", tls_files) as url:
        yield int(url.rpartition(":")[2])


def test_an_https_agent_is_reached_through_a_connect_tunnel_and_verified_by_name(
        tls_agent, tls_files):
    with forward_proxy(consul_internal=("127.0.0.1", tls_agent)) as proxy:
        agent = agent_for("https://consul.internal:8501", HTTPS_PROXY=proxy.url,
                          CONSUL_CACERT=str(tls_files["ca"]), CONSUL_HTTP_TOKEN=TOKEN)
        answer = agent.request("GET", "/v1/status/leader")
        assert (answer.status, answer.body) == (200, b"hello /v1/status/leader")
        [(line, headers)] = proxy.seen
        assert line == "CONNECT consul.internal:8501 HTTP/1.1"
        assert TOKEN not in str(headers)  # the tunnel hides the token from the proxy


def test_a_tunnel_the_proxy_refuses_is_consul_unavailable(tls_files):
    with forward_proxy() as proxy:  # knows no names: 502
        agent = agent_for("https://consul.internal:8501", HTTPS_PROXY=proxy.url,
                          CONSUL_CACERT=str(tls_files["ca"]))
        with pytest.raises(ConsulUnavailable, match="refused the tunnel: 502"):
            agent.request("GET", "/v1/status/leader")


def _direct_host(consul) -> str:
    # 0.0.0.0 reaches a local listener but is not loopback to Go's rules:
    # an address the proxy rules apply to, without leaving this machine.
    return "0.0.0.0" if consul.host.startswith("127.") or consul.host == "localhost" \
        else consul.host


def test_no_proxy_naming_the_agent_sends_it_direct(consul):
    host = _direct_host(consul)
    with forward_proxy() as trap:
        proxied = agent_for(f"http://{host}:{consul.port}", HTTP_PROXY=trap.url)
        assert proxied.request("GET", "/v1/status/leader").status == 502  # the trap answered
        direct = agent_for(f"http://{host}:{consul.port}", HTTP_PROXY=trap.url,
                           NO_PROXY=f"example.org,{host}")
        assert direct.request("GET", "/v1/status/leader").status == 200
        assert len(trap.seen) == 1


@pytest.mark.parametrize("name", ["127.0.0.1", "localhost"])
def test_a_loopback_agent_is_never_proxied_even_with_http_proxy_set(consul, name):
    if not consul.host.startswith("127."):
        pytest.skip("needs an agent on loopback")
    with forward_proxy() as trap:
        proxies = {var: trap.url for var in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY",
                                             "https_proxy")}
        agent = agent_for(f"http://{name}:{consul.port}", **proxies)
        assert agent.request("GET", "/v1/status/leader").status == 200
        assert trap.seen == []


def test_a_token_visible_to_a_plain_http_proxy_gets_one_warning():
    def warning(addr: str, **env: str) -> str | None:
        config, _ = parse(["--name", "web", "--consul", addr, "--", "true"], env)
        return proxy_warning(config.consul, env)

    proxy = "http://svc:s3cret@proxy.corp:3128"
    text = warning("http://consul.internal:8500", HTTP_PROXY=proxy, CONSUL_HTTP_TOKEN=TOKEN)
    assert text is not None and "proxy.corp:3128" in text
    assert "s3cret" not in text and TOKEN not in text
    assert warning("http://consul.internal:8500", HTTP_PROXY=proxy) is None  # no token
    assert warning("https://consul.internal:8501", HTTPS_PROXY=proxy,
                   CONSUL_HTTP_TOKEN=TOKEN) is None  # a CONNECT tunnel hides it


def test_svcwrap_registers_through_http_proxy_and_warns_once_that_the_proxy_sees_the_token(
        wrap_pid1, svc):
    # --address: "auto" would look consul.internal up in DNS; only the proxy knows it.
    with forward_proxy(consul_internal=(svc.consul.host, svc.consul.port)) as proxy:
        w = wrap_pid1(*svc.args("--consul", "http://consul.internal:8500", "--address", "127.0.0.1"),
                      env=svc.env(HTTP_PROXY=proxy.url, CONSUL_HTTP_TOKEN="s3cr3t-token"))
        wait_until(svc.is_passing, timeout=10, message="registered through the proxy")
        assert any("/v1/agent/service/register" in line for line, _ in proxy.seen)
        w.kill(signal.SIGTERM)
        assert w.wait() == 0
    assert w.stderr.count("token visible to proxy") == 1, w.stderr
    assert "s3cr3t-token" not in w.stderr
