"""Service discovery behind four calls, so the lifecycle never speaks Consul:

    register(status, output)   put the instance in discovery with its check status
    report(status, output)     the health check's latest result (the heartbeat)
    deregister()               take it out; False if discovery had already lost it
    maintenance(on, reason)    out of rotation without stopping, and back

Every call runs on a worker thread, is bounded in time by the backend, and
fails in one of two ways the lifecycle acts on: BackendUnavailable (down,
slow, refusing: retry later) and NotRegistered (discovery forgot us:
register again).

Maintenance is a property of the instance, not of one registration: once
on, it is put back after every registration (Consul's maintenance is a
check, and an agent that forgot the service forgot that check too; a
registration with replace-existing-checks removes it). The base class does
that for every backend; subclasses implement the _calls.

ConsulBackend adapts registry.Registry (consul_backend() builds it from the
configuration). FakeBackend is an in-memory agent
for in-process tests of the lifecycle, with the faults the suite injects
into the Consul double: down, slow, forgetful.
"""
import os
import threading
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from svcwrap.config import Config
    from svcwrap.logs import Logger
    from svcwrap.observer import Observer


class BackendUnavailable(Exception):
    """Discovery could not be reached or refused the call; worth retrying."""


class NotRegistered(Exception):
    """Discovery does not know the instance (an agent restarted without its data)."""


class Backend:
    name = "none"
    address: "str | None" = None  # shown in `svcwrap status` as consul_address

    def __init__(self, observer: "Observer | None" = None) -> None:
        self._observer = observer
        # Maintenance as asked for (the reason while on), and whether the
        # agent is known to have it so; _lock orders the calls that change it.
        self._lock = threading.Lock()
        self._wanted: str | None = None
        self._in_sync = True

    def register(self, status: str, output: str) -> None:
        # Under the lock: a maintenance switch cannot fall between the
        # registration and putting maintenance back.
        with self._lock:
            self._timed("register", self._register, status, output)
            self._in_sync = self._wanted is None  # a new definition has no maintenance
            self._converge()

    def report(self, status: str, output: str) -> None:
        """The heartbeat; it also retries a maintenance switch that failed.
        It never waits for the lock (a maintenance call stuck on a slow
        agent must not hold up the heartbeat), nor does deregister()."""
        if not self._in_sync and self._lock.acquire(blocking=False):
            try:
                self._converge()
            finally:
                self._lock.release()
        self._timed("update", self._report, status, output)

    def deregister(self) -> bool:
        return self._timed("deregister", self._deregister)

    def maintenance(self, on: bool, reason: str = "") -> None:
        """Switch maintenance; raises NotRegistered or BackendUnavailable if
        the agent did not take it. Either way the wish is kept: the next
        heartbeat or registration applies it."""
        with self._lock:
            self._wanted = reason if on else None
            self._in_sync = False
            self._converge()

    def keep_maintenance(self, on: bool, reason: str = "") -> None:
        """Keep the wish without asking the agent (nothing registered yet):
        the registration applies it."""
        with self._lock:
            self._wanted = reason if on else None
            self._in_sync = False

    def prepare_stop(self) -> None:
        """Get ready for deregister() (a connection opened ahead), so a stop
        costs one request; optional."""

    def describe(self) -> dict[str, str]:
        """Fields for the log line "registered" (where the instance went)."""
        return {"backend": self.name}

    @property
    def in_maintenance(self) -> bool:
        return self._wanted is not None

    @property
    def wanted_maintenance(self) -> str | None:
        """The reason maintenance was asked with while it is wanted, else None."""
        return self._wanted

    def _converge(self) -> None:
        # Called under self._lock.
        if self._in_sync:
            return
        on, reason = self._wanted is not None, self._wanted or ""
        self._timed("maintenance", self._set_maintenance, on, reason)
        self._in_sync = True
        if self._observer is not None:
            self._observer.maintenance(on, reason)

    def _timed(self, call: str, method, *args):
        started = time.monotonic()
        try:
            return method(*args)
        finally:
            if self._observer is not None:
                self._observer.consul_request(call, time.monotonic() - started)

    # -- what a backend implements ---------------------------------------------
    def _register(self, status: str, output: str) -> None:
        raise NotImplementedError

    def _report(self, status: str, output: str) -> None:
        raise NotImplementedError

    def _deregister(self) -> bool:
        raise NotImplementedError

    def _set_maintenance(self, on: bool, reason: str) -> None:
        raise NotImplementedError


class ConsulBackend(Backend):
    """The local Consul agent, through registry.Registry (imported here, on
    the worker thread: the Consul client is svcwrap's heaviest import)."""

    name = "consul"

    def __init__(self, registry, observer: "Observer | None" = None) -> None:
        super().__init__(observer)
        self.registry = registry
        self.address = registry.url

    def _call(self, method, *args):
        from svcwrap import registry

        try:
            return method(*args)
        except registry.NotRegistered as err:
            raise NotRegistered(str(err)) from None
        except registry.ConsulUnavailable as err:
            raise BackendUnavailable(str(err)) from None

    def prepare_stop(self) -> None:
        self._call(self.registry.prepare_stop)

    def describe(self) -> dict[str, str]:
        return {"check": self.registry.check_id, "consul": self.registry.url}

    def _register(self, status: str, output: str) -> None:
        self._call(self.registry.register, status, output)
        # A re-registration keeps a check's old status: report it explicitly.
        self._call(self.registry.update, status, output)

    def _report(self, status: str, output: str) -> None:
        self._call(self.registry.update, status, output)

    def _deregister(self) -> bool:
        return self._call(self.registry.deregister)

    def _set_maintenance(self, on: bool, reason: str) -> None:
        self._call(self.registry.maintenance, on, reason)


def consul_backend(config: "Config", log: "Logger", observer: "Observer | None") -> ConsulBackend:
    """The Consul backend for `config`'s service, with the warnings about
    where its token may be seen (a loose token file, a plain-http proxy).
    Call it off the main thread: it imports the transport and the registry."""
    from svcwrap.consul_http import proxy_warning
    from svcwrap.probes import describe
    from svcwrap.registry import Registry, token_file_warning

    assert config.consul is not None and config.service is not None
    health = config.health
    notes = (f"Kept alive by svcwrap (pid {os.getpid()}): passing while the service "
             f"answers {describe(health.check)}; critical after "
             f"{health.ttl:g}s without a heartbeat")
    registry = Registry(config.consul, config.service, health, notes)
    problem = token_file_warning(config.consul.token_file)
    if problem:
        log.warning("token file exposed", file=config.consul.token_file, problem=problem)
    exposed = proxy_warning(config.consul)
    if exposed:
        log.warning("token visible to proxy", message=exposed)
    return ConsulBackend(registry, observer)


class FakeBackend(Backend):
    """An in-memory discovery service, thread-safe, for in-process tests.

    `registered`, `status`, `output` and `maintenance_reason` are what a
    client of discovery would see; `calls` lists every call in order. Faults:
    fail_next(n) makes the next n calls raise BackendUnavailable; forget()
    is an agent restarted without its data; hold() makes calls (or the ones
    named) wait until release() (a slow agent), bounded by `timeout` like a
    real call.
    """

    name = "fake"
    address = "fake"

    def __init__(self, observer: "Observer | None" = None, timeout: float = 2.0) -> None:
        super().__init__(observer)
        self.timeout = timeout
        self.registered = False
        self.status: str | None = None
        self.output = ""
        self.maintenance_reason: str | None = None
        self.calls: list[tuple] = []
        self._failures = 0
        self._gate = threading.Event()
        self._gate.set()
        self._held: tuple[str, ...] = ()
        self._state_lock = threading.Lock()

    # -- faults ----------------------------------------------------------------
    def fail_next(self, n: int) -> None:
        with self._state_lock:
            self._failures = n

    def forget(self) -> None:
        with self._state_lock:
            self.registered = False
            self.status = None
            self.maintenance_reason = None

    def hold(self, *calls: str) -> None:
        """Make these calls (all, when none is named) wait until release()."""
        self._held = calls
        self._gate.clear()

    def release(self) -> None:
        self._gate.set()

    @property
    def passing(self) -> bool:
        """What `?passing` would list: registered, passing, not in maintenance."""
        with self._state_lock:
            return self.registered and self.status == "passing" and \
                self.maintenance_reason is None

    # -- the calls ---------------------------------------------------------------
    def _enter(self, call: tuple) -> None:
        held = not self._held or call[0] in self._held
        if held and not self._gate.wait(self.timeout):
            raise BackendUnavailable(f"{call[0]}: timed out after {self.timeout:g}s")
        with self._state_lock:
            self.calls.append(call)
            if self._failures:
                self._failures -= 1
                raise BackendUnavailable(f"{call[0]}: connection refused (injected)")

    def _register(self, status: str, output: str) -> None:
        self._enter(("register", status, output))
        with self._state_lock:
            # As Consul with replace-existing-checks: the definition is new,
            # and a maintenance check not in it is gone.
            self.registered = True
            self.status, self.output = status, output
            self.maintenance_reason = None

    def _report(self, status: str, output: str) -> None:
        self._enter(("update", status, output))
        with self._state_lock:
            if not self.registered:
                raise NotRegistered("unknown check")
            self.status, self.output = status, output

    def _deregister(self) -> bool:
        self._enter(("deregister",))
        with self._state_lock:
            known, self.registered = self.registered, False
            self.status, self.maintenance_reason = None, None
            return known

    def _set_maintenance(self, on: bool, reason: str) -> None:
        self._enter(("maintenance", on, reason))
        with self._state_lock:
            if not self.registered:
                raise NotRegistered("unknown service")
            self.maintenance_reason = reason if on else None
