"""A child for svcwrap's tests: records every signal it receives, in order.

usage: sigrecorder.py OUTFILE [--ignore-term] [--forks N]

Writes "ready" to OUTFILE.ready once its handlers are installed, then one
line per signal number received to OUTFILE. set_wakeup_fd sees every
delivery (Python-level handlers would coalesce repeats). On SIGTERM it exits
with status 7, unless --ignore-term. With --forks N it first forks N
children in its own process group that record to OUTFILE.<i>.
"""
import os
import signal
import sys


def main() -> None:
    out = sys.argv[1]
    ignore_term = "--ignore-term" in sys.argv
    forks = int(sys.argv[sys.argv.index("--forks") + 1]) if "--forks" in sys.argv else 0
    for i in range(forks):
        if os.fork() == 0:
            out = f"{out}.{i}"
            forks = 0
            break
    r, w = os.pipe()
    os.set_blocking(w, False)
    signal.set_wakeup_fd(w)
    for signo in signal.valid_signals():
        if signo in (signal.SIGKILL, signal.SIGSTOP, signal.SIGCHLD):
            continue
        try:
            signal.signal(signo, lambda *_: None)
        except (OSError, ValueError):
            pass
    fd = os.open(out, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    with open(out + ".ready", "w") as f:
        f.write(str(os.getpid()))
    while True:
        try:
            data = os.read(r, 4096)
        except InterruptedError:
            continue
        for signo in data:
            os.write(fd, f"{signo}\n".encode())
            if signo == signal.SIGTERM and not ignore_term:
                os._exit(7)


main()
