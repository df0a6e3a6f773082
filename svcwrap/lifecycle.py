"""The life of a wrapped service, in one place:

    starting -> ready -> registered -> draining -> stopped

The supervisor (main thread, started by cli.main) spawns the child at
once -- Consul is never waited for -- and owns signals, reaping and the
stop sequence. This module is imported only once the child runs.
Everything that may be slow runs on one worker thread: importing the
Consul client (the heavy imports below are local to the worker's methods
for that reason), the readiness probe, registration, heartbeats. The two
meet in ConsulDiscovery:

    supervisor                         worker thread
    ----------                         -------------
    spawn child
    discovery.start()  -------------> wait for readiness (probe, or READY=1)
                                       register + report passing
                                       every interval: run the check, report it
    SIGTERM, or the child exits:
    discovery.leave()  -------------> (a short-lived thread) deregister
    ...keeps reaping/forwarding...     has_left() becomes true; wake()
    drain, stop signal, SIGKILL
    exit with the child's status

If svcwrap is SIGKILLed nothing runs: the TTL check goes critical and
Consul's DeregisterCriticalServiceAfter removes the entry.
"""
import os
import threading
import time

from svcwrap.config import Config
from svcwrap.logs import Logger
from svcwrap.supervisor import Discovery, Supervisor


class ConsulDiscovery(Discovery):
    def __init__(self, config: Config, log: Logger, notify) -> None:
        from svcwrap.probes import ExitStatuses
        from svcwrap.registry import LEAVE_TIMEOUT

        assert config.service is not None and config.consul is not None
        self.config = config
        self.service = config.service
        self.health = config.health
        self.log = log
        self.notify = notify
        self.leave_timeout = LEAVE_TIMEOUT + 0.2
        self.state = "starting"
        self.leaving = threading.Event()
        self.left = threading.Event()
        # Held around every register/update and the deregistration: once
        # leave() has begun, no heartbeat can slip in after the deregister
        # and (meeting a 404) register the service again.
        self.consul_lock = threading.Lock()
        self.statuses = ExitStatuses(config.environ)
        self.supervisor: Supervisor | None = None
        self.registry = None
        self.consul_ok = True
        self.check_status = ""

    # -- called by the supervisor (main thread); each returns at once --------
    def start(self, child_pid: int, supervisor: Supervisor) -> None:
        self.supervisor = supervisor
        supervisor.on_other_reaped = self.statuses.reaped
        threading.Thread(target=self._work, name="svcwrap-consul", daemon=True).start()

    def leave(self) -> float:
        self.leaving.set()
        # "registering" counts too: clients may already see the service
        # before the worker has noted that the registration succeeded.
        if self.state in ("registering", "registered") and self.registry is not None:
            threading.Thread(target=self._deregister, name="svcwrap-leave",
                             daemon=True).start()
            return self.health.drain
        self.left.set()
        return 0.0

    def has_left(self) -> bool:
        return self.left.is_set()

    # -- the worker thread -------------------------------------------------
    def _work(self) -> None:
        try:
            # Import everything the rest of the lifecycle needs now, while the
            # child starts, so none of it lands between READY=1 and passing.
            import tenacity  # noqa: F401

            from svcwrap.registry import Registry

            notes = (f"Kept alive by svcwrap (pid {os.getpid()}): passing while the service "
                     f"answers {self.health.check.text}; critical after {self.health.ttl:g}s "
                     "without a heartbeat")
            self.registry = Registry(self.config.consul, self.service, self.health, notes)
            if not self._wait_ready():
                return
        except Exception as err:  # never take the service down with us
            self.log.error("discovery stopped", error=f"{type(err).__name__}: {err}")
            return
        self.state = "ready"
        while not self.leaving.is_set():
            try:
                if self._register():
                    self._heartbeat()
                return
            except Exception as err:
                # A bug or a surprise from the agent must not end the
                # heartbeats for good: the TTL would expire on a live service.
                self.log.error("discovery failed, starting over",
                               error=f"{type(err).__name__}: {err}")
                self.leaving.wait(1.0)

    def _wait_ready(self) -> bool:
        """Poll fast at first (10 ms), backing off to 200 ms; or wait for READY=1."""
        from svcwrap.probes import make_probe

        spec = self.health.ready
        started = time.monotonic()
        limit = self.health.ready_timeout
        probe = make_probe(spec, timeout=1.0, statuses=self.statuses)
        delay = 0.01
        last = ""
        while not self.leaving.is_set():
            if self.notify is not None:
                if self.notify.wait_ready(0.25):
                    self.notify.close()
                    break
                last = self.notify.status or "no READY=1 from the child yet"
            else:
                result = probe()
                if result.ok:
                    break
                last = result.output
                self.leaving.wait(delay)
                delay = min(delay * 1.5, 0.2)
            if limit and time.monotonic() - started >= limit:
                self.log.error("not ready", waited=f"{limit:g}s", probe=spec.text, last=last)
                assert self.supervisor is not None
                self.supervisor.request_stop(1, "not ready in time")
                return False
        else:
            return False
        self.log.info("ready", probe=spec.text, after=f"{(time.monotonic() - started) * 1000:.0f}ms")
        return True

    def _retrying(self, give_up_after: float | None, also: tuple = ()):
        """tenacity's exponential backoff with jitter, interrupted by leave()."""
        from tenacity import (Retrying, retry_if_exception_type, stop_after_delay,
                              stop_when_event_set, wait_random_exponential)

        from svcwrap.registry import ConsulUnavailable

        stop = stop_when_event_set(self.leaving)
        if give_up_after is not None:
            stop = stop | stop_after_delay(give_up_after)
        return Retrying(stop=stop, retry=retry_if_exception_type((ConsulUnavailable, *also)),
                        wait=wait_random_exponential(multiplier=0.05,
                                                     max=min(5.0, self.health.ttl / 2)),
                        sleep=self.leaving.wait, before_sleep=self._consul_failed,
                        reraise=True)

    def _register(self) -> bool:
        """Register and report passing, retrying until done or leaving."""
        from svcwrap.probes import PASSING
        from svcwrap.registry import ConsulUnavailable, NotRegistered

        self.state = "registering"
        try:
            # NotRegistered too: the agent may forget us between the register
            # call and the status update that follows it.
            for attempt in self._retrying(None, also=(NotRegistered,)):
                with attempt:
                    self._register_now(PASSING, "service is ready")
        except (ConsulUnavailable, NotRegistered):
            return False  # only when leaving
        if self.leaving.is_set():
            return False  # leave() came first; it deregisters (under the lock)
        self.state = "registered"
        self._consul_back()
        assert self.registry is not None
        self.log.info("registered", id=self.service.id, check=self.registry.check_id,
                      consul=self.registry.url, ttl=f"{self.health.ttl:g}s")
        return True

    def _register_now(self, status: str, output: str) -> None:
        assert self.registry is not None
        with self.consul_lock:
            if self.leaving.is_set():
                return
            self.registry.register()
            # A re-registration keeps a check's old status, so report it explicitly.
            self.registry.update(status, output)
            self.check_status = status

    def _heartbeat(self) -> None:
        from svcwrap.probes import make_probe
        from svcwrap.registry import ConsulUnavailable, NotRegistered

        interval = self.health.check_interval
        probe = make_probe(self.health.check, timeout=max(0.1, min(interval, 5.0)),
                           statuses=self.statuses)
        next_beat = time.monotonic() + interval
        while not self.leaving.wait(max(0.0, next_beat - time.monotonic())):
            next_beat = max(next_beat + interval, time.monotonic())
            result = probe()
            if result.status != self.check_status:
                log = self.log.info if result.ok else self.log.warning
                log("check " + result.status, output=result.output[:200])
            try:
                for attempt in self._retrying(give_up_after=interval):
                    with attempt:
                        self._report(result.status, result.output)
            except ConsulUnavailable:
                pass  # logged once by _consul_failed; the next beat tries again
            except NotRegistered as err:
                self.log.warning("agent forgot the service again", error=str(err))

    def _report(self, status: str, output: str) -> None:
        from svcwrap.registry import NotRegistered

        assert self.registry is not None
        try:
            with self.consul_lock:
                if self.leaving.is_set():
                    return
                self.registry.update(status, output)
                self.check_status = status
        except NotRegistered:
            self.log.warning("agent does not know the service, registering again",
                             id=self.service.id)
            self._register_now(status, output)
        self._consul_back()

    def _consul_failed(self, retry_state) -> None:
        """Log the first failure of a run of them, not every retry."""
        from svcwrap.registry import NotRegistered

        error = retry_state.outcome.exception() if retry_state.outcome else None
        if isinstance(error, NotRegistered):
            self.log.warning("agent does not know the service, registering again",
                             id=self.service.id)
        elif self.consul_ok:
            self.consul_ok = False
            self.log.warning("consul unavailable, retrying", error=str(error))

    def _consul_back(self) -> None:
        if not self.consul_ok:
            self.consul_ok = True
            self.log.info("consul available again")

    def _deregister(self) -> None:
        from svcwrap.registry import ConsulUnavailable

        assert self.registry is not None
        try:
            with self.consul_lock:
                gone = self.registry.deregister()
            if gone:
                self.log.info("deregistered", id=self.service.id)
            else:
                self.log.info("already deregistered", id=self.service.id)
        except ConsulUnavailable as err:
            self.log.warning("deregister failed; the TTL check will expire", error=str(err))
        finally:
            self.state = "stopped"
            self.left.set()
            if self.supervisor is not None:
                self.supervisor.wake()
