"""The life of a wrapped service, in one place:

    starting -> ready -> registered -> draining -> stopped

The supervisor (main thread) spawns the child at once and owns signals,
reaping and the stop sequence. Everything that may be slow -- importing the
Consul client, readiness probes, registration, heartbeats -- runs on other
threads and reports back through Supervisor.wake().
"""
from __future__ import annotations

from svcwrap.config import Config
from svcwrap.logs import Logger
from svcwrap.supervisor import Discovery, SpawnError, Supervisor


def run(config: Config, log: Logger) -> int:
    supervisor = Supervisor(config.supervisor, log)
    supervisor.prepare()
    discovery = Discovery()
    try:
        pid = supervisor.spawn(config.environ)
    except SpawnError as err:
        log.error("cannot start child", error=str(err))
        return err.code
    discovery.start(pid, supervisor)
    return supervisor.run(discovery)
