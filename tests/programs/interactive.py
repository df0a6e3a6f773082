"""A child for svcwrap's tests: echoes terminal input, reports ^C."""
import signal
import sys

signal.signal(signal.SIGINT, lambda *_: print("caught-int", flush=True))
print("prompt>", flush=True)
for line in sys.stdin:
    print("got:" + line.strip(), flush=True)
print("bye", flush=True)
