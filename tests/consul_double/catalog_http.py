"""GET /v1/catalog/services[?node-meta=k:v][&filter=][&index=&wait=] (reference §10, §11).

An object mapping each service name to the union of its instances' tags (exact, case-sensitive,
each tag once, in first-seen order: Consul's order is unspecified). ``X-Consul-Index`` is the
services table index (with ``?node-meta``, the larger of it and the nodes table index), so check
updates and KV writes never answer a blocked reader. Names the token cannot read are dropped.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Dict, List, Tuple

from . import http as agent_http, views
from .query_meta import meta_headers, parse_query_options, require_leader
from .state import NODE_CREATE_INDEX

if TYPE_CHECKING:  # pragma: no cover
    from .http import Request, Response, Routes


def parse_node_meta(values: List[str]) -> Dict[str, str]:
    """parseMetaFilter: ``key:value`` pairs split at the first colon; no colon means value ""."""
    out: Dict[str, str] = {}
    for item in values:
        key, _, value = item.partition(":")
        out[key] = value
    return out


def catalog_services(routes: "Routes", req: "Request") -> "Response":
    mode, min_index, wait = parse_query_options(routes, req)
    agent_http.request_filter(req)
    require_leader(routes.agent, mode)
    authz = routes.agent.resolve(req.token)
    wanted = parse_node_meta(req.query.get("node-meta", []))
    st = routes.st

    def run() -> Tuple[int, bool, Tuple[Dict[str, List[str]], bool]]:
        index = max(st.services_index, NODE_CREATE_INDEX) if wanted else st.services_index
        names: Dict[str, List[str]] = {}
        for name in dict.fromkeys(s.name for s in sorted(st.services.values(), key=lambda s: s.id)):
            # ?filter runs over each instance (a ServiceNode) before grouping by name (§10).
            for e in agent_http.apply_filter(req, views.catalog_entries(st, name)):
                if not agent_http.on_matching_node(req, e["NodeMeta"]):
                    continue
                tags = names.setdefault(name, [])
                tags.extend(t for t in dict.fromkeys(e["ServiceTags"]) if t not in tags)
        visible = {n: t for n, t in names.items() if authz.allow}
        return index, True, (visible, len(visible) != len(names))

    index, _, (out, filtered) = st.block_query(run, min_index, wait or agent_http.DEFAULT_WAIT)
    headers = meta_headers(routes.agent, index, mode, filtered)
    return agent_http.json_response(out, headers=headers, pretty=req.has("pretty"))
