"""Helpers for the observer, control-socket and metrics tests (issue 10):
an observer whose log goes to a file and whose clock the test moves, a
control server on a socket in the test's directory, and the verbs run the
way a user runs them (`python -m svcwrap VERB`)."""
from __future__ import annotations

import os
import subprocess
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from svcwrap import __version__
from svcwrap.control import ControlServer, Request, Requests
from svcwrap.logs import Logger
from svcwrap.observer import Observer
from svcwrap.states import ServiceState
from tests.support import REPO, SVCWRAP


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class LogFile:
    """A Logger writing to a temporary file, and what it wrote."""

    def __init__(self, level: str = "debug") -> None:
        self.file = tempfile.TemporaryFile()
        self.logger = Logger("text", level, fd=self.file.fileno())

    def lines(self) -> list[str]:
        self.file.seek(0)
        return self.file.read().decode().splitlines()

    def events(self) -> list[str]:
        """The event of each line: `<ts> svcwrap <level> <event words> k=v ...`."""
        found = []
        for line in self.lines():
            words = []
            for word in line.split(" ")[3:]:
                if "=" in word:
                    break
                words.append(word)
            found.append(" ".join(words))
        return found


def observer(log: LogFile, clock: Clock | None = None, *, register: bool = True,
             initial: ServiceState = ServiceState.STARTING, check: str | None = "tcp:6379",
             metrics=None) -> Observer:
    if register:
        return Observer(log.logger, version=__version__, initial=initial, service_id="web-1",
                        service_name="web", consul_address="http://127.0.0.1:8500",
                        check=check, metrics=metrics, clock=clock or Clock())
    return Observer(log.logger, version=__version__, initial=initial, check=check, metrics=metrics,
                    clock=clock or Clock())


@contextmanager
def control_server(path: Path, obs: Observer, answer_timeout: float = 2.0,
                   main_loop: bool = True, log: LogFile | None = None
                   ) -> Iterator[list[Request]]:
    """A control server on `path`. With main_loop, a thread stands in for
    the supervisor's loop: woken by each request, it answers maintenance as
    the wiring will (the backend's answer goes to the observer) and keeps
    every request it took in the list yielded. Without it nobody answers:
    svcwrap busy."""
    woken = threading.Event()
    requests = Requests(wake=woken.set)
    taken: list[Request] = []
    server = ControlServer(str(path), obs, requests, (log or LogFile()).logger,
                           answer_timeout=answer_timeout)
    server.start()
    done = threading.Event()

    def loop() -> None:
        while not done.is_set():
            woken.wait(0.1)
            woken.clear()
            for request in requests.take_all():
                taken.append(request)
                if request.verb == "maintenance":
                    obs.maintenance(request.args["on"], request.args["reason"])
                    request.answer(True, message="maintenance " +
                                   ("on" if request.args["on"] else "off"))
                else:
                    request.answer(False, error=f"no {request.verb} here")

    thread = threading.Thread(target=loop, daemon=True)
    if main_loop:
        thread.start()
    try:
        yield taken
    finally:
        done.set()
        server.close()
        if main_loop:
            thread.join()


def verb(*args: str, env: dict[str, str] | None = None, timeout: float = 20.0
         ) -> subprocess.CompletedProcess:
    """`svcwrap ARGS...` as a user runs it; text stdout and stderr."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SVCWRAP_")}
    return subprocess.run(SVCWRAP + list(args), cwd=str(REPO), env=environ | (env or {}),
                          capture_output=True, text=True, timeout=timeout)
