"""Contract tests: py-consul 1.8.0 against the double (§14.1)."""
from __future__ import annotations

import consul as pyconsul
import pytest



@pytest.fixture
def client(consul):
    return pyconsul.Consul(host=consul.host, port=consul.port, token=consul.token)


def ttl_check(ttl="1s", **extra):
    c = pyconsul.Check.ttl(ttl)
    c.update(extra)
    return c


def test_register_with_ttl_check_and_extra_keys(client, consul):
    """§14.1: register(check=Check.ttl + DCSA/Status/Notes) returns True; keys are lower-case."""
    check = ttl_check("1s", DeregisterCriticalServiceAfter="1m", Status="passing", Notes="n")
    assert client.agent.service.register("web", service_id="web-1", port=8080, check=check) is True
    c = consul.checks()["service:web-1"]
    assert (c["Status"], c["Notes"], c["Type"]) == ("passing", "n", "ttl")


def test_extra_checks_get_numbered_ids(client, consul):
    """§14.1: with extra_checks the IDs become service:<id>:1, :2."""
    client.agent.service.register("web", service_id="w", check=ttl_check("5s"), extra_checks=[ttl_check("5s")])
    assert set(consul.checks()) == {"service:w:1", "service:w:2"}


def test_replace_existing_checks_flag_is_honoured(client, consul):
    """§14.1: replace_existing_checks=True sends ?replace-existing-checks=true."""
    client.agent.service.register("web", check=ttl_check("5s", CheckID="a"))
    client.agent.service.register("web", check=ttl_check("5s", CheckID="b"), replace_existing_checks=True)
    assert set(consul.checks()) == {"b"}


def test_ttl_pass_returns_true_and_sets_output(client, consul):
    """§14.1: ttl_pass(check_id, notes) → True; notes becomes Output."""
    client.agent.service.register("web", service_id="web-1", check=ttl_check("5s"))
    assert client.agent.check.ttl_pass("service:web-1", "ok") is True
    c = consul.checks()["service:web-1"]
    assert (c["Status"], c["Output"]) == ("passing", "ok")


def test_ttl_pass_on_unknown_check_returns_false(client):
    """§0.5: py-consul returns False on 404 rather than raising."""
    assert client.agent.check.ttl_pass("service:nope") is False


def test_ttl_pass_on_non_ttl_check_raises_consul_exception(client, consul):
    """§0.5: a 500 raises ConsulException("500 <body>")."""
    consul.put("/v1/agent/service/register", {"Name": "web", "Check": {"HTTP": "http://127.0.0.1:1/", "Interval": "30s"}})
    with pytest.raises(pyconsul.ConsulException, match="does not have associated TTL"):
        client.agent.check.ttl_pass("service:web")


def test_deregister_returns_true_then_false(client):
    """§0.5: deregister → True; again → False (404)."""
    client.agent.service.register("web", check=ttl_check("5s"))
    assert client.agent.service.deregister("web") is True
    assert client.agent.service.deregister("web") is False


def test_health_service_passing_returns_index_and_nodes(client):
    """§14.1: health.service(name, passing=True) → (index, nodes)."""
    client.agent.service.register("web", service_id="a", check=ttl_check("5s", Status="passing"))
    client.agent.service.register("web", service_id="b", check=ttl_check("5s"))
    index, nodes = client.health.service("web", passing=True)
    assert int(index) >= 1 and [n["Service"]["ID"] for n in nodes] == ["a"]


def test_bad_request_raises_bad_request(client):
    """§14.1: 400 → pyconsul.exceptions.BadRequest."""
    with pytest.raises(pyconsul.exceptions.BadRequest, match="missing unit"):
        client.agent.service.register("web", check={"ttl": "10"})


def test_maintenance_with_python_bool(client, consul):
    """§7: py-consul sends enable=True, which Go's ParseBool accepts."""
    client.agent.service.register("web", check=ttl_check("5s"))
    assert client.agent.service.maintenance("web", True, reason="r") is True
    assert consul.checks()["_service_maintenance:web"]["Notes"] == "r"


def test_ttl_expiry_observed_through_py_consul(manual_double):
    """§5: the TTL expires 1s after the last heartbeat."""
    client = pyconsul.Consul(host=manual_double.host, port=manual_double.port)
    client.agent.service.register("web", check=ttl_check("1s", Status="passing"))
    manual_double.clock.advance(0.9)
    assert client.agent.checks()["service:web"]["Status"] == "passing"
    manual_double.clock.advance(0.1)
    assert client.agent.checks()["service:web"]["Status"] == "critical"


def test_status_leader_and_agent_self(client):
    """§10: status.leader() and agent.self()."""
    assert client.status.leader()
    assert client.agent.self()["Config"]["NodeName"]
