"""--config FILE: svcwrap's options and [[template]] tables in TOML.

    name = "lb"                      # any long option without its "--"
    tag = ["edge", "v2"]             # repeatable options take an array (or one string)
    no-register = false              # switches take a boolean
    template-wait = "2s:10s"

    [[template]]
    source = "/etc/svcwrap/upstreams.conf.j2"
    destination = "/etc/nginx/conf.d/upstreams.conf"
    validate = "nginx -t"            # split like a shell would; no shell runs
    reload = "signal:HUP"

load() turns the file into the option values the command line would have
given (cli.py layers them: command line > file > SVCWRAP_*) and a list of
TemplateSpec. Every error is one line, FILE:LINE: KEY: what is wrong.
tomllib reports no positions for keys, so key_lines() finds them itself.
"""
from __future__ import annotations

from svcwrap.templates.spec import (
    TemplateError, TemplateSpec, parse_group, parse_mode, parse_reload, parse_user,
    split_command,
)

TEMPLATE_KEYS = ("source", "destination", "reload", "validate", "mode", "user", "group",
                 "backup", "create-dirs")
NOT_IN_FILE = ("--config", "--help", "--version")
MAX_FILE_SIZE = 1 << 20


class ConfigFileError(Exception):
    """FILE:LINE: KEY: what is wrong (cli.py prints it as svcwrap: error: ...)."""


class ConfigFile:
    __slots__ = ("path", "options", "origins", "templates")

    def __init__(self, path: str) -> None:
        self.path = path
        self.options: dict[str, list[str]] = {}   # "--ttl" -> ["15s"], as on the command line
        self.origins: dict[str, str] = {}         # "--ttl" -> "FILE:LINE: ttl", for messages
        self.templates: list[TemplateSpec] = []


def load(path: str, specs: dict[str, tuple[str | None, bool]]) -> ConfigFile:
    """specs: cli's flag -> (metavar or None for a switch, repeatable)."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        raise ConfigFileError(f"{path}: --config needs Python 3.11 or later (tomllib)") from None

    from svcwrap.templates.writer import read_bounded

    try:
        raw = read_bounded(path, MAX_FILE_SIZE)[0]
    except OSError as err:
        raise ConfigFileError(f"{path}: cannot read: {err.strerror}") from None
    try:
        text = raw.decode("utf-8")
        data = tomllib.loads(text)
    except UnicodeDecodeError as err:
        line = raw[:err.start].count(b"\n") + 1
        raise ConfigFileError(f"{path}:{line}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigFileError(f"{path}:{_toml_error_line(str(err))}: invalid TOML: "
                              f"{str(err).split(' (at ')[0]}") from None
    lines = key_lines(text)
    result = ConfigFile(path)

    def where(key: str, table: str = "", index: int = 0) -> str:
        # An inline table has no lines of its own: fall back to its key's.
        line = lines.get((table, index, key)) or lines.get((table, index, "")) \
            or lines.get(("", 0, table)) or 1
        return f"{path}:{line}: {key}"

    for key, value in data.items():
        if key == "template" and isinstance(value, list) and value \
                and all(isinstance(v, dict) for v in value):
            for index, table in enumerate(value):
                result.templates.append(_template(table, index, where))
            continue
        if key == "template" and isinstance(value, dict):
            raise ConfigFileError(f"{where(key, key)}: write [[template]] (an array of "
                                  "tables), not [template]")
        flag = "--" + key
        if flag not in specs or flag in NOT_IN_FILE:
            what = "cannot be set in a config file" if flag in NOT_IN_FILE else \
                "unknown option (see svcwrap --help)"
            raise ConfigFileError(f"{where(key)}: {what}")
        metavar, repeatable = specs[flag]
        result.options[flag] = _option_values(value, metavar, repeatable, where(key))
        result.origins[flag] = where(key)
    return result


def _option_values(value: object, metavar: str | None, repeatable: bool,
                   where: str) -> list[str]:
    if metavar is None:
        if not isinstance(value, bool):
            raise ConfigFileError(f"{where}: must be true or false")
        return ["true" if value else "false"]
    items = value if repeatable and isinstance(value, list) else [value]
    out = []
    for item in items:
        if isinstance(item, str):
            out.append(item)
        elif isinstance(item, int) and not isinstance(item, bool):
            out.append(str(item))
        else:
            kind = "a string or an array of strings" if repeatable else "a string"
            raise ConfigFileError(f"{where}: must be {kind} ({metavar}), "
                                  f"not {_toml_type(item)}")
    return out


def _template(table: dict, index: int, where) -> TemplateSpec:
    def at(key: str) -> str:
        return where(key, "template", index)

    for key in table:
        if key not in TEMPLATE_KEYS:
            raise ConfigFileError(f"{at(key)}: unknown template key (use "
                                  f"{', '.join(TEMPLATE_KEYS)})")

    def text(key: str, required: bool = False) -> str | None:
        if key not in table:
            if required:
                raise ConfigFileError(f"{where('[[template]]', 'template', index)}: "
                                      f"{key} is missing")
            return None
        value = table[key]
        if not isinstance(value, str) or (required and not value):
            raise ConfigFileError(f"{at(key)}: must be a non-empty string, not "
                                  f"{_toml_type(value)}")
        return value

    def flag(key: str) -> bool:
        value = table.get(key, False)
        if not isinstance(value, bool):
            raise ConfigFileError(f"{at(key)}: must be true or false")
        return value

    source = text("source", required=True)
    destination = text("destination", required=True)
    assert source is not None and destination is not None
    def parsed(key: str, parse):
        raw = table[key] if key == "validate" else text(key)
        if raw is None:
            return None
        try:
            return parse(raw)
        except TemplateError as err:
            raise ConfigFileError(f"{at(key)}: {err}") from None

    reload = parsed("reload", parse_reload)
    validate = parsed("validate", lambda raw: _validate(raw, at("validate"))) \
        if "validate" in table else []
    mode = parsed("mode", parse_mode)
    uid = _id(table, "user", parse_user, at)
    gid = _id(table, "group", parse_group, at)
    return TemplateSpec(source, destination, reload=reload, validate=validate, mode=mode,
                        uid=uid, gid=gid, backup=flag("backup"),
                        create_dirs=flag("create-dirs"),
                        origin=at("[[template]]").rsplit(": ", 1)[0])


def _validate(value: object, where: str) -> list[str]:
    if isinstance(value, str):
        return split_command(value)
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return list(value)
    raise ConfigFileError(f"{where}: must be a command string or a non-empty array of "
                          "strings")


def _id(table: dict, key: str, parse, at) -> int | None:
    if key not in table:
        return None
    value = table[key]
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ConfigFileError(f"{at(key)}: must be a name or a number")
    try:
        return parse(str(value))
    except TemplateError as err:
        raise ConfigFileError(f"{at(key)}: {err}") from None


def _toml_type(value: object) -> str:
    return {bool: "a boolean", int: "an integer", float: "a float", str: "a string",
            list: "an array", dict: "a table"}.get(type(value), type(value).__name__)


def _toml_error_line(message: str) -> int:
    # tomllib: "Expected '=' after a key in a key/value pair (at line 3, column 6)"
    marker = "(at line "
    if marker in message:
        digits = message.split(marker, 1)[1].split(",")[0].split(")")[0]
        if digits.isdigit():
            return int(digits)
    return 1


# -- where each key is ---------------------------------------------------------
def key_lines(text: str) -> dict[tuple[str, int, str], int]:
    """(table, index, key) -> line number, for the keys written at the start
    of a line outside multi-line values: ("", 0, "ttl") for a top-level key,
    ("template", 2, "mode") for one in the third [[template]], and
    ("template", 2, "") for that table's header. Only called on text that
    tomllib has already accepted, so the scan can be simple."""
    found: dict[tuple[str, int, str], int] = {}
    counts: dict[str, int] = {}
    table, index = "", 0
    state = _ScanState()
    for number, line in enumerate(text.splitlines(), start=1):
        at_start = state.depth == 0 and not state.multiline
        stripped = line.strip()
        if at_start and stripped.startswith("["):
            double = stripped.startswith("[[")
            name = stripped.strip("[] \t").split("]")[0].strip().strip('"\'')
            if double:
                index = counts.get(name, -1) + 1
                counts[name] = index
            else:
                index = 0
            table = name
            found.setdefault((table, index, ""), number)
            continue
        if at_start and "=" in stripped and not stripped.startswith("#"):
            key = stripped.split("=", 1)[0].strip().strip('"\'')
            found.setdefault((table, index, key), number)
            found.setdefault((table, index, key.split(".")[0].strip()), number)  # a.b = 1
            state.scan(line.split("=", 1)[1])
        else:
            state.scan(line)
    return found


class _ScanState:
    """Just enough TOML lexing to know whether a line begins a new key:
    open brackets/braces and multi-line strings carry over lines."""

    def __init__(self) -> None:
        self.depth = 0
        self.multiline = ""  # the open multi-line string's delimiter

    def scan(self, line: str) -> None:
        i = 0
        while i < len(line):
            if self.multiline:
                end = line.find(self.multiline, i)
                if end < 0:
                    return
                i = end + 3
                self.multiline = ""
                continue
            c = line[i]
            if c == "#":
                return
            if line.startswith(('"""', "'''"), i):
                self.multiline = line[i:i + 3]
                i += 3
                continue
            if c in "\"'":
                i = _string_end(line, i)
                continue
            if c in "[{":
                self.depth += 1
            elif c in "]}":
                self.depth -= 1
            i += 1


def _string_end(line: str, start: int) -> int:
    quote = line[start]
    i = start + 1
    while i < len(line):
        if quote == '"' and line[i] == "\\":
            i += 2
            continue
        if line[i] == quote:
            return i + 1
        i += 1
    return i
