"""Templates wired to the supervisor (issue 11): the glue between
templates.TemplateManager and the init around it.

    cli.run()                       Templating                     TemplateManager
    ---------                       ----------                     ---------------
    start() before the spawn  --->  manager.start()  ------------> renders, watches
    main thread: wait_first_render()  signals + reaping only,
        until every template rendered once (or a stop: 128+N,
        or --template-timeout: 1)
    spawn the child
    supervisor.run()                on_rendered(changed, failures)  <--- one call per pass
                                      failures -> check warning, status
                                      changed  -> ONE reload: signal / exec / restart
    `svcwrap reload` -> request --> reload(request) --------------> request_reload()

The reload actions never run for the first render (the child reads the
files when it starts) and at most once per render pass, so changes to
several templates within one quiescence window make one reload. A signal
goes through the supervisor's request queue, so it is sent by the main
thread like any forwarded signal: --rewrite applies (a reload signal
rewritten to 0 is dropped), and so does the process group. exec:CMD runs
on the manager's thread through probes.ExitStatuses (the supervisor reaps
every child; nothing else may wait for one), as the validation commands do.

Imported only when a template is configured (cli.run()).
"""
from __future__ import annotations

import _signal as sig
import os
import time

from svcwrap.supervisor import CATCHABLE, Discovery, signal_name
from svcwrap.templates.actions import run_command
from svcwrap.templates.manager import TemplateManager

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable

    from svcwrap.config import Config
    from svcwrap.control import Request, Requests
    from svcwrap.logs import Logger
    from svcwrap.observer import Observer
    from svcwrap.probes import ExitStatuses
    from svcwrap.supervisor import Supervisor
    from svcwrap.templates.spec import ReloadAction, TemplateSpec

RELOAD_ANSWER_TIMEOUT = 60.0  # a reload pass runs validations (30 s each at most)


class Templating:
    def __init__(self, config: Config, log: Logger, statuses: ExitStatuses,
                 wake: Callable[[], None]) -> None:
        from svcwrap.consul_http import AgentHTTP

        assert config.templates is not None and config.consul is not None
        consul = config.consul
        self.config = config.templates
        self.rewrite = config.supervisor.rewrite
        self.log = log
        self.statuses = statuses
        self.wake = wake
        self.requests: Requests | None = None        # the supervisor's queue, once attached
        self.on_failures: Callable[[dict[str, str]], None] = lambda failures: None
        self.on_progress: Callable[[], None] = lambda: None
        self.reloads = 0
        self.observer: Observer | None = None
        # The lifecycle's check_now: a template that starts or stops failing
        # reaches the Consul check at once, not at the next heartbeat.
        self.check_now: Callable[[], None] = lambda: None
        self._failures: dict[str, str] = {}
        self.control = None                          # a ControlServer started before the spawn
        # The supervisor's discovery while the templates render (no child yet).
        self.before = BeforeSpawn(config.register)
        # env() sees the child's environment: without the ACL token unless
        # --pass-token, so no template can write it into a file.
        self.manager = TemplateManager(
            self.config.templates, connect=lambda: AgentHTTP(consul), environ=config.environ,
            log=log, runner=statuses.run, on_rendered=self.on_rendered,
            wait=self.config.wait, floor=self.config.floor, on_pass=self._passed,
            redact=consul.redact)

    def start(self) -> None:
        """Read the sources (TemplateError if one is bad) and start rendering."""
        self.manager.start()

    def stop(self) -> None:
        self.manager.stop()

    def give_up(self) -> None:
        """Exit before the spawn: no more renders, no socket left behind."""
        self.stop()
        if self.control is not None:
            self.control.close()

    def _passed(self) -> None:
        # The main thread waits for the first render (wait_first_render);
        # status shows what each template still waits for.
        self.on_progress()
        if self.manager.first_render_done.is_set():
            self.wake()

    # -- before the child: the main thread -----------------------------------
    def wait_first_render(self, stop_on: tuple[int, ...], timeout: float,
                          take_requests: Callable[[], None] = lambda: None) -> int | None:
        """Until every template has rendered once: None then, or the exit
        status to leave with. Only signals and reaping happen here, as in
        the supervisor's loop: a stop request exits at once with 128+N (no
        child to stop), other signals have nobody to go to, and every
        process reaped (a validation command) is handed to ExitStatuses."""
        deadline = time.monotonic() + timeout if timeout else None
        while True:
            take_requests()
            if self.manager.first_render_done.is_set():
                return None
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                self.log.error("templates not rendered in time", waited=f"{timeout:g}s",
                               missing=self.manager.waiting_text())
                return 1
            info = sig.sigwaitinfo(CATCHABLE) if left is None \
                else sig.sigtimedwait(CATCHABLE, left)
            if info is None:
                continue
            signo = info.si_signo
            if signo == sig.SIGCHLD:
                self.reap()
            elif self.rewrite.get(signo, signo) == 0:
                self.log.debug("dropped", signal=signal_name(signo))
            elif signo in stop_on:
                self.log.debug("stopping", reason=signal_name(signo), state="waiting_templates")
                return 128 + signo
            else:
                self.log.debug("no child yet", signal=signal_name(signo))

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self.statuses.reaped(pid, status)

    # -- the spawn ------------------------------------------------------------
    def child_spawned(self, register: bool) -> tuple[Observer, Requests]:
        """The child runs: leave waiting_templates. Returns the observer and
        the supervisor's request queue (both made before the spawn)."""
        from svcwrap.states import ServiceState

        assert self.observer is not None and self.requests is not None
        self.observer.transition(ServiceState.STARTING if register else ServiceState.RUNNING)
        return self.observer, self.requests

    def restartable(self, make: Callable[[], Discovery], supervisor: Supervisor) -> Discovery:
        return Restartable(make, lambda d: self.discovery_started(supervisor, d))

    def discovery_started(self, supervisor: Supervisor, discovery: Discovery) -> None:
        """The lifecycle took the supervisor's reaped statuses for its exec
        probes (ServiceLifecycle.start): hand them on to the templates'
        commands too; and let its check report a failing template as warning."""
        if supervisor.on_other_reaped != self.statuses.reaped:
            supervisor.on_other_reaped = chain_reaped(supervisor.on_other_reaped,
                                                      self.statuses.reaped)
        if hasattr(discovery, "check_note"):
            discovery.check_note = self.problem  # type: ignore[attr-defined]
            self.check_now = discovery.check_now  # type: ignore[attr-defined]
        hand_over(self.before, discovery)

    def failures_changed(self, failures: dict[str, str]) -> None:
        if self.observer is not None:
            self.observer.templates(self.status())
        if failures != self._failures:
            self._failures = dict(failures)
            self.check_now()

    # -- once the child runs: the manager's thread ---------------------------
    def on_rendered(self, changed: list[TemplateSpec], failures: dict[str, str]) -> None:
        self.on_failures(failures)
        self.on_progress()
        actions = self.actions_for(changed)
        if not actions:
            return
        self.reloads += 1
        self.log.info("templates changed", reload=", ".join(a.text for a in actions),
                      templates=", ".join(spec.destination for spec in changed))
        for action in actions:
            self.run(action)

    def actions_for(self, changed: list[TemplateSpec]) -> list[ReloadAction]:
        """What one pass does: each distinct action of the changed templates
        once; a restart alone if any asks for one (it re-reads everything)."""
        actions: list[ReloadAction] = []
        for spec in changed:
            action = self.config.action_for(spec)
            if action.kind != "none" and action not in actions:
                actions.append(action)
        restarts = [a for a in actions if a.kind == "restart"]
        return restarts[:1] or actions

    def run(self, action: ReloadAction) -> None:
        if action.kind == "signal":
            sends = self.rewrite.get(action.signal, action.signal)
            if sends == 0:
                self.log.debug("dropped", signal=signal_name(action.signal), why="--rewrite")
            else:
                self._request("signal", signo=sends)
        elif action.kind == "exec":
            result = run_command(action.argv, self.statuses.run)
            if not result.ok:
                self.log.warning("reload command failed", command=action.text,
                                 output=result.output[:300])
        elif action.kind == "restart":
            self._request("restart", reason="templates changed")

    def _request(self, verb: str, **args: object) -> None:
        if self.requests is None:
            self.log.error("templates: no supervisor to reload the child", action=verb)
            return
        self.requests.put(verb, **args)

    # -- `svcwrap reload` ----------------------------------------------------
    def reload(self, request: Request) -> None:
        """Answer `request` once the pass ran, from a thread of its own (the
        main thread that hands it here must not wait)."""
        import threading

        pass_request = self.manager.request_reload()

        def answer() -> None:
            if not pass_request.done.wait(RELOAD_ANSWER_TIMEOUT):
                request.answer(False, error="the templates did not render in time")
                return
            changed = [spec.destination for spec in pass_request.changed]
            failures = self.manager.failures()
            request.answer(True, changed=changed, failures=failures,
                           message=(f"{len(changed)} changed" if changed else "nothing changed")
                           + (f", {len(failures)} failing" if failures else ""))

        threading.Thread(target=answer, name="svcwrap-reload", daemon=True).start()

    # -- what `svcwrap status` shows -------------------------------------------
    def status(self) -> list[dict]:
        """Each template: destination, the queries it still waits for (before
        its first render), and why its latest version is not in place."""
        waiting = self.manager.waiting()
        failures = self.manager.failures()
        return [{"name": spec.destination, "destination": spec.destination,
                 "rendered": spec.destination not in waiting,
                 "waiting_for": waiting.get(spec.destination, []),
                 "failure": failures.get(spec.destination)}
                for spec in self.config.templates]

    def problem(self) -> str | None:
        """The check's warning output while some template fails validation."""
        failures = self.manager.failures()
        if not failures:
            return None
        return "\n".join(f"{dest}: {why}" for dest, why in sorted(failures.items()))


class Restartable(Discovery):
    """The supervisor's Discovery for a child that a `restart` reload may
    spawn again: a fresh one (lifecycle.ServiceLifecycle, whose leave is for
    good) for each child, with the same configuration, so the same service
    ID. Made by make(); on_started(d) once each has started."""

    def __init__(self, make: Callable[[], Discovery],
                 on_started: Callable[[Discovery], None]) -> None:
        self.make = make
        self.on_started = on_started
        self.current = make()

    @property
    def leave_timeout(self) -> float:
        return self.current.leave_timeout

    @property
    def registers(self) -> bool:
        return self.current.registers

    def start(self, child_pid: int, supervisor: Supervisor) -> None:
        self.current.start(child_pid, supervisor)
        self.on_started(self.current)

    def restarted(self, child_pid: int, supervisor: Supervisor) -> None:
        # Maintenance is the instance's, not the child's: the new child's
        # discovery keeps it (the same service ID).
        old, self.current = self.current, self.make()
        self.start(child_pid, supervisor)
        hand_over(old, self.current)

    def leave(self) -> float:
        return self.current.leave()

    def has_left(self) -> bool:
        return self.current.has_left()

    def maintenance(self, on: bool, reason: str, request: Request) -> None:
        self.current.maintenance(on, reason, request)


class BeforeSpawn(Discovery):
    """Discovery while the first render is awaited: nothing to leave yet;
    maintenance asked for now is kept for the registration to come."""

    def __init__(self, registers_later: bool) -> None:
        self.registers_later = registers_later
        self.wish: tuple[bool, str] | None = None

    def maintenance(self, on: bool, reason: str, request: Request) -> None:
        if not self.registers_later:
            super().maintenance(on, reason, request)
            return
        self.wish = (on, reason)
        request.answer(True, message=f"maintenance {'on' if on else 'off'}: applies once registered")

    def kept_maintenance(self) -> tuple[bool, str] | None:
        wish, self.wish = self.wish, None  # handed over once
        return wish


def hand_over(old: Discovery, new: Discovery) -> None:
    """The maintenance `old` was asked for goes on with `new`."""
    wish = old.kept_maintenance()
    if wish is not None:
        from svcwrap.control import Request

        new.maintenance(*wish, Request("maintenance", {}))


def render_before_spawn(config: Config, log: Logger, supervisor: Supervisor,
                        make_observer: Callable[[], Observer]) -> tuple[Templating | None, int]:
    """Start the templates and wait, on the main thread, until each has
    rendered once. Returns the Templating, or None and the exit status
    (128+N for a stop request, 1 for --template-timeout, 2 for a template
    that cannot be read or compiled)."""
    from svcwrap.cli import start_control
    from svcwrap.probes import ExitStatuses
    from svcwrap.templates.spec import TemplateError

    assert config.templates is not None
    observer = make_observer()
    requests = supervisor.attach(observer)
    templating = Templating(config, log, ExitStatuses(config.environ), supervisor.wake)
    templating.requests = requests
    templating.observer = observer
    supervisor.on_other_reaped = templating.statuses.reaped
    templating.on_progress = lambda: observer.templates(templating.status())
    templating.on_failures = templating.failures_changed
    supervisor.handlers = {**supervisor.handlers,
                           "reload": lambda _, request, discovery: templating.reload(request)}
    # `svcwrap status` must answer while the templates wait (issue 11).
    templating.control = start_control(config, log, observer, requests, supervisor.pid1)
    observer.templates(templating.status())
    try:
        templating.start()
    except TemplateError as err:
        import sys

        templating.give_up()
        sys.stderr.write(f"svcwrap: error: {err}\n")
        return None, 2
    code = templating.wait_first_render(
        config.supervisor.stop_on, config.templates.timeout,
        lambda: supervisor.take_requests(templating.before))
    if code is not None:
        templating.give_up()
        return None, code
    return templating, 0


def chain_reaped(previous: Callable[[int, int], None] | None,
                 also: Callable[[int, int], None]) -> Callable[[int, int], None]:
    """Both the lifecycle's exec probes and the templates' commands hear
    every process the supervisor reaps (each keeps only its own)."""
    if previous is None:
        return also

    def reaped(pid: int, status: int) -> None:
        previous(pid, status)
        also(pid, status)

    return reaped
