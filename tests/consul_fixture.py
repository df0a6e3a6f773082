"""Pytest fixtures for tests that need a Consul agent: the in-repo double, or a real agent.

Import from ``tests/conftest.py`` with ``from tests.consul_fixture import *``.

* ``consul``: a :class:`ConsulUnderTest`. If ``SVCWRAP_TEST_CONSUL_ADDR`` (host:port) is set, it
  points at that real agent (token from ``SVCWRAP_TEST_CONSUL_TOKEN``) and deregisters, at
  teardown, the services that appeared during the test. Otherwise it starts the double with fast
  constants (``dcsa_min=1.0``, ``reap_interval=0.25``) and stops it afterwards.
* ``consul_double``: the same object, but skips when a real agent is configured, so ``.double``
  (the fault-injection handle) is never None.
* ``manual_double``: a double whose clock moves only on ``.clock.advance(seconds)``, with Consul's
  own constants (``dcsa_min`` 1m, ``reap_interval`` 30s): for contract tests about timing, which
  then take no real time. A few tests keep the real clock, to prove that it is wired.
* ``started_double(**options)``: a context manager for a double started with other options
  (ACLs, ``legacy``, a host); skips when a real agent is configured.
* ``ttl_service(...)`` / ``register_ttl_service(cut, ...)``: the one way the contract tests
  register "web-1 with a TTL check"; ``web_1`` is a fixture: that service, registered, passing.
* ``wait_until(predicate, timeout=5.0, interval=0.01, message="")``: poll until truthy.
"""
from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from contextlib import contextmanager
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple, TypeVar

import pytest

from tests.consul_double import DoubleHandle, start

__all__ = ["ConsulUnderTest", "ManualClock", "agent_under_test", "consul", "consul_double", "manual_double", "web_1",
           "started_double", "ttl_service", "register_ttl_service", "wait_until",
           "FAST_DCSA_MIN", "FAST_REAP_INTERVAL", "REAL_AGENT_ENV", "REAL_TOKEN_ENV"]

REAL_AGENT_ENV = "SVCWRAP_TEST_CONSUL_ADDR"
REAL_TOKEN_ENV = "SVCWRAP_TEST_CONSUL_TOKEN"
FAST_DCSA_MIN = 1.0
FAST_REAP_INTERVAL = 0.25
REAL_DCSA_MIN = 60.0
REAL_REAP_INTERVAL = 30.0
REGISTER = "/v1/agent/service/register"

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


class ManualClock:
    """A monotonic clock that moves only when told to; ``advance`` then lets the double act on
    every deadline passed (TTL expiry, reaper, deferred output) before it returns."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.double: Optional[DoubleHandle] = None

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
        assert self.double is not None, "ManualClock.double is set by started_double()"
        self.double.state.tick()


class ConsulUnderTest:
    """The agent a test talks to, with small urllib-only HTTP helpers."""

    def __init__(self, addr: str, double: Optional[DoubleHandle], dcsa_min: float, reap_interval: float,
                 token: Optional[str] = None, clock: Optional[ManualClock] = None) -> None:
        self.addr = addr
        self.clock = clock
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


@contextmanager
def agent_under_test() -> Iterator[ConsulUnderTest]:
    """The double (fast constants) or ``$SVCWRAP_TEST_CONSUL_ADDR``; a real agent gets back,
    at the end, what appeared in it meanwhile (deregistered). For fixtures of any scope."""
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
def consul() -> Iterator[ConsulUnderTest]:
    """The agent under test: the double (fast constants) or ``$SVCWRAP_TEST_CONSUL_ADDR``."""
    with agent_under_test() as cut:
        yield cut


@pytest.fixture
def consul_double(consul: ConsulUnderTest) -> ConsulUnderTest:
    """Like ``consul`` but always the in-repo double (skips against a real agent)."""
    if consul.double is None:
        pytest.skip("fault injection needs the in-repo double; %s points at a real agent" % REAL_AGENT_ENV)
    return consul


@contextmanager
def started_double(**options: Any) -> Iterator[ConsulUnderTest]:
    """A double started with ``options`` (see ``tests.consul_double.start``): FAST constants unless
    given. Skips when a real agent is configured: such a double cannot be one."""
    if _real_agent():
        pytest.skip("needs a double started with %s; %s points at a real agent"
                    % (", ".join(sorted(options)) or "its defaults", REAL_AGENT_ENV))
    options.setdefault("dcsa_min", FAST_DCSA_MIN)
    options.setdefault("reap_interval", FAST_REAP_INTERVAL)
    tokens = list(options.get("acl_tokens", ()))
    double = start(**options)
    if isinstance(options.get("clock"), ManualClock):
        options["clock"].double = double
    try:
        yield ConsulUnderTest(double.addr, double, options["dcsa_min"], options["reap_interval"],
                              token=tokens[0] if tokens else None, clock=options.get("clock"))
    finally:
        double.stop()


@pytest.fixture
def manual_double() -> Iterator[ConsulUnderTest]:
    """The double on a :class:`ManualClock` (``.clock``), with Consul's own 1m floor and 30s reaper."""
    clock = ManualClock()
    with started_double(dcsa_min=REAL_DCSA_MIN, reap_interval=REAL_REAP_INTERVAL, clock=clock) as cut:
        yield cut


def ttl_service(sid: str = "web-1", name: str = "web", ttl: Any = "10s",
                service: Optional[Dict[str, Any]] = None, **check: Any) -> Dict[str, Any]:
    """A registration body: service ``sid`` named ``name`` with one TTL check; ``check`` adds
    fields to the check (Status, DeregisterCriticalServiceAfter, ...), ``service`` to the service."""
    return {"Name": name, "ID": sid, **(service or {}), "Check": {"TTL": ttl, **check}}


def register_ttl_service(cut: ConsulUnderTest, sid: str = "web-1", name: str = "web", ttl: Any = "10s",
                         service: Optional[Dict[str, Any]] = None, **check: Any) -> str:
    """Register :func:`ttl_service` (asserting Consul's 200 and empty body); return the check ID."""
    assert cut.put(REGISTER, ttl_service(sid, name, ttl, service, **check)) == (200, "")
    return "service:" + sid


@pytest.fixture
def web_1(consul: ConsulUnderTest) -> str:
    """The agent under test with service web-1 (name web) registered, its TTL check (1h: it does
    not expire during a test) passing; the value is the check ID, service:web-1."""
    return register_ttl_service(consul, ttl="1h", Status="passing")
