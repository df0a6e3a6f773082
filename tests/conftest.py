from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

import pytest

from tests.consul_fixture import *  # noqa: F401,F403 (the consul fixtures)
from tests.lifecycle_support import Service
from tests.support import Wrapped, skip_unless_pid1

Launcher = Callable[..., Wrapped]


CALL_REPORT = pytest.StashKey[pytest.TestReport]()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    # The call phase's report on the item, so a fixture's teardown knows it failed.
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        item.stash[CALL_REPORT] = report


@contextmanager
def launcher(pid1: bool, node: pytest.Item | None = None) -> Iterator[Launcher]:
    started: list[Wrapped] = []

    def start(*args: str, **popen: object) -> Wrapped:
        w = Wrapped(list(args), pid1=pid1, **popen)
        started.append(w)
        return w

    try:
        yield start
    finally:
        report = node.stash.get(CALL_REPORT, None) if node is not None else None
        for w in started:
            if report is not None and report.failed:
                # What svcwrap said, in the failed test's report (teardown output).
                print(f"--- svcwrap {' '.join(w.args)}\n{w.stderr_so_far()}")
            w.close()


@pytest.fixture(params=["pid1", "subreaper"])
def mode(request: pytest.FixtureRequest) -> str:
    """svcwrap as a real PID 1 in a new PID namespace, and as a plain process
    that makes itself the child subreaper."""
    if request.param == "pid1":
        skip_unless_pid1()
    return request.param


@pytest.fixture
def wrap(mode: str, request: pytest.FixtureRequest) -> Iterator[Launcher]:
    """Start svcwrap with the given arguments, in each mode."""
    with launcher(mode == "pid1", request.node) as start:
        yield start


@pytest.fixture
def wrap_pid1(request: pytest.FixtureRequest) -> Iterator[Launcher]:
    """Start svcwrap as a real PID 1 only."""
    skip_unless_pid1()
    with launcher(True, request.node) as start:
        yield start


@pytest.fixture
def svc(consul, tmp_path) -> Service:
    """A wrapped test service with its own name, ID and port, for the Consul under test."""
    return Service(consul, tmp_path)


@pytest.fixture
def double_svc(consul_double, tmp_path) -> Service:
    """Like svc, but always on the in-repo double (fault injection: .consul.double); skips
    against a real agent."""
    return Service(consul_double, tmp_path)
