"""HTTP layer of the Consul double: routing, methods, ACL tokens, errors, blocking queries.

Errors are plain text (text/plain) with Consul's status codes; a successful PUT is 200 with an
empty body (reference §1). Order of checks per endpoint follows Consul's handlers (decode →
field validation → token resolution → existence → permission → action).
"""
from __future__ import annotations

import json
import re
import socket
import socketserver
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Dict, FrozenSet, List, Optional, Set, Tuple, Union
from urllib.parse import parse_qs, unquote, urlsplit

from . import catalog_http, kv_http, views
from .bexpr import FilterError, compile_filter
from .decode import DecodeError, decode_check_update, decode_service_definition
from .durations import DurationError, SECOND, parse_duration
from .errors import ACL_NOT_FOUND, ANONYMOUS_ACCESSOR, APIError, bad_request, permission_denied
from .keyacl import KeyRules, accessor_id
from .query_meta import LEADER, STALE, known_leader, last_contact, require_leader
from .state import NODE_ADDRESS, VALID_STATUSES, AgentState

DEFAULT_WAIT = 300.0  # §11: default 5m
MAX_WAIT = 600.0  # capped at 10m
_META_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
_GO_TRUE = {"1", "t", "T", "TRUE", "true", "True"}
_GO_FALSE = {"0", "f", "F", "FALSE", "false", "False"}


def go_quote(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)


def go_parse_bool(raw: str) -> bool:
    if raw in _GO_TRUE:
        return True
    if raw in _GO_FALSE:
        return False
    raise ValueError(raw)


@dataclass
class RequestRecord:
    """One request as the double saw it."""

    method: str
    path: str
    query: Dict[str, str]
    body: Any
    token: Optional[str]
    status: int
    time: float


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    content_type: Optional[str] = None
    headers: Dict[str, str] = field(default_factory=dict)


def json_response(obj: Any, status: int = 200, headers: Optional[Dict[str, str]] = None,
                  pretty: bool = False) -> Response:
    text = json.dumps(obj, indent=4 if pretty else None, separators=None if pretty else (",", ":"))
    return Response(status, text.encode("utf-8"), "application/json", dict(headers or {}))


def text_response(status: int, text: str, headers: Optional[Dict[str, str]] = None) -> Response:
    return Response(status, text.encode("utf-8"), "text/plain; charset=utf-8", dict(headers or {}))


class Authz:
    """Either full rights (a listed token, or ACLs disabled) or anonymous under default deny, or a
    token limited to its key rules (§16.9), which has no other rights."""

    def __init__(self, allow: bool, keys: Optional[KeyRules] = None, accessor: str = ANONYMOUS_ACCESSOR) -> None:
        self.allow = allow
        self.keys = keys
        self.accessor = accessor

    def require(self, permission: str, resource: str) -> None:
        if not self.allow:
            raise permission_denied(permission, resource, self.accessor)

    def key_read(self, key: str) -> bool:
        return self.allow or (self.keys is not None and self.keys.can_read(key))

    def key_write(self, key: str) -> bool:
        return self.allow or (self.keys is not None and self.keys.can_write(key))

    def key_write_prefix(self, prefix: str) -> bool:
        return self.allow or (self.keys is not None and self.keys.can_write_prefix(prefix))

    def require_key(self, allowed: bool, permission: str, key: str) -> None:
        if not allowed:
            raise permission_denied(permission, key, self.accessor)


class Agent:
    """Configuration plus runtime knobs shared by the server threads."""

    def __init__(self, state: AgentState, acl_tokens: FrozenSet[str], legacy: bool,
                 key_tokens: Optional[Dict[str, KeyRules]] = None, kv_max_value_size: int = 512 * 1024) -> None:
        self.state = state
        self.acl_tokens = acl_tokens
        self.key_tokens = dict(key_tokens or {})  # limited tokens: secret -> key rules (§16.9)
        self.kv_max_value_size = kv_max_value_size  # limits.kv_max_value_size (§16.5)
        self.legacy = legacy
        self._lock = threading.Lock()
        self._records: List[RequestRecord] = []
        self.delay_seconds = 0.0
        self.failure: Optional[Tuple[int, Union[str, bytes], Dict[str, str]]] = None
        self.drip_seconds = 0.0  # pause before each byte of an answer
        self.leader_lost_at: Optional[float] = None  # state-clock time the cluster lost its leader
        self.connections: Set[socket.socket] = set()

    @property
    def acl_enabled(self) -> bool:
        return bool(self.acl_tokens or self.key_tokens)

    # request log
    def record(self, rec: RequestRecord) -> None:
        with self._lock:
            self._records.append(rec)

    def records(self) -> List[RequestRecord]:
        with self._lock:
            return list(self._records)

    def clear_records(self) -> None:
        with self._lock:
            self._records.clear()

    # connection tracking, so that refusing connections also drops keep-alive ones
    def track(self, conn: socket.socket) -> None:
        with self._lock:
            self.connections.add(conn)

    def untrack(self, conn: socket.socket) -> None:
        with self._lock:
            self.connections.discard(conn)

    def drop_connections(self) -> None:
        with self._lock:
            conns = list(self.connections)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def resolve(self, token: Optional[str]) -> Authz:
        """§9: ACLs off → everything allowed; unknown secret → 403 ``ACL not found``."""
        if not self.acl_enabled:
            return Authz(True)
        if not token or token == "anonymous":
            return Authz(False)
        if token in self.acl_tokens:
            return Authz(True)
        if token in self.key_tokens:
            return Authz(False, self.key_tokens[token], accessor_id(token))
        raise APIError(403, ACL_NOT_FOUND)


def request_token(query: Dict[str, List[str]], headers: Any) -> Optional[str]:
    """parseTokenInternal: ?token=, then X-Consul-Token, then Authorization: Bearer."""
    t = query.get("token", [""])[0]
    if t:
        return t
    t = headers.get("X-Consul-Token")
    if t:
        return t
    auth = headers.get("Authorization")
    if auth:
        parts = auth.split(" ")
        if len(parts) > 1 and parts[0].lower() == "bearer":
            value = " ".join(parts[1:]).strip()
            first = value.split(" ")[0].strip()
            if first:
                return first
    return None


@dataclass
class Request:
    method: str
    path: str
    query: Dict[str, List[str]]
    body: bytes
    token: Optional[str]
    suffix: str = ""  # the path after a prefix route
    raw_query: str = ""  # the query string as sent (for redirects)

    def q(self, key: str, default: str = "") -> str:
        return self.query.get(key, [default])[0]

    def has(self, key: str) -> bool:
        return key in self.query


Handler = Callable[["Routes", Request], Response]


class Routes:
    """The endpoints. Each method takes the parsed request and returns a Response or raises APIError."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self.st = agent.state
        # (path, prefix?, methods, handler)
        self.table: List[Tuple[str, bool, Tuple[str, ...], Handler]] = [
            ("/v1/agent/service/register", False, ("PUT",), Routes.register),
            ("/v1/agent/service/deregister/", True, ("PUT",), Routes.deregister),
            ("/v1/agent/service/maintenance/", True, ("PUT",), Routes.service_maintenance),
            ("/v1/agent/maintenance", False, ("PUT",), Routes.node_maintenance),
            ("/v1/agent/check/pass/", True, ("PUT",), Routes.check_pass),
            ("/v1/agent/check/warn/", True, ("PUT",), Routes.check_warn),
            ("/v1/agent/check/fail/", True, ("PUT",), Routes.check_fail),
            ("/v1/agent/check/update/", True, ("PUT",), Routes.check_update),
            ("/v1/agent/check/deregister/", True, ("PUT",), Routes.check_deregister),
            ("/v1/agent/services", False, ("GET",), Routes.agent_services),
            ("/v1/agent/service/", True, ("GET",), Routes.agent_service),
            ("/v1/agent/checks", False, ("GET",), Routes.agent_checks),
            ("/v1/agent/self", False, ("GET",), Routes.agent_self),
            ("/v1/agent/health/service/id/", True, ("GET",), Routes.agent_health_by_id),
            ("/v1/agent/health/service/name/", True, ("GET",), Routes.agent_health_by_name),
            ("/v1/health/service/", True, ("GET",), Routes.health_service),
            ("/v1/health/checks/", True, ("GET",), Routes.health_checks),
            ("/v1/catalog/service/", True, ("GET",), Routes.catalog_service),
            ("/v1/status/leader", False, ("GET",), Routes.status_leader),
            ("/v1/catalog/services", False, ("GET",), catalog_http.catalog_services),
            ("/v1/kv/", True, ("GET", "PUT", "DELETE"), kv_http.kv_endpoint),
        ]

    def dispatch(self, req: Request) -> Response:
        cleaned = clean_path(req.path)
        if cleaned != req.path:  # Go's ServeMux (§16.7): 301 to the cleaned path, query kept
            location = cleaned + ("?" + req.raw_query if req.raw_query else "")
            return Response(301, b"", None, {"Location": location})
        best = None
        for path, prefix, methods, handler in self.table:
            if (not prefix and req.path == path) or (prefix and req.path.startswith(path)):
                if best is None or len(path) > len(best[0]) or (not prefix and req.path == path):
                    best = (path, prefix, methods, handler)
                    if not prefix:
                        break
        if best is None:
            return text_response(404, "404 page not found\n")
        path, prefix, methods, handler = best
        allow = ",".join(("OPTIONS",) + methods)
        if req.method == "OPTIONS":
            return Response(200, b"", None, {"Allow": allow})
        if req.method not in methods:
            return text_response(405, "method %s not allowed" % req.method, {"Allow": allow})
        req.suffix = req.path[len(path):] if prefix else ""
        return handler(self, req)

    # -------------------------------------------------------------- §2 register
    def register(self, req: Request) -> Response:
        try:
            sd = decode_service_definition(req.body)
        except DecodeError as exc:
            raise bad_request("Request decode failed: %s" % exc)
        if not sd.name:
            raise bad_request("Missing service name")
        if sd.address in ("0.0.0.0", "::", "[::]"):
            raise bad_request("Invalid service address")
        authz = self.agent.resolve(req.token)
        if sd.weights is not None:
            w = sd.weights
            if w["Passing"] < 1:
                raise bad_request("Invalid Weights: Passing must be greater than 0")
            if w["Warning"] < 0:
                raise bad_request("Invalid Weights: Warning must be greater or equal than 0")
            if w["Passing"] > 65535 or w["Warning"] > 65535:
                raise bad_request("Invalid Weights: DNS Weight must be between 0 and 65535")
        meta_error = validate_meta(sd.meta)
        if meta_error:
            raise bad_request("Invalid Service Meta: " + meta_error)
        check_types = []
        if not sd.check.empty():
            check_types.append(sd.check)
        check_types.extend(sd.checks)
        for ct in check_types:
            err = ct.validate()
            if err:
                raise bad_request("Invalid check: " + err)
        for ct in check_types:
            if ct.status and ct.status not in VALID_STATUSES:
                raise bad_request("Status for checks must 'passing', 'warning', 'critical'")
        authz.require("service:write", sd.name)
        old_name = self.st.service_name(sd.id or sd.name)
        if old_name is not None and old_name != sd.name:
            authz.require("service:write", old_name)
        if any(ct.script_args for ct in check_types):
            raise APIError(500, "Scripts are disabled on this agent from remote calls; "
                                "to enable, configure 'enable_script_checks' to true")
        replace = req.has("replace-existing-checks") and req.q("replace-existing-checks") in ("", "true")
        self.st.register(sd, check_types, replace)
        return Response()

    # -------------------------------------------------------------- §3 deregister
    def _vet_service_update(self, authz: Authz, sid: str) -> Optional[str]:
        """vetServiceUpdateWithAuthorizer (1.11+) or its ≤1.10 form. Returns the service name."""
        name = self.st.service_name(sid)
        if self.agent.legacy:
            if not self.agent.acl_enabled:
                return name
            if name is None:
                raise APIError(500, "Unknown service %s" % go_quote(sid))
        elif name is None:
            raise APIError(404, "Unknown service ID %s. Ensure that the service ID is passed, not the service name."
                           % go_quote(sid))
        authz.require("service:write", name)
        return name

    def deregister(self, req: Request) -> Response:
        sid = req.suffix
        authz = self.agent.resolve(req.token)
        self._vet_service_update(authz, sid)
        self.st.deregister(sid)  # ≤1.10 without ACLs: an unknown ID is only logged
        return Response()

    # -------------------------------------------------------------- §7 maintenance
    def _enable_param(self, req: Request) -> bool:
        if not req.has("enable"):
            raise bad_request("Missing value for enable")
        raw = req.q("enable")
        try:
            return go_parse_bool(raw)
        except ValueError:
            raise bad_request("Invalid value for enable: %s" % go_quote(raw))

    def service_maintenance(self, req: Request) -> Response:
        sid = req.suffix
        if not sid:
            raise bad_request("Missing service ID")
        enable = self._enable_param(req)
        authz = self.agent.resolve(req.token)
        name = self._vet_service_update(authz, sid)
        if name is None:
            raise APIError(404, "No service registered with ID %s" % go_quote(sid))
        self.st.set_service_maintenance(sid, enable, req.q("reason"))
        return Response()

    def node_maintenance(self, req: Request) -> Response:
        enable = self._enable_param(req)
        authz = self.agent.resolve(req.token)
        authz.require("node:write", self.st.node_name)
        self.st.set_node_maintenance(enable, req.q("reason"))
        return Response()

    # -------------------------------------------------------------- §4 TTL updates
    def _vet_check_update(self, authz: Authz, cid: str) -> None:
        exists = self.st.has_check(cid)
        if self.agent.legacy:
            if not self.agent.acl_enabled:
                return
            if not exists:
                raise APIError(500, "Unknown check %s" % go_quote(cid))
        elif not exists:
            raise APIError(404, "Unknown check ID %s. Ensure that the check ID is passed, not the check name."
                           % go_quote(cid))
        name = self.st.check_service_name(cid)
        if name:
            authz.require("service:write", name)
        else:
            authz.require("node:write", self.st.node_name)

    def _check_update(self, req: Request, cid: str, status: str, output: str) -> Response:
        authz = self.agent.resolve(req.token)
        self._vet_check_update(authz, cid)
        if not self.st.update_ttl(cid, status, output):
            raise APIError(500, "CheckID %s does not have associated TTL" % go_quote(cid))
        return Response()

    def check_pass(self, req: Request) -> Response:
        return self._check_update(req, req.suffix, "passing", req.q("note"))

    def check_warn(self, req: Request) -> Response:
        return self._check_update(req, req.suffix, "warning", req.q("note"))

    def check_fail(self, req: Request) -> Response:
        return self._check_update(req, req.suffix, "critical", req.q("note"))

    def check_update(self, req: Request) -> Response:
        try:
            status, output = decode_check_update(req.body)
        except DecodeError as exc:
            raise bad_request("Request decode failed: %s" % exc)
        if status not in VALID_STATUSES:
            raise bad_request("Invalid check status: '%s'" % status)
        return self._check_update(req, req.suffix, status, output)

    def check_deregister(self, req: Request) -> Response:
        cid = req.suffix
        authz = self.agent.resolve(req.token)
        self._vet_check_update(authz, cid)
        self.st.remove_check(cid)
        return Response()

    # -------------------------------------------------------------- §10 agent reads
    def agent_services(self, req: Request) -> Response:
        authz = self.agent.resolve(req.token)
        with self.st.lock:
            out = {sid: views.agent_service(self.st, s) for sid, s in sorted(self.st.services.items())}
        return json_response(out if authz.allow else {}, pretty=req.has("pretty"))

    def agent_checks(self, req: Request) -> Response:
        authz = self.agent.resolve(req.token)
        with self.st.lock:
            out = {cid: views.check_json(self.st, c, catalog=False)
                   for cid, c in sorted(self.st.checks.items())}
        return json_response(out if authz.allow else {}, pretty=req.has("pretty"))

    def agent_service(self, req: Request) -> Response:
        sid = req.suffix
        authz = self.agent.resolve(req.token)
        wait = self._parse_wait(req)
        name = self.st.service_name(sid)
        if name is None:
            return text_response(404, "unknown service ID: %s" % sid)
        authz.require("service:read", name)
        old_hash = req.q("hash")
        if old_hash:
            self.st.block_hash(lambda: self.st.content_hash(sid), old_hash, wait or DEFAULT_WAIT)
        with self.st.lock:
            s = self.st.services.get(sid)
            if s is None:
                return text_response(404, "unknown service ID: %s" % sid)
            out = views.agent_service(self.st, s)
            chash = self.st.content_hash(sid) or ""
        out["ContentHash"] = chash
        return json_response(out, headers={"X-Consul-ContentHash": chash}, pretty=req.has("pretty"))

    def agent_self(self, req: Request) -> Response:
        authz = self.agent.resolve(req.token)
        authz.require("agent:read", self.st.node_name)
        with self.st.lock:
            return json_response(views.agent_self(self.st), pretty=req.has("pretty"))

    def _agent_health(self, sid: str) -> Tuple[int, str, Dict[str, Any]]:
        s = self.st.services[sid]
        checks = [c for c in self.st.checks.values() if c.service_id == sid or not c.service_id]
        statuses = {c.status for c in checks}
        status = "critical" if "critical" in statuses else "warning" if "warning" in statuses else "passing"
        code = {"passing": 200, "warning": 429, "critical": 503}[status]
        body = {"AggregatedStatus": status, "Service": views.agent_service(self.st, s),
                "Checks": [{k: v for k, v in views.check_json(self.st, c, catalog=False).items()
                            if k in ("Node", "CheckID", "Name", "Status", "Notes", "Output", "ServiceID",
                                     "ServiceName", "ServiceTags", "Type", "Interval", "Timeout",
                                     "ExposedPort", "Definition", "CreateIndex", "ModifyIndex")}
                           for c in checks]}
        return code, status, body

    def agent_health_by_id(self, req: Request) -> Response:
        sid = req.suffix
        if not sid:
            raise bad_request("Missing serviceID")
        authz = self.agent.resolve(req.token)
        text = req.q("format") == "text" if req.has("format") else False
        with self.st.lock:
            if sid in self.st.services:
                authz.require("service:read", self.st.services[sid].name)
                code, status, body = self._agent_health(sid)
                if text:
                    return text_response(code, status)
                return json_response(body, status=code)
        reason = "ServiceId %s not found" % sid
        if text:
            return text_response(404, reason)
        return json_response({"AggregatedStatus": "critical", "Service": None, "Checks": None}, status=404)

    def agent_health_by_name(self, req: Request) -> Response:
        name = req.suffix
        if not name:
            raise bad_request("Missing service Name")
        authz = self.agent.resolve(req.token)
        authz.require("service:read", name)
        text = req.q("format") == "text" if req.has("format") else False
        code, status, result = 404, "ServiceName %s Not Found" % name, []
        with self.st.lock:
            for sid in sorted(s.id for s in self.st.services.values() if s.name == name):
                scode, sstatus, body = self._agent_health(sid)
                result.append(body)
                if code == 404 or code < scode:
                    code, status = scode, sstatus
        if text:
            return text_response(code, status)
        return json_response(result, status=code)

    # -------------------------------------------------------------- §10/§11 catalog reads
    def _parse_wait(self, req: Request) -> float:
        raw = req.q("wait")
        if raw:
            try:
                return min(parse_duration(raw) / SECOND, MAX_WAIT)
            except DurationError:
                raise bad_request("Invalid wait time")
        return 0.0

    def _parse_blocking(self, req: Request) -> Tuple[int, float]:
        wait = self._parse_wait(req)
        raw = req.q("index")
        index = 0
        if raw:
            if not raw.isdigit() or not raw.isascii() or int(raw) >= 1 << 64:
                raise bad_request("Invalid index")
            index = int(raw)
        return index, wait

    def _meta_headers(self, index: int) -> Dict[str, str]:
        return {"X-Consul-Index": str(max(index, 1)), "X-Consul-KnownLeader": known_leader(self.agent),
                "X-Consul-LastContact": last_contact(self.agent)}

    def _blocking_read(self, req: Request, name: str, build: Callable[[], Any],
                       validate: Optional[Callable[[], None]] = None) -> Response:
        min_index, wait = self._parse_blocking(req)
        authz = self.agent.resolve(req.token)
        if validate is not None:
            try:
                validate()
            except APIError as exc:
                exc.headers.update(self._meta_headers(self.st.index_for_service(name)))
                raise
        require_leader(self.agent, STALE if req.has("stale") else LEADER)
        if min_index > 0:
            self.st.block(lambda: self.st.index_for_service(name), min_index, wait or DEFAULT_WAIT)
        with self.st.lock:
            index = self.st.index_for_service(name)
            out = build() if authz.allow else []
        return json_response(out, headers=self._meta_headers(index), pretty=req.has("pretty"))

    def health_service(self, req: Request) -> Response:
        name = req.suffix
        passing = False

        def validate() -> None:
            nonlocal passing
            if req.has("passing"):
                raw = req.q("passing")
                try:
                    passing = True if raw == "" else go_parse_bool(raw)
                except ValueError:
                    raise bad_request("Invalid value for ?passing")
            request_filter(req)

        tags = req.query.get("tag", [])

        def build() -> List[Dict[str, Any]]:
            entries = apply_filter(req, views.health_entries(self.st, name))  # before ?passing (§10)
            entries = [e for e in entries if on_matching_node(req, e["Node"]["Meta"])]
            if tags:
                entries = [e for e in entries if has_every_tag(e["Service"]["Tags"], tags)]
            if passing:
                entries = [e for e in entries if all(c["Status"] == "passing" for c in e["Checks"])]
            return entries

        return self._blocking_read(req, name, build, validate)

    def health_checks(self, req: Request) -> Response:
        name = req.suffix

        def build() -> List[Dict[str, Any]]:
            return [views.check_json(self.st, c, catalog=True)
                    for c in sorted(self.st.checks.values(), key=lambda c: c.check_id)
                    if c.service_id and c.service_name == name]

        return self._blocking_read(req, name, build)

    def catalog_service(self, req: Request) -> Response:
        name = req.suffix
        tags = req.query.get("tag", [])

        def build() -> List[Dict[str, Any]]:
            entries = apply_filter(req, views.catalog_entries(self.st, name))
            entries = [e for e in entries if on_matching_node(req, e["NodeMeta"])]
            if tags:
                entries = [e for e in entries if has_every_tag(e["ServiceTags"], tags)]
            return entries

        return self._blocking_read(req, name, build, lambda: request_filter(req))

    def status_leader(self, req: Request) -> Response:
        return json_response("" if self.agent.leader_lost_at is not None else "%s:8300" % NODE_ADDRESS)


def request_filter(req: Request) -> Optional[Callable[[Any], bool]]:
    """``?filter=`` compiled (§10), or None; a bad expression is 500, as Consul answers it."""
    text = req.q("filter")
    if not text:
        return None
    try:
        return compile_filter(text)
    except FilterError as exc:
        raise APIError(500, "Failed to create boolean expression evaluator: %s" % exc)


def apply_filter(req: Request, entries: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    pred = request_filter(req)
    if pred is None:
        return entries
    try:
        return [e for e in entries if pred(e)]
    except FilterError as exc:
        raise APIError(500, "Failed to create boolean expression evaluator: %s" % exc)


def on_matching_node(req: Request, node_meta: Dict[str, str]) -> bool:
    """``?node-meta=key:value`` (repeatable): the node's meta has every given pair (§10)."""
    wanted = catalog_http.parse_node_meta(req.query.get("node-meta", []))
    return all(node_meta.get(k) == v for k, v in wanted.items())


def has_every_tag(have: List[str], wanted: List[str]) -> bool:
    """serviceTagsFilter (§10): every wanted tag (AND), compared case-insensitively; "" matches none."""
    lower = {t.lower() for t in have}
    return all(t.lower() in lower for t in wanted)


def clean_path(path: str) -> str:
    """Go's net/http cleanPath: path.Clean, keeping a trailing slash."""
    out: List[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if out:
                out.pop()
            continue
        out.append(part)
    cleaned = "/" + "/".join(out)
    if path.endswith("/") and cleaned != "/":
        cleaned += "/"
    return cleaned


def validate_meta(meta: Dict[str, str]) -> Optional[str]:
    """structs.ValidateServiceMetadata (§2.1)."""
    if len(meta) > 64:
        return "Node metadata cannot contain more than 64 key/value pairs"
    for key in sorted(meta):
        value = meta[key]
        err = None
        if key == "":
            err = "Key cannot be blank"
        elif not _META_KEY.match(key):
            err = "Key contains invalid characters"
        elif len(key) > 128:
            err = "Key is too long (limit: 128 characters)"
        elif key.startswith("consul-"):
            err = "Key prefix 'consul-' is reserved for internal use"
        elif len(value) > 512:
            err = "Value is too long (limit: 512 characters)"
        if err:
            return "Couldn't load metadata pair ('%s', '%s'): %s" % (key, value, err)
    return None


class DoubleHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False

    def __init__(self, addr: Tuple[str, int], agent: Agent) -> None:
        self.agent = agent
        self.routes = Routes(agent)
        super().__init__(addr, DoubleRequestHandler)

    def server_bind(self) -> None:
        # Skip HTTPServer's socket.getfqdn(), which can stall on hosts with slow DNS.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = port


class DoubleRequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "consul-double"
    disable_nagle_algorithm = True  # headers and body are separate writes; avoid delayed-ACK stalls
    sys_version = ""
    server: DoubleHTTPServer

    def setup(self) -> None:
        super().setup()
        self.server.agent.track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.agent.untrack(self.connection)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet by default
        pass

    def _handle(self) -> None:
        received = time.monotonic()
        agent = self.server.agent
        split = urlsplit(self.path)
        path = unquote(split.path)
        query = parse_qs(split.query, keep_blank_values=True)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        token = request_token(query, self.headers)
        if agent.delay_seconds > 0:
            time.sleep(agent.delay_seconds)
        failure = agent.failure
        if failure is not None:
            raw = failure[1] if isinstance(failure[1], bytes) else failure[1].encode("utf-8")
            resp = Response(failure[0], raw, "text/plain; charset=utf-8", dict(failure[2]))
        else:
            try:
                resp = self.server.routes.dispatch(
                    Request(self.command, path, query, body, token, raw_query=split.query))
            except APIError as exc:
                resp = text_response(exc.status, exc.text, exc.headers)
            except Exception as exc:  # pragma: no cover - a bug in the double, reported like Consul
                resp = text_response(500, "%s: %s" % (type(exc).__name__, exc))
        agent.record(RequestRecord(
            method=self.command, path=path, query={k: v[0] for k, v in query.items()},
            body=_decode_body(body), token=token, status=resp.status, time=received))
        if agent.drip_seconds > 0:
            self._drip(resp, agent.drip_seconds)
            return
        try:
            self.send_response(resp.status)
            if resp.content_type:
                self.send_header("Content-Type", resp.content_type)
            for k, v in resp.headers.items():
                self.send_header(k, v)
            self.send_header("Vary", "Accept-Encoding")
            self.send_header("Content-Length", str(len(resp.body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(resp.body)
        except OSError:
            self.close_connection = True

    def _drip(self, resp: Response, pause: float) -> None:
        """The whole answer one byte at a time, ``pause`` seconds apart."""
        head = ["HTTP/1.1 %d %s" % (resp.status, self.responses.get(resp.status, ("",))[0])]
        if resp.content_type:
            head.append("Content-Type: " + resp.content_type)
        head += ["%s: %s" % kv for kv in resp.headers.items()]
        head.append("Content-Length: %d" % len(resp.body))
        data = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + resp.body
        try:
            for i in range(len(data)):
                time.sleep(pause)
                self.wfile.write(data[i:i + 1])
                self.wfile.flush()
        except OSError:
            pass
        self.close_connection = True

    do_GET = do_PUT = do_POST = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _handle


def _decode_body(body: bytes) -> Any:
    if not body:
        return None
    text = body.decode("utf-8", errors="replace")
    try:
        return json.loads(text)
    except ValueError:
        return text
