"""A child for svcwrap's tests: makes N orphans, then waits.

usage: orphans.py N GATEFILE [EXIT_CODE]

Forks N intermediates that each fork a grandchild and exit at once, so the
grandchildren are re-parented to svcwrap (PID 1 or subreaper). Each
grandchild waits until GATEFILE exists, then exits with status 9. The main
process waits for GATEFILE too, then exits with EXIT_CODE (default 0) after
the grandchildren have had their chance to become zombies.
"""
import os
import sys
import time


def wait_for(path: str) -> None:
    while not os.path.exists(path):
        time.sleep(0.01)


def main() -> None:
    n, gate = int(sys.argv[1]), sys.argv[2]
    code = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    for _ in range(n):
        pid = os.fork()
        if pid == 0:
            if os.fork() == 0:
                wait_for(gate)
                os._exit(9)
            os._exit(0)
        os.waitpid(pid, 0)
    print(f"made {n} orphans", flush=True)
    wait_for(gate)
    wait_for(gate + ".done")
    sys.exit(code)


main()
