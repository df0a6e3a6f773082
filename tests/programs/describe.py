"""A child for svcwrap's tests: prints what it was started with, as JSON."""
import json
import os
import sys


def exec_environ() -> dict:
    """What this process was exec'd with: os.environ would add the LC_CTYPE
    that this interpreter's own locale coercion (PEP 538) sets."""
    with open("/proc/self/environ", "rb") as f:
        entries = f.read().split(b"\0")
    return dict(os.fsdecode(e).split("=", 1) for e in entries if b"=" in e)


def status_field(name: str) -> str:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(name + ":"):
                return line.split()[1]
    return ""


json.dump({
    "argv": sys.argv[1:],
    "env": exec_environ(),
    "cwd": os.getcwd(),
    "fds": sorted(int(fd) for fd in os.listdir("/proc/self/fd")),
    "pid": os.getpid(),
    "pgid": os.getpgid(0),
    "blocked": status_field("SigBlk"),
    "stdin": sys.stdin.read() if not sys.stdin.isatty() else "",
}, sys.stdout)
