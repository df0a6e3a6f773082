"""A steady-rate load generator for the discovery example (standard library only).

    python3 examples/discovery/loadgen.py [--url http://127.0.0.1:18080/] [--rate 200]
                                          [--duration 10] [--count N] [--method POST]

Request i is due at start + i/rate (an open loop: a slow answer does not slow the
schedule, up to --workers requests in flight). Each request has a connection of its
own (`Connection: close`), so a keep-alive connection that nginx closes during a reload
cannot be mistaken for a failure. Bounded in count and in time. For every request it
records when it was due, sent and answered, the status, and the instance that served it
(the app's `instance=` word); a failure is anything but a 200.

POST by default: the app's INCR is not idempotent, and nginx retries a POST on another
instance only when the first one refused the connection, never once the request reached
an app. A request lost inside a stopping app is therefore counted, not hidden.
"""
from __future__ import annotations

import argparse
import http.client
import sys
import threading
import time
from typing import Dict, List, Optional

MAX_BODY = 4096


class Result:
    __slots__ = ("index", "due", "sent", "done", "wall", "status", "instance", "body", "error")

    def __init__(self, index: int, due: float) -> None:
        self.index = index
        self.due = due          # time.monotonic() the schedule gave it
        self.sent = 0.0         # monotonic, when the connection was opened
        self.done = 0.0         # monotonic, when the answer (or the error) came
        self.wall = 0.0         # time.time() at `done`, to compare with container logs
        self.status = 0         # HTTP status; 0 when no answer came
        self.instance = ""      # who served it (from the body)
        self.body = ""          # the answer's first line, at most 200 characters
        self.error = ""         # what went wrong, for failures

    @property
    def ok(self) -> bool:
        return self.status == 200

    @property
    def latency(self) -> float:
        return self.done - self.sent

    def describe(self) -> str:
        return (f"#{self.index} status={self.status} instance={self.instance or '-'} "
                f"latency={self.latency * 1000:.1f}ms {self.error}").strip()


class LoadGenerator:
    """start(), then stop() (or let count/duration end it), then wait()."""

    def __init__(self, host: str, port: int, rate: float = 200.0, count: Optional[int] = None,
                 duration: Optional[float] = None, method: str = "POST", path: str = "/",
                 timeout: float = 5.0, workers: int = 32) -> None:
        if count is None and duration is None:
            raise ValueError("a load needs a count or a duration")
        self.host, self.port = host, port
        self.rate = rate
        self.count = count
        self.duration = duration
        self.method, self.path = method, path
        self.timeout = timeout
        self.results: List[Result] = []   # appended as answers come (list.append is atomic)
        self._lock = threading.Lock()
        self._next = 0
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._worker, name=f"load-{i}", daemon=True)
                         for i in range(workers)]
        self.started = 0.0

    def start(self) -> "LoadGenerator":
        self.started = time.monotonic()
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        """No new request after now; those in flight finish."""
        self._stop.set()

    def wait(self, timeout: Optional[float] = None) -> List[Result]:
        deadline = None if timeout is None else time.monotonic() + timeout
        for t in self._threads:
            t.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
            if t.is_alive():
                raise TimeoutError(f"the load did not finish within {timeout}s")
        return sorted(self.results, key=lambda r: r.index)

    def run(self) -> List[Result]:
        return self.start().wait()

    # -- views used while the load runs -------------------------------------------------
    def first_served_by(self, instance: str) -> Optional[Result]:
        hits = [r for r in list(self.results) if r.ok and r.instance == instance]
        return min(hits, key=lambda r: r.done) if hits else None

    def answered(self) -> int:
        return len(self.results)

    # -- the schedule ----------------------------------------------------------------------
    def _claim(self) -> Optional[Result]:
        with self._lock:
            index = self._next
            due = self.started + index / self.rate
            if self._stop.is_set() or (self.count is not None and index >= self.count) \
                    or (self.duration is not None and due >= self.started + self.duration):
                return None
            self._next += 1
        return Result(index, due)

    def _worker(self) -> None:
        while True:
            result = self._claim()
            if result is None:
                return
            delay = result.due - time.monotonic()
            if delay > 0 and self._stop.wait(delay):
                return  # stopped before it was due: never sent, not counted
            self._send(result)
            self.results.append(result)

    def _send(self, result: Result) -> None:
        result.sent = time.monotonic()
        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            conn.request(self.method, self.path, headers={"Connection": "close",
                                                          "Content-Length": "0"})
            response = conn.getresponse()
            body = response.read(MAX_BODY).decode("utf-8", errors="replace")
            result.status = response.status
            result.instance = response.getheader("X-Instance") or _word(body, "instance")
            result.body = body.partition("\n")[0][:200]
            if response.status != 200:
                result.error = " ".join(body.split())[:200]
        except (OSError, http.client.HTTPException) as err:
            result.error = f"{type(err).__name__}: {err}"
        finally:
            conn.close()
            result.done = time.monotonic()
            result.wall = time.time()


def _word(body: str, key: str) -> str:
    for word in body.split():
        if word.startswith(key + "="):
            return word[len(key) + 1:]
    return ""


# ---- the report --------------------------------------------------------------------------
def percentile(values: List[float], p: float) -> float:
    """The nearest-rank percentile (p in 0..100); 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * p // 100))  # ceil
    return ordered[int(rank) - 1]


def summary(results: List[Result]) -> Dict[str, object]:
    latencies = [r.latency for r in results if r.ok]
    by_instance: Dict[str, int] = {}
    for r in results:
        if r.ok:
            by_instance[r.instance] = by_instance.get(r.instance, 0) + 1
    return {
        "sent": len(results),
        "failed": sum(1 for r in results if not r.ok),
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "by_instance": dict(sorted(by_instance.items())),
    }


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="loadgen.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--url", default="http://127.0.0.1:18080/",
                   help="http://HOST:PORT/PATH of the lb (default %(default)s)")
    p.add_argument("--rate", type=float, default=200.0, help="requests per second")
    p.add_argument("--duration", type=float, default=10.0, help="seconds (default %(default)s)")
    p.add_argument("--count", type=int, default=None, help="at most this many requests")
    p.add_argument("--method", default="POST")
    p.add_argument("--workers", type=int, default=32, help="requests in flight at most")
    args = p.parse_args(argv)
    from urllib.parse import urlsplit

    url = urlsplit(args.url)
    if url.scheme != "http" or not url.hostname:
        p.error(f"--url: {args.url!r} is not http://HOST:PORT/PATH")
    load = LoadGenerator(url.hostname, url.port or 80, rate=args.rate, count=args.count,
                         duration=args.duration, method=args.method, path=url.path or "/",
                         workers=args.workers)
    results = load.run()
    s = summary(results)
    print(f"sent {s['sent']}  failed {s['failed']}  p50 {s['p50_ms']:.1f} ms  "
          f"p99 {s['p99_ms']:.1f} ms")
    for instance, n in s["by_instance"].items():  # type: ignore[union-attr]
        print(f"  {instance}: {n}")
    for r in [r for r in results if not r.ok][:10]:
        print("  failed:", r.describe())
    return 1 if s["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
