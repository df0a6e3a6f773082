"""Pytest fixtures for tests that need a Consul agent: the in-repo double, or a real agent.

Import from ``tests/conftest.py`` with ``from tests.consul_fixture import *``.

* ``consul``: a :class:`ConsulUnderTest`. If ``SVCWRAP_TEST_CONSUL_ADDR`` (host:port) is set, it
  points at that real agent (token from ``SVCWRAP_TEST_CONSUL_TOKEN``) and deregisters, at
  teardown, the services that appeared during the test. Otherwise it starts the double with fast
  constants (``dcsa_min=1.0``, ``reap_interval=0.25``) and stops it afterwards.
* ``consul_double``: the same object, but skips when a real agent is configured, so ``.double``
  (the fault-injection handle) is never None.
* ``wait_until(predicate, timeout=5.0, interval=0.01, message="")``: poll until truthy.
"""
from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple, TypeVar

import pytest

from tests.consul_double import DoubleHandle, start

__all__ = ["ConsulUnderTest", "consul", "consul_double", "wait_until",
           "FAST_DCSA_MIN", "FAST_REAP_INTERVAL", "REAL_AGENT_ENV", "REAL_TOKEN_ENV"]

REAL_AGENT_ENV = "SVCWRAP_TEST_CONSUL_ADDR"
REAL_TOKEN_ENV = "SVCWRAP_TEST_CONSUL_TOKEN"
FAST_DCSA_MIN = 1.0
FAST_REAP_INTERVAL = 0.25
REAL_DCSA_MIN = 60.0
REAL_REAP_INTERVAL = 30.0

T = TypeVar("T")


def wait_until(predicate: Callable[[], T], timeout: float = 5.0, interval: float = 0.01,
               message: str = "") -> T:
    """Call ``predicate`` until it returns something truthy and return that value.

    Raises AssertionError (with ``message`` and the last value) after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %.2fs waiting for %s (last value: %r)"
                                 % (timeout, message or getattr(predicate, "__name__", "condition"), value))
        time.sleep(interval)


class ConsulUnderTest:
    """The agent a test talks to, with small urllib-only HTTP helpers."""

    def __init__(self, addr: str, double: Optional[DoubleHandle], dcsa_min: float, reap_interval: float,
                 token: Optional[str] = None) -> None:
        self.addr = addr
        self.url = "http://" + addr
        self.double = double
        self.dcsa_min = dcsa_min
        self.reap_interval = reap_interval
        self.token = token

    @property
    def host(self) -> str:
        return self.addr.rpartition(":")[0]

    @property
    def port(self) -> int:
        return int(self.addr.rpartition(":")[2])

    @property
    def is_double(self) -> bool:
        return self.double is not None

    def request(self, method: str, path: str, body: Any = None,
                headers: Optional[Dict[str, str]] = None, timeout: float = 10.0) -> Tuple[int, Dict[str, str], bytes]:
        """Raw request: ``(status, headers, body bytes)``; never raises on HTTP errors."""
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if self.token:
            req.add_header("X-Consul-Token", self.token)
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, dict(resp.headers.items()), resp.read()
        except urllib.error.HTTPError as err:
            return err.code, dict(err.headers.items()), err.read()

    def get(self, path: str) -> Tuple[int, Any]:
        """GET ``path``: ``(status, decoded JSON)``, or the text body when it is not JSON."""
        status, _, raw = self.request("GET", path)
        text = raw.decode("utf-8", errors="replace")
        try:
            return status, json.loads(text)
        except ValueError:
            return status, text

    def put(self, path: str, body: Any = None) -> Tuple[int, str]:
        status, _, raw = self.request("PUT", path, body)
        return status, raw.decode("utf-8", errors="replace")

    def passing(self, name: str) -> List[str]:
        """Service IDs listed by ``/v1/health/service/<name>?passing``."""
        status, entries = self.get("/v1/health/service/%s?passing" % urllib.parse.quote(name, safe=""))
        assert status == 200, (status, entries)
        return [e["Service"]["ID"] for e in entries]

    def services(self) -> Dict[str, Any]:
        status, out = self.get("/v1/agent/services")
        assert status == 200, (status, out)
        return out

    def checks(self) -> Dict[str, Any]:
        status, out = self.get("/v1/agent/checks")
        assert status == 200, (status, out)
        return out


def _real_agent() -> Optional[str]:
    return os.environ.get(REAL_AGENT_ENV) or None


@pytest.fixture
def consul() -> Iterator[ConsulUnderTest]:
    """The agent under test: the double (fast constants) or ``$SVCWRAP_TEST_CONSUL_ADDR``."""
    real = _real_agent()
    if real:
        cut = ConsulUnderTest(real, None, REAL_DCSA_MIN, REAL_REAP_INTERVAL,
                              token=os.environ.get(REAL_TOKEN_ENV) or None)
        before = set(cut.services())
        try:
            yield cut
        finally:
            for sid in set(cut.services()) - before:
                cut.put("/v1/agent/service/deregister/" + urllib.parse.quote(sid, safe=""))
        return
    double = start(dcsa_min=FAST_DCSA_MIN, reap_interval=FAST_REAP_INTERVAL)
    try:
        yield ConsulUnderTest(double.addr, double, FAST_DCSA_MIN, FAST_REAP_INTERVAL)
    finally:
        double.stop()


@pytest.fixture
def consul_double(consul: ConsulUnderTest) -> ConsulUnderTest:
    """Like ``consul`` but always the in-repo double (skips against a real agent)."""
    if consul.double is None:
        pytest.skip("fault injection needs the in-repo double; %s points at a real agent" % REAL_AGENT_ENV)
    return consul
