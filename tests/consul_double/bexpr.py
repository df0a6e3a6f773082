"""A subset of go-bexpr, the ``?filter=`` language, over the JSON shape of each result (§10).

Supported: ``Sel == V``, ``Sel != V``, ``V in Sel``, ``V not in Sel``, ``Sel contains V``,
``Sel not contains V``, ``Sel is empty``, ``Sel is not empty``, ``Sel matches "re"``,
``Sel not matches "re"``, ``and``, ``or``, ``not`` and parentheses. A selector is dotted field names
(``Service.Meta.env``); values are "double-quoted" or `backquoted` strings, or bare words and
numbers, compared with the field's type. An unknown field is an error, like go-bexpr's check against
the Go type; a missing key of a map (Meta) is simply empty. ``in`` on a map looks at its keys.

Not supported (an error, not a silent pass): ``any``/``all`` over lists of objects, JSON-pointer
selectors, ``[...]`` indexing. Error texts are the double's own; Consul answers 500
``Failed to create boolean expression evaluator: <go-bexpr's text>``.
"""
from __future__ import annotations

import re
from typing import Any, Callable, List, Optional, Tuple

Predicate = Callable[[Any], bool]

_TOKEN = re.compile(r'\s*(?:(\()|(\))|(==|!=)|"((?:[^"\\]|\\.)*)"|`([^`]*)`|([A-Za-z0-9_.\-:/+]+))')
_MISSING = object()


class FilterError(ValueError):
    pass


def _tokens(text: str) -> List[Tuple[str, str]]:
    out: List[Tuple[str, str]] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise FilterError("unexpected %r at position %d" % (text[pos:pos + 10], pos))
        pos = m.end()
        if m.group(1):
            out.append(("(", "("))
        elif m.group(2):
            out.append((")", ")"))
        elif m.group(3):
            out.append(("op", m.group(3)))
        elif m.group(4) is not None:
            out.append(("str", re.sub(r"\\(.)", r"\1", m.group(4))))
        elif m.group(5) is not None:
            out.append(("str", m.group(5)))
        else:
            out.append(("word", m.group(6)))
    return out


_MAPS = ("Meta", "TaggedAddresses")  # string-keyed maps (any key may be missing) or omitted-when-empty


def _resolve(data: Any, selector: str) -> Any:
    """The field ``selector`` names, ``_MISSING`` for an absent map key; an unknown field is an error."""
    value, parent = data, ""
    for name in selector.split("."):
        if not isinstance(value, dict):
            raise FilterError("Selector %r is not valid" % selector)
        if name in value:
            value, parent = value[name], name
        elif parent.endswith(_MAPS) or name.endswith(_MAPS):
            return _MISSING
        else:
            raise FilterError("Selector %r is not valid" % selector)
    return value


def _coerce(field: Any, raw: str, selector: str) -> Any:
    if isinstance(field, bool):
        if raw in ("true", "false"):
            return raw == "true"
        raise FilterError("invalid bool %r for %s" % (raw, selector))
    if isinstance(field, int):
        try:
            return int(raw)
        except ValueError:
            raise FilterError("invalid number %r for %s" % (raw, selector))
    return raw


class _Parser:
    def __init__(self, text: str) -> None:
        self.toks = _tokens(text)
        self.i = 0

    def peek(self, ahead: int = 0) -> Optional[Tuple[str, str]]:
        j = self.i + ahead
        return self.toks[j] if j < len(self.toks) else None

    def word(self, w: str, ahead: int = 0) -> bool:
        t = self.peek(ahead)
        return t is not None and t[0] == "word" and t[1] == w

    def take(self) -> Tuple[str, str]:
        t = self.peek()
        if t is None:
            raise FilterError("unexpected end of expression")
        self.i += 1
        return t

    def parse(self) -> Predicate:
        if not self.toks:
            raise FilterError("empty expression")
        pred = self.or_()
        if self.peek() is not None:
            raise FilterError("unexpected %r" % self.peek()[1])
        return pred

    def or_(self) -> Predicate:
        parts = [self.and_()]
        while self.word("or"):
            self.take()
            parts.append(self.and_())
        return parts[0] if len(parts) == 1 else (lambda d: any(p(d) for p in parts))

    def and_(self) -> Predicate:
        parts = [self.not_()]
        while self.word("and"):
            self.take()
            parts.append(self.not_())
        return parts[0] if len(parts) == 1 else (lambda d: all(p(d) for p in parts))

    def not_(self) -> Predicate:
        if self.word("not") and not self.word("in", 1):
            self.take()
            inner = self.not_()
            return lambda d: not inner(d)
        if self.peek() == ("(", "("):
            self.take()
            inner = self.or_()
            if self.take() != (")", ")"):
                raise FilterError("missing )")
            return inner
        return self.match()

    def value(self) -> str:
        kind, text = self.take()
        if kind not in ("str", "word"):
            raise FilterError("expected a value, got %r" % text)
        return text

    def match(self) -> Predicate:
        first = self.take()
        if first[0] not in ("str", "word"):
            raise FilterError("expected a selector or a value, got %r" % first[1])
        negate = False
        if self.word("not") and self.word("in", 1):
            self.take()
            negate = True
        if self.word("in"):  # V [not] in Sel
            self.take()
            selector = self.value()
            return _negated(negate, _membership(first[1], selector))
        selector = first[1]
        if first[0] != "word":
            raise FilterError("expected a selector, got %r" % selector)
        if self.peek() is not None and self.peek()[0] == "op":
            op = self.take()[1]
            raw = self.value()
            return _negated(op == "!=", _equals(selector, raw))
        if self.word("is"):
            self.take()
            if self.word("not"):
                self.take()
                negate = True
            if not self.word("empty"):
                raise FilterError("expected empty after is")
            self.take()
            return _negated(negate, _empty(selector))
        if self.word("not"):
            self.take()
            negate = True
        if self.word("contains"):
            self.take()
            return _negated(negate, _membership(self.value(), selector))
        if self.word("matches"):
            self.take()
            try:
                pattern = re.compile(self.value())
            except re.error as exc:
                raise FilterError("bad regular expression: %s" % exc)
            return _negated(negate, _matches(selector, pattern))
        raise FilterError("expected an operator after %r" % selector)


def _negated(negate: bool, pred: Predicate) -> Predicate:
    return (lambda d: not pred(d)) if negate else pred


def _equals(selector: str, raw: str) -> Predicate:
    def pred(d: Any) -> bool:
        field = _resolve(d, selector)
        if field is _MISSING:
            return False
        if isinstance(field, (list, dict)):
            raise FilterError("== is not valid for the collection %s" % selector)
        return field == _coerce(field, raw, selector)
    return pred


def _membership(raw: str, selector: str) -> Predicate:
    def pred(d: Any) -> bool:
        field = _resolve(d, selector)
        if field is _MISSING:
            return False
        if isinstance(field, (list, dict, str)):
            return raw in field
        raise FilterError("in/contains is not valid for %s" % selector)
    return pred


def _empty(selector: str) -> Predicate:
    def pred(d: Any) -> bool:
        field = _resolve(d, selector)
        return field is _MISSING or field is None or (isinstance(field, (list, dict, str)) and len(field) == 0)
    return pred


def _matches(selector: str, pattern: "re.Pattern[str]") -> Predicate:
    def pred(d: Any) -> bool:
        field = _resolve(d, selector)
        return isinstance(field, str) and pattern.search(field) is not None
    return pred


def compile_filter(text: str) -> Predicate:
    """Parse ``text``; raises FilterError. Evaluation may raise FilterError for a bad selector."""
    return _Parser(text).parse()
