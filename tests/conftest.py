from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

import pytest

from tests.consul_fixture import *  # noqa: F401,F403 (the consul fixtures)
from tests.lifecycle_support import Service
from tests.support import Wrapped, skip_unless_pid1

Launcher = Callable[..., Wrapped]


@contextmanager
def launcher(pid1: bool) -> Iterator[Launcher]:
    started: list[Wrapped] = []

    def start(*args: str, **popen: object) -> Wrapped:
        w = Wrapped(list(args), pid1=pid1, **popen)
        started.append(w)
        return w

    try:
        yield start
    finally:
        for w in started:
            w.close()


@pytest.fixture(params=["pid1", "subreaper"])
def mode(request: pytest.FixtureRequest) -> str:
    """svcwrap as a real PID 1 in a new PID namespace, and as a plain process
    that makes itself the child subreaper."""
    if request.param == "pid1":
        skip_unless_pid1()
    return request.param


@pytest.fixture
def wrap(mode: str) -> Iterator[Launcher]:
    """Start svcwrap with the given arguments, in each mode."""
    with launcher(mode == "pid1") as start:
        yield start


@pytest.fixture
def wrap_pid1() -> Iterator[Launcher]:
    """Start svcwrap as a real PID 1 only."""
    skip_unless_pid1()
    with launcher(True) as start:
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
