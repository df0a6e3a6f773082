"""The Consul queries a template can make, and what their answers become.

A Query is a value: two templates calling service("web") make equal
queries, and the manager keeps one watch per distinct query. decode() turns
an HTTP answer into plain, comparable data, sorted so that an unchanged set
of instances always renders the same bytes (Consul's own order is not
stable: reference §10). Only GETs of the catalog, health and KV endpoints.
"""
from __future__ import annotations

import json
import urllib.parse

ABSENT = object()  # a KV key Consul answered 404 for (not the same as "no answer yet")


class QueryError(Exception):
    """Consul answered, but not with something this query can use."""


class Instance:
    """One healthy (or, with passing=False, any) instance of a service."""

    __slots__ = ("id", "name", "address", "port", "tags", "meta", "node", "status")

    def __init__(self, entry: dict) -> None:
        service = entry.get("Service") or {}
        node = entry.get("Node") or {}
        self.id = str(service.get("ID", ""))
        self.name = str(service.get("Service", ""))
        # The service's own address if it registered one, else its node's (§13).
        self.address = str(service.get("Address") or node.get("Address") or "")
        self.port = int(service.get("Port") or 0)
        self.tags = [str(t) for t in service.get("Tags") or []]
        self.meta = {str(k): str(v) for k, v in sorted((service.get("Meta") or {}).items())}
        self.node = str(node.get("Node", ""))
        self.status = aggregate_status(entry.get("Checks") or [])

    def _values(self) -> tuple:
        return (self.id, self.name, self.address, self.port, self.tags, self.meta, self.node,
                self.status)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Instance) and self._values() == other._values()

    def __repr__(self) -> str:
        return f"Instance({self.id!r}, {self.address}:{self.port}, {self.status})"


def aggregate_status(checks: list) -> str:
    """The worst of the instance's checks, node checks included, as Consul's
    ?passing and DNS see them: critical beats warning beats passing."""
    statuses = {c.get("Status") for c in checks if isinstance(c, dict)}
    for status in ("critical", "warning"):
        if status in statuses:
            return status
    return "passing"


class Entry:
    """An item of services() (name, tags) or of tree()/ls() (key, value)."""

    __slots__ = ("name", "tags", "key", "value")

    def __init__(self, *, name: str = "", tags: list[str] | None = None, key: str = "",
                 value: str = "") -> None:
        self.name = name
        self.tags = tags or []
        self.key = key
        self.value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Entry) and (self.name, self.tags, self.key, self.value) == \
            (other.name, other.tags, other.key, other.value)

    def __repr__(self) -> str:
        return f"Entry({self.name or self.key!r})"


class Query:
    """Hashable by what it asks; path and params make the HTTP request."""

    __slots__ = ("kind", "arg", "tag", "passing")

    def __init__(self, kind: str, arg: str = "", tag: str | None = None,
                 passing: bool = True) -> None:
        self.kind = kind          # "service", "services", "key" or "prefix"
        self.arg = arg            # service name, key, or prefix ("" or ending in "/")
        self.tag = tag
        self.passing = passing

    def _id(self) -> tuple:
        return (self.kind, self.arg, self.tag, self.passing)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Query) and self._id() == other._id()

    def __hash__(self) -> int:
        return hash(self._id())

    def __repr__(self) -> str:
        return self.describe()

    def describe(self) -> str:
        """As the template wrote it, for `svcwrap status` and log lines."""
        if self.kind == "service":
            extra = (f", tag={self.tag!r}" if self.tag else "") + \
                ("" if self.passing else ", passing=False")
            return f"service({self.arg!r}{extra})"
        if self.kind == "services":
            return "services()"
        if self.kind == "key":
            return f"key({self.arg!r})"
        return f"tree({self.arg!r})"

    @property
    def path(self) -> str:
        if self.kind == "service":
            return "/v1/health/service/" + urllib.parse.quote(self.arg, safe="")
        if self.kind == "services":
            return "/v1/catalog/services"
        return "/v1/kv/" + urllib.parse.quote(self.arg, safe="/")

    @property
    def params(self) -> dict[str, str]:
        if self.kind == "service":
            params = {"passing": "true"} if self.passing else {}
            if self.tag:
                params["tag"] = self.tag
            return params
        return {"recurse": "true"} if self.kind == "prefix" else {}

    def decode(self, status: int, body: bytes):
        if status == 404 and self.kind in ("key", "prefix"):
            return ABSENT if self.kind == "key" else []  # a missing key is 404 (§16.1)
        if status != 200:
            text = " ".join(body[:200].decode("utf-8", "replace").split())
            raise QueryError(f"{self.describe()}: Consul answered {status} {text}".rstrip())
        try:
            data = json.loads(body)
        except ValueError:
            raise QueryError(f"{self.describe()}: the answer is not JSON") from None
        try:
            return getattr(self, "_decode_" + self.kind)(data)
        except (TypeError, ValueError, AttributeError, KeyError) as err:
            raise QueryError(f"{self.describe()}: unexpected answer ({err})") from None

    @staticmethod
    def _decode_service(data: list) -> list[Instance]:
        instances = [Instance(entry) for entry in data]
        return sorted(instances, key=lambda i: (i.node, i.id, i.address, i.port))

    @staticmethod
    def _decode_services(data: dict) -> list[Entry]:
        return [Entry(name=name, tags=sorted(set(tags or [])))
                for name, tags in sorted(data.items())]

    @staticmethod
    def _decode_key(data: list) -> str:
        return kv_value(data[0])

    def _decode_prefix(self, data: list) -> list[Entry]:
        entries = [Entry(key=item["Key"][len(self.arg):], value=kv_value(item))
                   for item in data if item["Key"].startswith(self.arg)]
        return sorted(entries, key=lambda e: e.key)


def kv_value(item: dict) -> str:
    """Values are base64 in JSON, null when empty (§16.1); templates get text."""
    import base64

    raw = item.get("Value")
    return base64.b64decode(raw).decode("utf-8", "replace") if raw else ""


def prefix_query(prefix: str) -> Query:
    """tree("app") and ls("app/") ask the same thing: everything below app/.
    The slash keeps app/ from matching app2/ (a KV prefix is a plain string, §16.2)."""
    prefix = prefix.lstrip("/")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    return Query("prefix", prefix)


def tree_items(entries: list[Entry]) -> list[Entry]:
    """Every key below the prefix; not the prefix itself, not folders (keys
    ending in "/", which UIs create empty)."""
    return [e for e in entries if e.key and not e.key.endswith("/")]


def ls_items(entries: list[Entry]) -> list[Entry]:
    """Only the keys directly below the prefix."""
    return [e for e in tree_items(entries) if "/" not in e.key]
