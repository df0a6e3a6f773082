"""Query options and response headers of the server-backed reads the double models in full:
the KV store (§16.1, §16.10) and catalog/services (§10). [HTTP parseConsistency, setMeta]

The older endpoints (health/*, catalog/service) keep their own, simpler headers.
"""
from __future__ import annotations

import json
from typing import TYPE_CHECKING, Dict, Tuple

from .durations import DurationError, parse_duration
from .errors import APIError, bad_request

if TYPE_CHECKING:  # pragma: no cover
    from .http import Agent, Request, Routes

LEADER = "leader"
STALE = "stale"
CONSISTENT = "consistent"


def parse_consistency(req: "Request") -> str:
    """parseConsistency: ``?stale``, ``?consistent``, ``?max_stale``; the mode the answer reports."""
    stale = req.has("stale")
    raw = req.q("max_stale")
    if raw:  # an empty value is no value
        try:
            if parse_duration(raw) > 0:
                stale = True
        except DurationError:
            raise bad_request("Invalid max_stale value %s" % json.dumps(raw, ensure_ascii=False))
    if stale and req.has("consistent"):
        raise bad_request("Cannot specify ?stale with ?consistent, conflicting semantics.")
    if stale:
        return STALE
    return CONSISTENT if req.has("consistent") else LEADER


def parse_query_options(routes: "Routes", req: "Request") -> Tuple[str, int, float]:
    """parseInternal's order: consistency first, then ``index``/``wait`` (§11): (mode, index, wait)."""
    mode = parse_consistency(req)
    min_index, wait = routes._parse_blocking(req)
    return mode, min_index, wait


def require_leader(agent: "Agent", mode: str) -> None:
    """Without a leader only ``?stale`` reads are served; the rest is 500 ``No cluster leader``."""
    if agent.leader_lost_at is not None and mode != STALE:
        raise APIError(500, "No cluster leader")


def known_leader(agent: "Agent") -> str:
    return "false" if agent.leader_lost_at is not None else "true"


def last_contact(agent: "Agent") -> str:
    """Milliseconds since the answering server heard from the leader: 0 on the leader."""
    if agent.leader_lost_at is None:
        return "0"
    return str(int((agent.state.clock() - agent.leader_lost_at) * 1000))


def meta_headers(agent: "Agent", index: int, mode: str, filtered: bool = False) -> Dict[str, str]:
    """setMeta: every answer, a 404 included."""
    headers = {"X-Consul-Index": str(max(index, 1)), "X-Consul-KnownLeader": known_leader(agent),
               "X-Consul-LastContact": last_contact(agent), "X-Consul-Effective-Consistency": mode,
               "X-Consul-Query-Backend": "blocking-query"}
    if filtered:
        headers["X-Consul-Results-Filtered-By-ACLs"] = "true"
    return headers
