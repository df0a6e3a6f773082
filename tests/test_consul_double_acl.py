"""Contract tests: ACL tokens (§9) and HTTP methods / error format (§1)."""
from __future__ import annotations

import pytest

from tests.consul_double import start
from tests.consul_fixture import REGISTER as REG, ConsulUnderTest, ttl_service

SVC = ttl_service("web", ttl="1h", Status="passing")


@pytest.fixture
def acl():
    with start(acl_tokens=["root-secret", "other-secret"]) as d:
        yield ConsulUnderTest(d.addr, d, 60, 30)


def put(cut, path, body=None, headers=None):
    status, _, raw = cut.request("PUT", path, body, headers=headers)
    return status, raw.decode()


def test_listed_token_in_header_has_full_rights(acl):
    """§9: a listed token (X-Consul-Token) may register."""
    assert put(acl, REG, SVC, {"X-Consul-Token": "root-secret"}) == (200, "")


def test_token_query_parameter_is_accepted(acl):
    """§9: ?token= is read first."""
    assert put(acl, REG + "?token=other-secret", SVC) == (200, "")


def test_bearer_authorization_header_is_accepted(acl):
    """§9: Authorization: Bearer <token> (case-insensitive scheme)."""
    assert put(acl, REG, SVC, {"Authorization": "bearer root-secret"}) == (200, "")


def test_query_token_wins_over_header(acl):
    """§9: ?token= takes precedence over X-Consul-Token."""
    assert put(acl, REG + "?token=bogus", SVC, {"X-Consul-Token": "root-secret"}) == (403, "ACL not found")


def test_header_wins_over_bearer(acl):
    """§9: X-Consul-Token takes precedence over Authorization."""
    assert put(acl, REG, SVC, {"X-Consul-Token": "root-secret", "Authorization": "Bearer bogus"}) == (200, "")


def test_unknown_token_is_403_acl_not_found(acl):
    """§9: a token secret that does not exist → 403 ACL not found."""
    assert put(acl, REG, SVC, {"X-Consul-Token": "nope"}) == (403, "ACL not found")


def test_no_token_is_403_permission_denied(acl):
    """§9: anonymous under default deny → 403 Permission denied…"""
    status, text = put(acl, REG, SVC)
    assert status == 403 and text.startswith("Permission denied")


def test_validation_comes_before_permission(acl):
    """§2: Missing service name is reported before the ACL permission check."""
    assert put(acl, REG, {"ID": "x"}) == (400, "Missing service name")


def test_anonymous_pass_on_existing_check_is_403(acl):
    """§4.3: check exists but token lacks write → 403."""
    put(acl, REG, SVC, {"X-Consul-Token": "root-secret"})
    status, text = put(acl, "/v1/agent/check/pass/service:web")
    assert status == 403 and text.startswith("Permission denied")


def test_anonymous_pass_on_unknown_check_is_404_in_new_mode(acl):
    """§4.3: existence is vetted before permission (1.11+)."""
    assert put(acl, "/v1/agent/check/pass/nope")[0] == 404


def test_anonymous_deregister_is_403(acl):
    """§9: deregister needs service:write."""
    put(acl, REG, SVC, {"X-Consul-Token": "root-secret"})
    assert put(acl, "/v1/agent/service/deregister/web")[0] == 403


def test_anonymous_reads_are_filtered_not_refused(acl):
    """§9: agent/services and health drop what the token cannot read; no 403."""
    put(acl, REG, SVC, {"X-Consul-Token": "root-secret"})
    assert acl.get("/v1/agent/services") == (200, {})
    assert acl.get("/v1/health/service/web") == (200, [])
    acl.token = "root-secret"
    assert list(acl.services()) == ["web"]


def test_anonymous_agent_self_is_403(acl):
    """§9: /v1/agent/self needs agent:read."""
    assert acl.get("/v1/agent/self")[0] == 403


def test_unknown_token_on_reads_is_403(acl):
    """§9: an unknown secret is refused on reads too."""
    acl.token = "nope"
    assert acl.get("/v1/health/service/web") == (403, "ACL not found")


def test_tokens_are_ignored_when_acls_are_off(consul_double):
    """§9: with ACLs disabled any token works."""
    assert put(consul_double, REG, SVC, {"X-Consul-Token": "whatever"}) == (200, "")


def test_request_log_records_the_resolved_token(acl):
    """Handle API: .requests[].token is the token the agent resolved."""
    acl.double.clear_requests()
    put(acl, REG + "?token=root-secret", SVC, {"X-Consul-Token": "ignored"})
    assert acl.double.requests[-1].token == "root-secret"


# ---------------------------------------------------------------- §1 methods and errors
@pytest.mark.parametrize("method,path,allow", [
    ("GET", "/v1/agent/service/register", "OPTIONS,PUT"),
    ("POST", "/v1/agent/check/pass/x", "OPTIONS,PUT"),
    ("GET", "/v1/agent/service/deregister/x", "OPTIONS,PUT"),
    ("PUT", "/v1/agent/services", "OPTIONS,GET"),
    ("DELETE", "/v1/health/service/web", "OPTIONS,GET"),
    ("PUT", "/v1/status/leader", "OPTIONS,GET"),
])
def test_wrong_method_is_405_with_allow_header(consul, method, path, allow):
    """§1: wrong method → 405, Allow header, body "method X not allowed"."""
    status, headers, raw = consul.request(method, path, b"" if method in ("PUT", "POST") else None)
    assert (status, raw.decode()) == (405, "method %s not allowed" % method)
    assert headers["Allow"] == allow


def test_options_is_answered_with_the_allowed_list(consul):
    """§1: OPTIONS returns the allowed methods."""
    status, headers, _ = consul.request("OPTIONS", "/v1/agent/service/register")
    assert status == 200 and headers["Allow"] == "OPTIONS,PUT"


def test_errors_are_plain_text(consul):
    """§0.12: errors are text/plain, not JSON."""
    status, headers, raw = consul.request("PUT", "/v1/agent/service/deregister/nope", b"")
    assert status == 404 and headers["Content-Type"].startswith("text/plain") and not raw.startswith(b"{")
