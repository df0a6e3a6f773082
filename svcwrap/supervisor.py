"""Process supervision: spawn the child, forward signals, reap, stop.

The design follows tini. Every catchable signal is *blocked* in svcwrap and
collected synchronously with sigtimedwait() in the main thread, which does
nothing else: no Consul I/O and no probe ever runs here, so nothing can
delay forwarding or reaping. Blocking rather than installing handlers has
three deliberate consequences:

* Threads started later inherit the blocked mask, so process-directed
  signals always wait for the main thread, never interrupt a worker.
* SIGSEGV/SIGBUS/SIGILL/SIGFPE sent with kill(2) are collected and forwarded
  like any other signal (tini drops them), while a *real* fault in svcwrap
  itself still kills it: the kernel forces the default action for a
  synchronous fault on a blocked signal instead of looping in a handler.
* Other threads wake the main loop with pthread_kill(main, SIGCHLD). SIGCHLD
  is never forwarded, and every SIGCHLD leads to a non-blocking reap pass,
  so a spurious one costs a waitpid() call and nothing else.

The module uses `_signal`, the C module behind `signal`, because `signal`
imports enum, which costs half a bare interpreter start-up, and this runs
before the child is spawned. For the same reason the state machine
(states.py, through the Observer) and the request queue (control.Requests)
are handed in by attach() only once the child runs.

Requests from other threads (a stop, a signal for the child, a restart, a
snapshot) go through one queue, drained at the top of each pass of the
main loop (take_requests); each is answered there at once or handed on,
never waited for, so a request can never hold up forwarding or reaping.

The stop sequence is the second half of the state machine in states.py:

    (any running state) -> leaving -> draining -> stopping -> exited
    (any state) -> exited, as soon as the main child is gone

It is moved by the main thread alone, through observer.transition(), which
logs each step once; the worker threads move only the first half (starting
-> registering -> registered), and the table refuses them once the stop
has begun.
"""
import _signal as sig
import _thread
import os
import time

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs more to import than svcwrap's start-up budget
    from typing import Callable

    from svcwrap.control import Request, Requests
    from svcwrap.observer import Observer

from svcwrap.config import SupervisorConfig
from svcwrap.logs import Logger

CATCHABLE = frozenset(sig.valid_signals()) - {sig.SIGKILL, sig.SIGSTOP}
PR_SET_CHILD_SUBREAPER = 36
STRAGGLER_GRACE_MAX = 5.0  # seconds other processes get after the main child exits


def signal_name(signo: int) -> str:
    for name in dir(sig):
        if name.startswith("SIG") and "_" not in name and getattr(sig, name) == signo:
            return name
    if sig.SIGRTMIN < signo < sig.SIGRTMAX:
        return f"SIGRTMIN+{signo - sig.SIGRTMIN}"
    return str(signo)


def exit_code(status: int) -> int:
    """A wait status as a shell reports it: exit N -> N, killed by signal N -> 128+N."""
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def exec_candidates(name: str, environ: dict[str, str]) -> list[str]:
    """Where execvp(3) would look for name: itself if it has a slash, else
    each directory of the child's PATH. Worked out before fork, so that the
    forked child (where every page it touches is copied) does little more
    than exec. os.execvpe would also import `warnings` there, 1.6 ms."""
    if "/" in name:
        return [name]
    return [os.path.join(d or ".", name) for d in environ.get("PATH", os.defpath).split(":")]


def exec_first(paths: list[str], argv: list[str], environ: dict[str, str]) -> None:
    """Exec the first candidate that exists; return only by raising OSError.
    As in glibc, a search that met "permission denied" reports that (126)
    rather than "not found" (127)."""
    denied: OSError | None = None
    for path in paths:
        try:
            os.execve(path, argv, environ)
        except (FileNotFoundError, NotADirectoryError):
            continue
        except PermissionError as err:
            denied = err
    raise denied or FileNotFoundError(2, "No such file or directory", argv[0])


class SpawnError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class Discovery:
    """What the supervisor needs from service discovery (see lifecycle.py).

    All methods are called from the main thread and must return at once;
    the work happens on other threads, which call Supervisor.wake() when
    something the supervisor waits for has happened. This null version is
    what `--no-register` runs with.
    """

    leave_timeout = 0.0
    registers = False  # whether a (re)started child goes through starting -> registered

    def start(self, child_pid: int, supervisor: "Supervisor") -> None:
        pass

    def leave(self) -> float:
        """Begin leaving discovery; return the drain time to wait once left."""
        return 0.0

    def has_left(self) -> bool:
        return True

    def restarted(self, child_pid: int, supervisor: "Supervisor") -> None:
        """The child was spawned again (a restart): discover the new one."""
        self.start(child_pid, supervisor)

    def maintenance(self, on: bool, reason: str, request: "Request") -> None:
        """Switch maintenance; answer `request` now or from another thread."""
        request.answer(False, error="no maintenance without Consul (--no-register)")

    def kept_maintenance(self) -> tuple[bool, str] | None:
        """The maintenance asked for (on, reason), for the discovery that
        takes over from this one (a restarted child); None: nothing asked."""
        return None


class Supervisor:
    def __init__(self, config: SupervisorConfig, log: Logger) -> None:
        self.config = config
        self.log = log
        self.pid1 = os.getpid() == 1
        self.main_thread = _thread.get_ident()
        self.tty_fd: int | None = None
        self.non_default: list[int] = []
        self.child_pid = 0
        self.child_status: int | None = None
        self.child_stopped = False
        self.no_children = False
        self.spawned_at = 0.0  # time.monotonic() of the spawn
        self.environ: dict[str, str] = {}
        self.restarting = False  # a restart's stop sequence is under way (on_restart)
        # Set by attach(), after the spawn: the state (observer.state, moved
        # only through observer.transition) and the queue into the main loop.
        self.observer: "Observer | None" = None
        self.requests: "Requests | None" = None
        self.leave_deadline = 0.0
        self.drain_seconds = 0.0
        self.drain_deadline = 0.0
        self.kill_deadline: float | None = None
        self.straggler_deadline: float | None = None
        self.restart_deadline: float | None = None  # KILL what the old child left (restart)
        self.stragglers_killed = False
        self.forced_exit: int | None = None
        self.stop_with = 0  # what the child gets when the stop sequence signals it
        # Told the pid and status of every other child reaped (exec probes).
        self.on_other_reaped: Callable[[int, int], None] | None = None

    # -- start -----------------------------------------------------------
    def prepare(self) -> None:
        """Block every catchable signal (see the module docstring) and, when
        not PID 1, become a child subreaper so orphans are still ours to reap."""
        sig.pthread_sigmask(sig.SIG_BLOCK, CATCHABLE)
        if not self.pid1:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
                self.log.warning("subreaper unavailable", errno=ctypes.get_errno())
        # What the child must set back to SIG_DFL: Python's own SIGINT handler
        # and ignored SIGPIPE/SIGXFSZ, and whatever our parent left ignored.
        self.non_default = [s for s in CATCHABLE if sig.getsignal(s) != sig.SIG_DFL]
        try:
            os.tcgetpgrp(0)  # succeeds only if stdin is our controlling terminal
            self.tty_fd = 0
        except OSError:
            self.tty_fd = None

    def spawn(self, environ: dict[str, str]) -> int:
        argv = self.config.command
        try:
            # fork and exec rather than posix_spawn: glibc's posix_spawn leaves
            # its internal signals 32 and 33 ignored in the exec'd program, and
            # with a terminal the child must take the foreground itself.
            pid = self._fork_exec(argv, environ)
        except OSError as err:
            if err.errno == 2:
                raise SpawnError(127, f"{argv[0]}: command not found") from None
            raise SpawnError(126, f"{argv[0]}: cannot execute: {err.strerror}") from None
        self.child_pid = pid
        self.environ = environ  # for a restart (issue 11)
        self.spawned_at = time.monotonic()  # the observer, created next, logs the start
        return pid

    def _fork_exec(self, argv: list[str], environ: dict[str, str]) -> int:
        paths = exec_candidates(argv[0], environ)
        # Both ends are close-on-exec: EOF means the exec succeeded.
        errors_r, errors_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(errors_r)
            self._become_child(paths, argv, environ, errors_w)
        os.close(errors_w)
        # Also set the group from the parent, so it is in place whichever
        # of the two runs first (EACCES once the child has exec'd is fine).
        try:
            os.setpgid(pid, pid)
        except OSError:
            pass
        report = self._exec_report(errors_r, pid)
        os.close(errors_r)
        if report:
            os.waitpid(pid, 0)
            errno = int(report)
            raise OSError(errno, os.strerror(errno))
        return pid

    @staticmethod
    def _exec_report(errors_r: int, pid: int) -> bytes:
        """What the child wrote to the errors pipe before EOF (nothing: its
        exec succeeded). A child stopped before its exec (a SIGTSTP to the
        group, ^Z, in the instant after the fork, when its mask empties)
        would keep the pipe open for good, and svcwrap, signals blocked,
        with it: so while waiting, look whether it stopped, and if so take
        it as started (the main loop then treats it as any stopped child:
        SIGCONT with the stop signal). An exec that fails after it is
        continued then shows only as the child's exit status."""
        import select  # poll, not select(): svcwrap may hold inherited fds past 1024

        poller = select.poll()
        poller.register(errors_r, select.POLLIN)
        report = b""
        while True:
            if poller.poll(50):  # readable, or EOF (POLLHUP)
                chunk = os.read(errors_r, 64)
                if not chunk:
                    return report
                report += chunk
                continue
            # WNOWAIT: the stop stays for the main loop's own waitpid to see.
            if os.waitid(os.P_PID, pid, os.WSTOPPED | os.WNOHANG | os.WNOWAIT) is not None:
                return report

    def _become_child(self, paths: list[str], argv: list[str], environ: dict[str, str],
                      errors_w: int) -> None:
        """Runs in the forked child; never returns."""
        try:
            os.setpgid(0, 0)  # lead our own group: signals go to the whole pipeline
            if self.tty_fd is not None:
                # Become the terminal's foreground group so the child reads
                # input and gets ^C. SIGTTOU is still blocked here (inherited
                # mask), which is what allows a background group to do this.
                try:
                    os.tcsetpgrp(self.tty_fd, os.getpid())
                except OSError:
                    pass
            # Default dispositions (Python itself ignores SIGPIPE and
            # SIGXFSZ), then an empty mask: the exec'd program starts clean.
            for signo in self.non_default:
                sig.signal(signo, sig.SIG_DFL)
            sig.pthread_sigmask(sig.SIG_SETMASK, ())
            exec_first(paths, argv, environ)
        except OSError as err:
            os.write(errors_w, str(err.errno or 1).encode())
        except BaseException:
            os.write(errors_w, b"1")
        os._exit(127)

    def attach(self, observer: "Observer") -> "Requests":
        """Hand in what the main loop needs once the child runs (their
        modules import enum, too heavy before the spawn): the observer,
        which holds the state, and a fresh request queue, returned."""
        from svcwrap.control import Requests

        self.observer = observer
        self.requests = Requests(self.wake)
        return self.requests

    @property
    def state(self):
        """The service's state (a states.ServiceState): an attribute read."""
        assert self.observer is not None, "attach() comes before run()"
        return self.observer.state

    def stopping(self) -> bool:
        """Whether the stop sequence has begun (or the child is gone)."""
        from svcwrap.states import STOPPING_STATES

        return self.state in STOPPING_STATES

    # -- requests from other threads -------------------------------------------
    def wake(self) -> None:
        """Ring the main loop's doorbell (safe from any thread)."""
        try:
            sig.pthread_kill(self.main_thread, sig.SIGCHLD)
        except OSError:
            pass  # the main thread is already on its way out

    def request_stop(self, exit_code: int, reason: str) -> "Request":
        """Stop the child as if the first --stop-on signal (SIGTERM by
        default) had arrived, then exit with exit_code (any thread)."""
        assert self.requests is not None
        return self.requests.put("stop", code=exit_code, reason=reason)

    def take_requests(self, discovery: Discovery) -> None:
        """Act on every queued request (main thread). Each handler does only
        what on_signal() may do: nothing that waits."""
        assert self.requests is not None
        for request in self.requests.take_all():
            handler = self.handlers.get(request.verb)
            if handler is None:
                request.answer(False, error=f"svcwrap cannot {request.verb}")
            else:
                handler(self, request, discovery)

    def on_stop(self, request: "Request", discovery: Discovery) -> None:
        # svcwrap's own verdict (e.g. 1, not ready in time) wins over the
        # child's status, also when a stop was already under way.
        self.cancel_restart()
        self.forced_exit = request.args["code"]
        self.begin_stop(discovery, str(request.args["reason"]), self.config.stop_on[0])
        request.answer(True, message=f"stopping ({self.state.value})")

    def on_signal_request(self, request: "Request", discovery: Discovery) -> None:
        """Send the child a signal as it is: no --rewrite, not a stop request
        (a reload action, say, asks for exactly the signal it names)."""
        signo = int(request.args["signo"])  # type: ignore[arg-type]
        if self.child_status is not None or self.child_pid == 0:
            request.answer(False, error="no child running")
            return
        assert self.observer is not None
        self.observer.signal_forwarded(signal_name(signo))
        self.send(signo)
        request.answer(True, message=f"sent {signal_name(signo)}")

    def on_restart(self, request: "Request", discovery: Discovery) -> None:
        """Restart the child in place (templates' `--reload restart`, issue 11):
        the stop sequence as for a stop request (leave discovery, drain, stop
        signal, SIGKILL at --stop-timeout), then, once the child is gone, the
        same command spawned again (respawn_if_due); svcwrap stays and the
        service keeps its ID, registered again once the new child is ready."""
        if self.stopping() or self.child_status is not None or self.child_pid == 0:
            request.answer(False, error=f"svcwrap is {self.state.value}")
            return
        self.restarting = True
        self.begin_stop(discovery, "restart", self.config.stop_on[0])
        request.answer(True, message="restarting")

    def cancel_restart(self) -> None:
        """A stop request during a restart: stop for good. A child already
        gone exits svcwrap now, as if it had exited on its own."""
        if not self.restarting:
            return
        self.restarting = False
        self.restart_deadline = None
        if self.child_status is not None:
            self.child_exited(self.child_pid, self.child_status)

    def respawn_if_due(self, discovery: Discovery) -> None:
        """The restart's child is gone and discovery left (not before: the
        old instance must be out of Consul before a new one may come)."""
        from svcwrap.states import ServiceState as S

        if not self.restarting or self.child_status is None or self.state is S.LEAVING:
            return
        if not self.old_group_gone():
            return
        self.restarting = False
        self.restart_deadline = None
        assert self.observer is not None
        old_pid, old_status = self.child_pid, self.child_status
        try:
            pid = self.spawn(self.environ)
        except SpawnError as err:
            self.log.error("cannot start child", error=str(err))
            self.forced_exit = err.code
            self.child_exited(old_pid, old_status)
            return
        self.child_status = None
        self.child_stopped = False
        self.kill_deadline = None
        self.observer.transition(S.STARTING if discovery.registers else S.RUNNING)
        self.observer.child_restarted(pid)
        discovery.restarted(pid, self)

    def old_group_gone(self) -> bool:
        """A restart starts the command afresh only once what the old child
        left in its process group (workers, a shell's background jobs) is
        gone too, as ContainerPilot stops a job's group: TERM and CONT at
        once, KILL after a grace bounded by --stop-timeout (as for what is
        left when svcwrap exits). Processes that left the group (setsid)
        are not told apart from svcwrap's own commands, and are left alone."""
        pgid = self.child_pid  # the child led its own group (spawn)
        try:
            os.killpg(pgid, 0)
        except OSError:
            return True  # nobody left in it
        now = time.monotonic()
        if self.restart_deadline is None:
            grace = min(STRAGGLER_GRACE_MAX, self.config.stop_timeout)
            self.log.debug("stopping what the old child left", grace=f"{grace:g}s")
            self.restart_deadline = now + grace
            signals = (sig.SIGTERM, sig.SIGCONT)
        elif now >= self.restart_deadline:
            self.log.warning("killing what the old child left")
            signals = (sig.SIGKILL,)
        else:
            return False
        for signo in signals:
            try:
                os.killpg(pgid, signo)
            except OSError:
                pass
        return signals == (sig.SIGKILL,)

    def on_snapshot(self, request: "Request", discovery: Discovery) -> None:
        assert self.observer is not None
        request.answer(True, status=self.observer.snapshot())

    def on_maintenance(self, request: "Request", discovery: Discovery) -> None:
        if self.stopping():
            request.answer(False, error=f"svcwrap is {self.state.value}")
            return
        discovery.maintenance(bool(request.args.get("on")),
                              str(request.args.get("reason") or ""), request)

    # verb -> handler, called as handler(self, request, discovery)
    handlers: "dict[str, Callable[[Supervisor, Request, Discovery], None]]" = {
        "stop": on_stop,
        "signal": on_signal_request,
        "restart": on_restart,
        "snapshot": on_snapshot,
        "maintenance": on_maintenance,
    }

    # -- the main loop ---------------------------------------------------------
    def run(self, discovery: Discovery) -> int:
        """Until the child is gone and the stop sequence is done. Each pass:
        requests, the stop sequence by the clock, then one wait for a
        signal (a wake() is a SIGCHLD). Another phase (templates before the
        spawn, issue 11) fits as one more step at the top of the pass."""
        while True:
            self.take_requests(discovery)
            self.advance(discovery)
            if self.finished(discovery):
                break
            timeout = self.next_timeout()
            if timeout is None:
                info = sig.sigwaitinfo(CATCHABLE)
            else:
                info = sig.sigtimedwait(CATCHABLE, timeout)
            if info is not None:
                self.on_signal(info.si_signo, discovery)
        assert self.child_status is not None
        code = exit_code(self.child_status)
        if code in self.config.success_exits:
            code = 0  # tini's -e: e.g. a JVM's 143 on SIGTERM is a clean stop
        if self.forced_exit is not None:
            code = self.forced_exit  # svcwrap's own verdict is never remapped
        self.log.debug("exit", code=code)
        return code

    def on_signal(self, signo: int, discovery: Discovery) -> None:
        if signo == sig.SIGCHLD:
            self.reap(discovery)
            return
        # --rewrite maps what svcwrap receives to what the child gets; a
        # signal rewritten to 0 is dropped on arrival, stop request or not
        # (dumb-init's semantics: `--rewrite TERM:0` ignores SIGTERM).
        sends = self.config.rewrite.get(signo, signo)
        if sends == 0:
            self.log.debug("dropped", signal=signal_name(signo))
        elif signo in self.config.stop_on:
            self.on_stop_request(signo, discovery)
        elif self.child_status is None:
            self.forward(signo, sends)
            self.send(sends)

    def stop_signal_for(self, signo: int) -> int:
        """What a stop request by signo ends with: --stop-signal as given, or
        else signo rewritten (PostgreSQL's image stops with SIGINT, its fast
        shutdown: turning it into SIGTERM would make it wait for every client).
        Own stops fall back to signo itself if --rewrite drops it."""
        return self.config.stop_signal or self.config.rewrite.get(signo, signo) or signo

    def forward(self, received: int, sends: int) -> None:
        assert self.observer is not None
        self.observer.signal_forwarded(signal_name(received), sent=signal_name(sends))

    def on_stop_request(self, signo: int, discovery: Discovery) -> None:
        from svcwrap.states import ServiceState as S

        self.cancel_restart()
        state = self.state
        if not self.stopping():
            self.begin_stop(discovery, signal_name(signo), signo)
        elif state in (S.LEAVING, S.DRAINING):
            # A second stop request cuts the drain short, but still lets the
            # (bounded) deregistration finish: that is what keeps clients
            # from being sent to a service that is going away. The latest
            # request chooses the signal (TERM, then INT: a fast shutdown).
            self.log.debug("stop hurried", signal=signal_name(signo))
            self.stop_with = self.stop_signal_for(signo)
            self.drain_seconds = 0.0
            self.drain_deadline = min(self.drain_deadline, time.monotonic())
        elif state is S.STOPPING:
            # The child has had its stop signal: each further request is
            # passed on at once (an escalation such as INT after TERM).
            self.forward(signo, self.stop_signal_for(signo))
            self.send(self.stop_signal_for(signo))

    def begin_stop(self, discovery: Discovery, reason: str, signo: int) -> None:
        # Reap first. sigtimedwait() hands out the lowest-numbered pending
        # signal first, so a SIGCHLD saying the child has just been stopped
        # (^Z, SIGTSTP) may still wait behind this SIGTERM (15 < 17); not
        # knowing, we would send the stop signal without SIGCONT and the
        # stopped child would be SIGKILLed at --stop-timeout (issue 14).
        from svcwrap.states import ServiceState as S

        self.reap(discovery)
        if self.stopping():
            return
        assert self.observer is not None
        self.stop_with = self.stop_signal_for(signo)
        if not self.observer.transition(S.LEAVING, "stopping", level="debug", reason=reason):
            return
        self.drain_seconds = discovery.leave()
        self.leave_deadline = time.monotonic() + discovery.leave_timeout

    def advance(self, discovery: Discovery) -> None:
        """Move the stop sequence on by the clock and by what others reported."""
        from svcwrap.states import ServiceState as S

        assert self.observer is not None
        transition = self.observer.transition
        now = time.monotonic()
        if self.state is S.LEAVING:
            left = discovery.has_left()
            if left or now >= self.leave_deadline:
                if not left:
                    self.log.warning("leave timed out", waited=f"{discovery.leave_timeout:g}s")
                self.drain_deadline = now + self.drain_seconds
                if self.drain_seconds > 0:
                    transition(S.DRAINING, "draining", level="debug",
                               seconds=f"{self.drain_seconds:g}")
                else:
                    transition(S.DRAINING)  # a debug line "state changed"
        if self.state is S.DRAINING and now >= self.drain_deadline:
            transition(S.STOPPING, "signal child", level="debug",
                       signal=signal_name(self.stop_with))
            self.send(self.stop_with)
            if self.child_stopped:
                self.send(sig.SIGCONT)  # a stopped child must run to act on it
            self.kill_deadline = now + self.config.stop_timeout
        if self.state is S.STOPPING and self.kill_deadline is not None \
                and now >= self.kill_deadline and self.child_status is None:
            self.log.warning("stop timeout, killing child",
                             timeout=f"{self.config.stop_timeout:g}s")
            self.send(sig.SIGKILL)
            self.kill_deadline = None
        if self.state is S.EXITED and not self.no_children and not self.config.ignore_others:
            self.stop_stragglers(now)
        self.respawn_if_due(discovery)

    def finished(self, discovery: Discovery) -> bool:
        # With --ignore-others, other processes are neither signalled nor
        # waited for (tini, dumb-init -c). Not PID 1 they live on, re-parented
        # to the next subreaper or init; as PID 1 the kernel SIGKILLs them
        # when svcwrap exits: nothing but the namespace's end can stop that.
        from svcwrap.states import ServiceState as S

        if self.state is not S.EXITED or not (self.no_children or self.config.ignore_others):
            return False
        return discovery.has_left() or time.monotonic() >= self.leave_deadline

    def next_timeout(self) -> float | None:
        """How long the main loop may wait for a signal: until the next
        deadline, or None (no deadline: only a signal can matter).

        Each deadline here is one that the next advance() or finished() acts
        on once it has passed, so a passed one means 0, at once. (Leaving
        passed ones out would wait with no timeout at all when a deadline
        passes between advance() and this call, a loaded machine preempting
        svcwrap for longer than, say, a 300 ms grace: the child or the
        leftovers were then never killed.)"""
        from svcwrap.states import ServiceState as S

        deadlines = []
        state = self.state
        if state is S.LEAVING:
            deadlines.append(self.leave_deadline)
        elif state is S.DRAINING:
            deadlines.append(self.drain_deadline)
        elif state is S.STOPPING and self.kill_deadline is not None \
                and self.child_status is None:
            deadlines.append(self.kill_deadline)
        elif state is S.EXITED:
            if self.no_children or self.config.ignore_others:
                deadlines.append(self.leave_deadline)  # finished(): stop waiting to leave
            if self.straggler_deadline is not None and not self.stragglers_killed:
                deadlines.append(self.straggler_deadline)
        if self.restart_deadline is not None:
            deadlines.append(self.restart_deadline)
        return max(0.0, min(deadlines) - time.monotonic()) if deadlines else None

    # -- children --------------------------------------------------------------
    def send(self, signo: int) -> None:
        """Forward to the child's process group (default) or the child alone."""
        if self.child_status is not None or self.child_pid == 0:
            return  # (pid 0 would be svcwrap's own group: no child yet)
        try:
            if self.config.single_child:
                os.kill(self.child_pid, signo)
            else:
                os.killpg(self.child_pid, signo)
        except ProcessLookupError:
            # The child left its group (setpgid/setsid): signal it directly.
            try:
                os.kill(self.child_pid, signo)
            except ProcessLookupError:
                pass

    def reap(self, discovery: Discovery) -> None:
        """Collect every child that has changed state.

        SIGCHLD is not queued: one may stand for many exits, so waitpid(-1)
        loops until it reports nothing more (0) or no children at all (ECHILD).
        """
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG | os.WUNTRACED | os.WCONTINUED)
            except ChildProcessError:
                self.no_children = True
                return
            if pid == 0:
                return
            if pid != self.child_pid:
                # An orphan, or one of svcwrap's own probes: its status never
                # counts for our exit, but a probe is waiting to hear it.
                if self.on_other_reaped is not None and not os.WIFSTOPPED(status) \
                        and not os.WIFCONTINUED(status):
                    self.on_other_reaped(pid, status)
                continue
            if os.WIFSTOPPED(status):
                self.child_stopped = True
                self.on_child_stopped(os.WSTOPSIG(status))
                continue
            if os.WIFCONTINUED(status):
                self.child_stopped = False
                continue
            self.child_status = status
            if self.restarting:
                continue  # spawned again by respawn_if_due, not an exit
            self.child_exited(pid, status, discovery)

    def child_exited(self, pid: int, status: int, discovery: Discovery | None = None) -> None:
        """The main child is gone for good: svcwrap exits once the stop is done."""
        if discovery is not None and not self.stopping():
            # Gone on its own: leave discovery all the same, bounded.
            self.drain_seconds = discovery.leave()
            self.leave_deadline = time.monotonic() + discovery.leave_timeout
        assert self.observer is not None
        self.observer.child_exited(pid, exit_code(status),
                                   signal_name(os.WTERMSIG(status))
                                   if os.WIFSIGNALED(status) else None, level="debug")

    def on_child_stopped(self, stopsig: int) -> None:
        """Job control: ^Z stopped the child's group (the terminal's foreground).

        As PID 1 nobody above us manages jobs, so nothing more is done. Below
        an interactive shell, stop ourselves too, so the shell regains the
        terminal; on `fg` (SIGCONT) hand the terminal back and resume the child.
        This follows what the child did, not which signal svcwrap received:
        with --rewrite TSTP:0 nothing stops (dumb-init suspends itself anyway),
        with TSTP:STOP both do. No default rewrite to STOP is needed, unlike
        dumb-init's: the child's group is in svcwrap's session, so it is not
        orphaned and TSTP/TTIN/TTOU keep their default action, stopping it.
        """
        self.log.debug("child stopped", signal=signal_name(stopsig))
        if self.pid1 or self.tty_fd is None:
            return
        try:
            os.tcsetpgrp(self.tty_fd, os.getpgrp())
            os.kill(os.getpid(), sig.SIGSTOP)
            # ... resumed here by SIGCONT
            os.tcsetpgrp(self.tty_fd, self.child_pid)
        except OSError:
            pass
        self.send(sig.SIGCONT)

    def stop_stragglers(self, now: float) -> None:
        """The main child is gone but other processes remain: TERM them, give
        them a short grace, then KILL. (tini leaves them to the kernel, which
        SIGKILLs them when PID 1 exits; dumb-init sends TERM and exits at once.)"""
        if self.straggler_deadline is None:
            grace = min(STRAGGLER_GRACE_MAX, self.config.stop_timeout)
            self.log.debug("stopping other processes", grace=f"{grace:g}s")
            self.signal_others(sig.SIGTERM)
            self.signal_others(sig.SIGCONT)
            self.straggler_deadline = now + grace
        elif now >= self.straggler_deadline and not self.stragglers_killed:
            self.log.warning("killing other processes")
            self.signal_others(sig.SIGKILL)
            self.stragglers_killed = True

    def signal_others(self, signo: int) -> None:
        if self.pid1:
            try:
                os.kill(-1, signo)  # as PID 1: every process in our namespace but us
            except ProcessLookupError:
                pass
            return
        import psutil

        try:
            others = psutil.Process().children(recursive=True)
        except psutil.Error:
            return
        for proc in others:
            try:
                proc.send_signal(signo)
            except psutil.Error:
                pass
