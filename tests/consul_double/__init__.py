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

Deliberate choices and known deviations:

* Deferred output sync (§0.10, §10) IS modelled: an Output change without a status change shows in
  agent/checks at once but reaches health/* and the index only after ``check_update_interval``
  (default Consul's 5m; Consul randomises 0.5–1.5 × that, the double uses exactly the interval).
* Non-TTL checks (HTTP, TCP, gRPC, ...) are accepted and stored but never executed: they keep their
  initial status. Script checks are refused with Consul's default "Scripts are disabled" 500.
* ``?filter=`` expressions, ``?near``, ``?dc``, ``?ns``/``?partition`` and consistency modes are
  ignored. Blocking queries do not add Consul's wait/16 jitter.
* ACLs: a listed token has full rights; without a token (or with ``anonymous``) every write is
  403 ``Permission denied: ...`` and reads are silently filtered to nothing (agent/self is 403).
  ``X-Consul-Results-Filtered-By-ACLs`` is not sent. ``/v1/agent/token/*`` is not implemented.
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
from typing import Callable, Iterable, List, Optional

from .http import Agent, DoubleHTTPServer, RequestRecord
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

    def fail_with(self, status: Optional[int], body: str = "injected failure") -> None:
        """Answer every request with ``status`` and a text ``body``; ``None`` turns it off."""
        self._agent.failure = None if status is None else (int(status), body)


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
    clock: Callable[[], float] = time.monotonic,
) -> DoubleHandle:
    """Start a double on ``host:port`` (0 = any free port) and return its handle.

    Defaults are Consul's: ``check_deregister_interval_min`` 1m (``dcsa_min``),
    ``check_reap_interval`` 30s, ``check_output_max_size`` 4096, ``check_update_interval`` 5m.
    ``clock`` replaces the agent's monotonic clock (a test's manual clock: see AgentState.tick).
    """
    state = AgentState(dcsa_min=dcsa_min, reap_interval=reap_interval, output_max_size=output_max_size,
                       check_update_interval=check_update_interval, node_name=node_name,
                       datacenter=datacenter, clock=clock)
    agent = Agent(state, frozenset(t for t in acl_tokens if t), legacy)
    try:
        return DoubleHandle(agent, host, port)
    except BaseException:
        state.close()
        raise
