"""Contract tests: read endpoints (§10), blocking queries (§11), deferred output sync (§0.10)."""
from __future__ import annotations

import threading
import time

import pytest

from tests.consul_double import start
from tests.consul_fixture import ConsulUnderTest, ManualClock, register_ttl_service, started_double


def reg(cut, sid="web-1", name="web", status="passing", **service):
    register_ttl_service(cut, sid, name, ttl="1h", service=service, Status=status)


def test_agent_services_is_an_object_keyed_by_id(consul):
    """§10: GET /v1/agent/services shape."""
    reg(consul, Tags=["t"], Port=80)
    svc = consul.services()["web-1"]
    assert {k: svc[k] for k in ("ID", "Service", "Tags", "Meta", "Port", "Address", "Weights",
                                "EnableTagOverride")} == {
        "ID": "web-1", "Service": "web", "Tags": ["t"], "Meta": {}, "Port": 80, "Address": "",
        "Weights": {"Passing": 1, "Warning": 1}, "EnableTagOverride": False}


def test_agent_services_has_no_index_header(consul):
    """§10: agent/services carries no X-Consul-Index."""
    status, headers, _ = consul.request("GET", "/v1/agent/services")
    assert status == 200 and "X-Consul-Index" not in headers


def test_agent_service_by_id_has_content_hash(consul, web_1):
    """§10: GET /v1/agent/service/:id returns the service plus ContentHash and its header."""
    status, headers, _ = consul.request("GET", "/v1/agent/service/web-1")
    body = consul.get("/v1/agent/service/web-1")[1]
    assert status == 200 and body["ID"] == "web-1" and body["ContentHash"] == headers["X-Consul-ContentHash"]


def test_agent_service_unknown_id_is_404_text(consul):
    """§10: unknown ID → 404 text "unknown service ID: <id>"."""
    assert consul.get("/v1/agent/service/nope") == (404, "unknown service ID: nope")


def test_agent_service_hash_blocking_returns_on_change(consul_double, web_1):
    """§10/§11: ?hash=&wait= blocks until the definition changes."""
    h = consul_double.get("/v1/agent/service/web-1")[1]["ContentHash"]
    threading.Timer(0.2, lambda: reg(consul_double, Port=81)).start()
    t0 = time.monotonic()
    status, body = consul_double.get("/v1/agent/service/web-1?hash=%s&wait=5s" % h)
    assert status == 200 and body["Port"] == 81 and 0.1 < time.monotonic() - t0 < 4


def test_agent_checks_shape(consul, web_1):
    """§10: GET /v1/agent/checks keyed by CheckID with the documented fields, indexes 0."""
    c = consul.checks()["service:web-1"]
    for k in ("Node", "CheckID", "Name", "Status", "Notes", "Output", "ServiceID", "ServiceName",
              "ServiceTags", "Type", "Interval", "Timeout", "ExposedPort", "Definition"):
        assert k in c
    assert (c["CreateIndex"], c["ModifyIndex"]) == (0, 0)


def test_health_service_entry_shape(consul, web_1):
    """§10: entries are {Node, Service, Checks}; Node.Address 127.0.0.1; empty ServiceAddress stays empty."""
    entry = consul.get("/v1/health/service/web")[1][0]
    assert set(entry) == {"Node", "Service", "Checks"}
    assert entry["Node"]["Address"] == "127.0.0.1" and entry["Service"]["Address"] == ""
    assert entry["Node"]["Datacenter"] == "dc1"


def test_health_service_includes_passing_serf_health(consul, web_1):
    """§10: every entry has the node check serfHealth, passing, empty ServiceID, ServiceTags []."""
    checks = consul.get("/v1/health/service/web")[1][0]["Checks"]
    serf = [c for c in checks if c["CheckID"] == "serfHealth"][0]
    assert (serf["Name"], serf["Status"], serf["ServiceID"], serf["ServiceTags"]) == (
        "Serf Health Status", "passing", "", [])


def test_passing_filter_drops_critical_and_warning(consul):
    """§0.11: ?passing drops any instance with a non-passing check, warning included."""
    reg(consul, sid="ok")
    reg(consul, sid="warn", status="warning")
    reg(consul, sid="crit", status="critical")
    assert consul.passing("web") == ["ok"]
    assert len(consul.get("/v1/health/service/web")[1]) == 3


@pytest.mark.parametrize("value,count", [("", 1), ("true", 1), ("1", 1), ("false", 2), ("0", 2)])
def test_passing_parameter_values(consul, value, count):
    """§10: passing empty/true → filter; false → no filter."""
    reg(consul, sid="ok")
    reg(consul, sid="bad", status="critical")
    q = "?passing" if value == "" else "?passing=" + value
    assert len(consul.get("/v1/health/service/web" + q)[1]) == count


def test_unparseable_passing_is_400(consul):
    """§10: an unparseable value → 400 Invalid value for ?passing."""
    assert consul.get("/v1/health/service/web?passing=yes") == (400, "Invalid value for ?passing")


def test_unknown_service_name_is_empty_list_not_404(consul):
    """§10: unknown name → [] with 200 (health and catalog)."""
    assert consul.get("/v1/health/service/nope") == (200, [])
    assert consul.get("/v1/catalog/service/nope") == (200, [])


def test_health_service_always_sends_index_and_leader_headers(consul):
    """§10: X-Consul-Index (≥1), X-Consul-KnownLeader, X-Consul-LastContact."""
    for path in ("/v1/health/service/nope", "/v1/health/checks/nope", "/v1/catalog/service/nope"):
        _, headers, _ = consul.request("GET", path)
        assert int(headers["X-Consul-Index"]) >= 1
        assert headers["X-Consul-KnownLeader"] in ("true", "false") and "X-Consul-LastContact" in headers


def test_tag_filter(consul):
    """§10: ?tag= keeps instances carrying that tag."""
    reg(consul, sid="a", Tags=["blue"])
    reg(consul, sid="b", Tags=["green"])
    assert [e["Service"]["ID"] for e in consul.get("/v1/health/service/web?tag=blue")[1]] == ["a"]


def test_health_checks_lists_the_service_checks(consul, web_1):
    """§10: GET /v1/health/checks/:service."""
    status, checks = consul.get("/v1/health/checks/web")
    assert status == 200 and [c["CheckID"] for c in checks] == ["service:web-1"]


def test_catalog_service_lists_every_instance_regardless_of_health(consul):
    """§10: catalog/service is flat and ignores health; ServiceAddress empty, Address 127.0.0.1."""
    reg(consul, sid="a")
    reg(consul, sid="b", status="critical")
    entries = consul.get("/v1/catalog/service/web")[1]
    assert sorted(e["ServiceID"] for e in entries) == ["a", "b"]
    assert {(e["Address"], e["ServiceAddress"], e["ServiceName"]) for e in entries} == {("127.0.0.1", "", "web")}


def test_catalog_service_reports_an_explicit_address(consul):
    """§10: ServiceAddress is the registered Address when set."""
    reg(consul, Address="10.1.2.3", Port=9)
    e = consul.get("/v1/catalog/service/web")[1][0]
    assert (e["ServiceAddress"], e["ServicePort"]) == ("10.1.2.3", 9)


def test_status_leader_is_a_json_string(consul_double):
    """§10: GET /v1/status/leader → "127.0.0.1:8300"."""
    status, _, raw = consul_double.request("GET", "/v1/status/leader")
    assert (status, raw) == (200, b'"127.0.0.1:8300"')


def test_agent_self_config(consul):
    """§10: agent/self Config.NodeName / Datacenter / Version."""
    cfg = consul.get("/v1/agent/self")[1]["Config"]
    assert cfg["Datacenter"] and cfg["NodeName"] and cfg["Version"]


def test_agent_self_of_the_double_reports_its_config():
    """§10: node name, datacenter and version 1.17.0 come from start()."""
    with start(node_name="n1", datacenter="eu") as d:
        cfg = ConsulUnderTest(d.addr, d, 60, 30).get("/v1/agent/self")[1]["Config"]
        assert (cfg["NodeName"], cfg["Datacenter"], cfg["Version"]) == ("n1", "eu", "1.17.0")


def test_agent_health_by_id_codes(consul):
    """§10: agent/health/service/id → 200 passing, 429 warning, 503 critical, 404 unknown."""
    reg(consul, sid="p")
    reg(consul, sid="w", status="warning")
    reg(consul, sid="c", status="critical")
    assert consul.get("/v1/agent/health/service/id/p")[0] == 200
    assert consul.get("/v1/agent/health/service/id/w")[0] == 429
    assert consul.get("/v1/agent/health/service/id/c")[0] == 503
    assert consul.get("/v1/agent/health/service/id/p?format=text") == (200, "passing")
    status, body = consul.get("/v1/agent/health/service/id/nope")
    assert status == 404 and body["AggregatedStatus"] == "critical"


# ---------------------------------------------------------------- §11 blocking
def index_of(cut, name="web"):
    return int(cut.request("GET", "/v1/health/service/" + name)[1]["X-Consul-Index"])


def test_index_grows_on_registration_and_status_change(consul):
    """§11: the index increases on every catalog-visible change."""
    i0 = index_of(consul)
    reg(consul, status="critical")
    i1 = index_of(consul)
    consul.put("/v1/agent/check/pass/service:web-1")
    i2 = index_of(consul)
    assert i0 < i1 < i2


def test_idempotent_pass_does_not_bump_the_index(consul_double, web_1):
    """§11: a write that changes nothing returns the same index."""
    consul_double.put("/v1/agent/check/pass/service:web-1")
    i1 = index_of(consul_double)
    consul_double.put("/v1/agent/check/pass/service:web-1")
    assert index_of(consul_double) == i1


def test_blocking_query_returns_when_the_index_moves(consul_double):
    """§11: ?index=N blocks until the index is greater than N."""
    reg(consul_double, status="critical")
    i = index_of(consul_double)
    threading.Timer(0.3, lambda: consul_double.put("/v1/agent/check/pass/service:web-1")).start()
    t0 = time.monotonic()
    status, headers, _ = consul_double.request("GET", "/v1/health/service/web?passing&index=%d&wait=5s" % i)
    assert status == 200 and int(headers["X-Consul-Index"]) > i and 0.2 < time.monotonic() - t0 < 4


def test_blocking_query_times_out_with_the_same_index(consul_double, web_1):
    """§11: when wait runs out the same index comes back."""
    i = index_of(consul_double)
    t0 = time.monotonic()
    _, headers, _ = consul_double.request("GET", "/v1/health/service/web?index=%d&wait=300ms" % i)
    assert int(headers["X-Consul-Index"]) == i and time.monotonic() - t0 >= 0.3


def test_bad_index_is_400(consul):
    """§11: a bad index → 400 Invalid index."""
    assert consul.get("/v1/health/service/web?index=abc") == (400, "Invalid index")


def test_bad_wait_is_400(consul):
    """§11: a bad wait → 400 Invalid wait time."""
    assert consul.get("/v1/health/service/web?index=1&wait=5") == (400, "Invalid wait time")


# ---------------------------------------------------------------- §0.10 deferred output sync
def test_output_change_without_status_change_is_immediate_in_agent_checks(consul, web_1):
    """§0.10: /v1/agent/checks shows a new Output at once."""
    consul.put("/v1/agent/check/pass/service:web-1?note=v2")
    assert consul.checks()["service:web-1"]["Output"] == "v2"


def test_output_change_without_status_change_reaches_health_late(consul_double, web_1):
    """§0.10: health/* sees an output-only change only after check_update_interval."""
    consul_double.put("/v1/agent/check/pass/service:web-1?note=v2")
    health_output = consul_double.get("/v1/health/checks/web")[1][0]["Output"]
    assert health_output == ""


def test_status_change_syncs_output_at_once(consul, web_1):
    """§0.10: a status change syncs immediately, output included."""
    consul.put("/v1/agent/check/warn/service:web-1?note=slow")
    c = consul.get("/v1/health/checks/web")[1][0]
    assert (c["Status"], c["Output"]) == ("warning", "slow")


def test_deferred_output_arrives_after_the_update_interval():
    """§0.10: with a short check_update_interval the output reaches health/* later."""
    clock = ManualClock()
    with started_double(check_update_interval=0.3, clock=clock) as cut:
        reg(cut)
        cut.put("/v1/agent/check/pass/service:web-1?note=v2")
        clock.advance(0.25)
        assert cut.get("/v1/health/checks/web")[1][0]["Output"] == ""
        clock.advance(0.1)
        assert cut.get("/v1/health/checks/web")[1][0]["Output"] == "v2"
