"""Contract tests: GET /v1/catalog/services and the health/catalog read filters (reference §10, §11)."""
from __future__ import annotations

import json
import urllib.parse

import pytest

from tests.consul_double import start
from tests.consul_fixture import ConsulUnderTest
from tests.kv_support import blocked, clocked, register  # noqa: F401 (fixtures)

SERVICES = "/v1/catalog/services"


def catalog(cut, query=""):
    status, body = cut.get(SERVICES + query)
    assert status == 200, (status, body)
    return body


def services_index(cut, query=""):
    return int(cut.request("GET", SERVICES + query)[1]["X-Consul-Index"])


def q(text):
    return urllib.parse.quote(text, safe="")


# ---------------------------------------------------------------- shape
def test_catalog_services_maps_each_name_to_its_tags(consul):
    """§10: a JSON object, service name → array of tags."""
    register(consul, "cat-web-1", "cat-web", ["blue", "v1"])
    assert sorted(catalog(consul)["cat-web"]) == ["blue", "v1"]


def test_the_tags_are_the_union_over_every_instance_each_once(consul):
    """§10: tags of all instances of a name, each tag once."""
    register(consul, "cat-web-1", "cat-web", ["blue", "v1"])
    register(consul, "cat-web-2", "cat-web", ["green", "v1"])
    assert sorted(catalog(consul)["cat-web"]) == ["blue", "green", "v1"]


def test_tags_that_differ_only_in_case_are_both_kept(consul):
    """§10: the union compares tags exactly, case-sensitively."""
    register(consul, "cat-web-1", "cat-web", ["Blue"])
    register(consul, "cat-web-2", "cat-web", ["blue"])
    assert sorted(catalog(consul)["cat-web"]) == ["Blue", "blue"]


def test_a_name_without_tags_maps_to_an_empty_list(consul):
    """§10: no tags → [], never null."""
    register(consul, "cat-bare-1", "cat-bare")
    assert catalog(consul)["cat-bare"] == []


def test_with_nothing_registered_the_answer_is_an_empty_object(consul_double):
    """§10: {} (the double leaves out the servers' own consul service)."""
    assert catalog(consul_double) == {}


def test_catalog_services_carries_index_leader_and_consistency_headers(consul):
    """§10, §16.10: X-Consul-Index ≥ 1 and the leader/consistency headers."""
    headers = consul.request("GET", SERVICES + "?stale")[1]
    assert int(headers["X-Consul-Index"]) >= 1 and headers["X-Consul-KnownLeader"] in ("true", "false")
    assert headers["X-Consul-Effective-Consistency"] == "stale"


def test_catalog_services_takes_only_get(consul):
    """§1: catalog/services is GET only."""
    assert consul.request("PUT", SERVICES, b"")[0] == 405


def test_a_bad_index_on_catalog_services_is_400(consul):
    """§11: a bad index → 400 Invalid index."""
    assert consul.get(SERVICES + "?index=x") == (400, "Invalid index")


# ---------------------------------------------------------------- index (§10, §11)
def test_the_index_moves_when_a_service_is_registered(consul):
    """§10: the services table index moves when an instance is added."""
    before = services_index(consul)
    register(consul, "cat-web-1", "cat-web")
    assert services_index(consul) > before


def test_the_index_moves_when_a_service_is_deregistered(consul):
    """§10: … and when one is removed."""
    register(consul, "cat-web-1", "cat-web")
    before = services_index(consul)
    consul.put("/v1/agent/service/deregister/cat-web-1")
    assert services_index(consul) > before


def test_the_index_moves_when_the_tags_change(consul):
    """§10: … and when one is changed."""
    register(consul, "cat-web-1", "cat-web", ["v1"])
    before = services_index(consul)
    register(consul, "cat-web-1", "cat-web", ["v2"])
    assert services_index(consul) > before


def test_the_index_does_not_move_on_a_check_status_change(consul):
    """§10: check updates re-send the unchanged service; the services table stays put."""
    register(consul, "cat-web-1", "cat-web", status="critical")
    before = services_index(consul)
    consul.put("/v1/agent/check/pass/service:cat-web-1")
    assert consul.get("/v1/health/checks/cat-web")[1][0]["Status"] == "passing"
    assert services_index(consul) == before


def test_the_index_does_not_move_on_a_kv_write(consul):
    """§10, §16.8: KV writes never move a catalog index."""
    register(consul, "cat-web-1", "cat-web")
    before = services_index(consul)
    consul.request("PUT", "/v1/kv/svcwrap-test-catalog", b"v")
    try:
        assert services_index(consul) == before
    finally:
        consul.request("DELETE", "/v1/kv/svcwrap-test-catalog")


def test_a_blocked_catalog_services_returns_on_a_registration(consul):
    """§10, §11: a watcher of the list of services is woken by a registration."""
    n = services_index(consul)
    job = blocked(consul, lambda: consul.get(SERVICES + "?index=%d&wait=30s" % n))
    register(consul, "cat-new-1", "cat-new", ["t"])
    status, body = job.result()
    assert status == 200 and body["cat-new"] == ["t"]


def test_a_blocked_catalog_services_is_not_woken_by_check_updates(clocked):
    """§10: only registration changes answer it; wait runs out with the same index."""
    cut = clocked.cut
    register(cut, "web-1", "web", status="critical")
    n = services_index(cut)
    job = blocked(cut, lambda: cut.request("GET", SERVICES + "?index=%d&wait=5m" % n))
    cut.put("/v1/agent/check/pass/service:web-1")
    cut.put("/v1/agent/check/warn/service:web-1?note=slow")
    assert int(clocked.outlast(job, "check updates")[1]["X-Consul-Index"]) == n


# ---------------------------------------------------------------- ?node-meta, ?filter, ACLs
def node_version(cut):
    return cut.get("/v1/catalog/service/cat-web")[1][0]["NodeMeta"]["consul-version"]


def test_node_meta_keeps_instances_on_nodes_with_every_pair(consul):
    """§10: ?node-meta=key:value counts only instances on matching nodes."""
    register(consul, "cat-web-1", "cat-web", ["t"])
    assert catalog(consul, "?node-meta=consul-version:" + node_version(consul))["cat-web"] == ["t"]


def test_node_meta_that_no_node_has_leaves_nothing(consul):
    """§10: a pair no node has → no instance counts."""
    register(consul, "cat-web-1", "cat-web")
    assert "cat-web" not in catalog(consul, "?node-meta=rack:nowhere")


def test_filter_runs_over_each_instance_before_grouping_by_name(consul):
    """§10: ?filter keeps matching instances; a name's tags come from those instances only."""
    register(consul, "cat-web-1", "cat-web", ["prod-tag"], Meta={"env": "prod"})
    register(consul, "cat-web-2", "cat-web", ["dev-tag"], Meta={"env": "dev"})
    register(consul, "cat-db-1", "cat-db", ["dev-tag"], Meta={"env": "dev"})
    out = catalog(consul, "?filter=" + q('ServiceMeta.env == "prod"'))
    assert out.get("cat-web") == ["prod-tag"] and "cat-db" not in out


def test_a_filter_the_server_cannot_parse_is_an_error(consul):
    """§10: an expression the server cannot parse is an error (500 in Consul)."""
    register(consul, "cat-web-1", "cat-web")
    status, body = consul.get(SERVICES + "?filter=" + q("ServiceName =="))
    assert status == 500 and "Failed to create boolean expression evaluator" in body


def test_names_the_token_cannot_read_are_dropped_and_the_header_says_so():
    """§10: catalog/services filters by service:read instead of refusing."""
    with start(acl_tokens=["root"]) as d:
        root = ConsulUnderTest(d.addr, d, 60, 30, token="root")
        register(root, "web-1", "web")
        anonymous = ConsulUnderTest(d.addr, d, 60, 30)
        status, headers, raw = anonymous.request("GET", SERVICES)
        assert (status, json.loads(raw), headers["X-Consul-Results-Filtered-By-ACLs"]) == (200, {}, "true")


# ---------------------------------------------------------------- health/catalog filters (§10)
def health_ids(cut, name, query=""):
    status, entries = cut.get("/v1/health/service/%s%s" % (name, query))
    assert status == 200, (status, entries)
    return sorted(e["Service"]["ID"] for e in entries)


def test_without_passing_health_lists_every_instance_maintenance_included(consul):
    """§10: passing, warning, critical and maintenance instances all appear without ?passing."""
    register(consul, "f-ok", "cat-f")
    register(consul, "f-warn", "cat-f", status="warning")
    register(consul, "f-crit", "cat-f", status="critical")
    register(consul, "f-maint", "cat-f")
    consul.put("/v1/agent/service/maintenance/f-maint?enable=true")
    assert health_ids(consul, "cat-f") == ["f-crit", "f-maint", "f-ok", "f-warn"]


def test_a_repeated_tag_keeps_instances_with_every_tag(consul):
    """§10: ?tag= repeated is AND."""
    register(consul, "f-both", "cat-f", ["a", "b"])
    register(consul, "f-a", "cat-f", ["a"])
    assert health_ids(consul, "cat-f", "?tag=a&tag=b") == ["f-both"]


@pytest.mark.parametrize("path", ["/v1/health/service/cat-f", "/v1/catalog/service/cat-f"])
def test_tags_compare_case_insensitively(consul, path):
    """§10: both sides are lower-cased (health and catalog/service)."""
    register(consul, "f-1", "cat-f", ["Primary"])
    status, entries = consul.get(path + "?tag=pRiMaRy")
    assert status == 200 and len(entries) == 1


def test_an_empty_tag_matches_nothing(consul):
    """§10: no instance has the tag ""."""
    register(consul, "f-1", "cat-f", ["a"])
    assert health_ids(consul, "cat-f", "?tag=") == []


def test_filter_on_health_service_runs_over_each_entry(consul):
    """§10: ?filter over {Node, Service, Checks}, e.g. Service.Meta.env == "prod"."""
    register(consul, "f-prod", "cat-f", Meta={"env": "prod"})
    register(consul, "f-dev", "cat-f", Meta={"env": "dev"})
    assert health_ids(consul, "cat-f", "?filter=" + q('Service.Meta.env == "prod"')) == ["f-prod"]


def test_filter_with_in_on_the_tags(consul):
    """§10: "primary" in Service.Tags."""
    register(consul, "f-p", "cat-f", ["primary"])
    register(consul, "f-s", "cat-f", ["secondary"])
    assert health_ids(consul, "cat-f", "?filter=" + q('"primary" in Service.Tags')) == ["f-p"]


def test_near_is_accepted_and_never_filters(consul):
    """§10: ?near=_agent sorts; it never drops an instance."""
    register(consul, "f-1", "cat-f")
    register(consul, "f-2", "cat-f")
    assert health_ids(consul, "cat-f", "?near=_agent") == ["f-1", "f-2"]


def test_node_meta_on_health_keeps_only_matching_nodes(consul):
    """§10: ?node-meta on health/service."""
    register(consul, "f-1", "cat-f")
    assert health_ids(consul, "cat-f", "?node-meta=rack:nowhere") == []


@pytest.mark.parametrize("expression,ids", [
    ("Service.Port == 80", ["f-1"]),
    ("Service.Port != 80", ["f-2"]),
    ("Service.Meta.env is empty", ["f-2"]),
    ("Service.Meta is not empty", ["f-1"]),
    ('"c" not in Service.Tags', ["f-1"]),
    ('Service.Tags contains "c"', ["f-2"]),
    ('Service.ID matches "-2$"', ["f-2"]),
    ("not (Service.Port == 80)", ["f-2"]),
    ('Service.Port == 80 or "c" in Service.Tags', ["f-1", "f-2"]),
    ('Service.Port == 80 and "c" in Service.Tags', []),
])
def test_filter_operators(consul, expression, ids):
    """§10: go-bexpr's ==, !=, is [not] empty, [not] in, contains, matches, not, and, or, ()."""
    register(consul, "f-1", "cat-f", ["a", "b"], Meta={"env": "prod"}, Port=80)
    register(consul, "f-2", "cat-f", ["c"], Port=81)
    assert health_ids(consul, "cat-f", "?filter=" + q(expression)) == ids
