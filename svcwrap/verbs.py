"""The control verbs: `svcwrap status [--json]`, `svcwrap healthcheck`,
`svcwrap maintenance on [--reason TEXT] | off`, `svcwrap reload`.

Each is one request to a running svcwrap over its control socket (see
control.py for where that is and who may use it). Exit status: 0 done (for
healthcheck: healthy), 1 not healthy / svcwrap not running / refused, 2 bad
usage. Errors are one line on stderr, `svcwrap: error: ...`.

Docker runs `svcwrap healthcheck` every few seconds, so this imports only
what control.py does (C modules).
"""
import os
import sys

from svcwrap.control import (CLIENT_TIMEOUT, RELOAD_TIMEOUT, ControlError, ask, client_paths,
                             encode_request)

USAGE = {
    "status": "svcwrap status [--json] [--control PATH]",
    "healthcheck": "svcwrap healthcheck [--control PATH]",
    "maintenance": "svcwrap maintenance on [--reason TEXT] | off [--control PATH]",
    "reload": "svcwrap reload [--control PATH]",
}
ABOUT = {
    "status": "show what svcwrap is doing (--json: as one JSON object)",
    "healthcheck": "exit 0 when registered and passing (or in maintenance), else 1",
    "maintenance": "take the instance out of Consul's ?passing (on) or bring it back (off)",
    "reload": "render the templates again",
}


class Usage(Exception):
    """Bad usage of a verb: one line, exit status 2."""


def parse(verb: str, args: list[str]) -> tuple[dict[str, str | bool], str | None]:
    """The verb's arguments -> (request fields, --control PATH or None)."""
    fields: dict[str, str | bool] = {}
    control = None
    positional: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        flag, eq, value = arg.partition("=")
        if flag in ("--control", "--reason") or (flag == "--json" and verb == "status"):
            if flag != "--json" and not eq:
                i += 1
                if i >= len(args):
                    raise Usage(f"{flag} needs a value")
                value = args[i]
            if flag == "--control":
                control = value
            elif flag == "--reason" and verb == "maintenance":
                fields["reason"] = value
            elif flag == "--json" and not eq:
                fields["json"] = True
            else:
                raise Usage(f"unknown option {arg}")
        elif arg.startswith("-"):
            raise Usage(f"unknown option {arg}")
        else:
            positional.append(arg)
        i += 1
    if verb == "maintenance":
        if positional not in (["on"], ["off"]):
            raise Usage("say on or off")
        fields["on"] = positional[0] == "on"
        if not fields["on"] and "reason" in fields:
            raise Usage("--reason goes with on")
    elif positional:
        raise Usage(f"unexpected argument {positional[0]!r}")
    return fields, control


def main(argv: list[str]) -> int:
    verb, args = argv[0], argv[1:]
    if any(a in ("-h", "--help") for a in args):
        sys.stdout.write(f"usage: {USAGE[verb]}\n\n{ABOUT[verb]}\n")
        return 0
    try:
        fields, control = parse(verb, args)
    except Usage as err:
        sys.stderr.write(f"svcwrap: error: {verb}: {err} (usage: {USAGE[verb]})\n")
        return 2
    as_json = bool(fields.pop("json", False))
    paths = client_paths(control or os.environ.get("SVCWRAP_CONTROL") or None)
    if paths == ["off"]:
        sys.stderr.write("svcwrap: error: SVCWRAP_CONTROL is off: no control socket\n")
        return 1
    try:
        answer = ask(paths, encode_request(verb, **fields),
                     timeout=RELOAD_TIMEOUT + 2.0 if verb == "reload" else CLIENT_TIMEOUT)
    except ControlError as err:
        sys.stderr.write(f"svcwrap: error: {err}\n")
        return 1
    if verb == "status":
        status = answer.get("status")
        if not isinstance(status, dict):
            sys.stderr.write("svcwrap: error: bad answer: no status\n")
            return 1
        if as_json:
            import json

            sys.stdout.write(json.dumps(status, sort_keys=True) + "\n")
        else:
            sys.stdout.write(describe(status))
        return 0
    if verb == "healthcheck":
        sys.stdout.write(f"{answer.get('why', '')}\n")
        return 0 if answer.get("healthy") is True else 1
    sys.stdout.write(f"{answer.get('message', 'done')}\n")
    return 0


def describe(s: dict) -> str:
    """A status as a few aligned lines for people."""
    rows = [("state", f"{s.get('state')} (for {_duration(s.get('state_age_s'))})")]
    if s.get("service_name") is not None:
        rows.append(("service", f"{s['service_name']} (id {s.get('service_id')})"))
    check = s.get("check_status") or "not reported yet"
    output = (s.get("check_output") or "").strip().splitlines()
    rows.append(("check", check + (f": {output[0][:120]}" if output else "")))
    if s.get("consul_address") is not None:
        reach = {True: "reachable", False: "unreachable", None: "not contacted yet"}
        rows.append(("consul", f"{s['consul_address']} ({reach.get(s.get('consul_reachable'))})"))
        age = s.get("last_heartbeat_age_s")
        rows.append(("last heartbeat", "none yet" if age is None else f"{_duration(age)} ago"))
        reason = s.get("maintenance_reason")
        rows.append(("maintenance", ("on" + (f": {reason}" if reason else ""))
                     if s.get("maintenance") else "off"))
    if s.get("child_uptime_s") is not None:
        rows.append(("child", f"pid {s.get('child_pid')}, up {_duration(s['child_uptime_s'])}"))
    else:
        rows.append(("child", f"exited ({s.get('child_exit_code')})"
                     if s.get("child_exit_code") is not None else "not running"))
    for template in s.get("templates") or []:
        if template.get("failure"):
            state = "failing: " + str(template["failure"]).strip().splitlines()[-1][:120]
        elif template.get("rendered"):
            state = "rendered"
        else:
            state = "waits for " + (", ".join(template.get("waiting_for") or []) or "a render")
        rows.append(("template", f"{template.get('name')} {state}"))
    rows.append(("version", str(s.get("version"))))
    return "".join(f"{name:<15} {value}\n" for name, value in rows)


def _duration(seconds: object) -> str:
    if not isinstance(seconds, (int, float)):
        return "?"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"
