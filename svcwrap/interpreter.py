"""What svcwrap must undo or avoid in the Python interpreter it runs on.

Two things a Python program does to itself that an init must not pass on
or suffer from:

* PEP 538 locale coercion: in the C locale CPython puts LC_CTYPE=C.UTF-8
  into its own environment at start-up, and os.environ with it. The child
  must get exactly the environment svcwrap was exec'd with, which the
  kernel keeps in /proc/self/environ (setenv() never writes there).
* PYTHON* variables (PYTHONPATH, PYTHONHOME, PYTHONINSPECT, PYTHONWARNINGS,
  ...) and a user site-packages directory are set up for the *service*; in
  svcwrap they could shadow its modules, run a sitecustomize, or turn its
  exit into an interactive prompt. bin/svcwrap's shebang asks for `-Es`,
  but pip rewrites `#!python ...` to the bare interpreter path and drops the
  flags, so both entry points re-exec themselves with -E -s when it matters.
  Not -I: its -P would take `python -m svcwrap`'s working directory off
  sys.path, which is how a source checkout runs.
"""
import os
import sys


def exec_environ() -> dict[str, str]:
    """The environment svcwrap was exec'd with, decoded as os.environ is."""
    raw = _raw_exec_environ()
    if raw is None:
        return dict(os.environ)  # no /proc: the best there is
    environ: dict[str, str] = {}
    for key, value in raw.items():
        environ.setdefault(os.fsdecode(key), os.fsdecode(value))
    return environ


def _raw_exec_environ() -> dict[bytes, bytes] | None:
    try:
        with open("/proc/self/environ", "rb") as f:
            data = f.read()
    except OSError:
        return None
    environ: dict[bytes, bytes] = {}
    for entry in data.split(b"\0"):
        key, eq, value = entry.partition(b"=")
        if eq and key:
            environ.setdefault(key, value)  # the first one wins, as in os.environ
    return environ


# Set in many images and unable to change what svcwrap does: not worth a
# second interpreter start-up. (Names with an underscore, such as the official
# python image's PYTHON_VERSION, are not the interpreter's in 3.11.)
HARMLESS = frozenset({"PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX",
                      "PYTHONHASHSEED", "PYTHONIOENCODING", "PYTHONNOUSERSITE"})


def needs_isolation() -> bool:
    if sys.flags.ignore_environment and sys.flags.no_user_site:
        return False
    if not sys.flags.ignore_environment and any(
            k.startswith("PYTHON") and k[6:7] != "_" and k not in HARMLESS for k in os.environ):
        return True
    if not sys.flags.no_user_site:
        import site  # already imported at start-up: free

        return bool(site.ENABLE_USER_SITE) and site.USER_SITE in sys.path
    return False


def isolate() -> None:
    """Re-exec this same command line with -E -s if PYTHON* variables or a
    user site could reach svcwrap; return at once otherwise (the usual case,
    which costs a few dictionary lookups)."""
    if not needs_isolation() or not sys.executable:
        return
    environ = _raw_exec_environ()
    argv = [sys.executable, "-E", "-s", *sys.orig_argv[1:]]
    if environ is None:
        os.execv(sys.executable, argv)
    os.execve(sys.executable, argv, environ)
