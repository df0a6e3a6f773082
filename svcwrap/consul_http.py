"""A small, bounded HTTP/1.1 client for the Consul agent.

One public call, AgentHTTP.request(): every byte read from the agent is
bounded in time (one *overall* deadline for connect, TLS handshake, sending
and the whole answer, not a per-read timeout that a dripping agent resets
with every byte) and in size (headers and body are capped; the answer is
never asked for gzip and never inflated). Errors of every kind are one
exception, ConsulUnavailable, whose message is short and never holds the
token: it travels only in the X-Consul-Token header.

Addresses: http://host:port, https://host:port (CONSUL_CACERT/CAPATH,
client certificate, CONSUL_HTTP_SSL_VERIFY, CONSUL_TLS_SERVER_NAME, as in
ConsulConfig) and unix:///path, as Consul's own client takes them.

Proxies, as Go's net/http ProxyFromEnvironment (which Consul's CLI uses):
HTTPS_PROXY/https_proxy for an https agent, HTTP_PROXY/http_proxy for an
http one (upper case wins; with REQUEST_METHOD set, a CGI environment,
HTTP_PROXY may come from a request header and is ignored), unless NO_PROXY
/no_proxy excludes the agent. Never for a loopback agent (localhost,
127.0.0.0/8, ::1) or a unix socket: Go's client never proxies loopback.
proxy_for() is the whole decision. Through an http(s) proxy an http agent
gets absolute-form requests; an https agent gets a CONNECT tunnel, then TLS
to the agent with the usual verification and server name. The deadline and
the size caps cover the proxy hop too. A plain-http proxy sees the token
(proxy_warning() says so); the proxy's userinfo goes only into
Proxy-Authorization and never into a message.

Standard library only (socket, ssl), imported on a worker thread.
"""
from __future__ import annotations

import os
import socket
import time
import urllib.parse

TYPE_CHECKING = False
if TYPE_CHECKING:
    import ssl
    from collections.abc import Callable, Mapping
    from typing import TypeVar

    from svcwrap.config import ConsulConfig

    T = TypeVar("T")

MAX_HEADERS = 16 * 1024      # status line and headers together
DEFAULT_MAX_BODY = 64 * 1024  # an agent's answer to a write is empty or a line of text
RECV_CHUNK = 16 * 1024


class ConsulUnavailable(Exception):
    """Consul could not be reached, was too slow, or answered nonsense; worth retrying."""


class Response:
    __slots__ = ("status", "headers", "body")

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers  # lower-case names
        self.body = body

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def __repr__(self) -> str:
        return f"Response({self.status}, {len(self.body)} bytes)"


class _Deadline(Exception):
    pass


class _Conn:
    """One connection to the agent, reused while the agent keeps it alive."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""
        self.used = False  # has carried a complete exchange: may have been closed meanwhile

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def _recv(self, deadline: float) -> bytes:
        left = deadline - time.monotonic()
        if left <= 0:
            raise _Deadline()
        # One timeout per call is a deadline within that call (socket and ssl
        # both count it down across the partial reads they make).
        self.sock.settimeout(left)
        try:
            return self.sock.recv(RECV_CHUNK)
        except (socket.timeout, TimeoutError):
            raise _Deadline() from None

    def read_head(self, deadline: float) -> bytes:
        while b"\r\n\r\n" not in self.buf:
            if len(self.buf) > MAX_HEADERS:
                raise ConsulUnavailable("headers too large")
            chunk = self._recv(deadline)
            if not chunk:
                raise ConnectionResetError("connection closed before an answer")
            self.buf += chunk
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        if len(head) > MAX_HEADERS:
            raise ConsulUnavailable("headers too large")
        return head

    def read_exact(self, n: int, deadline: float) -> bytes:
        while len(self.buf) < n:
            chunk = self._recv(deadline)
            if not chunk:
                raise ConsulUnavailable("answer cut short")
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def read_line(self, deadline: float, limit: int = 1024) -> bytes:
        while b"\r\n" not in self.buf:
            if len(self.buf) > limit:
                raise ConsulUnavailable("malformed chunked answer")
            chunk = self._recv(deadline)
            if not chunk:
                raise ConsulUnavailable("answer cut short")
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def read_to_close(self, deadline: float, max_body: int) -> bytes:
        while True:
            if len(self.buf) > max_body:
                raise _TooLarge()
            chunk = self._recv(deadline)
            if not chunk:
                data, self.buf = self.buf, b""
                return data
            self.buf += chunk


class _TooLarge(Exception):
    pass


class AgentHTTP:
    """HTTP to one Consul agent. Not thread-safe: give each thread its own."""

    def __init__(self, config: ConsulConfig, environ: Mapping[str, str] | None = None) -> None:
        self.config = config
        self.environ = os.environ if environ is None else environ  # for the proxy variables
        self.conn: _Conn | None = None
        self._proxy: ProxyURL | None | bool = False  # False: not decided yet
        self._tls: ssl.SSLContext | None = None
        if config.scheme == "https":
            self._tls = tls_context(config)

    # -- the one public call -------------------------------------------------
    def request(self, method: str, path: str, *, params: dict[str, str] | None = None,
                body: bytes | None = None, deadline: float = 2.0,
                max_body: int = DEFAULT_MAX_BODY, cut: bool = False) -> Response:
        """Send one request; return the whole answer within `deadline` seconds.

        Raises ConsulUnavailable on any transport error, on the deadline,
        or on an answer larger than max_body bytes (with cut=True, keeps its
        first max_body bytes instead and drops the connection). HTTP error
        statuses are returned, not raised.
        """
        target = urllib.parse.quote(path, safe="/:@!$&'()*+,;=~")
        if params:
            target += "?" + urllib.parse.urlencode(params)
        started = time.monotonic()
        answer = self._request(method, target, body, deadline, max_body, cut)
        if answer.status == 403 and self.config.reread_token():
            # A rotated token (--token-file): once more, at once, with the new
            # one, within what is left of the same deadline (out of time: the
            # 403 stands, and the next call carries the new token).
            left = deadline - (time.monotonic() - started)
            if left > 0:
                answer = self._request(method, target, body, left, max_body, cut)
        return answer

    def _request(self, method: str, target: str, body: bytes | None, deadline: float,
                 max_body: int, cut: bool) -> Response:
        until = time.monotonic() + deadline
        request = self._encode(method, target, body)
        try:
            try:
                return self._exchange(request, method, until, max_body, cut)
            except (ConnectionError, BrokenPipeError) as err:
                # A kept-alive connection the agent closed while idle: one
                # fresh try (every call svcwrap makes is idempotent).
                if not getattr(err, "_reused", False):
                    raise
                return self._exchange(request, method, until, max_body, cut)
        except _Deadline:
            self.close()
            raise ConsulUnavailable(f"no complete answer within {deadline:g}s") from None
        except _TooLarge:
            self.close()
            raise ConsulUnavailable(f"answer larger than {max_body} bytes") from None
        except ConsulUnavailable:
            self.close()
            raise
        except OSError as err:
            self.close()
            raise ConsulUnavailable(reason(err)) from None

    def connect(self, deadline: float = 2.0) -> None:
        """Open the connection now (e.g. so that a stop need not)."""
        if self.conn is None:
            try:
                self.conn = self._connect(time.monotonic() + deadline)
                # It will idle until used: the agent may have closed it by
                # then, so it gets the one fresh try a kept-alive one gets.
                self.conn.used = True
            except _Deadline:
                raise ConsulUnavailable(f"no connection within {deadline:g}s") from None
            except OSError as err:
                raise ConsulUnavailable(reason(err)) from None

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    @property
    def proxy(self) -> ProxyURL | None:
        """The proxy in use (decided once, on the first call: a worker thread)."""
        if self._proxy is False:
            c = self.config
            self._proxy = proxy_for(c.scheme, c.host, c.port, self.environ)
        return self._proxy  # type: ignore[return-value]

    # -- the work ------------------------------------------------------------
    def _authority(self) -> str:
        c = self.config
        host = f"[{c.host}]" if ":" in c.host else c.host
        return f"{host}:{c.port}"

    def _encode(self, method: str, target: str, body: bytes | None) -> bytes:
        c = self.config
        host = "localhost" if c.scheme == "unix" else self._authority()
        proxy = self.proxy
        lines = [f"{method} {target} HTTP/1.1"]
        if proxy is not None and c.scheme == "http":
            # An http agent through a proxy: the absolute form names the agent.
            lines = [f"{method} http://{host}{target} HTTP/1.1"]
            if proxy.auth:
                lines.append(f"Proxy-Authorization: {proxy.auth}")
        lines += [f"Host: {host}", "User-Agent: svcwrap",
                  # Never gzip: an unbounded inflate is how a 0.5 MB answer becomes 1.5 GB.
                  "Accept-Encoding: identity"]
        token = c.token.reveal()
        if token:
            lines.append(f"X-Consul-Token: {token}")
        if body is not None:
            lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
        elif method in ("PUT", "POST"):
            lines.append("Content-Length: 0")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")

    def _exchange(self, request: bytes, method: str, until: float, max_body: int,
                  cut: bool) -> Response:
        reused = self.conn is not None and self.conn.used
        if self.conn is None:
            self.conn = self._connect(until)
        conn = self.conn
        try:
            left = until - time.monotonic()
            if left <= 0:
                raise _Deadline()
            conn.sock.settimeout(left)
            try:
                conn.sock.sendall(request)
            except (socket.timeout, TimeoutError):
                raise _Deadline() from None
            head = conn.read_head(until)
        except (ConnectionError, BrokenPipeError) as err:
            self.close()
            err._reused = reused  # type: ignore[attr-defined]
            raise
        status, headers = parse_head(head)
        body, keep = self._read_body(conn, method, status, headers, until, max_body, cut)
        if keep:
            conn.used = True
        else:
            self.close()
        return Response(status, headers, body)

    def _read_body(self, conn: _Conn, method: str, status: int, headers: dict[str, str],
                   until: float, max_body: int, cut: bool) -> tuple[bytes, bool]:
        keep = headers.get("connection", "").lower() != "close"
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            return b"", keep
        if "chunked" in headers.get("transfer-encoding", "").lower():
            parts: list[bytes] = []
            total = 0
            while True:
                size_text = conn.read_line(until).split(b";")[0].strip()
                try:
                    size = int(size_text, 16)
                except ValueError:
                    raise ConsulUnavailable("malformed chunked answer") from None
                if size == 0:
                    while conn.read_line(until, MAX_HEADERS):  # trailers
                        pass
                    return b"".join(parts), keep
                total += size
                if total > max_body:
                    if not cut:
                        raise _TooLarge()
                    parts.append(conn.read_exact(size - (total - max_body), until))
                    return b"".join(parts), False
                parts.append(conn.read_exact(size, until))
                conn.read_line(until)
        if "content-length" in headers:
            try:
                length = int(headers["content-length"])
            except ValueError:
                raise ConsulUnavailable("malformed Content-Length") from None
            if length < 0:
                raise ConsulUnavailable("malformed Content-Length")
            if length > max_body:
                if not cut:
                    raise _TooLarge()
                return conn.read_exact(max_body, until), False
            return conn.read_exact(length, until), keep
        try:
            return conn.read_to_close(until, max_body), False
        except _TooLarge:
            if not cut:
                raise
            return conn.buf[:max_body], False

    def _connect(self, until: float) -> _Conn:
        c = self.config
        left = until - time.monotonic()
        if left <= 0:
            raise _Deadline()
        try:
            if c.scheme == "unix":
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(left)
                try:
                    sock.connect(c.host)
                except BaseException:
                    sock.close()
                    raise
            elif self.proxy is not None:
                sock = self._through_proxy(self.proxy, until)
            else:
                # getaddrinfo cannot be bounded; the agent's address is an IP
                # or a name in /etc/hosts in every deployment svcwrap targets.
                sock = socket.create_connection((c.host, c.port), timeout=left)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                # The stop's connection may idle for days: let the kernel notice
                # one a NAT or the agent silently forgot.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        except (socket.timeout, TimeoutError):
            raise _Deadline() from None
        tls = self._tls
        if tls is not None:
            plain = sock
            sock = _closing_on_error(plain, lambda: tls.wrap_socket(
                plain, server_hostname=c.tls_server_name or c.host), until)
        return _Conn(sock)

    def _through_proxy(self, proxy: ProxyURL, until: float) -> socket.socket:
        """A socket to the proxy; for an https agent, tunnelled to it with CONNECT."""
        if proxy.scheme not in ("http", "https"):
            raise ConsulUnavailable(f"proxy {proxy!r}: scheme {proxy.scheme} not supported")
        if proxy.scheme == "https" and self.config.scheme == "https":
            # TLS inside TLS needs ssl.SSLObject plumbing this client does not have.
            raise ConsulUnavailable(f"proxy {proxy!r}: an https agent through an https "
                                    "proxy is not supported")
        left = until - time.monotonic()
        if left <= 0:
            raise _Deadline()
        try:
            sock = socket.create_connection((proxy.host, proxy.port), timeout=left)
        except (socket.timeout, TimeoutError):
            raise _Deadline() from None
        except OSError as err:
            raise ConsulUnavailable(f"proxy {proxy!r}: {reason(err)}") from None
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        except OSError:
            sock.close()
            raise
        if proxy.scheme == "https":
            # As Go: the client's own TLS settings (CONSUL_CACERT, ...,
            # CONSUL_HTTP_SSL_VERIFY) verify the proxy, by the proxy's name.
            plain = sock
            sock = _closing_on_error(plain, lambda: tls_context(self.config).wrap_socket(
                plain, server_hostname=proxy.host), until)
        if self.config.scheme == "https":
            tunnel = sock
            _closing_on_error(tunnel, lambda: self._connect_tunnel(tunnel, proxy, until), until)
        return sock

    def _connect_tunnel(self, sock: socket.socket, proxy: ProxyURL, until: float) -> None:
        authority = self._authority()
        lines = [f"CONNECT {authority} HTTP/1.1", f"Host: {authority}", "User-Agent: svcwrap"]
        if proxy.auth:
            lines.append(f"Proxy-Authorization: {proxy.auth}")
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        conn = _Conn(sock)  # the same head bounds as an agent's answer
        try:
            status, _ = parse_head(conn.read_head(until))
        except ConnectionError:
            raise ConsulUnavailable(f"proxy {proxy!r}: closed the tunnel request") from None
        if status != 200:
            raise ConsulUnavailable(f"proxy {proxy!r} refused the tunnel: {status}")
        if conn.buf:  # bytes before the agent's TLS: not a tunnel
            raise ConsulUnavailable(f"proxy {proxy!r}: not a clean tunnel")


def _closing_on_error(sock: socket.socket, step: Callable[[], T], until: float) -> T:
    """step() (a TLS handshake, a CONNECT) on sock within the deadline; on any
    failure sock is closed."""
    try:
        left = until - time.monotonic()
        if left <= 0:
            raise _Deadline()
        sock.settimeout(left)
        return step()
    except (socket.timeout, TimeoutError):
        sock.close()
        raise _Deadline() from None
    except BaseException:
        sock.close()
        raise


def parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise ConsulUnavailable("not an HTTP answer")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon:
            raise ConsulUnavailable("malformed header")
        headers[name.strip().lower()] = value.strip()
    return int(parts[1]), headers


def tls_context(config: ConsulConfig) -> ssl.SSLContext:
    """CONSUL_CACERT / CONSUL_CAPATH / CONSUL_HTTP_SSL_VERIFY / client cert."""
    import ssl

    verify = config.verify
    if verify is False:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif isinstance(verify, str):
        import os

        if os.path.isdir(verify):
            context = ssl.create_default_context(capath=verify)
        else:
            context = ssl.create_default_context(cafile=verify)
    else:
        context = ssl.create_default_context()
    if config.cert:
        context.load_cert_chain(*config.cert)
    return context


def reason(err: BaseException) -> str:
    """A few words for a failed call ("Connection refused", ...)."""
    if type(err).__name__ == "SSLCertVerificationError":
        return f"certificate verify failed ({getattr(err, 'verify_message', '')})"
    for kind, text in ((ConnectionRefusedError, "Connection refused"),
                       (ConnectionResetError, "Connection reset"),
                       (FileNotFoundError, "No such socket"),
                       (socket.gaierror, "Name or service not known")):
        if isinstance(err, kind):
            return text
    text = getattr(err, "strerror", None) or str(err) or type(err).__name__
    return text.split("\n")[0][:120]


# -- proxies (Go's golang.org/x/net/http/httpproxy rules) ---------------------
class ProxyURL:
    """Where to send the agent's traffic instead: a parsed HTTP(S)_PROXY."""

    __slots__ = ("scheme", "host", "port", "auth")

    def __init__(self, scheme: str, host: str, port: int, auth: str = "") -> None:
        self.scheme = scheme
        self.host = host
        self.port = port
        self.auth = auth  # a Proxy-Authorization value, or ""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ProxyURL) and (self.scheme, self.host, self.port, self.auth) == (
            other.scheme, other.host, other.port, other.auth)

    def __repr__(self) -> str:  # never the userinfo
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


def proxy_for(scheme: str, host: str, port: int, environ: Mapping[str, str]) -> ProxyURL | None:
    """The proxy Go's ProxyFromEnvironment picks for scheme://host:port, or None."""
    if scheme == "https":
        value = _first(environ, "HTTPS_PROXY", "https_proxy")
    elif scheme == "http" and not environ.get("REQUEST_METHOD"):
        value = _first(environ, "HTTP_PROXY", "http_proxy")
    else:
        # unix:// is local by definition. Under CGI, HTTP_PROXY is the
        # request's "Proxy:" header (httpoxy): Go refuses the request, an
        # init cannot, so it goes direct, which sends nothing to that proxy.
        return None
    proxy = parse_proxy(value)
    if proxy is None or not _use_proxy(host.lower(), str(port),
                                       _first(environ, "NO_PROXY", "no_proxy")):
        return None
    return proxy


def proxy_warning(config: ConsulConfig, environ: Mapping[str, str] | None = None) -> str | None:
    """A warning to log once at start when a plain-http proxy will see the token."""
    if config.scheme != "http" or not config.token.reveal():
        return None
    proxy = proxy_for(config.scheme, config.host, config.port,
                      os.environ if environ is None else environ)
    if proxy is None:
        return None
    return f"the http agent is reached through the proxy {proxy!r}, which sees the ACL token"


def parse_proxy(value: str) -> ProxyURL | None:
    """HTTP(S)_PROXY as Go reads it: no scheme means http://; unparsable means none."""
    if not value:
        return None
    parts = urllib.parse.urlsplit(value)
    if not parts.scheme or not parts.netloc:
        parts = urllib.parse.urlsplit("http://" + value)
    scheme = parts.scheme.lower()
    try:
        port = parts.port or {"http": 80, "https": 443}.get(scheme, 1080)
    except ValueError:
        return None
    if not parts.hostname:
        return None
    auth = ""
    if parts.username is not None:
        import base64

        pair = urllib.parse.unquote(parts.username) + ":" + urllib.parse.unquote(
            parts.password or "")
        auth = "Basic " + base64.b64encode(pair.encode()).decode("ascii")
    return ProxyURL(scheme, parts.hostname, port, auth)


def _first(environ: Mapping[str, str], *names: str) -> str:
    for name in names:  # the first one set and not empty, as Go's getEnvAny
        if environ.get(name):
            return environ[name]
    return ""


def _ip(text: str):  # -> ipaddress.IPv4Address | IPv6Address | None
    import ipaddress  # on a worker thread, and only when a proxy is set

    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if ip.version == 6 and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped  # Go compares ::ffff:a.b.c.d and a.b.c.d as one address
    return ip


def _use_proxy(host: str, port: str, no_proxy: str) -> bool:
    """False when the agent is loopback or NO_PROXY names it."""
    if host == "localhost":
        return False
    ip = _ip(host)
    if ip is not None and ip.is_loopback:
        return False
    for entry in no_proxy.split(","):
        entry = entry.strip().lower()
        if not entry:
            continue
        if entry == "*":
            return False
        if "/" in entry:  # an IP range: the port does not matter
            import ipaddress

            try:
                network = ipaddress.ip_network(entry, strict=False)
            except ValueError:
                pass  # Go then reads it as a name, which matches nothing real
            else:
                if ip is not None and ip in network:
                    return False
                continue
        name, want_port = _split_host_port(entry)
        if not name:
            continue  # ":80": no host part, ignored as Go does
        if _same_port(want_port, port):
            entry_ip = _ip(name)
            if entry_ip is not None:
                if ip is not None and entry_ip == ip:
                    return False
                continue
            # "foo.com" matches foo.com and its subdomains; ".foo.com" (or
            # "*.foo.com") its subdomains only.
            if name.startswith("*."):
                name = name[1:]
            if host.endswith(name if name.startswith(".") else "." + name) or host == name:
                return False
    return True


def _same_port(wanted: str, port: str) -> bool:
    return not wanted or wanted == port


def _split_host_port(entry: str) -> tuple[str, str]:
    """'host:port', '[v6]:port', or a bare host or IPv6 address (port '')."""
    if entry.startswith("["):
        inside, _, rest = entry[1:].partition("]")
        return inside, rest[1:] if rest.startswith(":") else ""
    if entry.count(":") == 1:
        name, _, port = entry.partition(":")
        return name, port
    return entry, ""
