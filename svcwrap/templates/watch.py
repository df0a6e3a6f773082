"""One Consul blocking query, asked again and again (reference §11).

    GET path?index=N&wait=60000ms   -> blocks until the answer's index > N

Each Watch runs on its own thread (a blocking query holds a connection for
up to `wait`). The rules it keeps:

* the index: the reported X-Consul-Index becomes the next call's ?index;
  one below 1 counts as 1, and one that went backwards (tombstones reaped,
  §16.8; a new agent) resets to 0, a plain read;
* an answer whose data did not change (wait ran out, an idempotent write,
  a KV write elsewhere under a prefix) is not passed on;
* a floor between two calls, so a flapping service cannot spin svcwrap;
* backoff with jitter while Consul is down or answers errors;
* every call bounded: the answer's size, and an overall deadline of
  wait + wait/16 (Consul's jitter) + a margin.

The client is injected: svcwrap/consul_http.py's AgentHTTP (one per watch:
it is not thread-safe, and a blocking query holds its connection), which
puts the ACL token on every call, in the X-Consul-Token header. Its
request(method, path, *, params, body, deadline, max_body) returns an
object with .status, .headers, .body and raises ConsulUnavailable; close()
ends the connection when the watch stops.
"""
from __future__ import annotations

import random
import threading
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable

from svcwrap.templates.queries import Query

BLOCK_WAIT = 60.0        # consul-template's block_query_wait default
CALL_MARGIN = 5.0        # beyond wait + wait/16, for the network and a slow agent
MAX_ANSWER = 8 << 20     # bytes; a catalog of thousands of instances fits
BACKOFF_FIRST = 0.25
BACKOFF_MAX = 10.0


def next_index(previous: int, reported: int) -> int:
    """The index to block on next, by §11's client rules."""
    if reported < 1:
        reported = 1
    if reported < previous:
        return 0
    return reported


def header(headers, name: str) -> str:
    """A header by name, whatever the case; headers may be a dict or a Message."""
    value = headers.get(name) if hasattr(headers, "get") else None
    if value is not None:
        return value
    lowered = name.lower()
    for key, value in getattr(headers, "items", lambda: [])():
        if key.lower() == lowered:
            return value
    return ""


class Watch:
    """Calls on_answer(query, data) for each answer whose data changed,
    on_error(query, text) for each failed call (the caller logs once), and
    on_recovered(query) for the first good call after failed ones."""

    def __init__(self, query: Query, client, on_answer: Callable[[Query, object], None],
                 on_error: Callable[[Query, str], None], *, floor: float,
                 wait: float = BLOCK_WAIT, clock: Callable[[], float] = time.monotonic,
                 rng: Callable[[], float] = random.random,
                 on_recovered: Callable[[Query], None] = lambda query: None) -> None:
        self.query = query
        self.client = client
        self.on_answer = on_answer
        self.on_error = on_error
        self.on_recovered = on_recovered
        self.floor = floor
        self.wait = wait
        self.clock = clock
        self.rng = rng
        self.index = 0
        self.failures = 0
        self.data: object = None
        self.answered = False
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, daemon=True,
                                       name=f"svcwrap-watch {self.query.describe()}")
        self.thread.start()

    def stop(self) -> None:
        """Takes effect after the call in flight (whose answer is dropped)."""
        self.stopping.set()

    def _run(self) -> None:
        delay = 0.0
        try:
            while not self.stopping.wait(delay):
                delay = self.step()
        finally:
            self.client.close()

    def step(self) -> float:
        """One call; returns how long to wait before the next."""
        started = self.clock()
        params = dict(self.query.params)
        blocking = self.index > 0
        if blocking:
            params["index"] = str(self.index)
            params["wait"] = f"{int(self.wait * 1000)}ms"
        deadline = (self.wait + self.wait / 16 if blocking else 0.0) + CALL_MARGIN
        try:
            response = self.client.request("GET", self.query.path, params=params, body=None,
                                      deadline=deadline, max_body=MAX_ANSWER)
            data = self.query.decode(response.status, response.body)
            reported = int(header(response.headers, "X-Consul-Index") or 0)
        except Exception as err:  # down, slow, wrong or hostile: back off, never stop
            if self.stopping.is_set():
                return 0.0
            self.failures += 1
            self.on_error(self.query, str(err) or type(err).__name__)
            return self.backoff()
        if self.failures:
            self.failures = 0
            self.on_recovered(self.query)
        self.index = next_index(self.index, reported)
        if not self.stopping.is_set() and (not self.answered or data != self.data):
            self.answered = True
            self.data = data
            self.on_answer(self.query, data)
        return max(0.0, self.floor - (self.clock() - started))

    def backoff(self) -> float:
        """Exponential, capped, with jitter between half and all of it."""
        step = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** min(self.failures - 1, 16))
        return step * (0.5 + 0.5 * self.rng())
