"""What one template is, what happens when it changes, and the wait.

Plain classes with __slots__, like svcwrap/config.py: they are built while
the command line is parsed, before the child is spawned.
"""
from svcwrap.config import parse_duration

RELOAD_KINDS = ("signal", "exec", "restart", "none")


class TemplateError(ValueError):
    """A bad template setting; the message names what is wrong, not where."""


class ReloadAction:
    """signal:SIG (the signal number), exec:CMD (argv, no shell), restart or none."""

    __slots__ = ("kind", "signal", "argv", "text")

    def __init__(self, kind: str, *, signal: int = 0, argv: list[str] | None = None,
                 text: str = "") -> None:
        self.kind = kind
        self.signal = signal
        self.argv = argv or []
        self.text = text or kind

    def __repr__(self) -> str:
        return f"ReloadAction({self.text!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ReloadAction) and (self.kind, self.signal, self.argv) == \
            (other.kind, other.signal, other.argv)

    def __hash__(self) -> int:
        return hash((self.kind, self.signal, tuple(self.argv)))


def parse_reload(raw: str) -> ReloadAction:
    """`signal` alone means SIGHUP, the signal nginx, haproxy and most
    daemons re-read their configuration on."""
    if raw in ("none", "restart"):
        return ReloadAction(raw)
    if raw == "signal" or raw.startswith("signal:"):
        from svcwrap.cli import UsageError, parse_signal

        name = raw[7:] or "HUP"
        try:
            number = parse_signal(name, "signal")
        except UsageError:
            raise TemplateError(f"unknown signal {name!r}") from None
        return ReloadAction("signal", signal=number, text=f"signal:{name}")
    if raw.startswith("exec:"):
        argv = split_command(raw[5:])
        return ReloadAction("exec", argv=argv, text=raw)
    raise TemplateError(f"{raw!r} is not signal:SIG, exec:CMD, restart or none")


def split_command(text: str) -> list[str]:
    """Split like a shell would (quotes, backslashes); no shell ever runs."""
    import shlex

    try:
        argv = shlex.split(text)
    except ValueError as err:
        raise TemplateError(str(err)) from None
    if not argv:
        raise TemplateError("needs a command")
    return argv


def parse_wait(raw: str) -> tuple[float, float]:
    """MIN[:MAX] as consul-template's wait: MAX defaults to 4 x MIN."""
    low_text, colon, high_text = raw.partition(":")
    try:
        low = parse_duration(low_text)
        high = parse_duration(high_text) if colon else 4 * low
    except ValueError as err:
        raise TemplateError(f"{err} (use MIN[:MAX], e.g. 2s:10s)") from None
    if low < 0 or high < 0:
        raise TemplateError(f"{raw}: must not be negative")
    if high < low:
        raise TemplateError(f"{raw}: MAX is shorter than MIN")
    return low, high


class TemplateSpec:
    """One template: where it is read from and written to, and how.

    reload None means "the global --reload"; mode/uid/gid None mean "keep
    the existing file's, else 0644 and svcwrap's own user".
    """

    __slots__ = ("source", "destination", "reload", "validate", "mode", "uid", "gid",
                 "backup", "create_dirs", "origin")

    def __init__(self, source: str, destination: str, *, reload: ReloadAction | None = None,
                 validate: list[str] | None = None, mode: int | None = None,
                 uid: int | None = None, gid: int | None = None, backup: bool = False,
                 create_dirs: bool = False, origin: str = "") -> None:
        self.source = source
        self.destination = destination
        self.reload = reload
        self.validate = validate or []
        self.mode = mode
        self.uid = uid
        self.gid = gid
        self.backup = backup
        self.create_dirs = create_dirs
        self.origin = origin  # "--template" or "FILE:LINE", for messages

    def __repr__(self) -> str:
        return f"TemplateSpec({self.source!r} -> {self.destination!r})"


def parse_template_flag(raw: str) -> TemplateSpec:
    """--template SRC:DEST (split at the first colon)."""
    source, colon, destination = raw.partition(":")
    if not colon or not source or not destination:
        raise TemplateError(f"{raw!r} is not SRC:DEST")
    return TemplateSpec(source, destination, origin="--template")


def parse_mode(raw: str) -> int:
    """An octal string such as "0640" or "640"."""
    digits = raw[2:] if raw.startswith("0o") else raw
    if not digits or len(digits) > 4 or any(c not in "01234567" for c in digits):
        raise TemplateError(f"{raw!r} is not an octal mode such as \"0640\"")
    return int(digits, 8)


def parse_user(raw: str) -> int:
    import pwd

    if raw.isdigit():
        return int(raw)
    try:
        return pwd.getpwnam(raw).pw_uid
    except KeyError:
        raise TemplateError(f"no user named {raw!r}") from None


def parse_group(raw: str) -> int:
    import grp

    if raw.isdigit():
        return int(raw)
    try:
        return grp.getgrnam(raw).gr_gid
    except KeyError:
        raise TemplateError(f"no group named {raw!r}") from None


class TemplatesConfig:
    """Everything the templates need, as cli.parse() leaves it in Config.templates."""

    __slots__ = ("templates", "reload", "wait", "floor", "timeout")

    def __init__(self, templates: list[TemplateSpec], reload: ReloadAction,
                 wait: tuple[float, float], floor: float, timeout: float) -> None:
        self.templates = templates
        self.reload = reload      # for templates without their own
        self.wait = wait          # quiescence (MIN, MAX) seconds; (0, 0) renders at once
        self.floor = floor        # seconds between two queries of one watch
        self.timeout = timeout    # for the first render; 0 = forever

    def action_for(self, spec: TemplateSpec) -> ReloadAction:
        return spec.reload or self.reload
