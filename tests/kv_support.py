"""Helpers for the KV and catalog contract tests of the Consul double (reference §10, §16).

Against a real agent (``SVCWRAP_TEST_CONSUL_ADDR``) every test works below its own key prefix and
removes it afterwards, so the contract tests run unchanged there.
"""
from __future__ import annotations

import json
import threading
import uuid
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple
from urllib.parse import quote

import pytest

from tests.consul_double import DoubleHandle, start
from tests.consul_double.clock import ManualClock
from tests.consul_fixture import ConsulUnderTest, register_ttl_service, wait_until
from tests.support import assert_stays_false

Answer = Tuple[int, Dict[str, str], bytes]


class KV:
    """The KV store of the agent under test, below a prefix of its own."""

    def __init__(self, cut: ConsulUnderTest, prefix: str) -> None:
        self.cut = cut
        self.prefix = prefix

    def path(self, key: str, query: str = "") -> str:
        return "/v1/kv/" + quote(self.prefix + key, safe="/") + query

    def request(self, method: str, key: str, query: str = "", body: Optional[bytes] = None,
                headers: Optional[Dict[str, str]] = None) -> Answer:
        return self.cut.request(method, self.path(key, query), body, headers=headers)

    def put(self, key: str, value: bytes = b"", query: str = "") -> Tuple[int, Any]:
        """PUT: ``(status, decoded JSON)`` on 200, else ``(status, text)``."""
        status, _, raw = self.request("PUT", key, query, value)
        return status, json.loads(raw) if status == 200 else raw.decode()

    def delete(self, key: str, query: str = "") -> Tuple[int, Any]:
        status, _, raw = self.request("DELETE", key, query)
        return status, json.loads(raw) if status == 200 else raw.decode()

    def get(self, key: str, query: str = "") -> Answer:
        return self.request("GET", key, query)

    def entries(self, key: str, query: str = "") -> List[Dict[str, Any]]:
        status, _, raw = self.get(key, query)
        assert status == 200, (status, raw)
        return json.loads(raw)

    def entry(self, key: str) -> Dict[str, Any]:
        return self.entries(key)[0]

    def index(self, key: str, query: str = "") -> int:
        return int(self.get(key, query)[1]["X-Consul-Index"])

    def modify_index(self, key: str) -> int:
        return self.entry(key)["ModifyIndex"]

    def watch(self, key: str, index: int, query: str = "", wait: str = "30s") -> "Background":
        """A blocking GET of ``key`` with ``?index=index&wait=wait``, held blocked (see ``blocked``)."""
        params = "index=%d" % index + ("&wait=" + wait if wait else "")
        full = query + "&" + params if query else "?" + params
        return blocked(self.cut, lambda: self.get(key, full))


@pytest.fixture
def kv(consul: ConsulUnderTest) -> Iterator[KV]:
    """The KV store of the agent under test, below a fresh prefix (removed afterwards)."""
    store = KV(consul, "svcwrap-test-%s/" % uuid.uuid4().hex[:8])
    try:
        yield store
    finally:
        consul.request("DELETE", "/v1/kv/" + store.prefix + "?recurse")


@pytest.fixture
def kv_double(consul_double: ConsulUnderTest) -> Iterator[KV]:
    """Like ``kv`` but always the in-repo double, at the root of its (empty) store."""
    yield KV(consul_double, "")


class Clocked:
    """A double driven by a :class:`ManualClock`, with its KV store and the agent under test."""

    def __init__(self, double: DoubleHandle, clock: ManualClock) -> None:
        self.double = double
        self.clock = clock
        self.cut = ConsulUnderTest(double.addr, double, 60, 30)
        self.kv = KV(self.cut, "")

    def outlast(self, job: "Background", what: str, wait: float = 300.0) -> Answer:
        """Show that ``job`` stays blocked after ``what`` happened, then let ``wait`` pass on the
        agent's clock and return its answer."""
        assert_stays_false(lambda: job.done, 0.3, "the blocked read was answered by: " + what)
        self.clock.advance(wait)
        return job.result()


@pytest.fixture
def clocked() -> Iterator[Clocked]:
    """A double whose clock moves only when the test says so (blocking ``wait`` expiry)."""
    clock = ManualClock()
    with start(clock=clock) as double:
        clock.attach(double.state)
        yield Clocked(double, clock)


class Background:
    """A call running in a thread, e.g. a blocking query; ``.result`` once it returned."""

    def __init__(self, call: Callable[[], Any]) -> None:
        self._box: List[Any] = []
        self._thread = threading.Thread(target=lambda: self._box.append(call()), daemon=True)
        self._thread.start()

    @property
    def done(self) -> bool:
        return bool(self._box)

    def result(self, timeout: float = 5.0) -> Any:
        self._thread.join(timeout)
        assert self._box, "the call did not return within %.1fs" % timeout
        return self._box[0]


def blocked(cut: ConsulUnderTest, call: Callable[[], Any], count: int = 1) -> Background:
    """Start ``call`` (a blocking query) in the background and, on the double, return once the
    double holds it blocked. A real agent gives no such signal; a write made before the query
    blocked still answers it (the index has moved past N), so the tests stay correct there."""
    job = Background(call)
    if cut.double is not None:
        state = cut.double.state
        wait_until(lambda: state.blocking_queries >= count or job.done, message="the query to block")
        assert not job.done, "the query returned at once instead of blocking: %r" % (job.result(),)
    return job


def register(cut: ConsulUnderTest, sid: str, name: str, tags: Optional[List[str]] = None,
             status: str = "passing", **extra: Any) -> None:
    register_ttl_service(cut, sid, name, "1h", {"Tags": tags or [], **extra}, Status=status)
