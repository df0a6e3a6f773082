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
    discovery.leave()  -------------> (the leave thread, started with the worker,
                                       its connection opened at registration)
                                       deregister at once; again if a
                                       registration was in flight
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

        assert config.service is not None and config.consul is not None
        self.config = config
        self.service = config.service
        self.health = config.health
        self.log = log
        self.notify = notify
        self.leave_timeout = config.consul.leave_timeout
        self.state = "starting"
        self.leaving = threading.Event()
        self.left = threading.Event()
        # The worker's calls never hold anything the deregistration waits
        # for (a heartbeat stuck on a slow agent must not delay it). Instead
        # each call is announced under flight_lock: none starts once leaving
        # is set, and the leave thread learns whether a registration was in
        # flight, which it must then outlast and undo.
        self.flight_lock = threading.Lock()
        self.in_flight = ""              # "register", "update" or ""
        self.flight_done = threading.Event()
        self.flight_done.set()
        self.raced = False               # a registration was in flight at leave()
        self.must_deregister = False
        self.stage = threading.Event()   # the leave thread: registered, or leaving
        self.statuses = ExitStatuses(config.environ)
        self.supervisor: Supervisor | None = None
        self.registry = None
        self.consul_ok = True
        self.check_status = ""
        self.last = ("passing", "service is ready")  # the check result to register with
        self._rejected_logged = False

    # -- called by the supervisor (main thread); each returns at once --------
    def start(self, child_pid: int, supervisor: Supervisor) -> None:
        self.supervisor = supervisor
        if self.notify is not None:
            self.notify.on_reject = self._notify_rejected
        supervisor.on_other_reaped = self.statuses.reaped
        threading.Thread(target=self._work, name="svcwrap-consul", daemon=True).start()

    def leave(self) -> float:
        with self.flight_lock:
            # "registering" counts too: clients may already see the service
            # before the worker has noted that the registration succeeded.
            self.must_deregister = (self.state in ("registering", "registered")
                                    and self.registry is not None)
            # Only a registration can bring the service back: an update in
            # flight meets a 404 once it is gone, and nothing registers again
            # once leaving is set. So only a registration is outlasted.
            self.raced = self.in_flight == "register"
            self.leaving.set()
        if not self.must_deregister:
            self.left.set()
        self.stage.set()
        return self.health.drain if self.must_deregister else 0.0

    def has_left(self) -> bool:
        return self.left.is_set()

    # -- the worker thread -------------------------------------------------
    def _work(self) -> None:
        try:
            # Import everything the rest of the lifecycle needs now, while the
            # child starts, so none of it lands between READY=1 and passing.
            import tenacity  # noqa: F401

            from svcwrap.probes import describe
            from svcwrap.registry import Registry, token_file_warning

            notes = (f"Kept alive by svcwrap (pid {os.getpid()}): passing while the service "
                     f"answers {describe(self.health.check)}; critical after "
                     f"{self.health.ttl:g}s without a heartbeat")
            self.registry = Registry(self.config.consul, self.service, self.health, notes)
            problem = token_file_warning(self.config.consul.token_file)
            if problem:
                self.log.warning("token file exposed", file=self.config.consul.token_file,
                                 problem=problem)
            threading.Thread(target=self._leaver, name="svcwrap-leave", daemon=True).start()
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
        probe = make_probe(spec, timeout=1.0, statuses=self.statuses,
                           insecure=self.health.probe_insecure)
        delay = 0.01
        last = ""
        while not self.leaving.is_set():
            if self.notify is not None:
                if self.notify.wait_ready(0.25):
                    break  # the socket stays open and drained (notify.py)
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
                        sleep=self._sleep, before_sleep=self._consul_failed,
                        reraise=True)

    def _register(self) -> bool:
        """Register and report passing, retrying until done or leaving."""
        from svcwrap.registry import ConsulUnavailable, NotRegistered

        self.state = "registering"
        try:
            # NotRegistered too: the agent may forget us between the register
            # call and the status update that follows it.
            for attempt in self._retrying(None, also=(NotRegistered,)):
                with attempt:
                    self._register_now(*self.last)
        except (ConsulUnavailable, NotRegistered):
            return False  # only when leaving
        if self.leaving.is_set():
            return False  # leave() came first; the leave thread deregisters
        self.state = "registered"
        self.stage.set()  # the leave thread opens its connection now
        self._consul_back()
        assert self.registry is not None
        self.log.info("registered", id=self.service.id, check=self.registry.check_id,
                      consul=self.registry.url, ttl=f"{self.health.ttl:g}s")
        return True

    def _register_now(self, status: str, output: str) -> None:
        """Register with the current check result, never a hard-coded passing."""
        assert self.registry is not None
        if not self._begin("register"):
            return
        try:
            self.registry.register(status, output)
        finally:
            self._end()
        # A re-registration keeps a check's old status, so report it explicitly
        # (an update, which cannot bring the service back: see leave()).
        self._update(status, output)

    def _update(self, status: str, output: str) -> None:
        assert self.registry is not None
        if not self._begin("update"):
            return
        try:
            self.registry.update(status, output)
            self.check_status = status
        finally:
            self._end()

    def _begin(self, kind: str) -> bool:
        with self.flight_lock:
            if self.leaving.is_set():
                return False
            self.in_flight = kind
            self.flight_done.clear()
            return True

    def _end(self) -> None:
        with self.flight_lock:
            self.in_flight = ""
            self.flight_done.set()

    def _heartbeat(self) -> None:
        from svcwrap.probes import make_probe
        from svcwrap.registry import ConsulUnavailable, NotRegistered

        interval = self.health.check_interval
        probe = make_probe(self.health.check, timeout=max(0.1, min(interval, 5.0)),
                           statuses=self.statuses, insecure=self.health.probe_insecure)
        next_beat = time.monotonic() + interval
        while not self._pause_until(next_beat):
            next_beat = max(next_beat + interval, time.monotonic())
            result = probe()
            self.last = (result.status, result.output)
            if result.status != self.check_status:
                log = self.log.info if result.ok else self.log.warning
                log("check " + result.status, output=result.output[:200])
            try:
                for attempt in self._retrying(give_up_after=interval):
                    with attempt:
                        self._report(result.status, result.output)
            except ConsulUnavailable as err:
                # Logged once (a call that outlasts the interval gets no retry,
                # so no before_sleep either); the next beat tries again.
                self._unavailable(err)
            except NotRegistered as err:
                self.log.warning("agent forgot the service again", error=str(err))

    def _sleep(self, seconds: float) -> None:
        """tenacity's pause between retries (it stops itself once leaving)."""
        self._pause_until(time.monotonic() + seconds)

    def _pause_until(self, when: float) -> bool:
        """Wait for the next beat; True if leaving. With --ready notify the
        socket is drained meanwhile (the child may keep sending STATUS=)."""
        if self.notify is None:
            return self.leaving.wait(max(0.0, when - time.monotonic()))
        while not self.leaving.is_set():
            left = when - time.monotonic()
            if left <= 0:
                return False
            self.notify.drain(min(left, 0.5))
        return True

    def _notify_rejected(self, pid: int) -> None:
        if not self._rejected_logged:
            self._rejected_logged = True
            self.log.warning("notify message ignored: not from the child"
                             if self.health.notify_access == "main"
                             else "notify message ignored: not from svcwrap's descendants",
                             sender_pid=pid, access=self.health.notify_access)

    def _report(self, status: str, output: str) -> None:
        from svcwrap.registry import NotRegistered

        assert self.registry is not None
        try:
            self._update(status, output)
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
        else:
            self._unavailable(error)

    def _unavailable(self, error: BaseException | None) -> None:
        if self.consul_ok:
            self.consul_ok = False
            self.log.warning("consul unavailable, retrying", error=str(error))

    def _consul_back(self) -> None:
        if not self.consul_ok:
            self.consul_ok = True
            self.log.info("consul available again")

    # -- the leave thread ----------------------------------------------------
    def _leaver(self) -> None:
        """Started with the worker, so a stop starts no thread; its connection
        is opened once the service is registered, so a stop opens none."""
        from svcwrap.registry import ConsulUnavailable

        assert self.registry is not None
        self.stage.wait()
        if not self.leaving.is_set():
            try:
                self.registry.prepare_stop()
            except ConsulUnavailable:
                pass  # the stop connects then
            self.leaving.wait()
        if not self.must_deregister:
            return  # never registered: nothing to take back
        try:
            gone = self._deregister()
            if self.raced:
                # A registration was on its way: once it has landed (or
                # failed), take it back too.
                self.flight_done.wait()
                gone = self._deregister() or gone
            self.log.info("deregistered" if gone else "already deregistered",
                          id=self.service.id)
        except Exception as err:  # never take the service down with us
            self.log.error("deregistration stopped", error=f"{type(err).__name__}: {err}")
        finally:
            self.state = "stopped"
            self.left.set()
            if self.supervisor is not None:
                self.supervisor.wake()

    def _deregister(self) -> bool:
        """Until the agent answers: past the leave timeout too, until svcwrap
        exits, so a slow agent still drops the entry before its TTL would."""
        from svcwrap.registry import ConsulUnavailable

        assert self.registry is not None
        pause = 0.05
        while True:
            try:
                return self.registry.deregister()
            except ConsulUnavailable as err:
                # Not "failed": a call that timed out may well have been
                # processed; only the agent's answer says so.
                if pause == 0.05:
                    self.log.warning("deregistration not confirmed, retrying", error=str(err))
                time.sleep(pause)
                pause = min(pause * 2, 1.0)
