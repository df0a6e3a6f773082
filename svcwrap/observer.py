"""The one place that hears what happens to the service.

Every state change and every event (a check result, a heartbeat, Consul
going away, a signal forwarded, the child starting or exiting, maintenance)
is reported here, by whichever thread saw it. The observer turns each
report into, at the same moment and under one lock:

* one log line (or none, when nothing changed),
* the status snapshot that `svcwrap status` and `svcwrap healthcheck` read,
* the Prometheus metrics, when `--metrics` is on (metrics.py).

So the log, the status answer and the metrics can never disagree: none of
them is computed anywhere else. Under the lock there is no I/O at all; the
log lines are written after it, in the order the events happened (see
_OrderedLog), so the main thread, calling in while it forwards signals and
reaps, never waits for another thread's write to a slow stderr.

Imported only once the child runs (states.py imports enum).
"""
import threading
import time
from collections import deque
from contextlib import contextmanager

from svcwrap.logs import LEVELS, Logger
from svcwrap.states import CheckStatus, EventCode, ServiceState, StateMachine

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable, Iterator

    from svcwrap.metrics import Metrics

EARLY_REQUESTS = 256  # agent calls kept for metrics attached late
OUTPUT_IN_LOG = 200  # a check's output is cut to this in the log (in full in status)


class Observer:
    def __init__(self, log: Logger, *, version: str, initial: ServiceState,
                 service_id: str | None = None, service_name: str | None = None,
                 consul_address: str | None = None, check: str | None = None,
                 metrics: "Metrics | None" = None,
                 clock: "Callable[[], float]" = time.monotonic) -> None:
        self._out = _OrderedLog(log)
        self._metrics: "Metrics | None" = None
        self._clock = clock
        self._lock = threading.RLock()
        self._machine = StateMachine(initial, self._on_state, self._lock)
        self._static = {"service_id": service_id, "service_name": service_name,
                        "consul_address": consul_address, "check": check, "version": version}
        self._state_since = clock()
        self._check_status: CheckStatus | None = None
        self._check_output = ""
        self._consul_reachable: bool | None = None  # unknown before the first call
        self._last_heartbeat: float | None = None
        self._maintenance = False
        self._maintenance_reason = ""
        self._child_pid: int | None = None
        self._child_started: float | None = None
        self._child_exit_code: int | None = None
        self._templates: list[dict] = []  # templating.Templating.status() (issue 11)
        self._counts = {"heartbeats": 0, "heartbeat_failures": 0, "registrations": 0,
                        "child_restarts": 0}
        self._signals: dict[str, int] = {}
        # Calls to the agent timed before the metrics existed, replayed into
        # the histogram by attach_metrics (bounded: metrics come within ms).
        self._early_requests: list[tuple[str, float]] = []
        if metrics is not None:
            self.attach_metrics(metrics)

    def attach_metrics(self, metrics: "Metrics") -> None:
        """Feed `metrics` from now on, starting from everything counted so far.

        Importing prometheus_client takes tens of milliseconds, so it is done
        on a worker thread while the main loop already runs; whatever
        happened meanwhile is carried over here, under the lock."""
        with self._lock:
            metrics.catch_up(self._machine.state.value,
                             None if self._check_status is None else self._check_status.value,
                             self._counts, self._signals)
            for call, seconds in self._early_requests:
                metrics.consul_request(call, seconds)
            self._early_requests.clear()
            self._metrics = metrics

    @contextmanager
    def _reporting(self) -> "Iterator[None]":
        """Change the state under the lock; write the log lines it queued
        after letting go of it (see _OrderedLog)."""
        with self._lock:
            yield
        self._out.flush()

    def close(self, timeout: float = 1.0) -> None:
        """svcwrap exits: every line queued so far is written (bounded)."""
        self._out.drain(timeout)

    # -- the state machine ---------------------------------------------------
    @property
    def state(self) -> ServiceState:
        return self._machine.state

    def transition(self, new: ServiceState, event: str | None = None, level: str = "info",
                   **fields: object) -> bool:
        """Move to `new` if the table allows it; log it once as `event` (or,
        without one, as a debug line "state changed"). Returns False, logging
        nothing, for a transition refused: a race the stop sequence won."""
        with self._reporting():
            old = self._machine.state
            if not self._machine.to(new):
                return False
            if event is None:
                self._out.put("debug", EventCode.STATE_CHANGED.value,
                              {"from": old.value, "to": new.value, **fields})
            else:
                self._out.put(level, event, {**fields, "state": new.value})
            return True

    def _on_state(self, old: ServiceState, new: ServiceState) -> None:
        # Called by the machine under self._lock.
        self._state_since = self._clock()
        if self._metrics is not None:
            self._metrics.state(new.value)

    # -- the child -------------------------------------------------------------
    # The child's start and exit are debug lines: a plain init is silent, and
    # an operator's log shows Consul events (issue 9).
    def child_started(self, pid: int, command: str, started: float | None = None,
                      level: str = "debug") -> None:
        """`started`: the clock's time of the spawn, when it happened before
        the observer existed (it is created after the spawn)."""
        with self._reporting():
            self._child_pid = pid
            self._child_started = self._clock() if started is None else started
            self._child_exit_code = None
            self._out.put(level, EventCode.CHILD_STARTED.value, {"pid": pid, "command": command})

    def child_restarted(self, pid: int) -> None:
        with self._reporting():
            self._child_pid = pid
            self._child_started = self._clock()
            self._child_exit_code = None
            self._counts["child_restarts"] += 1
            if self._metrics is not None:
                self._metrics.child_restarted()
            self._out.put("info", EventCode.CHILD_RESTARTED.value, {"pid": pid})

    def child_exited(self, pid: int, code: int, signal: str | None = None,
                     level: str = "debug") -> None:
        """The main child is gone: whatever the state, it is now exited."""
        with self._reporting():
            self._child_exit_code = code
            fields: dict[str, object] = {"pid": pid, "code": code}
            if signal is not None:
                fields["signal"] = signal
            self._machine.to(ServiceState.EXITED)
            fields["state"] = self._machine.state.value
            self._out.put(level, EventCode.CHILD_EXITED.value, fields)

    def signal_forwarded(self, signal: str, sent: str | None = None) -> None:
        """`signal` as received (counted under its name), `sent` what the
        child got after --rewrite / --stop-signal, when that differs."""
        with self._reporting():
            self._signals[signal] = self._signals.get(signal, 0) + 1
            if self._metrics is not None:
                self._metrics.signal_forwarded(signal)
            fields = {"signal": signal}
            if sent is not None:
                fields["sent"] = sent
            self._out.put("debug", EventCode.SIGNAL_FORWARDED.value, fields)

    # -- health and Consul -----------------------------------------------------
    def check_result(self, status: CheckStatus, output: str, log: bool = True,
                     logged: str | None = None) -> None:
        """A health-check result; logged only when the status changes (and
        `log`: the status a registration carries is the last one logged),
        with `logged` instead of the output if given (a failing template's
        output, which the templates logged already: issue 11)."""
        with self._reporting():
            changed = status != self._check_status
            self._check_status = status
            self._check_output = output
            if not changed:
                return
            if self._metrics is not None:
                self._metrics.check_status(status.value)
            if not log:
                return
            level = "info" if status is CheckStatus.PASSING else "warning"
            self._out.put(level, f"{EventCode.CHECK_CHANGED.value} {status.value}",
                          {"output": (output if logged is None else logged)[:OUTPUT_IN_LOG]})

    def registration(self, **fields: object) -> None:
        """The agent accepted our definition (a first registration, or again
        after it forgot us): one log line "registered" and, unless the stop
        has begun, the registered state."""
        with self._reporting():
            self._counts["registrations"] += 1
            if self._metrics is not None:
                self._metrics.registration()
            self._machine.to(ServiceState.REGISTERED)
            self._out.put("info", EventCode.REGISTERED.value,
                          {**fields, "state": self._machine.state.value})

    def heartbeat_ok(self) -> None:
        """A check update the agent accepted."""
        with self._reporting():
            self._last_heartbeat = self._clock()
            self._counts["heartbeats"] += 1
            if self._metrics is not None:
                self._metrics.heartbeat(ok=True)
            self._set_reachable(True, "")

    def heartbeat_failed(self, error: str) -> None:
        """A check update that did not reach the agent or was refused."""
        with self._reporting():
            self._counts["heartbeat_failures"] += 1
            if self._metrics is not None:
                self._metrics.heartbeat(ok=False)
            self._set_reachable(False, error)

    def consul_reachable(self) -> None:
        with self._reporting():
            self._set_reachable(True, "")

    def consul_unreachable(self, error: str) -> None:
        with self._reporting():
            self._set_reachable(False, error)

    def _set_reachable(self, reachable: bool, error: str) -> None:
        # Logged once per run of failures, and once when it is over.
        before = self._consul_reachable
        self._consul_reachable = reachable
        if reachable and before is False:
            self._out.put("info", EventCode.CONSUL_REACHABLE.value, {})
        elif not reachable and before is not False:
            self._out.put("warning", EventCode.CONSUL_UNREACHABLE.value, {"error": error})

    def consul_request(self, call: str, seconds: float) -> None:
        """How long one call to the agent took (register, update, deregister,
        maintenance), whatever its outcome."""
        with self._lock:
            if self._metrics is not None:
                self._metrics.consul_request(call, seconds)
            elif len(self._early_requests) < EARLY_REQUESTS:
                self._early_requests.append((call, seconds))

    def maintenance(self, on: bool, reason: str = "") -> None:
        """Maintenance mode as the agent now has it; logged when it changes."""
        with self._reporting():
            if on == self._maintenance and (not on or reason == self._maintenance_reason):
                return
            self._maintenance = on
            self._maintenance_reason = reason if on else ""
            if on:
                self._out.put("info", EventCode.ENTER_MAINTENANCE.value, {"reason": reason})
            else:
                self._out.put("info", EventCode.EXIT_MAINTENANCE.value, {})

    # -- templates (issue 11) --------------------------------------------------
    def templates(self, entries: "list[dict]") -> None:
        """Each template's destination ("name"), whether it has rendered,
        the queries it still waits for and its current failure, as
        templating.Templating.status() gives them; a change of the failures
        is logged by the template manager, not here."""
        with self._reporting():
            waiting = [e["name"] for e in entries if not e["rendered"]]
            if waiting and not self._templates:  # once, at start
                self._out.put("info", EventCode.WAITING_TEMPLATES.value,
                              {"templates": ", ".join(waiting)})
            self._templates = [dict(e) for e in entries]

    # -- the answer to `svcwrap status` ----------------------------------------
    def snapshot(self) -> dict:
        """Everything `svcwrap status --json` shows, consistent at one instant."""
        with self._lock:
            now = self._clock()
            child_running = self._child_pid is not None and self._child_exit_code is None
            return {
                "state": self._machine.state.value,
                "state_age_s": _age(now, self._state_since),
                **self._static,
                "check_status": None if self._check_status is None else self._check_status.value,
                "check_output": self._check_output,
                "consul_reachable": self._consul_reachable,
                "last_heartbeat_age_s": _age(now, self._last_heartbeat),
                "maintenance": self._maintenance,
                "maintenance_reason": self._maintenance_reason,
                "child_pid": self._child_pid,
                "child_uptime_s": _age(now, self._child_started) if child_running else None,
                "child_exit_code": self._child_exit_code,
                "templates": [dict(e) for e in self._templates],
                "counts": {**self._counts, "signals_forwarded": dict(self._signals)},
            }


def _age(now: float, since: float | None) -> float | None:
    return None if since is None else round(max(0.0, now - since), 3)


class _OrderedLog:
    """Log lines written in the order they were queued, without making any
    thread wait for another's write.

    put() is called under the observer's lock, so the queue is in event
    order. flush() writes the queue if no other thread is writing; if one
    is, it returns at once: that thread writes the line too, because it
    looks at the queue again after letting go of the write lock. So no
    thread waits while another is stuck writing to a full stderr pipe (a
    thread may write lines others queued, in order, as the main thread
    writes its own lines today). Lines below the log level are dropped at
    put(), so a debug line (a signal forwarded) never makes the main thread
    write at all.
    """

    def __init__(self, log: Logger) -> None:
        self._log = log
        self._queue: deque[tuple[str, str, dict]] = deque()
        self._writing = threading.Lock()

    def put(self, level: str, event: str, fields: dict) -> None:
        if LEVELS[level] >= self._log.threshold:
            self._queue.append((level, event, fields))

    def drain(self, timeout: float) -> None:
        """At exit: write what is still queued, waiting up to `timeout` for a
        thread that is writing (the process ends with os._exit, which would
        drop a line that thread had not got to yet)."""
        if self._queue and self._writing.acquire(timeout=timeout):
            self._writing.release()
        self.flush()

    def flush(self) -> None:
        while self._queue:
            if not self._writing.acquire(blocking=False):
                return  # the writing thread checks the queue again after releasing
            try:
                while self._queue:
                    level, event, fields = self._queue.popleft()
                    self._log.emit(level, event, fields)
            finally:
                self._writing.release()
