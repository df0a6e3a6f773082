"""The main loop's wait never outlasts a deadline that is due (in-process).

A loaded machine can preempt svcwrap between advance(), which acts on the
deadlines that have passed, and next_timeout(), which bounds the wait for
the next signal. A deadline that passed in between must end the wait at
once: the loop used to wait with no timeout then, and a leftover process
that ignores SIGTERM was never killed (tests/test_reaping.py's grace test
hung so, once, on a loaded run)."""
from __future__ import annotations

import os
import time

from svcwrap.cli import make_observer, parse
from svcwrap.logs import Logger
from svcwrap.states import ServiceState as S
from svcwrap.supervisor import Supervisor


def supervisor(*args: str) -> Supervisor:
    config, _ = parse(["--no-register", *args, "--", "true"], dict(os.environ))
    log = Logger(level="error", fd=os.open(os.devnull, os.O_WRONLY))
    sup = Supervisor(config.supervisor, log)
    sup.attach(make_observer(config, log))
    return sup


def test_nothing_due_means_waiting_for_a_signal_alone():
    assert supervisor().next_timeout() is None


def test_a_grace_for_leftovers_that_ran_out_before_the_wait_ends_the_wait_at_once():
    sup = supervisor("--stop-timeout", "300ms")
    sup.observer.transition(S.EXITED)
    sup.straggler_deadline = time.monotonic() - 0.5
    assert sup.next_timeout() == 0.0


def test_a_stop_timeout_that_ran_out_before_the_wait_ends_the_wait_at_once():
    sup = supervisor()
    sup.observer.transition(S.LEAVING)
    sup.observer.transition(S.DRAINING)
    sup.observer.transition(S.STOPPING)
    sup.kill_deadline = time.monotonic() - 0.5
    assert sup.next_timeout() == 0.0


def test_a_stop_timeout_for_a_child_already_gone_is_not_waited_on():
    # (a restart's old child exited before its SIGKILL was due: nothing to kill)
    sup = supervisor()
    for state in (S.LEAVING, S.DRAINING, S.STOPPING):
        sup.observer.transition(state)
    sup.kill_deadline = time.monotonic() - 0.5
    sup.child_status = 0
    assert sup.next_timeout() is None


def test_a_future_deadline_bounds_the_wait_by_what_is_left_of_it():
    sup = supervisor()
    sup.observer.transition(S.LEAVING)
    sup.leave_deadline = time.monotonic() + 1.0
    assert 0.5 < sup.next_timeout() <= 1.0


def test_a_child_stopped_between_fork_and_exec_does_not_hang_the_spawn():
    # Found by hand (issue 14 mutation run): SIGTSTP to the group in the instant
    # after the fork stops the child before its exec, and svcwrap waited on the
    # exec's report for good, every signal blocked.
    import signal
    import threading

    sup = supervisor()
    become = sup._become_child

    def stopped_first(*args):
        os.kill(os.getpid(), signal.SIGSTOP)
        become(*args)

    sup._become_child = stopped_first
    box: list[int] = []
    spawn = threading.Thread(target=lambda: box.append(sup._fork_exec(["true"], dict(os.environ))),
                             daemon=True)
    spawn.start()
    spawn.join(10)
    if not box:  # the hang: kill the stopped child, so the spawn thread ends too
        import psutil

        for child in psutil.Process().children():
            if child.status() == psutil.STATUS_STOPPED:
                child.kill()
        spawn.join(10)
    assert box, "the spawn returned although the child stopped before its exec"
    os.kill(box[0], signal.SIGCONT)
    _, status = os.waitpid(box[0], 0)
    assert os.waitstatus_to_exitcode(status) == 0   # continued, it runs `true`
