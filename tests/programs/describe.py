"""A child for svcwrap's tests: prints what it was started with, as JSON."""
import json
import os
import sys


def status_field(name: str) -> str:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(name + ":"):
                return line.split()[1]
    return ""


json.dump({
    "argv": sys.argv[1:],
    "env": dict(os.environ),
    "cwd": os.getcwd(),
    "fds": sorted(int(fd) for fd in os.listdir("/proc/self/fd")),
    "pid": os.getpid(),
    "pgid": os.getpgid(0),
    "blocked": status_field("SigBlk"),
    "stdin": sys.stdin.read() if not sys.stdin.isatty() else "",
}, sys.stdout)
