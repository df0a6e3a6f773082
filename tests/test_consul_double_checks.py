"""Contract tests: deregister (§3), TTL updates (§4), TTL expiry (§5), maintenance (§7)."""
from __future__ import annotations

import time

import pytest

from tests.consul_double import start
from tests.consul_fixture import REGISTER as REG, ConsulUnderTest, register_ttl_service as register, wait_until

UNKNOWN_CHECK = 'Unknown check ID "nope". Ensure that the check ID is passed, not the check name.'


def check(cut, cid="service:web-1"):
    return cut.checks()[cid]


# ---------------------------------------------------------------- §3 deregister
def test_deregister_removes_service_and_its_checks(consul, web_1):
    """§3: 200; the service and all its checks are removed."""
    assert consul.put("/v1/agent/service/deregister/web-1") == (200, "")
    assert consul.services() == {} and consul.checks() == {}


def test_deregister_unknown_id_is_404_with_hint(consul):
    """§0.4/§3: 1.11+ → 404 Unknown service ID "<id>". Ensure …"""
    assert consul.put("/v1/agent/service/deregister/nope") == (
        404, 'Unknown service ID "nope". Ensure that the service ID is passed, not the service name.')


def test_deregister_by_name_instead_of_id_is_404(consul, web_1):
    """§3: the ID is needed, not the name."""
    assert consul.put("/v1/agent/service/deregister/web")[0] == 404


def test_legacy_deregister_unknown_id_is_200_without_acls():
    """§3: ≤1.10 with ACLs off → 200."""
    with start(legacy=True) as d:
        cut = ConsulUnderTest(d.addr, d, 60, 30)
        assert cut.put("/v1/agent/service/deregister/nope") == (200, "")


def test_legacy_deregister_unknown_id_is_500_with_acls():
    """§3: ≤1.10 with ACLs on → 500 Unknown service "<id>"."""
    with start(legacy=True, acl_tokens=["root"]) as d:
        cut = ConsulUnderTest(d.addr, d, 60, 30, token="root")
        assert cut.put("/v1/agent/service/deregister/nope") == (500, 'Unknown service "nope"')


# ---------------------------------------------------------------- §4 TTL updates
@pytest.mark.parametrize("verb,status", [("pass", "passing"), ("warn", "warning"), ("fail", "critical")])
def test_pass_warn_fail_set_the_status(consul, verb, status):
    """§4.1: pass/warn/fail set passing/warning/critical."""
    cid = register(consul, Status="warning" if verb != "warn" else "passing")
    assert consul.put("/v1/agent/check/%s/%s" % (verb, cid)) == (200, "")
    assert check(consul)["Status"] == status


def test_note_becomes_output_not_notes(consul):
    """§4.1: ?note= becomes Output; Notes never changes."""
    cid = register(consul, Notes="keep me")
    consul.put("/v1/agent/check/pass/%s?note=all+good" % cid)
    c = check(consul)
    assert (c["Output"], c["Notes"]) == ("all good", "keep me")


def test_pass_without_note_clears_output(consul, web_1):
    """§4.1: no note → empty Output."""
    consul.put("/v1/agent/check/pass/%s?note=x" % web_1)
    consul.put("/v1/agent/check/pass/%s" % web_1)
    assert check(consul)["Output"] == ""


def test_update_sets_status_and_output(consul, web_1):
    """§4.2: PUT update with {"Status","Output"}."""
    assert consul.put("/v1/agent/check/update/" + web_1, {"Status": "warning", "Output": "meh"}) == (200, "")
    c = check(consul)
    assert (c["Status"], c["Output"]) == ("warning", "meh")


@pytest.mark.parametrize("body,shown", [({"Status": "ok"}, "ok"), ({"Output": "x"}, "")])
def test_update_with_bad_or_missing_status_is_400(consul, web_1, body, shown):
    """§4.2: any other Status, including a missing one → 400 Invalid check status: '<v>'."""
    assert consul.put("/v1/agent/check/update/" + web_1, body) == (400, "Invalid check status: '%s'" % shown)


def test_update_with_unknown_body_key_is_400(consul, web_1):
    """§4.2: unknown body keys → 400 decode error."""
    assert consul.put("/v1/agent/check/update/" + web_1, {"Status": "passing", "Notes": "x"}) == (
        400, 'Request decode failed: json: unknown field "Notes"')


@pytest.mark.parametrize("verb", ["pass", "warn", "fail"])
def test_unknown_check_id_is_404_with_hint(consul, verb):
    """§0.3/§4.3: 1.11+ → 404 Unknown check ID "<id>". Ensure …"""
    assert consul.put("/v1/agent/check/%s/nope" % verb) == (404, UNKNOWN_CHECK)


def test_update_on_unknown_check_id_is_404(consul):
    """§4.3: update on an unknown ID → 404."""
    assert consul.put("/v1/agent/check/update/nope", {"Status": "passing"}) == (404, UNKNOWN_CHECK)


def test_ttl_update_on_a_non_ttl_check_is_500(consul):
    """§0.3/§4.3: a check that exists but is not TTL → 500 does not have associated TTL."""
    consul.put(REG, {"Name": "web", "Check": {"HTTP": "http://127.0.0.1:1/", "Interval": "30s"}})
    assert consul.put("/v1/agent/check/pass/service:web") == (
        500, 'CheckID "service:web" does not have associated TTL')


def test_legacy_unknown_check_is_500_without_acls():
    """§0.3: ≤1.10 with ACLs off → 500 CheckID "<id>" does not have associated TTL."""
    with start(legacy=True) as d:
        cut = ConsulUnderTest(d.addr, d, 60, 30)
        assert cut.put("/v1/agent/check/pass/nope") == (500, 'CheckID "nope" does not have associated TTL')


def test_legacy_unknown_check_is_500_unknown_check_with_acls():
    """§0.3: ≤1.10 with ACLs on → 500 Unknown check "<id>"."""
    with start(legacy=True, acl_tokens=["root"]) as d:
        cut = ConsulUnderTest(d.addr, d, 60, 30, token="root")
        assert cut.put("/v1/agent/check/pass/nope") == (500, 'Unknown check "nope"')


def test_long_output_is_truncated_with_capture_note(consul, web_1):
    """§0.9/§4.4: output > 4096 bytes → first 4096 bytes + " ... (captured 4096 of N bytes)"."""
    consul.put("/v1/agent/check/update/" + web_1, {"Status": "passing", "Output": "x" * 5000})
    assert check(consul)["Output"] == "x" * 4096 + " ... (captured 4096 of 5000 bytes)"


def test_output_max_size_lowers_the_limit_per_check(consul):
    """§4.4: OutputMaxSize lowers the limit for that check."""
    cid = register(consul, OutputMaxSize=10)
    consul.put("/v1/agent/check/update/" + cid, {"Status": "passing", "Output": "0123456789abc"})
    assert check(consul)["Output"] == "0123456789 ... (captured 10 of 13 bytes)"


def test_truncation_counts_bytes_not_characters(consul):
    """§4.4: the cut is by byte; a multi-byte character may be split."""
    cid = register(consul, OutputMaxSize=3)
    consul.put("/v1/agent/check/update/" + cid, {"Status": "passing", "Output": "éé"})  # 4 bytes
    out = check(consul)["Output"]
    assert out.startswith("é") and out.endswith(" ... (captured 3 of 4 bytes)")


def test_agent_wide_output_max_size_is_configurable():
    """§4.4: check_output_max_size caps every check."""
    with start(output_max_size=5) as d:
        cut = ConsulUnderTest(d.addr, d, 60, 30)
        cid = register(cut)
        cut.put("/v1/agent/check/pass/%s?note=abcdefg" % cid)
        assert check(cut)["Output"] == "abcde ... (captured 5 of 7 bytes)"


# ---------------------------------------------------------------- §5 TTL expiry
def test_ttl_expiry_turns_check_critical_with_ttl_expired(manual_double):
    """§5: on expiry status → critical, Output "TTL expired" when no output was ever given."""
    register(manual_double, ttl="300ms", Status="passing")
    manual_double.clock.advance(0.3)
    c = check(manual_double)
    assert (c["Status"], c["Output"]) == ("critical", "TTL expired")


def test_ttl_expiry_keeps_the_last_output(manual_double):
    """§5: Output "TTL expired (last output before timeout follows): <o>"."""
    cid = register(manual_double, ttl="300ms")
    manual_double.put("/v1/agent/check/pass/%s?note=fine" % cid)
    manual_double.clock.advance(0.3)
    assert check(manual_double)["Output"] == "TTL expired (last output before timeout follows): fine"


def test_pass_resets_the_ttl_timer(manual_double):
    """§5: every update resets the timer to the full TTL."""
    cid = register(manual_double, ttl="1s")
    for _ in range(5):  # 5 × 900 ms, well past one TTL
        manual_double.put("/v1/agent/check/pass/" + cid)
        manual_double.clock.advance(0.9)
        assert check(manual_double)["Status"] == "passing"


def test_pass_after_expiry_goes_straight_back_to_passing(manual_double):
    """§5: a pass after expiry → passing again."""
    cid = register(manual_double, ttl="200ms", Status="passing")
    manual_double.clock.advance(0.2)
    assert check(manual_double)["Status"] == "critical"
    manual_double.put("/v1/agent/check/pass/" + cid)
    assert check(manual_double)["Status"] == "passing"


def test_expiry_is_not_before_the_ttl(manual_double):
    """§5: the timer fires after TTL, not earlier."""
    register(manual_double, ttl="500ms", Status="passing")
    manual_double.clock.advance(0.499)
    assert check(manual_double)["Status"] == "passing"
    manual_double.clock.advance(0.002)
    assert check(manual_double)["Status"] == "critical"


def test_the_ttl_runs_on_the_real_clock(consul_double):
    """§5: without a manual clock the double's own ticker expires TTLs in real time."""
    t0 = time.monotonic()
    register(consul_double, ttl="300ms", Status="passing")
    wait_until(lambda: check(consul_double)["Status"] == "critical", 3)
    assert time.monotonic() - t0 >= 0.3


def test_reregistration_restarts_the_ttl_timer(manual_double):
    """§2.5: re-registration restarts the TTL with the full duration."""
    register(manual_double, ttl="1s", Status="passing")
    manual_double.clock.advance(0.6)
    register(manual_double, ttl="1s")
    manual_double.clock.advance(0.6)  # 1.2 s after the first registration, 0.6 s after the second
    assert check(manual_double)["Status"] == "passing"


def test_reregistration_forgets_last_output_for_expiry_text(manual_double):
    """§2.5/§5: a new TTL runner has no last output, so expiry says just "TTL expired"."""
    cid = register(manual_double, ttl="300ms")
    manual_double.put("/v1/agent/check/pass/%s?note=before" % cid)
    register(manual_double, ttl="300ms")
    manual_double.clock.advance(0.3)
    assert check(manual_double)["Output"] == "TTL expired"


def test_five_hundred_ttl_services_expire_without_trouble(consul_double):
    """§5: one ticker handles many TTL checks."""
    st = consul_double.double.state
    for i in range(500):
        consul_double.put(REG, {"Name": "bulk-%d" % i, "ID": "b%d" % i, "Check": {"TTL": "300ms", "Status": "passing"}})
    wait_until(lambda: all(c.status == "critical" for c in st.checks.values()), 5)
    assert len(consul_double.checks()) == 500


# ---------------------------------------------------------------- check deregister
def test_check_deregister_removes_one_check(consul):
    """§1: PUT /v1/agent/check/deregister/:id removes that check only."""
    consul.put(REG, {"Name": "web", "Checks": [{"TTL": "5s"}, {"TTL": "5s"}]})
    assert consul.put("/v1/agent/check/deregister/service:web:1") == (200, "")
    assert set(consul.checks()) == {"service:web:2"} and "web" in consul.services()


# ---------------------------------------------------------------- §7 maintenance
MAINT = "/v1/agent/service/maintenance/"


def test_maintenance_enable_adds_critical_maintenance_check(consul):
    """§7: check _service_maintenance:<id>, name Service Maintenance Mode, critical, Notes=reason."""
    register(consul, Status="passing")
    assert consul.put(MAINT + "web-1?enable=true&reason=upgrading") == (200, "")
    c = consul.checks()["_service_maintenance:web-1"]
    assert (c["Name"], c["Status"], c["Notes"], c["ServiceID"], c["ServiceName"]) == (
        "Service Maintenance Mode", "critical", "upgrading", "web-1", "web")


def test_maintenance_without_reason_uses_default_notes(consul, web_1):
    """§7: default Notes text."""
    consul.put(MAINT + "web-1?enable=true")
    assert consul.checks()["_service_maintenance:web-1"]["Notes"] == (
        "Maintenance mode is enabled for this service, but no reason was provided. This is a default message.")


def test_maintenance_takes_service_out_of_passing(consul):
    """§7: the service then fails ?passing."""
    cid = register(consul, Status="passing")
    consul.put("/v1/agent/check/pass/" + cid)
    assert consul.passing("web") == ["web-1"]
    consul.put(MAINT + "web-1?enable=true")
    assert consul.passing("web") == []


def test_maintenance_disable_removes_the_check(consul, web_1):
    """§7: disable removes it; disabling again is a 200 no-op."""
    consul.put(MAINT + "web-1?enable=true")
    assert consul.put(MAINT + "web-1?enable=false") == (200, "")
    assert consul.put(MAINT + "web-1?enable=false") == (200, "")
    assert "_service_maintenance:web-1" not in consul.checks()


def test_maintenance_enable_twice_is_a_no_op(consul, web_1):
    """§7: enabling twice keeps the first reason."""
    consul.put(MAINT + "web-1?enable=true&reason=first")
    consul.put(MAINT + "web-1?enable=true&reason=second")
    assert consul.checks()["_service_maintenance:web-1"]["Notes"] == "first"


def test_maintenance_without_enable_is_400(consul, web_1):
    """§7: enable missing → 400 Missing value for enable."""
    assert consul.put(MAINT + "web-1") == (400, "Missing value for enable")


def test_maintenance_with_unparseable_enable_is_400(consul, web_1):
    """§7: not a Go bool → 400 Invalid value for enable: "<raw>"."""
    assert consul.put(MAINT + "web-1?enable=yes") == (400, 'Invalid value for enable: "yes"')


@pytest.mark.parametrize("raw", ["1", "t", "T", "TRUE", "true", "True"])
def test_maintenance_accepts_go_bool_spellings(consul, web_1, raw):
    """§7: ParseBool accepts 1/t/T/TRUE/true/True (py-consul sends True)."""
    assert consul.put(MAINT + "web-1?enable=" + raw)[0] == 200


def test_maintenance_with_empty_service_id_is_400(consul):
    """§7: empty service ID → 400 Missing service ID."""
    assert consul.put(MAINT + "?enable=true") == (400, "Missing service ID")


def test_maintenance_on_unknown_service_is_404(consul):
    """§7: unknown service → 404."""
    assert consul.put(MAINT + "nope?enable=true")[0] == 404


def test_legacy_maintenance_on_unknown_service_is_404_no_service_registered():
    """§7: older versions → 404 No service registered with ID "<id>"."""
    with start(legacy=True) as d:
        cut = ConsulUnderTest(d.addr, d, 60, 30)
        assert cut.put(MAINT + "nope?enable=true") == (404, 'No service registered with ID "nope"')


def test_ttl_update_on_maintenance_check_is_500(consul, web_1):
    """§7: the maintenance check is not a TTL check."""
    consul.put(MAINT + "web-1?enable=true")
    assert consul.put("/v1/agent/check/pass/_service_maintenance:web-1") == (
        500, 'CheckID "_service_maintenance:web-1" does not have associated TTL')


def test_node_maintenance_takes_every_service_out_of_passing(consul):
    """§7: PUT /v1/agent/maintenance adds _node_maintenance, failing every instance."""
    cid = register(consul, Status="passing")
    consul.put("/v1/agent/check/pass/" + cid)
    assert consul.put("/v1/agent/maintenance?enable=true") == (200, "")
    assert "_node_maintenance" in consul.checks() and consul.passing("web") == []
    consul.put("/v1/agent/maintenance?enable=false")
    assert consul.passing("web") == ["web-1"]
