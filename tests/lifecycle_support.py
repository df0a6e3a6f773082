"""Running a wrapped test service registered in the Consul under test."""
from __future__ import annotations

import os
import uuid
from pathlib import Path

from tests.consul_fixture import ConsulUnderTest
from tests.support import free_port, program


class Service:
    """Names and arguments for one wrapped service in one test."""

    def __init__(self, consul: ConsulUnderTest, tmp_path: Path) -> None:
        self.consul = consul
        self.name = f"svcwrap-test-{uuid.uuid4().hex[:8]}"
        self.id = f"{self.name}-1"
        self.check_id = f"service:{self.id}"
        self.port = free_port()
        self.tmp = tmp_path

    def args(self, *extra: str, ttl: str = "1s", child: list[str] | None = None,
             child_args: tuple = ()) -> list[str]:
        return ["--name", self.name, "--id", self.id, "--port", str(self.port),
                "--consul", self.consul.addr, "--ttl", ttl, *extra, "--",
                *(child or program("service.py", self.port, *child_args))]

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CONSUL_", "SVCWRAP_"))}
        if self.consul.token:
            env["CONSUL_HTTP_TOKEN"] = self.consul.token
        return env | extra

    @property
    def passing_url(self) -> str:
        return f"{self.consul.url}/v1/health/service/{self.name}?passing"

    def is_passing(self) -> bool:
        return self.id in self.consul.passing(self.name)

    def check(self) -> dict | None:
        return self.consul.checks().get(self.check_id)

    def status(self) -> str | None:
        check = self.check()
        return check["Status"] if check else None

    def registered(self) -> bool:
        return self.id in self.consul.services()
