"""svcwrap's configuration: what to run, how to stop it, what to register.

These are plain classes with __slots__ rather than dataclasses on purpose:
the configuration is built before the child is spawned, and `import
dataclasses` alone costs about twice a bare interpreter start here, which
would break svcwrap's start-up budget (1.3x `python3 -c pass`).
"""
from __future__ import annotations

import os


class Secret:
    """A string that never shows itself in logs, reprs or error messages."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret(<redacted>)"

    __str__ = __repr__


class ProbeSpec:
    """A readiness or health probe.

    kind is one of: "tcp" (host, port), "http" (url), "exec" (argv),
    "notify" (a systemd READY=1 datagram on socket: "@abstract" or a path)
    or "none".
    """

    __slots__ = ("kind", "host", "port", "url", "argv", "socket", "text")

    def __init__(self, kind: str, *, host: str = "127.0.0.1", port: int = 0,
                 url: str = "", argv: list[str] | None = None, socket: str = "",
                 text: str = "") -> None:
        self.kind = kind
        self.host = host
        self.port = port
        self.url = url
        self.argv = argv or []
        self.socket = socket
        self.text = text or kind

    def __repr__(self) -> str:
        return f"ProbeSpec({self.text!r})"


class SupervisorConfig:
    __slots__ = ("command", "stop_signal", "stop_timeout", "single_child")

    def __init__(self, command: list[str], stop_signal: int, stop_timeout: float,
                 single_child: bool) -> None:
        self.command = command
        self.stop_signal = stop_signal
        self.stop_timeout = stop_timeout
        self.single_child = single_child


class ServiceConfig:
    """The Consul service entry: identity and where clients reach it."""

    __slots__ = ("name", "id", "port", "tags", "meta", "address")

    def __init__(self, name: str, id: str, port: int | None, tags: list[str],
                 meta: dict[str, str], address: str) -> None:
        self.name = name
        self.id = id
        self.port = port
        self.tags = tags
        self.meta = meta
        self.address = address  # "auto", an IP literal, or "iface:NAME"


class HealthConfig:
    """Readiness before registration, health checks and TTL afterwards."""

    __slots__ = ("ready", "ready_timeout", "check", "check_interval", "ttl",
                 "deregister_after", "drain")

    def __init__(self, ready: ProbeSpec, ready_timeout: float, check: ProbeSpec,
                 check_interval: float, ttl: float, deregister_after: float,
                 drain: float) -> None:
        self.ready = ready
        self.ready_timeout = ready_timeout  # 0 = wait forever
        self.check = check
        self.check_interval = check_interval
        self.ttl = ttl
        self.deregister_after = deregister_after
        self.drain = drain


class ConsulConfig:
    """How to reach the Consul agent: mirrors the official client's CONSUL_* variables."""

    __slots__ = ("scheme", "host", "port", "token", "verify", "cert", "tls_server_name")

    def __init__(self, scheme: str, host: str, port: int, token: Secret,
                 verify: bool | str, cert: tuple[str, str] | None,
                 tls_server_name: str) -> None:
        self.scheme = scheme
        self.host = host
        self.port = port
        self.token = token
        self.verify = verify          # True, False, or a CA file / directory
        self.cert = cert              # (client cert, client key) or None
        self.tls_server_name = tls_server_name

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


class Config:
    __slots__ = ("register", "supervisor", "service", "health", "consul",
                 "log_format", "log_level", "environ")

    def __init__(self, register: bool, supervisor: SupervisorConfig,
                 service: ServiceConfig | None, health: HealthConfig,
                 consul: ConsulConfig | None, log_format: str, log_level: str,
                 environ: dict[str, str]) -> None:
        self.register = register
        self.supervisor = supervisor
        self.service = service
        self.health = health
        self.consul = consul
        self.log_format = log_format
        self.log_level = log_level
        self.environ = environ  # the child's environment


def default_service_id(name: str) -> str:
    """NAME-HOSTNAME: unique per container (Docker sets the hostname to the
    container ID) and stable across restarts of the same container."""
    return f"{name}-{os.uname().nodename}"
