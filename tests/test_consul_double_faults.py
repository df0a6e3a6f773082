"""Contract tests: the double's handle API and fault injection (§8 agent replacement, §1 transport)."""
from __future__ import annotations

import socket
import threading
import time
import urllib.error
import urllib.request

import consul as pyconsul
import pytest
import requests

from tests.consul_double import start

REG = "/v1/agent/service/register"


def connect(port):
    with socket.create_connection(("127.0.0.1", port), timeout=1):
        return True


def test_handle_reports_url_addr_host_port():
    """Handle API: .url / .addr / .host / .port agree."""
    with start() as d:
        assert d.url == "http://%s:%d" % (d.host, d.port) and d.addr == "%s:%d" % (d.host, d.port)


def test_refuse_connections_gives_econnrefused_then_rebinds_same_port(consul_double):
    """§8: connection refused while the agent restarts; same port afterwards."""
    d = consul_double.double
    port = d.port
    d.refuse_connections(True)
    with pytest.raises(ConnectionRefusedError):
        connect(port)
    d.refuse_connections(False)
    assert d.port == port and connect(port)
    assert consul_double.get("/v1/status/leader")[0] == 200


def test_refuse_connections_drops_keep_alive_connections(consul_double):
    """§8: a pooled keep-alive connection does not survive the outage."""
    session = requests.Session()
    assert session.get(consul_double.url + "/v1/status/leader").status_code == 200
    consul_double.double.refuse_connections(True)
    with pytest.raises(requests.ConnectionError):
        session.get(consul_double.url + "/v1/status/leader", timeout=2)


def test_state_survives_refused_connections(consul_double):
    """The outage knob does not forget services (that is forget_everything)."""
    consul_double.put(REG, {"Name": "web", "Check": {"TTL": "1h"}})
    consul_double.double.refuse_connections(True)
    consul_double.double.refuse_connections(False)
    assert "web" in consul_double.services()


def test_forget_everything_models_a_replaced_agent(consul_double):
    """§8: replaced agent: service unknown; pass → 404; deregister → 404."""
    consul_double.put(REG, {"Name": "web", "Check": {"TTL": "1h"}})
    consul_double.double.forget_everything()
    assert consul_double.services() == {} and consul_double.checks() == {}
    assert consul_double.put("/v1/agent/check/pass/service:web")[0] == 404
    assert consul_double.put("/v1/agent/service/deregister/web")[0] == 404


def test_forget_everything_bumps_the_index(consul_double):
    """§11: the catalog index keeps growing across agent replacement."""
    consul_double.put(REG, {"Name": "web"})
    i = int(consul_double.request("GET", "/v1/health/service/web")[1]["X-Consul-Index"])
    consul_double.double.forget_everything()
    assert int(consul_double.request("GET", "/v1/health/service/web")[1]["X-Consul-Index"]) > i


def test_fail_with_answers_every_request(consul_double):
    """Fault injection: fail_with(status, body) until fail_with(None)."""
    consul_double.double.fail_with(503, "agent is busy")
    assert consul_double.get("/v1/agent/services") == (503, "agent is busy")
    assert consul_double.put(REG, {"Name": "web"}) == (503, "agent is busy")
    consul_double.double.fail_with(None)
    assert consul_double.put(REG, {"Name": "web"}) == (200, "")


def test_fail_with_500_raises_in_py_consul(consul_double):
    """§0.5: py-consul raises ConsulException on 5xx."""
    consul_double.double.fail_with(500, "boom")
    c = pyconsul.Consul(host=consul_double.host, port=consul_double.port)
    with pytest.raises(pyconsul.ConsulException, match="500 boom"):
        c.agent.check.ttl_pass("service:web")


def test_delay_slows_every_response(consul_double):
    """Fault injection: delay(seconds) delays responses; delay(0) turns it off."""
    consul_double.double.delay(0.3)
    t0 = time.monotonic()
    consul_double.get("/v1/status/leader")
    assert time.monotonic() - t0 >= 0.3
    consul_double.double.delay(0)
    t0 = time.monotonic()
    consul_double.get("/v1/status/leader")
    assert time.monotonic() - t0 < 0.3


def test_delay_makes_client_timeouts_fire(consul_double):
    """Fault injection: a client timeout shorter than the delay raises."""
    consul_double.double.delay(1.0)
    with pytest.raises((socket.timeout, urllib.error.URLError, TimeoutError)):
        urllib.request.urlopen(consul_double.url + "/v1/status/leader", timeout=0.2)


def test_requests_are_recorded_with_method_path_query_body_status_time(consul_double):
    """Handle API: .requests records what was received."""
    d = consul_double.double
    d.clear_requests()
    t0 = time.monotonic()
    consul_double.put(REG + "?replace-existing-checks=true", {"Name": "web"})
    consul_double.put("/v1/agent/check/pass/service%3Aweb?note=hi")
    r1, r2 = d.requests
    assert (r1.method, r1.path, r1.query, r1.body, r1.status, r1.token) == (
        "PUT", REG, {"replace-existing-checks": "true"}, {"Name": "web"}, 200, None)
    assert (r2.path, r2.query, r2.status) == ("/v1/agent/check/pass/service:web", {"note": "hi"}, 404)
    assert t0 <= r1.time <= r2.time


def test_request_log_is_a_snapshot(consul_double):
    """Handle API: .requests returns a copy; clear_requests() empties the log."""
    snap = consul_double.double.requests
    consul_double.get("/v1/status/leader")
    assert len(consul_double.double.requests) == len(snap) + 1
    consul_double.double.clear_requests()
    assert consul_double.double.requests == []


def test_concurrent_requests_are_served_in_parallel(consul_double):
    """Transport: ThreadingHTTPServer: a blocking query does not block other requests."""
    consul_double.put(REG, {"Name": "web"})
    i = consul_double.request("GET", "/v1/health/service/web")[1]["X-Consul-Index"]
    t = threading.Thread(target=consul_double.get, args=("/v1/health/service/web?index=%s&wait=10s" % i,))
    t.start()
    t0 = time.monotonic()
    assert consul_double.get("/v1/status/leader")[0] == 200
    assert time.monotonic() - t0 < 0.5
    assert t.is_alive(), "the blocking query was still waiting meanwhile"
    consul_double.put(REG, {"Name": "web", "Port": 1})  # moves the index: the query returns
    t.join(5)


def test_stop_is_idempotent_and_closes_the_port():
    """Handle API: stop() twice is fine; the port refuses afterwards."""
    d = start()
    port = d.port
    d.stop()
    d.stop()
    with pytest.raises(ConnectionRefusedError):
        connect(port)
