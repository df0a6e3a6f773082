"""Command line and environment -> Config, and the program's entry point:
main() parses, spawns the child, and runs the supervisor (run()).

Every option can also come from SVCWRAP_<OPTION> (dashes become
underscores; repeatable options take a comma-separated list); a flag on the
command line wins over its variable. Bad input is one line,
`svcwrap: error: ...` naming the flag or variable, and exit status 2.

Parsing is hand-written rather than argparse because it runs before the
child is spawned: `import argparse` costs more than a bare interpreter start.
"""
import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NoReturn

from svcwrap import __version__
from svcwrap.config import (
    Config, ConsulConfig, HealthConfig, ProbeSpec, Secret, ServiceConfig,
    SupervisorConfig, default_service_id, format_duration, parse_duration,
)
from svcwrap.interpreter import exec_environ
from svcwrap.logs import Logger
from svcwrap.supervisor import Discovery, SpawnError, Supervisor

USAGE = "usage: svcwrap [options] [--] COMMAND [ARGS...]"
VERB_USAGE = "       svcwrap status|healthcheck|maintenance|reload ... (see svcwrap VERB --help)"

# (flag, metavar or None for a switch, repeatable, help)
OPTIONS: list[tuple[str, str | None, bool, str]] = [
    ("--name", "NAME", False, "service name in Consul (required unless --no-register)"),
    ("--id", "ID", False, "service ID [NAME-HOSTNAME]"),
    ("--port", "PORT", False, "the service's port; also the default readiness probe tcp:PORT"),
    ("--tag", "TAG", True, "service tag (repeatable)"),
    ("--meta", "KEY=VALUE", True, "service metadata (repeatable)"),
    ("--address", "ADDR", False, "advertised address: auto, an IP, or iface:NAME [auto]"),
    ("--ready", "SPEC", False, "readiness probe: tcp:[HOST:]PORT, http(s)://URL, exec:CMD ARGS, "
                               "notify[:SOCKET] or none [tcp:PORT with --port, else none]"),
    ("--ready-timeout", "DUR", False, "give up waiting for readiness (0 = never) [0]"),
    ("--check", "SPEC", False, "health check after readiness (same forms but notify) "
                               "[the readiness probe]"),
    ("--check-interval", "DUR", False, "how often the health check runs [TTL/3]"),
    ("--ttl", "DUR", False, "TTL of the Consul check [10s]"),
    ("--deregister-after", "DUR", False, "Consul's DeregisterCriticalServiceAfter [1m]"),
    ("--drain", "DUR", False, "time between leaving discovery and signalling the child [0s]"),
    ("--stop-on", "SIGS", False, "signals that are stop requests: leave Consul, drain, "
                                 "then signal the child [TERM,INT]"),
    ("--stop-signal", "SIG", False, "what the child gets on every stop request "
                                    "[the signal that asked, after --rewrite]"),
    ("--stop-timeout", "DUR", False, "SIGKILL the child this long after the stop signal [9s]"),
    ("--rewrite", "FROM:TO", True, "the child gets TO when svcwrap receives FROM; TO 0 drops "
                                   "FROM (repeatable)"),
    ("--success-exit", "CODE", True, "exit 0 when the child's status is CODE, e.g. 143 "
                                     "(repeatable)"),
    ("--single-child", None, False, "signal the child alone, not its process group"),
    ("--ignore-others", None, False, "when the child exits, exit without stopping other "
                                     "processes (as PID 1 the kernel kills them)"),
    ("--no-register", None, False, "do not talk to Consul: run as a plain init"),
    ("--consul", "ADDR", False, "Consul agent: host:port, http://, https://, unix:///PATH "
                                "[CONSUL_HTTP_ADDR, else 127.0.0.1:8500]"),
    ("--token-file", "PATH", False, "file holding the ACL token [CONSUL_HTTP_TOKEN_FILE]"),
    # -- Consul hardening (issue 9) --
    ("--leave-timeout", "DUR", False, "how long a stop waits to leave Consul before the "
                                      "child is signalled [1s]"),
    ("--pass-token", None, False, "let the child and exec probes inherit CONSUL_HTTP_TOKEN "
                                  "and CONSUL_HTTP_TOKEN_FILE"),
    ("--probe-insecure", None, False, "do not verify https probe certificates (loopback "
                                      "targets never are)"),
    ("--notify-access", "WHO", False, "who may send READY=1: main (the child) or all "
                                      "(any descendant) [main]"),
    ("--log-format", "FMT", False, "text or json [text]"),
    ("--log-level", "LEVEL", False, "debug, info (operator events; a plain init says "
                                    "nothing), warning or error [info]"),
    # -- templates (issue 11; see svcwrap/templates/) --
    ("--config", "FILE", False, "TOML file: options without their --, and [[template]] tables"),
    ("--template", "SRC:DEST", True, "render the Jinja2 template SRC from Consul into DEST "
                                     "(repeatable)"),
    ("--reload", "ACTION", False, "when a rendered file changes: signal:SIG, exec:CMD, "
                                  "restart or none [none]"),
    ("--template-wait", "MIN:MAX", False, "render MIN after a burst's last change, MAX "
                                          "after its first at most [0: at once; MAX 4xMIN]"),
    ("--watch-floor", "DUR", False, "least time between two queries of one watch [250ms]"),
    ("--template-timeout", "DUR", False, "give up waiting for the first render "
                                         "(0 = never) [0]"),
    # issue 10: control socket and metrics (control.py, metrics.py)
    ("--control", "PATH", False, "control socket for the verbs, or off [as PID 1: "
                                 "/run/svcwrap/control.sock or /tmp/svcwrap-UID/; else none]"),
    ("--metrics", "HOST:PORT", False, "serve Prometheus metrics there [off]"),
]
VERBS = ("status", "healthcheck", "maintenance", "reload")
_SPECS = {flag: (metavar, repeatable) for flag, metavar, repeatable, _ in OPTIONS}


class UsageError(Exception):
    """Bad input: printed as one line, exit status 2."""


def env_name(flag: str) -> str:
    return "SVCWRAP_" + flag[2:].upper().replace("-", "_")


def help_text() -> str:
    lines = [USAGE, VERB_USAGE, "",
             "Run COMMAND as a supervised child: forward signals, reap zombies,",
             "register it in Consul with a TTL check once ready, and leave Consul",
             "before the child is stopped.", "", "options:"]
    for flag, metavar, _, text in OPTIONS:
        head = f"{flag} {metavar}" if metavar else flag
        lines.append(f"  {head:<24} {text}")
    lines += [f"  {'-h, --help':<24} show this help and exit",
              f"  {'--version':<24} show the version and exit", "",
              "Every option can also be set as SVCWRAP_<OPTION> (e.g. SVCWRAP_TTL=15s);",
              "the flag wins (a --config FILE lies between the two).",
              "Durations use Go syntax: 500ms, 10s, 1m30s.",
              "Consul client variables: CONSUL_HTTP_ADDR, CONSUL_HTTP_TOKEN,",
              "CONSUL_HTTP_TOKEN_FILE, CONSUL_HTTP_SSL, CONSUL_HTTP_SSL_VERIFY, CONSUL_CACERT,",
              "CONSUL_CAPATH, CONSUL_CLIENT_CERT, CONSUL_CLIENT_KEY, CONSUL_TLS_SERVER_NAME.",
              "When registering, the child and exec probes do not inherit CONSUL_HTTP_TOKEN",
              "or CONSUL_HTTP_TOKEN_FILE (see --pass-token). HTTP(S)_PROXY and NO_PROXY",
              "follow Go's rules, never for a loopback or unix:// agent."]
    return "\n".join(lines) + "\n"


def split_argv(argv: list[str]) -> tuple[dict[str, list[str]], list[str]]:
    """Options before `--` (or before the first non-option), the command after."""
    given: dict[str, list[str]] = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            return given, argv[i + 1:]
        if not arg.startswith("-") or arg == "-":
            return given, argv[i:]
        if arg in ("-h", "--help"):
            raise SystemExit(_print_and(help_text(), 0))
        if arg == "--version":
            raise SystemExit(_print_and(f"svcwrap {__version__}\n", 0))
        flag, eq, value = arg.partition("=")
        if flag not in _SPECS:
            raise UsageError(f"unknown option {flag} (see svcwrap --help)")
        metavar, repeatable = _SPECS[flag]
        if metavar is None:
            if eq:
                raise UsageError(f"{flag} takes no value")
            given[flag] = ["true"]
        else:
            if not eq:
                i += 1
                if i >= len(argv):
                    raise UsageError(f"{flag} needs a value ({metavar})")
                value = argv[i]
            if repeatable:
                given.setdefault(flag, []).append(value)
            else:
                given[flag] = [value]
        i += 1
    return given, []


def _print_and(text: str, code: int) -> int:
    sys.stdout.write(text)
    sys.stdout.flush()
    return code


class _Source:
    """Looks an option up on the command line, then in SVCWRAP_* variables,
    and names whichever it came from in error messages."""

    def __init__(self, given: dict[str, list[str]], environ: dict[str, str]) -> None:
        self.given = given
        self.environ = environ
        self.file_options: dict[str, list[str]] = {}  # --config FILE, between the two
        self.file_origins: dict[str, str] = {}

    def where(self, flag: str) -> str:
        if flag in self.given:
            return flag
        return self.file_origins.get(flag) or env_name(flag)

    def values(self, flag: str) -> list[str]:
        if flag in self.given:
            return self.given[flag]
        if flag in self.file_options:
            return self.file_options[flag]
        raw = self.environ.get(env_name(flag))
        if raw is None or raw == "":
            return []
        if _SPECS[flag][1]:
            return [part.strip() for part in raw.split(",") if part.strip()]
        return [raw]

    def value(self, flag: str) -> str | None:
        found = self.values(flag)
        return found[-1] if found else None

    def switch(self, flag: str) -> bool:
        if flag in self.given:
            return True
        if flag in self.file_options:
            return self.file_options[flag] == ["true"]
        raw = self.environ.get(env_name(flag))
        return False if raw is None or raw == "" else parse_bool(raw, env_name(flag))

    def duration(self, flag: str, default: float, minimum: float = 0.0) -> float:
        raw = self.value(flag)
        if raw is None:
            return default
        try:
            seconds = parse_duration(raw)
        except ValueError as err:
            raise UsageError(f"{self.where(flag)}: {err} (use Go syntax like 500ms, 10s, 1m30s)")
        if seconds < minimum or (minimum > 0 and seconds <= 0):
            raise UsageError(f"{self.where(flag)}: {raw} must be greater than {format_duration(minimum)}"
                             if minimum else f"{self.where(flag)}: {raw} must not be negative")
        return seconds


def parse_bool(raw: str, where: str) -> bool:
    """Go's strconv.ParseBool, which Consul's own client uses for its variables."""
    if raw in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if raw in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise UsageError(f"{where}: {raw!r} is not a boolean (use true or false)")


def parse_port(raw: str, where: str) -> int:
    if not raw.isdigit() or not 1 <= int(raw) <= 65535:
        raise UsageError(f"{where}: {raw!r} is not a port number (1-65535)")
    return int(raw)


def parse_signal(raw: str, where: str) -> int:
    """TERM, SIGTERM, sigterm, 15, RTMIN+3 or SIGRTMAX-1 -> a signal number."""
    import _signal  # `signal` would import enum; see supervisor.py

    name = raw.upper()
    name = name[3:] if name.startswith("SIG") else name
    number = None
    if name.isdigit():
        number = int(name)
    elif name.startswith(("RTMIN+", "RTMAX-")) and name[6:].isdigit():
        offset = int(name[6:])
        number = _signal.SIGRTMIN + offset if name[4] == "N" else _signal.SIGRTMAX - offset
    elif name.isalnum():
        number = getattr(_signal, "SIG" + name, None)
    if not isinstance(number, int) or number not in _signal.valid_signals():
        raise UsageError(f"{where}: unknown signal {raw!r}")
    return number


def parse_signal_handling(src: _Source, command: list[str]) -> SupervisorConfig:
    """--stop-on, --stop-signal, --rewrite, --success-exit, ... (see the README)."""
    import _signal

    def received(raw: str, where: str) -> int:
        """A signal svcwrap can receive and pass on: not KILL/STOP (uncatchable)
        nor CHLD (svcwrap's own, never forwarded)."""
        signo = parse_signal(raw, where)
        if signo in (_signal.SIGKILL, _signal.SIGSTOP, _signal.SIGCHLD):
            raise UsageError(f"{where}: {raw} is never passed on to the child "
                             "(KILL and STOP cannot be caught; CHLD is svcwrap's own)")
        return signo

    where = src.where("--stop-on")
    raw_stop_on = src.value("--stop-on") or "TERM,INT"
    stop_on = tuple(received(name.strip(), where) for name in raw_stop_on.split(",")
                    if name.strip())
    if not stop_on:
        raise UsageError(f"{where}: name at least one signal")
    raw_signal = src.value("--stop-signal")
    stop_signal = parse_signal(raw_signal, src.where("--stop-signal")) if raw_signal else None
    where = src.where("--rewrite")
    rewrite: dict[int, int] = {}
    for item in src.values("--rewrite"):
        frm, colon, to = item.partition(":")
        if not colon:
            raise UsageError(f"{where}: {item!r} is not FROM:TO (e.g. TERM:QUIT, or WINCH:0 "
                             "to drop)")
        rewrite[received(frm, where)] = 0 if to == "0" else parse_signal(to, where)
    where = src.where("--success-exit")
    success_exits = set()
    for raw in src.values("--success-exit"):
        if not raw.isdigit() or int(raw) > 255:
            raise UsageError(f"{where}: {raw!r} is not an exit status (0-255)")
        success_exits.add(int(raw))
    return SupervisorConfig(
        command=command,
        stop_signal=stop_signal,
        stop_timeout=src.duration("--stop-timeout", 9.0),
        single_child=src.switch("--single-child"),
        stop_on=stop_on,
        rewrite=rewrite,
        success_exits=frozenset(success_exits),
        ignore_others=src.switch("--ignore-others"),
    )


def parse_probe(raw: str, where: str, *, allow_notify: bool) -> ProbeSpec:
    if raw == "none":
        return ProbeSpec("none")
    if raw == "notify" or raw.startswith("notify:"):
        if not allow_notify:
            raise UsageError(f"{where}: notify is a readiness signal, not a health check")
        address = raw[7:] or f"@svcwrap-notify-{os.getpid()}-{os.urandom(4).hex()}"
        if not address.startswith(("@", "/")):
            raise UsageError(f"{where}: {raw!r}: the socket is @abstract or an absolute path")
        return ProbeSpec("notify", socket=address, text=raw)
    if raw.startswith(("http://", "https://")):
        if len(raw.split("://", 1)[1]) == 0:
            raise UsageError(f"{where}: {raw!r} has no host")
        return ProbeSpec("http", url=raw, text=raw)
    if raw.startswith("tcp:"):
        target = raw[4:]
        host, _, port = target.rpartition(":")
        host = host.strip("[]") or "127.0.0.1"
        return ProbeSpec("tcp", host=host, port=parse_port(port, where), text=raw)
    if raw.startswith("exec:"):
        import shlex

        try:
            argv = shlex.split(raw[5:])
        except ValueError as err:
            raise UsageError(f"{where}: {err}")
        if not argv:
            raise UsageError(f"{where}: exec: needs a command")
        return ProbeSpec("exec", argv=argv, text=raw)
    raise UsageError(f"{where}: unknown probe {raw!r} (use tcp:[HOST:]PORT, http://URL, "
                     "https://URL, exec:COMMAND ARGS, notify[:SOCKET] or none)")


def parse_meta(items: list[str], where: str) -> dict[str, str]:
    """Consul's limits, checked here so a typo fails at start, not as a 400 later."""
    meta: dict[str, str] = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise UsageError(f"{where}: {item!r} is not KEY=VALUE")
        if len(key) > 128 or not all(c.isascii() and (c.isalnum() or c in "_-") for c in key):
            raise UsageError(f"{where}: key {key!r} must be 1-128 of A-Z a-z 0-9 _ -")
        if key.startswith("consul-"):
            raise UsageError(f"{where}: key {key!r} uses the reserved prefix consul-")
        if len(value) > 512:
            raise UsageError(f"{where}: value of {key!r} is longer than 512 characters")
        meta[key] = value
    if len(meta) > 64:
        raise UsageError(f"{where}: at most 64 pairs")
    return meta


def parse_address(raw: str, where: str) -> str:
    if raw == "auto":
        return raw
    if raw.startswith("iface:"):
        if not raw[6:] or not os.path.exists(f"/sys/class/net/{raw[6:]}"):
            raise UsageError(f"{where}: no network interface named {raw[6:]!r}")
        return raw
    import ipaddress

    try:
        ip = ipaddress.ip_address(raw)
    except ValueError:
        raise UsageError(f"{where}: {raw!r} is not auto, an IP address or iface:NAME")
    if ip.is_unspecified:
        raise UsageError(f"{where}: {raw} is not an address clients can reach")
    return raw


def parse_consul(src: _Source, environ: dict[str, str]) -> ConsulConfig:
    """Mirror the official Consul client's environment handling (py-consul reads
    only a few of these variables, so svcwrap maps them itself)."""
    where = src.where("--consul")
    raw = src.value("--consul")
    if raw is None:
        raw = environ.get("CONSUL_HTTP_ADDR") or "127.0.0.1:8500"
        where = "CONSUL_HTTP_ADDR" if environ.get("CONSUL_HTTP_ADDR") else where
    scheme = "http"
    rest = raw
    if "://" in raw:
        scheme, rest = raw.split("://", 1)
        if scheme == "unix":
            if not rest.startswith("/"):
                raise UsageError(f"{where}: {raw!r}: give unix:///absolute/path")
            token, token_file = read_token(src, environ)
            return ConsulConfig("unix", rest, 0, token, True, None, "", token_file,
                                src.duration("--leave-timeout", 1.0))
        if scheme not in ("http", "https"):
            raise UsageError(f"{where}: unknown protocol scheme {scheme!r} (use host:port, "
                             "http:// or https://)")
    rest = rest.rstrip("/")
    if "/" in rest:
        raise UsageError(f"{where}: {raw!r}: a path after host:port is not supported")
    if rest.startswith("["):
        host, _, tail = rest[1:].partition("]")
        port_text = tail[1:] if tail.startswith(":") else ""
    elif rest.count(":") == 1:
        host, _, port_text = rest.partition(":")
    else:
        host, port_text = rest, ""
    if not host:
        raise UsageError(f"{where}: {raw!r} has no host")
    port = parse_port(port_text, where) if port_text else (8501 if scheme == "https" else 8500)
    ssl = environ.get("CONSUL_HTTP_SSL")
    if ssl and parse_bool(ssl, "CONSUL_HTTP_SSL"):
        scheme = "https"
    verify: bool | str = True
    ssl_verify = environ.get("CONSUL_HTTP_SSL_VERIFY")
    if ssl_verify and not parse_bool(ssl_verify, "CONSUL_HTTP_SSL_VERIFY"):
        verify = False
    elif environ.get("CONSUL_CACERT"):
        verify = environ["CONSUL_CACERT"]
    elif environ.get("CONSUL_CAPATH"):
        verify = environ["CONSUL_CAPATH"]
    for var in ("CONSUL_CACERT", "CONSUL_CAPATH"):
        if environ.get(var) and not os.path.exists(environ[var]):
            raise UsageError(f"{var}: {environ[var]} does not exist")
    cert_file = environ.get("CONSUL_CLIENT_CERT", "")
    key_file = environ.get("CONSUL_CLIENT_KEY", "")
    if bool(cert_file) != bool(key_file):
        raise UsageError("CONSUL_CLIENT_CERT, CONSUL_CLIENT_KEY: both client cert and "
                         "client key must be provided")
    server_name = environ.get("CONSUL_TLS_SERVER_NAME", "")
    if server_name.count(":") == 1:
        server_name = server_name.split(":")[0]
    token, token_file = read_token(src, environ)
    return ConsulConfig(scheme, host, port, token, verify,
                        (cert_file, key_file) if cert_file else None, server_name, token_file,
                        src.duration("--leave-timeout", 1.0))


def read_token(src: _Source, environ: dict[str, str]) -> tuple[Secret, str]:
    """The token file wins over CONSUL_HTTP_TOKEN, as in Consul's own client.

    There is deliberately no --token flag: a command line is visible to
    every user through `ps` and /proc/PID/cmdline."""
    path = src.value("--token-file")
    where = src.where("--token-file")
    if path is None and environ.get("CONSUL_HTTP_TOKEN_FILE"):
        path, where = environ["CONSUL_HTTP_TOKEN_FILE"], "CONSUL_HTTP_TOKEN_FILE"
    if path is not None:
        try:
            with open(path, encoding="utf-8") as f:
                token = f.read().strip()
        except OSError as err:
            raise UsageError(f"{where}: cannot read {path}: {err.strerror}")
        if token:
            return Secret(token), path
    return Secret(environ.get("CONSUL_HTTP_TOKEN", "")), ""


def parse(argv: list[str], environ: dict[str, str]) -> tuple[Config, list[str]]:
    """Return the configuration and a list of warnings (to be logged)."""
    given, command = split_argv(argv)
    src = _Source(given, environ)
    file_templates = load_config_file(src)
    warnings: list[str] = []
    if not command:
        raise UsageError(f"no command given ({USAGE})")

    log_format = src.value("--log-format") or "text"
    if log_format not in ("text", "json"):
        raise UsageError(f"{src.where('--log-format')}: {log_format!r} is not text or json")
    log_level = src.value("--log-level") or "info"
    if log_level not in ("debug", "info", "warning", "error"):
        raise UsageError(f"{src.where('--log-level')}: {log_level!r} is not debug, info, "
                         "warning or error")

    supervisor = parse_signal_handling(src, command)

    register = not src.switch("--no-register")
    name = src.value("--name")
    if register and not name:
        raise UsageError("--name is required (or --no-register to run without Consul)")
    raw_port = src.value("--port")
    port = parse_port(raw_port, src.where("--port")) if raw_port else None

    raw_ready = src.value("--ready")
    if raw_ready is not None:
        ready = parse_probe(raw_ready, src.where("--ready"), allow_notify=True)
    elif port is not None:
        ready = ProbeSpec("tcp", port=port, text=f"tcp:{port}")
    else:
        ready = ProbeSpec("none")
    raw_check = src.value("--check")
    if raw_check is not None:
        check = parse_probe(raw_check, src.where("--check"), allow_notify=False)
    else:
        check = ready if ready.kind != "notify" else ProbeSpec("none", text="child alive")

    ttl = src.duration("--ttl", 10.0, minimum=0.001)
    check_interval = src.duration("--check-interval", ttl / 3, minimum=0.001)
    if check_interval >= ttl:
        raise UsageError(f"{src.where('--check-interval')}: {format_duration(check_interval)} "
                         f"must be shorter than the TTL ({format_duration(ttl)})")
    deregister_after = src.duration("--deregister-after", 60.0)
    if register and 0 < deregister_after < 60:
        warnings.append(f"--deregister-after {format_duration(deregister_after)} is below "
                        "Consul's minimum; the agent raises it to 1m")
    health = HealthConfig(
        ready=ready,
        ready_timeout=src.duration("--ready-timeout", 0.0),
        check=check,
        check_interval=check_interval,
        ttl=ttl,
        deregister_after=deregister_after,
        drain=src.duration("--drain", 0.0),
        probe_insecure=src.switch("--probe-insecure"),
        notify_access=src.value("--notify-access") or "main",
    )
    if health.notify_access not in ("main", "all"):
        raise UsageError(f"{src.where('--notify-access')}: {health.notify_access!r} is not "
                         "main or all")

    service = None
    consul = None
    if register:
        assert name is not None
        service = ServiceConfig(
            name=name,
            id=src.value("--id") or default_service_id(name),
            port=port,
            tags=src.values("--tag"),
            meta=parse_meta(src.values("--meta"), src.where("--meta")),
            address=parse_address(src.value("--address") or "auto", src.where("--address")),
        )
        consul = parse_consul(src, environ)
    # Templates talk to Consul too, under --no-register as well (a load
    # balancer that registers nothing still renders its upstreams).
    templating = bool(src.values("--template") or file_templates)
    if templating and consul is None:
        consul = parse_consul(src, environ)
    child_environ = environ
    if (register or templating) and not src.switch("--pass-token"):
        # The token is svcwrap's: a child that drops privileges would show it
        # in /proc/PID/environ, and it registers rogue instances (as Nomad does).
        child_environ = {k: v for k, v in environ.items()
                         if k not in ("CONSUL_HTTP_TOKEN", "CONSUL_HTTP_TOKEN_FILE")}
    control = src.value("--control")
    if control is not None and control != "off":
        if not control.startswith("/") or len(control.encode()) > 107:
            raise UsageError(f"{src.where('--control')}: {control!r} must be an absolute "
                             "path of at most 107 bytes, or off")
    raw_metrics = src.value("--metrics")
    metrics = parse_listen(raw_metrics, src.where("--metrics")) if raw_metrics else None
    config = Config(register, supervisor, service, health, consul, log_format, log_level,
                    child_environ, control, metrics)
    if templating:
        from svcwrap.templates.options import parse_templates

        config.templates = parse_templates(src, file_templates)
    return config, warnings


def load_config_file(src: _Source) -> list:
    """--config FILE: its options go between the command line and SVCWRAP_*;
    returns its [[template]] tables (TemplateSpec). tomllib only when given."""
    path = src.value("--config")
    if path is None:
        return []
    from svcwrap.templates.config_file import ConfigFileError, load

    try:
        loaded = load(path, _SPECS)
    except ConfigFileError as err:
        raise UsageError(str(err)) from None
    src.file_options, src.file_origins = loaded.options, loaded.origins
    return loaded.templates


def parse_listen(raw: str, where: str) -> tuple[str, int]:
    """HOST:PORT, [IPv6]:PORT or :PORT (every interface) -> (host, port)."""
    if raw.startswith("["):
        host, _, rest = raw[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    else:
        host, _, port = raw.rpartition(":")
        if ":" in host:
            raise UsageError(f"{where}: {raw!r}: write an IPv6 address as [ADDR]:PORT")
    if not port or ":" not in raw:
        raise UsageError(f"{where}: {raw!r} is not HOST:PORT")
    return host or "0.0.0.0", parse_port(port, where)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] in VERBS:  # `svcwrap status`; `svcwrap -- status` runs a command
        from svcwrap.verbs import main as verb

        return verb(args)
    try:
        # Exactly what svcwrap was exec'd with: os.environ may have gained
        # LC_CTYPE from the interpreter's locale coercion (PEP 538).
        config, warnings = parse(args, exec_environ())
    except UsageError as err:
        sys.stderr.write(f"svcwrap: error: {err}\n")
        return 2
    log = Logger(config.log_format, config.log_level)
    for text in warnings:
        log.warning("config", message=text)
    return run(config, log)


def exit_fast(code: int) -> "NoReturn":
    """sys.exit(code) without the interpreter's teardown (freeing every
    module and object: some 20 ms of CPU per stop, paid 300 times over when
    a host stops all its containers at once; bench group massstop). Nothing
    is lost: log lines are os.write()s, the control socket is gone (run's
    finally), and every thread is a daemon the exit would not wait for.
    The command's entry points only: main() itself returns."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def run(config: Config, log: Logger) -> int:
    """Spawn the child at once, then hand it to the supervisor's main loop,
    with Consul discovery (lifecycle.py) beside it unless --no-register, and
    the control socket and metrics (started after the spawn)."""
    supervisor = Supervisor(config.supervisor, log)
    supervisor.prepare()
    templating = None
    if config.templates is not None:
        # The child reads its templates when it starts: they render first,
        # and what they need (Jinja2, threads, the observer) is paid for
        # before the spawn. Never imported without a template.
        from svcwrap.templating import render_before_spawn

        templating, code = render_before_spawn(config, log, supervisor,
                                               lambda: make_observer(config, log))
        if templating is None:
            return code
    environ = config.environ
    notify = None
    # Without Consul nothing waits for READY=1: then there is no socket at all.
    if config.register and config.health.ready.kind == "notify":
        from svcwrap.notify import NotifySocket

        try:
            notify = NotifySocket(config.health.ready.socket, config.health.notify_access)
        except OSError as err:
            log.error("cannot create notify socket", socket=config.health.ready.socket,
                      error=err.strerror)
            return 1
        environ = dict(environ, NOTIFY_SOCKET=config.health.ready.socket)
    try:
        pid = supervisor.spawn(environ)
    except SpawnError as err:
        log.error("cannot start child", error=str(err))
        return err.code
    if notify is not None:
        notify.child_pid = pid
    # Only now, with the child running, is anything heavy imported.
    if templating is None:
        observer = make_observer(config, log)
        requests = supervisor.attach(observer)
    else:
        observer, requests = templating.child_spawned(config.register)
    observer.child_started(pid, " ".join(config.supervisor.command),
                           started=supervisor.spawned_at)

    def make_discovery() -> Discovery:
        if config.register:
            from svcwrap.backend import consul_backend
            from svcwrap.lifecycle import ServiceLifecycle

            if notify is not None:
                notify.new_child(supervisor.child_pid)  # after a restart: the new child

            return ServiceLifecycle(config, log, notify, observer,
                                    make_backend=lambda: consul_backend(config, log, observer))
        if config.health.check.kind != "none":
            from svcwrap.lifecycle import LocalCheck

            return LocalCheck(config, observer)
        return Discovery()

    # With templates, a `restart` reload discovers each new child afresh
    # (the same configuration, so the same service ID).
    discovery = make_discovery() if templating is None \
        else templating.restartable(make_discovery, supervisor)
    discovery.start(pid, supervisor)
    server = templating.control if templating is not None \
        else start_control(config, log, observer, requests, supervisor.pid1)
    if config.metrics is not None:
        import threading

        threading.Thread(target=start_metrics, args=(config.metrics, log, observer),
                         name="svcwrap-metrics-start", daemon=True).start()
    try:
        return supervisor.run(discovery)
    finally:
        if server is not None:
            server.close()  # a socket left behind would be a stale one
        if templating is not None:
            templating.stop()
        observer.close()  # lines another thread queued: exit_fast would drop them


def start_control(config: Config, log: Logger, observer, requests, pid1: bool):
    """The control socket (control.py), or None: off, not PID 1 without
    --control, or it cannot be created (a warning; svcwrap goes on)."""
    from svcwrap.control import ControlServer, server_path

    path = server_path(config.control, pid1)
    if path is None:
        if pid1 and config.control != "off":
            # `svcwrap healthcheck` would fail for good: say why, once.
            log.warning("no control socket",
                        error="none of /run/svcwrap, /tmp, /dev/shm is writable; "
                              "give --control PATH on a writable volume")
        return None
    server = ControlServer(path, observer, requests, log)
    try:
        server.start()
    except OSError as err:
        log.warning("no control socket", path=path, error=err.strerror or str(err))
        return None
    return server


def start_metrics(listen: tuple[str, int], log: Logger, observer) -> None:
    """On its own thread: importing prometheus_client costs ~60 ms and 12 MB,
    which must not delay the main loop. What happened meanwhile is carried
    over (Observer.attach_metrics)."""
    try:
        from svcwrap.metrics import Metrics

        metrics = Metrics()
        host, port = metrics.serve(*listen)
    except OSError as err:
        log.error("cannot serve metrics", address=f"{listen[0]}:{listen[1]}",
                  error=err.strerror or str(err))
        return
    observer.attach_metrics(metrics)
    log.info("metrics", address=f"{host}:{port}")


def make_observer(config: Config, log: Logger):
    """The one place that hears every state change (observer.py); imports
    enum, so only after the spawn (with templates: before it, waiting)."""
    from svcwrap.observer import Observer
    from svcwrap.states import ServiceState

    check = config.health.check
    initial = ServiceState.STARTING if config.register else ServiceState.RUNNING
    if config.templates is not None:
        initial = ServiceState.WAITING_TEMPLATES
    return Observer(log, version=__version__,
                    initial=initial,
                    service_id=config.service.id if config.service else None,
                    service_name=config.service.name if config.service else None,
                    consul_address=config.consul.base_url if config.consul else None,
                    check=None if check.kind == "none" else check.text)
