"""The registry's connections (registry.py): an AgentHTTP is not thread-safe,
so what two threads may do at once never shares one."""
from __future__ import annotations

import threading
import uuid

from svcwrap.cli import parse
from svcwrap.registry import Registry


def registry_for(consul, sid: str) -> Registry:
    env = {"CONSUL_HTTP_TOKEN": consul.token} if consul.token else {}
    config, _ = parse(["--name", "svcwrap-test", "--id", sid, "--consul", consul.addr,
                       "--", "true"], env)
    return Registry(config.consul, config.service, config.health, "notes")


def test_maintenance_switched_while_heartbeats_run_always_takes_and_no_heartbeat_fails(
        consul):
    # Found in CI: `svcwrap maintenance off` answered "maintenance off" while the
    # service stayed in maintenance, its request sharing the heartbeat's connection.
    sid = f"svcwrap-test-{uuid.uuid4().hex[:8]}"
    registry = registry_for(consul, sid)
    registry.register("passing", "ok")
    maint_check = f"_service_maintenance:{sid}"
    errors: list[BaseException] = []
    done = threading.Event()

    def heartbeats() -> None:
        while not done.is_set():
            try:
                registry.update("passing", "ok")
            except BaseException as err:  # noqa: BLE001 - reported below
                errors.append(err)

    beating = threading.Thread(target=heartbeats, daemon=True)
    beating.start()
    try:
        for _ in range(40):
            registry.maintenance(True, "swap")
            assert maint_check in consul.checks()
            registry.maintenance(False)
            assert maint_check not in consul.checks()
    finally:
        done.set()
        beating.join(10)
    assert errors == []
