"""The template manager: watches in, files out, one reload decision per burst.

    watch threads ---answer--->  manager thread (one)          supervisor side
    (one per query)              quiescence window            --------------
                                 render -> write -> validate  on_rendered(changed, failures)
                                 first_render_done (event)    waits on it before spawning
    svcwrap reload ------------> reload_now()                 waiting(), failures() for status
                                 on_pass() after each pass    (wakes the main thread)

The manager never signals or restarts the child itself: on_rendered tells
the supervisor side which templates changed (their reload actions are its
to run) and which ones currently fail validation (its Consul check goes to
warning). on_rendered is not called for the first render, which the child
reads when it starts; and is called at most once per pass, so changes to
several templates within one quiescence window make one reload decision.
on_rendered runs on the manager's thread: it must return quickly.
"""
from __future__ import annotations

import threading
import time

from svcwrap.templates import writer
from svcwrap.templates.quiescence import Quiescence
from svcwrap.templates.render import Renderer, RenderError
from svcwrap.templates.spec import TemplateError, TemplateSpec
from svcwrap.templates.watch import BLOCK_WAIT, Watch

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable, Mapping

    from svcwrap.logs import Logger
    from svcwrap.templates.actions import Runner
    from svcwrap.templates.queries import Query

    OnRendered = Callable[[list[TemplateSpec], dict[str, str]], None]

MAX_SOURCE = 1 << 20  # bytes of a template source


class _Template:
    """One template's state, touched only by the manager thread (and read,
    without tearing, by waiting()/failures())."""

    __slots__ = ("spec", "compiled", "needed", "missing", "rendered", "failure")

    def __init__(self, spec: TemplateSpec) -> None:
        self.spec = spec
        self.compiled = None
        self.needed: list[Query] = []
        self.missing: list[Query] = []
        self.rendered = False            # written (or found identical) at least once
        self.failure: str | None = None  # the current render/write/validate failure


class _Request:
    __slots__ = ("done", "changed")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.changed: list[TemplateSpec] = []


class TemplateManager:
    def __init__(self, specs: list[TemplateSpec], *, connect: Callable[[], object],
                 environ: Mapping[str, str],
                 log: Logger, runner: Runner, on_rendered: OnRendered,
                 wait: tuple[float, float] = (0.0, 0.0), floor: float = 0.25,
                 block_wait: float = BLOCK_WAIT, clock: Callable[[], float] = time.monotonic,
                 watch_factory: Callable[..., Watch] | None = None,
                 on_pass: Callable[[], None] = lambda: None,
                 redact: Callable[[str], str] = lambda text: text) -> None:
        self.templates = [_Template(spec) for spec in specs]
        self.redact = redact    # the agent's texts may echo the token (ConsulConfig.redact)
        self.connect = connect  # a new Consul client (consul_http.AgentHTTP) per watch
        self.log = log
        self.runner = runner
        self.on_rendered = on_rendered
        self.on_pass = on_pass  # after every pass (the supervisor waits for the first)
        self.floor = floor
        self.block_wait = block_wait
        self.clock = clock
        self.watch_factory = watch_factory or self._start_watch
        self.renderer = Renderer(environ)
        self.first_render_done = threading.Event()
        self._cond = threading.Condition()
        self._quiet = Quiescence(*wait)
        self._answers: dict[Query, object] = {}
        self._dirty: set[Query] = set()
        self._everything = True   # the next pass renders every template
        self._requests: list[_Request] = []
        self._watches: dict[Query, Watch | None] = {}
        self._stopping = False
        self._failing: set[Query] = set()   # queries whose latest call failed
        self._thread: threading.Thread | None = None

    # -- the supervisor side's interface ---------------------------------------
    def start(self) -> None:
        """Load the sources, then render and watch on a thread of its own."""
        self.load_sources()
        self._thread = threading.Thread(target=self._run, name="svcwrap-templates",
                                        daemon=True)
        self._thread.start()

    def load_sources(self) -> None:
        """Read and compile every source: TemplateError if one is unreadable
        or not a valid template (at start; `svcwrap reload` keeps the old one)."""
        for t in self.templates:
            t.compiled = self._compile(t.spec)

    def stop(self, wait: float = 0.0) -> bool:
        """No render and no log line after this; with `wait`, also wait up to
        that long for a render in progress to end (a watch's call in flight
        ends on its own, its answer dropped). True if no render can still be
        under way."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
            watches = [w for w in self._watches.values() if w is not None]
        for watch in watches:
            watch.stop()
        thread = self._thread
        if thread is None or thread is threading.current_thread():
            return True
        if wait > 0:
            thread.join(wait)
        return not thread.is_alive()

    def waiting(self) -> dict[str, list[str]]:
        """Destination -> the queries it still waits for, for templates not
        yet rendered once (`svcwrap status`, --template-timeout's message)."""
        return {t.spec.destination: [q.describe() for q in t.missing]
                for t in self.templates if not t.rendered}

    def waiting_text(self) -> str:
        """One line for --template-timeout: each destination and what it waits for."""
        return "; ".join(f"{dest} waits for {', '.join(queries) or 'a valid render'}"
                         for dest, queries in self.waiting().items())

    def failures(self) -> dict[str, str]:
        """Destination -> why its latest version is not in place."""
        return {t.spec.destination: t.failure for t in self.templates if t.failure}

    def reload_now(self, timeout: float | None = None) -> list[TemplateSpec] | None:
        """`svcwrap reload`: re-read every source and re-render everything
        now. A change still waiting in the quiescence window lands with it
        (and no second pass follows for it). Returns the templates that
        changed, or None if the pass did not finish within timeout."""
        request = self.request_reload()
        return request.changed if request.done.wait(timeout) else None

    def request_reload(self) -> _Request:
        """reload_now() without the waiting: .done is set once the pass ran."""
        request = _Request()
        with self._cond:
            self._requests.append(request)
            self._cond.notify_all()
        return request

    # -- watches (called on their threads) ----------------------------------
    def answered(self, query: Query, data: object) -> None:
        with self._cond:
            if query not in self._watches:
                return  # no template needs it any more
            self._answers[query] = data
            self._dirty.add(query)
            if self.first_render_done.is_set():
                self._quiet.changed(self.clock())
            self._cond.notify_all()

    def failed(self, query: Query, error: str) -> None:
        """Logged once per outage, however many watches and retries it takes."""
        with self._cond:
            if self._stopping:
                return
            if not self._failing:
                self.log.warning("consul unavailable, retrying", query=query.describe(),
                                 error=self.redact(error)[:300])
            self._failing.add(query)

    def recovered(self, query: Query) -> None:
        with self._cond:
            self._failing.discard(query)
            if not self._failing and not self._stopping:
                self.log.info("consul available again")

    def make_watch(self, query: Query) -> Watch:
        """A watch reporting to this manager, not yet started."""
        return Watch(query, self.connect(), self.answered, self.failed, floor=self.floor,
                     wait=self.block_wait, clock=self.clock, on_recovered=self.recovered)

    def _start_watch(self, query: Query) -> Watch:
        watch = self.make_watch(query)
        watch.start()
        return watch

    def _need(self, query: Query) -> None:
        """A render met this query: watch it (once, however many templates ask)."""
        with self._cond:
            if query in self._watches or self._stopping:
                return
            self._watches[query] = None  # reserved: its first answer may come at once
        watch = self.watch_factory(query)
        with self._cond:
            self._watches[query] = watch
            if self._stopping:
                watch.stop()

    def _prune_watches(self) -> None:
        """Stop the watches no template asked for in its latest render."""
        needed = {q for t in self.templates for q in t.needed}
        with self._cond:
            unused = [q for q in self._watches if q not in needed]
            for query in unused:
                watch = self._watches.pop(query)
                self._answers.pop(query, None)
                self._failing.discard(query)
                if watch is not None:
                    watch.stop()

    # -- the manager thread ----------------------------------------------
    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopping and not self._is_due(self.clock()):
                    due_at = self._quiet.due_at if self._dirty else None
                    self._cond.wait(None if due_at is None else max(0.0, due_at - self.clock()))
                if self._stopping:
                    return
            try:
                self.run_once()
            except Exception as err:  # a bug here must not end the watching for good
                self.log.error("templates failed", error=f"{type(err).__name__}: {err}")
                with self._cond:
                    self._cond.wait(1.0)

    def _is_due(self, now: float) -> bool:
        if self._requests or self._everything:
            return True
        if not self._dirty:
            return False
        return not self.first_render_done.is_set() or self._quiet.due(now)

    def run_once(self) -> bool:
        """One render pass if one is due; False if nothing was due. Called by
        the manager thread (tests call it directly, with their own clock)."""
        with self._cond:
            if not self._is_due(self.clock()):
                return False
            requests, self._requests = self._requests, []
            dirty, self._dirty = self._dirty, set()
            everything = self._everything or bool(requests)
            self._everything = False
            self._quiet.clear()
            answers = dict(self._answers)
        changed: list[TemplateSpec] = []
        try:
            changed = self._pass(dirty, answers, everything, reread=bool(requests))
        finally:
            for request in requests:  # never leave `svcwrap reload` hanging
                request.changed = changed
                request.done.set()
            self.on_pass()
        return True

    def _pass(self, dirty: set[Query], answers: dict[Query, object], everything: bool,
              reread: bool) -> list[TemplateSpec]:
        initial = not self.first_render_done.is_set()
        failures_before = self.failures()
        changed: list[TemplateSpec] = []
        for t in self.templates:
            if everything or not t.rendered or any(q in dirty for q in t.needed):
                if self._render(t, answers, reread):
                    changed.append(t.spec)
        self._prune_watches()
        if initial:
            if all(t.rendered for t in self.templates):
                self.log.info("templates rendered", count=len(self.templates))
                with self._cond:
                    self.first_render_done.set()
                    if self._dirty:  # answers that came in during this pass
                        self._quiet.changed(self.clock())
            return []
        failures = self.failures()
        if changed or failures != failures_before:
            try:
                self.on_rendered(changed, failures)
            except Exception as err:  # the supervisor side's bug must not stop the renders
                self.log.error("template reload failed", error=f"{type(err).__name__}: {err}")
        return changed

    def _render(self, t: _Template, answers: dict[Query, object], reread: bool) -> bool:
        """Render one template; True if its file now holds new bytes."""
        spec = t.spec
        try:
            if reread:
                t.compiled = self._compile(spec)
            rendered = self.renderer.render(t.compiled, answers, self._need)
        except (RenderError, TemplateError) as err:
            self._fail(t, str(err))
            return False
        t.needed, t.missing = rendered.needed, rendered.missing
        if rendered.text is None:
            return False
        result = writer.write(spec, rendered.text.encode("utf-8"), self.runner)
        if result.failure is not None:
            self._fail(t, result.failure)
            return False
        if t.failure is not None:
            self.log.info("template ok again", destination=spec.destination)
            t.failure = None
        first = not t.rendered
        t.rendered = True
        if result.changed:
            self.log.info("template rendered", destination=spec.destination)
        return result.changed and not first

    def _fail(self, t: _Template, why: str) -> None:
        if why != t.failure:  # logged once, not at every pass
            self.log.warning("template failed", destination=t.spec.destination, error=why)
        t.failure = why

    def _compile(self, spec: TemplateSpec):
        try:
            raw = writer.read_bounded(spec.source, MAX_SOURCE)[0]
        except OSError as err:
            raise TemplateError(f"{spec.source}: cannot read: {err.strerror}") from None
        try:
            return self.renderer.compile(raw.decode("utf-8"), spec.source)
        except UnicodeDecodeError:
            raise TemplateError(f"{spec.source}: not UTF-8 text") from None
        except RenderError as err:
            raise TemplateError(str(err)) from None
