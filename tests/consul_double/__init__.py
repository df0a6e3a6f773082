"""A stand-in for a Consul 1.11+ agent's HTTP API, for tests only. NOT a real Consul agent.

Standard library only. Reference: ``/work/shared/consul-agent-api.md`` (§ numbers below).

Usage::

    from tests.consul_double import start
    double = start(dcsa_min=1.0, reap_interval=0.2)
    ...  # talk to double.url / double.addr with any Consul client
    double.stop()

or ``python -m tests.consul_double --http-addr 127.0.0.1:0`` (prints ``listening http://HOST:PORT``).

What is modelled (with Consul's status codes and plain-text error bodies):
service register/deregister, maintenance (service and node), TTL pass/warn/fail/update, check
deregister, TTL expiry, CriticalTime and the DeregisterCriticalServiceAfter reaper, agent/services,
agent/checks, agent/service/:id (with hash blocking), agent/health/service/{id,name}, agent/self,
health/service (``?passing``, ``?tag``, index blocking), health/checks, catalog/service,
status/leader, 405 + ``Allow`` and OPTIONS, ACL tokens (``?token=``, ``X-Consul-Token``,
``Authorization: Bearer``) with a default-deny anonymous token, and a ``legacy`` switch for the
≤1.10 answers to unknown service/check IDs.

The KV store (§16, ``kv.py``, ``kv_http.py``): GET (one key, ``?recurse``, ``?keys`` with
``?separator``/``?seperator``, ``?raw``), PUT (``?flags``, ``?cas``, no-op writes, the 413 size
limit ``kv_max_value_size``), DELETE (``?recurse``, ``?cas``), tombstones, blocking reads with the
1.12+ ``errNotFound`` rule for missing keys (``legacy`` selects the older rule), the consistency
headers and errors (§16.10), and key ACLs: a token given as ``SECRET=RULES`` (``keyacl.py``) may
only read/write the keys its rules allow (403 on single keys, ``?recurse``/``?keys`` filtered with
``X-Consul-Results-Filtered-By-ACLs``). ``catalog/services`` (§10, ``catalog_http.py``) reports the
services table index and blocks on it. One raft counter feeds the catalog and the KV store, each
query reporting its own tables' index (§16.8). ``?tag`` (AND, case-insensitive), ``?node-meta`` and
``?filter`` (a go-bexpr subset, ``bexpr.py``) work on health/service, catalog/service and
catalog/services. The handle writes keys directly (:meth:`DoubleHandle.put_key`,
:meth:`DoubleHandle.delete_key`); ``start(clock=ManualClock())`` (``clock.py``) lets a test move
the agent's time on (TTLs, the reaper, blocking ``wait``).

Deliberate choices and known deviations:

* Deferred output sync (§0.10, §10) IS modelled: an Output change without a status change shows in
  agent/checks at once but reaches health/* and the index only after ``check_update_interval``
  (default Consul's 5m; Consul randomises 0.5–1.5 × that, the double uses exactly the interval).
* Non-TTL checks (HTTP, TCP, gRPC, ...) are accepted and stored but never executed: they keep their
  initial status. Script checks are refused with Consul's default "Scripts are disabled" 500.
* ``?near``, ``?dc`` and ``?ns``/``?partition`` are ignored, and so are consistency modes on the
  older endpoints (KV and catalog/services honour them, §16.10), which only look at ``?stale``
  while :meth:`DoubleHandle.lose_leader` is on. With a leader, ``X-Consul-LastContact`` is 0.
  Blocking queries do not add Consul's wait/16 jitter.
* ``?filter=`` understands a subset of go-bexpr (see ``bexpr.py``: no ``any``/``all``, no
  JSON-pointer selectors); a bad expression is 500 ``Failed to create boolean expression
  evaluator: …`` with the double's own wording after the colon. A selector is only checked
  against the entries there are, so a bad selector over an empty result is no error.
* KV: there are no sessions, so ``?acquire`` always fails as for an unknown session (500
  ``invalid session "<id>"``, ``missing session`` when empty) and ``?release`` answers false on a
  key that no session holds. Keys are checked as before Consul 1.21.5 (only the empty key; §16.7).
  ``acl.enable_key_list_policy`` is not modelled. Tombstones are never reaped. A request body is
  always read by Content-Length (no chunked uploads), so the 413 check always applies. The
  ``Conflicting flags`` text ends in a newline, as since mid-2024. ``forget_everything`` keeps the
  KV store (it lives on the servers, not on the replaced agent).
* The text of a 403 for a key-limited token names an AccessorID derived from its secret.
* Path cleaning (§16.7): ``//``, ``/./`` and ``/../`` in a path get Go ServeMux's 301 to the
  cleaned path, on every route.
* catalog/services lists each name's tags in first-seen order (Consul: unspecified; sort them).
* ACLs: a listed token has full rights; without a token (or with ``anonymous``) every write is
  403 ``Permission denied: ...`` and reads are silently filtered to nothing (agent/self is 403).
  A key-limited token (``SECRET=RULES``) has no other rights than its key rules.
  ``X-Consul-Results-Filtered-By-ACLs`` is sent by the KV reads and catalog/services only.
  ``/v1/agent/token/*`` is not implemented.
* No persistence: :meth:`DoubleHandle.forget_everything` models an agent replaced with an empty
  data dir (the ``-dev`` case); an agent restart with a data dir (§8) is not modelled.
* ``PUT /v1/agent/check/register`` is not implemented (404 ``404 page not found``).
* Contents of ``Connect``/``Proxy``/``Locality`` objects are accepted without validation.
* Go's exact ``json: cannot unmarshal ...`` wording varies by Go version; the double uses
  ``... into Go struct field <Struct>.<Field> of type <type>``.
"""
from __future__ import annotations

import threading
import time
from typing import Callable, Dict, Iterable, List, Optional, Union

from .http import Agent, DoubleHTTPServer, RequestRecord
from .keyacl import parse_tokens
from .state import AgentState

__all__ = ["start", "DoubleHandle", "RequestRecord"]

STANDIN_NOTICE = "consul_double: this is a TEST STAND-IN for the Consul agent HTTP API, not a real Consul agent"


class DoubleHandle:
    """A running double. All methods are thread-safe."""

    def __init__(self, agent: Agent, host: str, port: int) -> None:
        self._agent = agent
        self.host = host
        self.port = port
        self._lock = threading.Lock()
        self._server: Optional[DoubleHTTPServer] = None
        self._thread: Optional[threading.Thread] = None
        self._stopped = False
        self._serve()

    # ---------------------------------------------------------------- addresses
    @property
    def addr(self) -> str:
        return "%s:%d" % (self.host, self.port)

    @property
    def url(self) -> str:
        return "http://%s:%d" % (self.host, self.port)

    @property
    def state(self) -> AgentState:
        """The underlying agent state (for white-box assertions; prefer HTTP in tests)."""
        return self._agent.state

    # ---------------------------------------------------------------- lifecycle
    def _serve(self) -> None:
        server = DoubleHTTPServer((self.host, self.port), self._agent)
        self.port = server.server_address[1]
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01},
                                  name="consul-double-http-%d" % self.port, daemon=True)
        thread.start()
        self._server, self._thread = server, thread

    def _unserve(self) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=2)
        self._agent.drop_connections()

    def stop(self) -> None:
        """Stop serving and stop the timers. Idempotent."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            self._unserve()
        self._agent.state.close()

    def __enter__(self) -> "DoubleHandle":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---------------------------------------------------------------- request log
    @property
    def requests(self) -> List[RequestRecord]:
        """A snapshot list of every request received so far (oldest first)."""
        return self._agent.records()

    def clear_requests(self) -> None:
        self._agent.clear_records()

    # ---------------------------------------------------------------- fault injection
    def refuse_connections(self, refuse: bool = True) -> None:
        """Close the listening socket (connections get ECONNREFUSED, keep-alive ones are dropped);
        ``False`` binds the same port again. State and timers keep running meanwhile."""
        with self._lock:
            if self._stopped:
                raise RuntimeError("double is stopped")
            if refuse and self._server is not None:
                self._unserve()
            elif not refuse and self._server is None:
                self._serve()

    def delay(self, seconds: float) -> None:
        """Delay every response by ``seconds`` (0 turns it off)."""
        self._agent.delay_seconds = max(0.0, float(seconds))

    def forget_everything(self) -> None:
        """Behave like an agent replaced with an empty data dir: all services and checks gone."""
        self._agent.state.forget_everything()

    def fail_with(self, status: Optional[int], body: Union[str, bytes] = "injected failure",
                  headers: Optional[Dict[str, str]] = None) -> None:
        """Answer every request with ``status``, ``body`` (text or raw bytes) and extra
        ``headers`` (e.g. a lying ``Content-Encoding``); ``None`` turns it off."""
        self._agent.failure = None if status is None else (int(status), body, dict(headers or {}))

    def drip(self, seconds_per_byte: float) -> None:
        """Send every answer one byte at a time, ``seconds_per_byte`` apart (0 turns it off)."""
        self._agent.drip_seconds = max(0.0, float(seconds_per_byte))

    def lose_leader(self, lost: bool = True) -> None:
        """The servers lose their leader (§16.10): status/leader answers "", reads other than
        ``?stale`` and KV writes are 500 ``No cluster leader``, stale reads carry
        ``X-Consul-KnownLeader: false`` and a growing ``X-Consul-LastContact``. Agent-local
        endpoints (register, TTL updates, agent/*) keep working. ``False`` elects a leader again."""
        agent = self._agent
        if not lost:
            agent.leader_lost_at = None
        elif agent.leader_lost_at is None:
            agent.leader_lost_at = agent.state.clock()

    # ---------------------------------------------------------------- KV store (§16)
    def put_key(self, key: str, value: Union[bytes, str] = b"", flags: int = 0) -> int:
        """Write a key as a plain PUT would, bypassing HTTP and ACLs; returns its ModifyIndex."""
        st = self._agent.state
        with st.lock:
            st.kv.put(key, value.encode() if isinstance(value, str) else bytes(value), flags)
            return st.kv.entries[key].modify_index

    def delete_key(self, key: str, recurse: bool = False) -> None:
        """Delete a key (or, with ``recurse``, every key starting with it), leaving tombstones."""
        st = self._agent.state
        with st.lock:
            if recurse:
                st.kv.delete_tree(key)
            else:
                st.kv.delete(key)


def start(
    host: str = "127.0.0.1",
    port: int = 0,
    dcsa_min: float = 60.0,
    reap_interval: float = 30.0,
    acl_tokens: Iterable[str] = (),
    output_max_size: int = 4096,
    legacy: bool = False,
    node_name: str = "double-node",
    datacenter: str = "dc1",
    check_update_interval: float = 300.0,
    kv_max_value_size: int = 512 * 1024,
    clock: Callable[[], float] = time.monotonic,
) -> DoubleHandle:
    """Start a double on ``host:port`` (0 = any free port) and return its handle.

    Defaults are Consul's: ``check_deregister_interval_min`` 1m (``dcsa_min``),
    ``check_reap_interval`` 30s, ``check_output_max_size`` 4096, ``check_update_interval`` 5m,
    ``limits.kv_max_value_size`` 512 KiB. ``acl_tokens`` are ``SECRET`` (allowed everything) or
    ``SECRET=RULES`` (only the key rules ``key:PREFIX``/``key-read:PREFIX``, see ``keyacl.py``);
    a bad rule is a ValueError. ``clock`` (monotonic seconds) drives TTLs, the reaper and blocking
    ``wait``; after moving an injected clock on, call ``handle.state.tick()``.
    """
    full_tokens, key_tokens = parse_tokens(acl_tokens)
    state = AgentState(dcsa_min=dcsa_min, reap_interval=reap_interval, output_max_size=output_max_size,
                       check_update_interval=check_update_interval, node_name=node_name,
                       datacenter=datacenter, clock=clock)
    agent = Agent(state, full_tokens, legacy, key_tokens=key_tokens, kv_max_value_size=kv_max_value_size)
    try:
        return DoubleHandle(agent, host, port)
    except BaseException:
        state.close()
        raise
