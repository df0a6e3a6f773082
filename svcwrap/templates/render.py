"""Rendering: a sandboxed Jinja2 environment and the functions templates call.

    {% for s in service("web") %}server {{ s.address }}:{{ s.port }};{% endfor %}

Every function except env() is a watched Consul query. A render finds out
which queries it needs by calling them: one with no answer yet is recorded
as missing and returns an empty stand-in so that the rest of the template
still runs and names its other queries (consul-template's multi-phase
execution). A render with anything missing is never written; the template
is "waiting" on those queries. key(path) also waits while the key does not
exist; key_or_default() does not (but it does wait for Consul's first answer,
so a template is never written with a default Consul would have overridden).
"""
from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable, Mapping

from svcwrap.templates.queries import (
    ABSENT, Query, ls_items, prefix_query, tree_items,
)

NO_ANSWER = object()
MAX_OUTPUT = 64 << 20  # characters of one rendered file


class RenderError(Exception):
    """The template itself is wrong (syntax, an undefined name, a type error)."""


class Rendered:
    __slots__ = ("text", "needed", "missing")

    def __init__(self, text: str | None, needed: list[Query], missing: list[Query]) -> None:
        self.text = text          # None while anything is missing
        self.needed = needed      # every query the template called, in call order
        self.missing = missing    # those it is waiting for


class Renderer:
    """One sandboxed environment; undefined names are errors (StrictUndefined)."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        from jinja2 import StrictUndefined
        from jinja2.sandbox import SandboxedEnvironment

        self.environ = environ
        self.max_output = MAX_OUTPUT
        # autoescape off: these are configuration files, not HTML.
        # keep_trailing_newline: a file ends the way its template ends.
        self.env = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False,
                                        keep_trailing_newline=True)

    def compile(self, text: str, name: str):
        from jinja2 import TemplateSyntaxError

        try:
            return self.env.from_string(text)
        except TemplateSyntaxError as err:
            raise RenderError(f"{name}:{err.lineno}: {err.message}") from None

    def render(self, template, answers: Mapping[Query, object],
               need: Callable[[Query], None] = lambda q: None) -> Rendered:
        """answers: query -> decoded data; need(query) is called the first
        time this render meets each query (the manager starts its watch)."""
        from jinja2 import TemplateError

        lookup = _Lookup(answers, need)
        functions = {
            "service": lookup.service, "services": lookup.services, "key": lookup.key,
            "key_or_default": lookup.key_or_default, "tree": lookup.tree, "ls": lookup.ls,
            "env": lambda name: self.environ.get(str(name), ""),
        }
        try:
            text = _bounded_render(template, functions, self.max_output)
        except (TemplateError, TypeError, ValueError, ArithmeticError, LookupError,
                AttributeError) as err:
            if lookup.missing:
                # Expected with stand-ins (e.g. an index into an empty list):
                # the template is waiting, not wrong.
                return Rendered(None, lookup.needed, lookup.missing)
            raise RenderError(f"{type(err).__name__}: {err}") from None
        if lookup.missing:
            return Rendered(None, lookup.needed, lookup.missing)
        return Rendered(text, lookup.needed, [])


def _bounded_render(template, functions: dict, limit: int) -> str:
    """Render, refusing output beyond limit characters (nested loops can explode)."""
    chunks, size = [], 0
    for chunk in template.generate(functions):
        size += len(chunk)
        if size > limit:
            raise ValueError(f"the output is larger than {limit} characters")
        chunks.append(chunk)
    return "".join(chunks)


def _named(what: str, text: object) -> str:
    name = str(text).lstrip("/") if what != "service" else str(text)
    if not name:
        raise ValueError(f"{what}(): the {'name' if what == 'service' else 'path'} is empty")
    return name


class _Lookup:
    def __init__(self, answers: Mapping[Query, object], need: Callable[[Query], None]) -> None:
        self.answers = answers
        self.need = need
        self.needed: list[Query] = []
        self.missing: list[Query] = []

    def _answer(self, query: Query):
        if query not in self.needed:
            self.needed.append(query)
            self.need(query)
        data = self.answers.get(query, NO_ANSWER)
        if data is NO_ANSWER and query not in self.missing:
            self.missing.append(query)
        return data

    def service(self, name: str, tag: str | None = None, passing: bool = True) -> list:
        data = self._answer(Query("service", _named("service", name),
                                  str(tag) if tag else None, bool(passing)))
        return [] if data is NO_ANSWER else list(data)

    def services(self) -> list:
        data = self._answer(Query("services"))
        return [] if data is NO_ANSWER else list(data)

    def key(self, path: str) -> str:
        query = Query("key", _named("key", path))
        data = self._answer(query)
        if data is ABSENT:
            if query not in self.missing:
                self.missing.append(query)  # waits until the key exists
            return ""
        return "" if data is NO_ANSWER else data

    def key_or_default(self, path: str, default: str = "") -> str:
        data = self._answer(Query("key", _named("key_or_default", path)))
        return default if data is ABSENT or data is NO_ANSWER else data

    def tree(self, prefix: str) -> list:
        data = self._answer(prefix_query(str(prefix)))
        return [] if data is NO_ANSWER else tree_items(data)

    def ls(self, prefix: str) -> list:
        data = self._answer(prefix_query(str(prefix)))
        return [] if data is NO_ANSWER else ls_items(data)
