"""The states svcwrap can be in, the events it reports, and which state may
follow which.

    waiting_templates -> starting -> registering -> registered
                                 \\-> running (--no-register)
    any of those -> leaving -> draining -> stopping -> exited
    any state    -> exited (the main child is gone)

One machine holds both halves: the lifecycle (the worker thread moves it
from starting to registered) and the supervisor's stop sequence (the main
thread moves it from leaving to exited). Because both go through one table,
the races between them are settled here rather than by flags: a
registration that completes after the stop began (leaving -> registered) is
refused, so nobody can report the service registered while it leaves.

Import this module only after the child is spawned: `import enum` costs
about half a bare interpreter start, and nothing heavy may run before the
spawn (see supervisor.py). The values of ServiceState are the strings of
`state` in `svcwrap status --json`.
"""
import enum
import threading

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable


class ServiceState(str, enum.Enum):
    WAITING_TEMPLATES = "waiting_templates"  # templates not rendered yet (issue 11)
    STARTING = "starting"        # child running, not ready yet
    REGISTERING = "registering"  # ready; the registration is not confirmed yet
    REGISTERED = "registered"    # in Consul, heartbeats running
    RUNNING = "running"          # --no-register: the child runs, nothing to register
    LEAVING = "leaving"          # stop requested: deregistering
    DRAINING = "draining"        # out of discovery, waiting --drain
    STOPPING = "stopping"        # stop signal sent, waiting for the child
    EXITED = "exited"            # the main child is gone


class CheckStatus(str, enum.Enum):
    """A Consul check status; what the health check last reported."""

    PASSING = "passing"
    WARNING = "warning"
    CRITICAL = "critical"


class EventCode(enum.Enum):
    """What happened, as reported to the observer (after ContainerPilot's
    events.EventCode); the values are the log's event names, which the
    suite and operators' log searches rely on. A heartbeat is not an event
    in the log (it would be a line every few seconds): it is counted."""

    STATE_CHANGED = "state changed"
    CHILD_STARTED = "child started"
    CHILD_EXITED = "child exited"
    CHILD_RESTARTED = "child restarted"
    CHECK_CHANGED = "check"  # logged as "check passing", "check critical", ...
    CONSUL_UNREACHABLE = "consul unavailable, retrying"
    CONSUL_REACHABLE = "consul available again"
    REGISTERED = "registered"
    SIGNAL_FORWARDED = "forward"
    ENTER_MAINTENANCE = "maintenance on"
    EXIT_MAINTENANCE = "maintenance off"
    WAITING_TEMPLATES = "waiting for templates"


S = ServiceState
_STOP = (S.LEAVING, S.EXITED)
# The lifecycle: owned by the worker thread (and, for waiting_templates, by
# the template renderer of issue 11).
LIFECYCLE: "dict[ServiceState, tuple[ServiceState, ...]]" = {
    S.WAITING_TEMPLATES: (S.STARTING, *_STOP),
    S.STARTING: (S.REGISTERING, S.RUNNING, *_STOP),
    # registered -> registering: the agent forgot us and we register again.
    S.REGISTERING: (S.REGISTERED, *_STOP),
    S.REGISTERED: (S.REGISTERING, *_STOP),
    S.RUNNING: _STOP,
}
# The stop sequence: owned by the supervisor's main thread. The child may
# exit at any point of it; exited is final.
STOP_SEQUENCE: "dict[ServiceState, tuple[ServiceState, ...]]" = {
    S.LEAVING: (S.DRAINING, S.EXITED),
    S.DRAINING: (S.STOPPING, S.EXITED),
    S.STOPPING: (S.EXITED,),
    S.EXITED: (),
}
TRANSITIONS = {**LIFECYCLE, **STOP_SEQUENCE}
del S, _STOP

STOPPING_STATES = frozenset({ServiceState.LEAVING, ServiceState.DRAINING,
                             ServiceState.STOPPING, ServiceState.EXITED})


def allowed(current: ServiceState, new: ServiceState) -> bool:
    """Whether the table lets `new` follow `current` (staying put is not a transition)."""
    return new in TRANSITIONS[current]


class StateMachine:
    """One ServiceState, moved only along TRANSITIONS, from any thread.

    to() reports each transition exactly once, to on_change(old, new),
    while holding the machine's lock, so reports arrive in the order the
    transitions happened. A transition the table does not allow (a race
    lost: the stop sequence got there first) is refused and returns False;
    so does a repeat of the current state. on_change must not block: it
    may run on the main thread.
    """

    def __init__(self, initial: ServiceState,
                 on_change: "Callable[[ServiceState, ServiceState], None]",
                 lock: "threading.RLock | None" = None) -> None:
        self._state = initial
        self._on_change = on_change
        self._lock = lock or threading.RLock()

    @property
    def state(self) -> ServiceState:
        return self._state

    def to(self, new: ServiceState) -> bool:
        with self._lock:
            old = self._state
            if not allowed(old, new):
                return False
            self._state = new
            self._on_change(old, new)
            return True
