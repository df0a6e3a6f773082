"""TEMPORARY: a thin standard-library transport for the watches, to be
swapped for svcwrap/consul_http.py's request() once that is merged (it has
the same shape). Not a general HTTP client: one GET per connection, the ACL
token in the X-Consul-Token header (never in the URL, which shows in logs),
the answer bounded in size, the whole call in time.
"""
from __future__ import annotations

import http.client
import socket
import ssl
import time
import urllib.parse

from svcwrap.config import ConsulConfig


class TransportError(Exception):
    """Consul could not be reached, or its answer broke the bounds."""


class Response:
    __slots__ = ("status", "headers", "body")

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body


def stdlib_transport(consul: ConsulConfig):
    """request(method, path, *, params, body, deadline, max_body) -> Response;
    deadline is the call's whole budget in seconds."""
    token = consul.token.reveal()
    context = None
    if consul.scheme == "https":
        context = ssl.create_default_context(
            cafile=consul.verify if isinstance(consul.verify, str) else None)
        if consul.verify is False:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if consul.cert:
            context.load_cert_chain(*consul.cert)

    def request(method: str, path: str, *, params: dict[str, str], body: bytes | None,
                deadline: float, max_body: int) -> Response:
        end = time.monotonic() + deadline
        url = path + ("?" + urllib.parse.urlencode(params) if params else "")
        headers = {"User-Agent": "svcwrap"}
        if token:
            headers["X-Consul-Token"] = token
        if context is not None:
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                consul.host, consul.port, timeout=deadline, context=context)
        else:
            conn = http.client.HTTPConnection(consul.host, consul.port, timeout=deadline)
        try:
            conn.request(method, url, body=body, headers=headers)
            answer = conn.getresponse()
            chunks, size = [], 0
            while True:
                left = end - time.monotonic()
                if left <= 0:
                    raise TransportError(f"no full answer within {deadline:g}s")
                if conn.sock is not None:
                    conn.sock.settimeout(left)
                chunk = answer.read1(65536)
                if not chunk:
                    break
                size += len(chunk)
                if size > max_body:
                    raise TransportError(f"answer larger than {max_body} bytes")
                chunks.append(chunk)
            return Response(answer.status, dict(answer.getheaders()), b"".join(chunks))
        except (OSError, http.client.HTTPException) as err:
            if isinstance(err, socket.timeout):
                raise TransportError(f"timed out after {deadline:g}s") from None
            raise TransportError(f"cannot reach Consul at {consul.base_url}: "
                                 f"{type(err).__name__} ({err})") from None
        finally:
            conn.close()

    return request
