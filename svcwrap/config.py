"""svcwrap's configuration: what to run, how to stop it, what to register,
and the Go-style durations it is written in.

These are plain classes with __slots__ rather than dataclasses on purpose:
the configuration is built before the child is spawned, and `import
dataclasses` alone costs about twice a bare interpreter start here, which
would break svcwrap's start-up budget (1.3x `python3 -c pass`).
"""
import os

# -- durations -----------------------------------------------------------------
# Go-style durations ("500ms", "10s", "1m30s"), the syntax Consul uses. Parsed
# by hand: this runs before the child is spawned, where importing `re` would
# cost more than the whole parse.

_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "\u00b5s": 1e-6,
    "\u03bcs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}


def parse_duration(text: str) -> float:
    """Return seconds for a Go duration string; raise ValueError otherwise.

    Like Go's time.ParseDuration: an optional sign, then one or more
    <decimal><unit> pieces; a bare "0" is zero; no whitespace, no day unit.
    """
    s = text
    if s in ("0", "+0", "-0"):
        return 0.0
    sign = 1.0
    if s[:1] in ("+", "-"):
        sign = -1.0 if s[0] == "-" else 1.0
        s = s[1:]
    if not s:
        raise ValueError(f'invalid duration "{text}"')
    total = 0.0
    i = 0
    while i < len(s):
        start = i
        while i < len(s) and (s[i].isdigit() or s[i] == "."):
            i += 1
        number = s[start:i]
        if not number or number == "." or number.count(".") > 1:
            raise ValueError(f'invalid duration "{text}"')
        ustart = i
        while i < len(s) and not (s[i].isdigit() or s[i] == "."):
            i += 1
        unit = s[ustart:i]
        if not unit:
            raise ValueError(f'missing unit in duration "{text}"')
        if unit not in _UNITS:
            raise ValueError(f'unknown unit "{unit}" in duration "{text}"')
        total += float(number) * _UNITS[unit]
    return sign * total


def format_duration(seconds: float) -> str:
    """Format seconds as a Go duration string that Consul accepts."""
    if seconds == 0:
        return "0s"
    ms = round(seconds * 1000)
    if ms % 1000 == 0:
        return f"{ms // 1000}s"
    return f"{ms}ms"


# -- configuration -----------------------------------------------------------------
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
    """How the child is run and stopped (see supervisor.py and the README).

    stop_on: the signals that are stop requests, in order; svcwrap's own
    stops (not ready in time) act as if the first had arrived.
    stop_signal: what the child gets at the end of every stop request, or
    None for the signal that asked (after rewrite).
    rewrite: received signal -> what the child gets instead; 0 drops it.
    success_exits: child statuses (N or 128+N) that make svcwrap exit 0.
    ignore_others: when the main child exits, exit without stopping the
    other processes (as PID 1 the kernel then SIGKILLs them).
    """

    __slots__ = ("command", "stop_signal", "stop_timeout", "single_child", "stop_on",
                 "rewrite", "success_exits", "ignore_others")

    def __init__(self, command: list[str], stop_signal: int | None, stop_timeout: float,
                 single_child: bool, stop_on: tuple[int, ...] = (15, 2),
                 rewrite: dict[int, int] | None = None,
                 success_exits: frozenset[int] = frozenset(),
                 ignore_others: bool = False) -> None:
        self.command = command
        self.stop_signal = stop_signal
        self.stop_timeout = stop_timeout
        self.single_child = single_child
        self.stop_on = stop_on
        self.rewrite = rewrite or {}
        self.success_exits = success_exits
        self.ignore_others = ignore_others


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
                 "deregister_after", "drain", "probe_insecure", "notify_access")

    def __init__(self, ready: ProbeSpec, ready_timeout: float, check: ProbeSpec,
                 check_interval: float, ttl: float, deregister_after: float,
                 drain: float, probe_insecure: bool = False,
                 notify_access: str = "main") -> None:
        self.ready = ready
        self.ready_timeout = ready_timeout  # 0 = wait forever
        self.check = check
        self.check_interval = check_interval
        self.ttl = ttl
        self.deregister_after = deregister_after
        self.drain = drain
        self.probe_insecure = probe_insecure  # https probes: skip verification everywhere
        self.notify_access = notify_access    # who may send READY=1: "main" or "all"


class ConsulConfig:
    """How to reach the Consul agent: mirrors the official client's CONSUL_* variables."""

    __slots__ = ("scheme", "host", "port", "token", "verify", "cert", "tls_server_name",
                 "token_file", "leave_timeout", "old_tokens")

    def __init__(self, scheme: str, host: str, port: int, token: Secret,
                 verify: bool | str, cert: tuple[str, str] | None,
                 tls_server_name: str, token_file: str = "",
                 leave_timeout: float = 1.0) -> None:
        self.scheme = scheme          # http, https, or unix (host is then the socket's path)
        self.host = host
        self.port = port
        self.token = token
        self.verify = verify          # True, False, or a CA file / directory
        self.cert = cert              # (client cert, client key) or None
        self.tls_server_name = tls_server_name
        self.token_file = token_file  # where the token came from, re-read on a 403
        self.leave_timeout = leave_timeout
        self.old_tokens: list[str] = []  # rotated out by reread_token(), still redacted

    def reread_token(self) -> bool:
        """On a 403: read the token file again; True if the token changed.
        Every connection made from this config sends the new one from its
        next request on (registration, heartbeats and template watches alike)."""
        if not self.token_file:
            return False
        try:
            with open(self.token_file, encoding="utf-8") as f:
                token = f.read().strip()
        except OSError:
            return False
        old = self.token.reveal()
        if not token or token == old:
            return False
        self.old_tokens.append(old)
        self.token = Secret(token)
        return True

    def redact(self, text: str) -> str:
        """An agent's text may echo the request: never let it show a token,
        the current one or one rotated out; nor anything unprintable."""
        for secret in (self.token.reveal(), *self.old_tokens):
            if secret:
                text = text.replace(secret, "<redacted>")
        return "".join(c if c.isprintable() else "?" for c in text)

    @property
    def base_url(self) -> str:
        if self.scheme == "unix":
            return f"unix://{self.host}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


class Config:
    __slots__ = ("register", "supervisor", "service", "health", "consul",
                 "log_format", "log_level", "environ", "templates", "control", "metrics")

    def __init__(self, register: bool, supervisor: SupervisorConfig,
                 service: ServiceConfig | None, health: HealthConfig,
                 consul: ConsulConfig | None, log_format: str, log_level: str,
                 environ: dict[str, str], control: str | None = None,
                 metrics: tuple[str, int] | None = None) -> None:
        self.register = register
        self.supervisor = supervisor
        self.service = service
        self.health = health
        self.consul = consul
        self.log_format = log_format
        self.log_level = log_level
        self.environ = environ  # the child's environment
        self.templates = None   # templates.spec.TemplatesConfig, when any is configured
        self.control = control  # --control: a path, "off", or None for the default
        self.metrics = metrics  # --metrics: (host, port), or None for none


def default_service_id(name: str) -> str:
    """NAME-HOSTNAME: unique per container (Docker sets the hostname to the
    container ID) and stable across restarts of the same container."""
    return f"{name}-{os.uname().nodename}"
