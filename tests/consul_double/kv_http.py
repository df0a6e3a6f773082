"""GET, PUT and DELETE /v1/kv/:key (reference §16), in the order of Consul's handler [KV].

Each method first parses the query options (consistency, then ``index``/``wait``), then checks the
key and the flags, then resolves the token (403 ``ACL not found``), then checks the key rules
(403 ``Permission denied…``) and finally reads or writes the store.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, List, Optional, Tuple
from urllib.parse import urlencode

from . import http as agent_http
from .errors import APIError, bad_request
from .kv import DirEntry, KVApplyError, entry_json
from .query_meta import LEADER, meta_headers, parse_query_options, require_leader

if TYPE_CHECKING:  # pragma: no cover
    from .http import Authz, Request, Response, Routes

_UINT64_MAX = (1 << 64) - 1


def kv_endpoint(routes: "Routes", req: "Request") -> "Response":
    mode, min_index, wait = parse_query_options(routes, req)
    if req.method == "GET":
        if req.has("keys"):  # ?keys wins over ?recurse (§16.3)
            return _get_keys(routes, req, mode, min_index, wait)
        return _get(routes, req, mode, min_index, wait)
    if req.method == "PUT":
        return _put(routes, req)
    return _delete(routes, req)


def go_parse_uint(raw: str) -> int:
    """strconv.ParseUint(raw, 10, 64); a bad value is a plain error, answered as 500 (§16.5)."""
    if not raw or not raw.isascii() or not raw.isdigit():
        raise APIError(500, "strconv.ParseUint: parsing %s: invalid syntax" % agent_http.go_quote(raw))
    value = int(raw)
    if value > _UINT64_MAX:
        raise APIError(500, "strconv.ParseUint: parsing %s: value out of range" % agent_http.go_quote(raw))
    return value


def _conflicting(req: "Request", *flags: str) -> None:
    """conflictingFlags: two of ``flags`` → 400 with the whole query, re-encoded with sorted keys."""
    if sum(1 for f in flags if req.has(f)) > 1:
        encoded = urlencode([(k, v) for k in sorted(req.query) for v in req.query[k]])
        raise bad_request("Conflicting flags: %s\n" % encoded)


def _readable(authz: "Authz", entries: List[DirEntry]) -> Tuple[List[DirEntry], bool]:
    """FilterDirEnt: drop what the token cannot read; also say whether anything was dropped."""
    kept = [e for e in entries if authz.key_read(e.key)]
    return kept, len(kept) != len(entries)


def _get(routes: "Routes", req: "Request", mode: str, min_index: int, wait: float) -> "Response":
    key = req.suffix
    recurse = req.has("recurse")
    if not recurse and not key:
        raise bad_request("Missing key name")
    require_leader(routes.agent, mode)  # the RPC is forwarded first, then the token resolved
    authz = routes.agent.resolve(req.token)
    store = routes.st.kv
    if recurse:
        def run() -> Tuple[int, bool, Tuple[List[DirEntry], bool]]:
            index, entries = store.list(key)
            return index, True, _readable(authz, entries)
    else:
        # KVS.Get checks key:read on every pass, a missing key included (§16.9).
        authz.require_key(authz.key_read(key), "key:read", key)

        def run() -> Tuple[int, bool, Tuple[List[DirEntry], bool]]:
            index, entry = store.get(key)
            return index, entry is not None, ([entry] if entry is not None else [], False)

    floor = not recurse and not routes.agent.legacy  # errNotFound came with 1.12 (§16.8)
    index, _, (entries, filtered) = routes.st.block_query(run, min_index, wait or agent_http.DEFAULT_WAIT, floor)
    headers = meta_headers(routes.agent, index, mode, filtered)
    if not entries:
        return agent_http.Response(404, b"", None, headers)
    if req.has("raw") and not recurse:
        headers.update({"X-Content-Type-Options": "nosniff", "Content-Security-Policy": "sandbox"})
        return agent_http.Response(200, entries[0].value, "text/plain", headers)
    with routes.st.lock:
        body = [entry_json(e) for e in entries]
    return agent_http.json_response(body, headers=headers, pretty=req.has("pretty"))


def _get_keys(routes: "Routes", req: "Request", mode: str, min_index: int, wait: float) -> "Response":
    prefix = req.suffix
    sep = req.q("seperator") if req.has("seperator") else ""  # the misspelling is read too
    if req.has("separator"):
        sep = req.q("separator")
    require_leader(routes.agent, mode)
    authz = routes.agent.resolve(req.token)
    store = routes.st.kv

    def run() -> Tuple[int, bool, Tuple[List[str], bool]]:
        index, entries = store.list(prefix)
        kept, filtered = _readable(authz, entries)
        keys: List[str] = []
        for e in kept:
            cut = e.key.find(sep, len(prefix)) if sep else -1
            name = e.key if cut < 0 else e.key[:cut + len(sep)]
            if not keys or keys[-1] != name:  # byte order keeps duplicates adjacent
                keys.append(name)
        return index, True, (keys, filtered)

    index, _, (keys, filtered) = routes.st.block_query(run, min_index, wait or agent_http.DEFAULT_WAIT)
    headers = meta_headers(routes.agent, index, mode, filtered)
    if not keys and prefix:
        return agent_http.Response(404, b"", None, headers)
    return agent_http.json_response(keys, headers=headers, pretty=req.has("pretty"))


def _put(routes: "Routes", req: "Request") -> "Response":
    key = req.suffix
    if not key:
        raise bad_request("Missing key name")
    _conflicting(req, "cas", "acquire", "release")
    flags = go_parse_uint(req.q("flags")) if req.has("flags") else 0
    cas: Optional[int] = go_parse_uint(req.q("cas")) if req.has("cas") else None
    limit = routes.agent.kv_max_value_size
    if len(req.body) > limit:
        raise APIError(413, "Request body(%d bytes) too large, max size: %d bytes. See %s."
                       % (len(req.body), limit,
                          "https://developer.hashicorp.com/docs/agent/config/config-files#kv_max_value_size"))
    require_leader(routes.agent, LEADER)  # writes always go through the leader (§16.10)
    authz = routes.agent.resolve(req.token)
    authz.require_key(authz.key_write(key), "key:write", key)
    store = routes.st.kv
    try:
        with routes.st.lock:
            if req.has("acquire"):
                ok = store.acquire(key, req.body, flags, req.q("acquire"))
            elif req.has("release"):
                ok = store.release(key, req.body, flags, req.q("release"))
            else:
                ok = store.put(key, req.body, flags, cas)
    except KVApplyError as exc:
        raise APIError(500, str(exc))
    return agent_http.json_response(ok)


def _delete(routes: "Routes", req: "Request") -> "Response":
    key = req.suffix
    _conflicting(req, "recurse", "cas")
    recurse = req.has("recurse")
    if not recurse and not key:
        raise bad_request("Missing key name")
    cas: Optional[int] = go_parse_uint(req.q("cas")) if req.has("cas") else None
    require_leader(routes.agent, LEADER)
    authz = routes.agent.resolve(req.token)
    if recurse:  # KeyWritePrefix: write over the whole prefix (§16.6)
        authz.require_key(authz.key_write_prefix(key), "key:write", key)
    else:
        authz.require_key(authz.key_write(key), "key:write", key)
    store = routes.st.kv
    with routes.st.lock:
        if recurse:
            store.delete_tree(key)
            ok = True
        else:
            ok = store.delete(key, cas)
    return agent_http.json_response(ok)
