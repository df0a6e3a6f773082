"""The life of a wrapped service, in one place:

    starting -> registering -> registered -> (the supervisor's stop sequence)

(the states of states.py, moved through the observer, which logs each
transition once and answers `svcwrap status` from them).

The supervisor (main thread, started by cli.main) spawns the child at
once -- Consul is never waited for -- and owns signals, reaping and the
stop sequence. This module is imported only once the child runs.
Everything that may be slow runs on one worker thread: importing the
Consul client (the heavy imports below are local to the worker's methods
for that reason), the readiness probe, registration, heartbeats. It speaks
to discovery only through a backend.Backend (register, report,
deregister, maintenance), so it runs in-process against
backend.FakeBackend in the tests. The two meet in ServiceLifecycle:

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
import threading
import time

from svcwrap.backend import Backend, BackendUnavailable, NotRegistered
from svcwrap.config import Config
from svcwrap.logs import Logger
from svcwrap.observer import Observer
from svcwrap.states import CheckStatus, ServiceState
from svcwrap.supervisor import Discovery, Supervisor

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable

    from svcwrap.control import Request


class ServiceLifecycle(Discovery):
    registers = True

    def __init__(self, config: Config, log: Logger, notify, observer: Observer,
                 make_backend: "Callable[[], Backend]") -> None:
        """`make_backend`: builds the discovery backend (backend.consul_backend,
        or a FakeBackend in tests); called on the worker thread, since a real
        one's imports are the heaviest part of svcwrap."""
        from svcwrap.probes import ExitStatuses

        assert config.service is not None
        self.config = config
        self.service = config.service
        self.health = config.health
        self.log = log
        self.notify = notify
        self.observer = observer
        self.make_backend = make_backend
        self.backend: Backend | None = None   # once the worker has made it
        # Maintenance asked for before the worker has made the backend: the
        # worker hands it on (under wish_lock, so that none falls between).
        self.wish_lock = threading.Lock()
        self.wish: tuple[bool, str] | None = None
        self.leave_timeout = config.consul.leave_timeout if config.consul else 1.0
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
        # Set (under flight_lock) before the first register call: from then
        # on clients may see the service, so a stop must deregister it. The
        # state cannot say so: by the time leave() runs it is already leaving.
        self.tried_register = False
        self.raced = False               # a registration was in flight at leave()
        self.must_deregister = False
        self.stage = threading.Event()   # the leave thread: registered, or leaving
        self.soon = threading.Event()    # check_now() or leave(): end the heartbeat's pause
        self.statuses = ExitStatuses(config.environ)
        self.supervisor: Supervisor | None = None
        self.last = ("passing", "service is ready")  # the check result to register with
        self._rejected_logged = False
        # What a failing template says (templating.py sets it): the check's
        # output, as a warning, while there is one.
        self.check_note: "Callable[[], str | None]" = lambda: None

    # -- called by the supervisor (main thread); each returns at once --------
    def start(self, child_pid: int, supervisor: Supervisor) -> None:
        self.supervisor = supervisor
        if self.notify is not None:
            self.notify.on_reject = self._notify_rejected
        supervisor.on_other_reaped = self.statuses.reaped
        threading.Thread(target=self._work, name="svcwrap-consul", daemon=True).start()

    def leave(self) -> float:
        with self.flight_lock:
            self.must_deregister = self.tried_register and self.backend is not None
            # Only a registration can bring the service back: an update in
            # flight meets a 404 once it is gone, and nothing registers again
            # once leaving is set. So only a registration is outlasted.
            self.raced = self.in_flight == "register"
            self.leaving.set()
        self.soon.set()
        if not self.must_deregister:
            self.left.set()
        self.stage.set()
        return self.health.drain if self.must_deregister else 0.0

    def has_left(self) -> bool:
        return self.left.is_set()

    def check_now(self) -> None:
        """Run the check and report it now rather than at the next beat
        (a template began or stopped failing: the check's note changed)."""
        self.soon.set()

    def maintenance(self, on: bool, reason: str, request: "Request") -> None:
        """On its own short-lived thread: the agent may be slow, and the
        heartbeat must not wait for it (the backend keeps the wish and
        applies it at the next heartbeat or registration if this fails)."""
        threading.Thread(target=self._maintenance, args=(on, reason, request),
                         name="svcwrap-maintenance", daemon=True).start()

    def _maintenance(self, on: bool, reason: str, request: "Request") -> None:
        word = "maintenance on" if on else "maintenance off"
        if self.leaving.is_set():
            request.answer(False, error="svcwrap is leaving Consul")
            return
        with self.wish_lock:
            backend = self.backend
            if backend is None:
                self.wish = (on, reason)
        if backend is None:
            request.answer(True, message=f"{word}: applies once registered")
            return
        try:
            backend.maintenance(on, reason)
        except NotRegistered:
            request.answer(True, message=f"{word}: applies once registered")
        except BackendUnavailable as err:
            request.answer(False, error=f"Consul did not take it ({err}); svcwrap keeps trying")
        except Exception as err:  # never take the service down with us
            request.answer(False, error=f"{type(err).__name__}: {err}")
        else:
            request.answer(True, message=word)

    def kept_maintenance(self) -> tuple[bool, str] | None:
        with self.wish_lock:
            if self.wish is not None:
                return self.wish
            backend = self.backend
        reason = backend.wanted_maintenance if backend is not None else None
        return None if reason is None else (True, reason)

    # -- the worker thread -------------------------------------------------
    def _work(self) -> None:
        try:
            # Import everything the rest of the lifecycle needs now, while the
            # child starts, so none of it lands between READY=1 and passing.
            import tenacity  # noqa: F401

            from svcwrap.probes import make_probe  # noqa: F401

            backend = self.make_backend()
            with self.wish_lock:
                self.backend = backend
                wish, self.wish = self.wish, None
            if wish is not None:
                backend.keep_maintenance(*wish)
            threading.Thread(target=self._leaver, name="svcwrap-leave", daemon=True).start()
            if not self._wait_ready():
                return
        except Exception as err:  # never take the service down with us
            self.log.error("discovery stopped", error=f"{type(err).__name__}: {err}")
            return
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

        stop = stop_when_event_set(self.leaving)
        if give_up_after is not None:
            stop = stop | stop_after_delay(give_up_after)
        return Retrying(stop=stop, retry=retry_if_exception_type((BackendUnavailable, *also)),
                        wait=wait_random_exponential(multiplier=0.05,
                                                     max=min(5.0, self.health.ttl / 2)),
                        sleep=self._sleep, before_sleep=self._consul_failed,
                        reraise=True)

    def _register(self) -> bool:
        """Register and report the check, retrying until done or leaving."""
        if not self.observer.transition(ServiceState.REGISTERING):
            return False  # the stop came first
        try:
            # NotRegistered too: the agent may forget us between the register
            # call and the status update that follows it.
            for attempt in self._retrying(None, also=(NotRegistered,)):
                with attempt:
                    self._register_now(*self.last)
        except (BackendUnavailable, NotRegistered):
            return False  # only when leaving
        if self.leaving.is_set():
            return False  # leave() came first; the leave thread deregisters
        self.stage.set()  # the leave thread opens its connection now
        return True

    def _register_now(self, status: str, output: str) -> None:
        """Register with the current check result, never a hard-coded passing."""
        assert self.backend is not None
        if not self._begin("register"):
            return
        try:
            self.backend.register(status, output)
        finally:
            self._end()
        # The registration carried the check's status: it is a heartbeat too
        # (for Consul, the register call and the update that follows it).
        self.observer.check_result(CheckStatus(status), output, log=False)
        self.observer.heartbeat_ok()
        fields = {"id": self.service.id, **self.backend.describe(),
                  "ttl": f"{self.health.ttl:g}s"}
        self.observer.registration(**fields)

    def _begin(self, kind: str) -> bool:
        with self.flight_lock:
            if self.leaving.is_set():
                return False
            if kind == "register":
                self.tried_register = True
            self.in_flight = kind
            self.flight_done.clear()
            return True

    def _end(self) -> None:
        with self.flight_lock:
            self.in_flight = ""
            self.flight_done.set()

    def _heartbeat(self) -> None:
        from svcwrap.probes import make_probe

        interval = self.health.check_interval
        probe = make_probe(self.health.check, timeout=max(0.1, min(interval, 5.0)),
                           statuses=self.statuses, insecure=self.health.probe_insecure)
        next_beat = time.monotonic() + interval
        while not self._pause_until(next_beat, early=self.soon):
            now = time.monotonic()
            # Woken early by check_now(): the next beat one interval from now,
            # else the usual cadence (a late beat does not make the next late).
            next_beat = now + interval if now < next_beat else max(next_beat + interval, now)
            result = probe()
            status, output = result.status, result.output
            note = self.check_note() if result.ok else None
            if note:
                # A template failed validation (issue 11): the instance still
                # serves its last good configuration, so warning, not critical,
                # with the command's output (logged once already, by the templates).
                status, output = "warning", note
            self.last = (status, output)
            self.observer.check_result(CheckStatus(status), output,
                                       logged="a template failed validation" if note else None)
            try:
                for attempt in self._retrying(give_up_after=interval):
                    with attempt:
                        self._report(status, output)
            except BackendUnavailable as err:
                # Logged once (a call that outlasts the interval gets no retry,
                # so no before_sleep either); the next beat tries again.
                self.observer.heartbeat_failed(str(err))
            except NotRegistered as err:
                self.observer.heartbeat_failed(str(err))
                self.log.warning("agent forgot the service again", error=str(err))

    def _sleep(self, seconds: float) -> None:
        """tenacity's pause between retries (it stops itself once leaving)."""
        self._pause_until(time.monotonic() + seconds)

    def _pause_until(self, when: float, early: threading.Event | None = None) -> bool:
        """Wait for the next beat (or until `early` is set); True if leaving.
        With --ready notify the socket is drained meanwhile (the child may
        keep sending STATUS=)."""
        wake = early or self.leaving   # leave() sets both
        while not self.leaving.is_set():
            left = when - time.monotonic()
            if left <= 0 or (early is not None and early.is_set()):
                if early is not None:
                    early.clear()
                return self.leaving.is_set()
            if self.notify is None:
                wake.wait(left)
            else:
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
        """One heartbeat; registering again if the agent forgot us."""
        assert self.backend is not None
        if not self._begin("update"):
            return
        try:
            self.backend.report(status, output)
        except NotRegistered:
            self._end()
            self.log.warning("agent does not know the service, registering again",
                             id=self.service.id)
            # registered -> registering; refused once the stop has begun, and
            # then _register_now does nothing either (leaving is set).
            self.observer.transition(ServiceState.REGISTERING)
            self._register_now(status, output)
            return
        except BaseException:
            self._end()
            raise
        self._end()
        self.observer.heartbeat_ok()

    def _consul_failed(self, retry_state) -> None:
        """Log the first failure of a run of them, not every retry."""
        error = retry_state.outcome.exception() if retry_state.outcome else None
        if isinstance(error, NotRegistered):
            self.log.warning("agent does not know the service, registering again",
                             id=self.service.id)
        else:
            self.observer.consul_unreachable(str(error))

    # -- the leave thread ----------------------------------------------------
    def _leaver(self) -> None:
        """Started with the worker, so a stop starts no thread; its connection
        is opened once the service is registered, so a stop opens none."""
        assert self.backend is not None
        self.stage.wait()
        if not self.leaving.is_set():
            try:
                self.backend.prepare_stop()
            except BackendUnavailable:
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
            self.left.set()
            if self.supervisor is not None:
                self.supervisor.wake()

    def _deregister(self) -> bool:
        """Until the agent answers: past the leave timeout too, until svcwrap
        exits, so a slow agent still drops the entry before its TTL would."""
        assert self.backend is not None
        pause = 0.05
        while True:
            try:
                return self.backend.deregister()
            except BackendUnavailable as err:
                # Not "failed": a call that timed out may well have been
                # processed; only the agent's answer says so.
                if pause == 0.05:
                    self.log.warning("deregistration not confirmed, retrying", error=str(err))
                time.sleep(pause)
                pause = min(pause * 2, 1.0)


class LocalCheck(Discovery):
    """--no-register with a --check: nothing to register, but the check runs
    every --check-interval, so `svcwrap healthcheck` and `status` can say
    whether the child is healthy (observer.check_result)."""

    def __init__(self, config: Config, observer: Observer) -> None:
        from svcwrap.probes import ExitStatuses

        self.health = config.health
        self.observer = observer
        self.statuses = ExitStatuses(config.environ)
        self.leaving = threading.Event()

    def start(self, child_pid: int, supervisor: Supervisor) -> None:
        supervisor.on_other_reaped = self.statuses.reaped
        threading.Thread(target=self._run, name="svcwrap-check", daemon=True).start()

    def leave(self) -> float:
        self.leaving.set()
        return 0.0

    def _run(self) -> None:
        from svcwrap.probes import make_probe

        interval = self.health.check_interval
        probe = make_probe(self.health.check, timeout=max(0.1, min(interval, 5.0)),
                           statuses=self.statuses, insecure=self.health.probe_insecure)
        while True:
            result = probe()
            if self.leaving.is_set():
                return
            self.observer.check_result(CheckStatus(result.status), result.output)
            if self.leaving.wait(interval):
                return
