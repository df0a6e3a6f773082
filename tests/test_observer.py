"""The observer (issue 10: "one place observes state changes and feeds the
log, the status answer and the metrics, so they can never disagree")."""
from __future__ import annotations

import os
import threading
import time

from svcwrap import __version__
from svcwrap.logs import Logger
from svcwrap.observer import Observer
from svcwrap.states import CheckStatus, ServiceState
from tests.consul_fixture import wait_until
from tests.control_support import Clock, LogFile, observer

S = ServiceState

ISSUE_FIELDS = {"state", "service_id", "service_name", "check_status", "check_output",
                "consul_address", "consul_reachable", "last_heartbeat_age_s", "maintenance",
                "maintenance_reason", "child_pid", "child_uptime_s", "version", "templates"}


def test_the_status_has_every_field_the_issue_names():
    snap = observer(LogFile()).snapshot()
    assert ISSUE_FIELDS <= set(snap)
    assert snap["state"] == "starting"
    assert (snap["service_id"], snap["service_name"]) == ("web-1", "web")
    assert snap["consul_address"] == "http://127.0.0.1:8500"
    assert snap["version"] == __version__


def test_before_the_first_heartbeat_its_age_is_null_then_it_counts_up():
    clock = Clock()
    obs = observer(LogFile(), clock)
    assert obs.snapshot()["last_heartbeat_age_s"] is None
    obs.heartbeat_ok()
    clock.advance(2.5)
    assert obs.snapshot()["last_heartbeat_age_s"] == 2.5


def test_a_failed_heartbeat_does_not_count_as_the_last_heartbeat():
    clock = Clock()
    obs = observer(LogFile(), clock)
    obs.heartbeat_ok()
    clock.advance(3)
    obs.heartbeat_failed("connection refused")
    assert obs.snapshot()["last_heartbeat_age_s"] == 3
    assert obs.snapshot()["consul_reachable"] is False


def test_each_transition_is_one_log_line_naming_the_new_state():
    log = LogFile()
    obs = observer(log, initial=S.REGISTERED)
    obs.transition(S.LEAVING, "stopping", reason="SIGTERM")
    obs.transition(S.DRAINING, "draining", seconds="5")
    assert log.lines()[0].split()[3:] == ["stopping", "reason=SIGTERM", "state=leaving"]
    assert log.lines()[1].split()[3:] == ["draining", "seconds=5", "state=draining"]
    assert obs.snapshot()["state"] == "draining"


def test_a_refused_transition_logs_nothing_and_changes_nothing():
    log = LogFile()
    obs = observer(log, initial=S.LEAVING)
    assert not obs.transition(S.REGISTERED, "registered")
    assert log.lines() == []
    assert obs.snapshot()["state"] == "leaving"


def test_a_registration_after_the_stop_began_is_logged_but_the_state_stays_leaving():
    log = LogFile()
    obs = observer(log, initial=S.REGISTERING)
    obs.transition(S.LEAVING, "stopping")
    obs.registration(id="web-1")
    assert log.lines()[-1].split()[3:] == ["registered", "id=web-1", "state=leaving"]
    assert obs.snapshot()["state"] == "leaving"


def test_a_check_status_is_logged_when_it_changes_and_not_on_every_beat():
    log = LogFile()
    obs = observer(log, initial=S.REGISTERED)
    obs.check_result(CheckStatus.PASSING, "ok")
    obs.check_result(CheckStatus.PASSING, "ok")
    obs.check_result(CheckStatus.CRITICAL, "connection refused")
    obs.check_result(CheckStatus.CRITICAL, "connection refused again")
    assert log.events() == ["check passing", "check critical"]
    snap = obs.snapshot()
    assert (snap["check_status"], snap["check_output"]) == ("critical", "connection refused again")


def test_the_log_keeps_200_characters_of_a_check_output_and_status_keeps_it_all():
    log = LogFile()
    obs = observer(log)
    obs.check_result(CheckStatus.WARNING, "x" * 1000)
    assert "x" * 200 in log.lines()[0] and "x" * 201 not in log.lines()[0]
    assert obs.snapshot()["check_output"] == "x" * 1000


def test_consul_going_away_is_logged_once_per_run_of_failures():
    log = LogFile()
    obs = observer(log)
    assert obs.snapshot()["consul_reachable"] is None
    for _ in range(3):
        obs.consul_unreachable("connection refused")
    obs.heartbeat_ok()
    obs.consul_reachable()
    obs.heartbeat_failed("timed out")
    assert log.events() == ["consul unavailable, retrying", "consul available again",
                            "consul unavailable, retrying"]


def test_maintenance_and_its_reason_show_in_status_and_the_log():
    log = LogFile()
    obs = observer(log, initial=S.REGISTERED)
    obs.maintenance(True, "disk swap")
    obs.maintenance(True, "disk swap")
    assert (obs.snapshot()["maintenance"], obs.snapshot()["maintenance_reason"]) == \
        (True, "disk swap")
    obs.maintenance(False)
    assert (obs.snapshot()["maintenance"], obs.snapshot()["maintenance_reason"]) == (False, "")
    assert log.events() == ["maintenance on", "maintenance off"]


def test_the_child_uptime_counts_from_the_spawn_and_stops_at_its_exit():
    clock = Clock()
    obs = observer(LogFile(), clock)
    spawned = clock.now
    clock.advance(0.004)  # the observer is created after the spawn
    obs.child_started(42, "redis-server", started=spawned)
    clock.advance(60)
    assert (obs.snapshot()["child_pid"], obs.snapshot()["child_uptime_s"]) == (42, 60.004)
    obs.child_exited(42, 143, "SIGTERM")
    snap = obs.snapshot()
    assert (snap["state"], snap["child_uptime_s"], snap["child_exit_code"]) == ("exited", None, 143)


def test_the_child_exit_is_one_line_with_its_code_and_the_state():
    log = LogFile()
    obs = observer(log, initial=S.STOPPING)
    obs.child_exited(42, 143, "SIGTERM")
    assert log.lines()[0].split()[3:] == ["child", "exited", "pid=42", "code=143",
                                          "signal=SIGTERM", "state=exited"]


def test_a_restarted_child_gets_a_new_pid_and_uptime():
    clock = Clock()
    obs = observer(LogFile(), clock, register=False, initial=S.RUNNING)
    obs.child_started(42, "app")
    clock.advance(10)
    obs.child_restarted(43)
    clock.advance(1)
    assert (obs.snapshot()["child_pid"], obs.snapshot()["child_uptime_s"]) == (43, 1)


def test_without_consul_the_status_names_no_service_and_no_agent():
    snap = observer(LogFile(), register=False, initial=S.RUNNING).snapshot()
    assert (snap["state"], snap["service_id"], snap["consul_address"],
            snap["consul_reachable"]) == ("running", None, None, None)


def test_templates_waiting_and_rendered_show_in_status():
    obs = observer(LogFile(), initial=S.WAITING_TEMPLATES)
    waiting = {"name": "/etc/app.conf", "rendered": False, "waiting_for": ["key('max')"]}
    obs.templates([waiting])
    assert obs.snapshot()["templates"] == [waiting]
    obs.templates([{"name": "/etc/app.conf", "rendered": True, "waiting_for": []}])
    assert obs.snapshot()["templates"] == [{"name": "/etc/app.conf", "rendered": True,
                                            "waiting_for": []}]


def test_under_racing_threads_the_log_lists_exactly_the_transitions_status_went_through():
    # The worker registering and the main thread stopping, many times over:
    # whichever wins, the log and the final state agree.
    for _ in range(50):
        log = LogFile(level="debug")
        obs = observer(log, initial=S.REGISTERING)
        start = threading.Barrier(2)

        def worker():
            start.wait()
            obs.registration(id="web-1")
            obs.heartbeat_ok()

        def main_thread():
            start.wait()
            obs.transition(S.LEAVING, "stopping")
            obs.transition(S.DRAINING, "draining")

        threads = [threading.Thread(target=worker), threading.Thread(target=main_thread)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        states = [w.split("=", 1)[1] for line in log.lines() for w in line.split()
                  if w.startswith("state=")]
        assert states[-1] == obs.snapshot()["state"] == "draining"
        assert "registered" not in states[states.index("leaving"):]


def test_a_thread_stuck_writing_to_a_full_stderr_does_not_hold_up_the_main_thread():
    # Docker's log driver stalls, stderr's pipe fills: a worker blocks in its
    # write. The main thread must still forward signals and move the stop on.
    r, w = os.pipe()
    os.set_blocking(w, False)
    try:
        while True:
            os.write(w, b"x" * 65536)
    except BlockingIOError:
        pass
    os.set_blocking(w, True)
    obs = Observer(Logger("text", "info", fd=w), version="0", initial=S.REGISTERED,
                   clock=Clock())
    worker = threading.Thread(target=obs.check_result, args=(CheckStatus.CRITICAL, "down"))
    worker.start()
    wait_until(lambda: obs._out._writing.locked(), message="the worker stuck in its write")
    main = threading.Thread(target=lambda: (obs.signal_forwarded("SIGHUP"),
                                            obs.transition(S.LEAVING, "stopping")))
    main.start()
    main.join(timeout=5)
    assert not main.is_alive(), "the main thread waited for the worker's write"
    assert obs.snapshot()["state"] == "leaving" and worker.is_alive()
    drained = []
    reader = threading.Thread(target=lambda: drained.append(_read_all(r)))
    reader.start()
    worker.join(timeout=10)
    os.close(w)
    reader.join(timeout=10)
    os.close(r)
    lines = [line for line in drained[0].decode().splitlines() if "svcwrap" in line]
    assert [line.split()[3] for line in lines] == ["check", "stopping"], lines


def _read_all(fd: int) -> bytes:
    data = b""
    while chunk := os.read(fd, 1 << 16):
        data += chunk
    return data


def test_at_exit_a_line_queued_behind_a_stuck_write_is_written_once_that_write_ends():
    # svcwrap ends with os._exit: a line left in the queue would be lost.
    from svcwrap.observer import _OrderedLog

    r, w = os.pipe()
    out = _OrderedLog(Logger("text", "info", fd=w))
    out._writing.acquire()              # another thread is in the middle of a write
    out.put("info", "deregistered", {})
    out.flush()                         # returns at once: that thread writes it...
    threading.Timer(0.2, out._writing.release).start()   # ...once its write ends
    out.drain(timeout=5)
    os.close(w)
    assert b"deregistered" in _read_all(r)


def test_at_exit_a_write_stuck_for_good_delays_the_exit_only_by_the_timeout():
    from svcwrap.observer import _OrderedLog

    out = _OrderedLog(Logger("text", "info", fd=2))
    out._writing.acquire()
    out.put("info", "deregistered", {})
    started = time.monotonic()
    exiting = threading.Thread(target=out.drain, kwargs={"timeout": 0.2}, daemon=True)
    exiting.start()
    exiting.join(5)
    assert not exiting.is_alive() and time.monotonic() - started < 2.0
