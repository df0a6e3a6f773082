"""The state machine of issue 10: the lifecycle and the stop sequence in one
table, so the races between the worker and the main thread are settled by
which transitions exist."""
from __future__ import annotations

import subprocess
import sys

import pytest

from svcwrap.states import (LIFECYCLE, STOP_SEQUENCE, TRANSITIONS, ServiceState,
                            StateMachine)
from tests.support import REPO

S = ServiceState


def machine(initial: ServiceState) -> tuple[StateMachine, list[tuple[str, str]]]:
    seen: list[tuple[str, str]] = []
    return StateMachine(initial, lambda old, new: seen.append((old.value, new.value))), seen


def test_the_states_are_the_strings_status_json_documents():
    assert {s.value for s in ServiceState} == {
        "waiting_templates", "starting", "registering", "registered", "leaving", "draining",
        "stopping", "exited", "running"}


def test_every_state_has_exactly_one_owner_lifecycle_or_stop_sequence():
    assert set(LIFECYCLE) | set(STOP_SEQUENCE) == set(ServiceState)
    assert not set(LIFECYCLE) & set(STOP_SEQUENCE)


def test_a_registered_service_goes_through_the_whole_stop_sequence_in_order():
    m, seen = machine(S.STARTING)
    for state in (S.REGISTERING, S.REGISTERED, S.LEAVING, S.DRAINING, S.STOPPING, S.EXITED):
        assert m.to(state)
    assert seen == [("starting", "registering"), ("registering", "registered"),
                    ("registered", "leaving"), ("leaving", "draining"),
                    ("draining", "stopping"), ("stopping", "exited")]


def test_a_registration_that_completes_after_the_stop_began_is_refused():
    m, seen = machine(S.REGISTERING)
    assert m.to(S.LEAVING)
    assert not m.to(S.REGISTERED)
    assert m.state is S.LEAVING
    assert seen == [("registering", "leaving")]


def test_an_agent_that_forgot_the_service_sends_it_back_to_registering():
    m, _ = machine(S.REGISTERED)
    assert m.to(S.REGISTERING)
    assert m.to(S.REGISTERED)


@pytest.mark.parametrize("state", [s for s in ServiceState if s is not S.EXITED])
def test_the_child_exiting_ends_any_state_in_exited(state):
    m, seen = machine(state)
    assert m.to(S.EXITED)
    assert seen == [(state.value, "exited")]


def test_exited_is_final():
    m, seen = machine(S.EXITED)
    assert not any(m.to(s) for s in ServiceState)
    assert seen == []


def test_nothing_in_the_stop_sequence_goes_back_to_serving():
    serving = {S.STARTING, S.REGISTERING, S.REGISTERED, S.RUNNING, S.WAITING_TEMPLATES}
    for state in STOP_SEQUENCE:
        assert not set(TRANSITIONS[state]) & serving, state


def test_a_repeated_state_is_reported_once():
    m, seen = machine(S.STARTING)
    assert m.to(S.RUNNING)
    assert not m.to(S.RUNNING)
    assert seen == [("starting", "running")]


def test_the_no_register_init_is_running_and_never_registers():
    m, _ = machine(S.RUNNING)
    assert not m.to(S.REGISTERING)
    assert not m.to(S.REGISTERED)


def test_nothing_of_issue_10_is_imported_before_the_child_is_spawned():
    # -I -S: no site, so the editable install's import hook (which itself
    # imports enum and re) does not hide what svcwrap imports.
    code = ("import sys; sys.path.insert(0, %r); import svcwrap.cli; "
            "print(sorted(m for m in ('enum', 'svcwrap.states', 'svcwrap.observer', "
            "'svcwrap.control', 'svcwrap.verbs', 'svcwrap.metrics') "
            "if m in sys.modules))" % str(REPO))
    out = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True,
                         text=True, check=True).stdout
    assert out.strip() == "[]"
