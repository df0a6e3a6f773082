"""Contract tests: PUT /v1/agent/service/register (reference §1, §2)."""
from __future__ import annotations

import pytest

from tests.consul_fixture import REGISTER as REG, ttl_service, wait_until


def test_register_returns_200_with_empty_body(consul):
    """§1: a successful PUT is 200 with an empty body."""
    assert consul.put(REG, ttl_service()) == (200, "")


def test_id_defaults_to_name(consul):
    """§2.1: ID defaults to Name."""
    consul.put(REG, {"Name": "web"})
    assert consul.services()["web"]["ID"] == "web"


def test_missing_name_is_400_missing_service_name(consul):
    """§2.1: missing Name → 400 Missing service name."""
    assert consul.put(REG, {"ID": "x"}) == (400, "Missing service name")


def test_empty_name_is_400_missing_service_name(consul):
    """§2.1: empty Name → 400 Missing service name."""
    assert consul.put(REG, {"Name": ""}) == (400, "Missing service name")


def test_keys_match_case_insensitively(consul):
    """§0.7: Go matches JSON keys case-insensitively (name / NAME / Name)."""
    assert consul.put(REG, {"NAME": "web", "id": "w1", "PoRt": 80})[0] == 200
    svc = consul.services()["w1"]
    assert (svc["Service"], svc["Port"]) == ("web", 80)


def test_unknown_top_level_field_is_400_decode_error(consul):
    """§0.7: unknown fields → 400 Request decode failed: json: unknown field."""
    assert consul.put(REG, {"Name": "web", "Bogus": 1}) == (
        400, 'Request decode failed: json: unknown field "Bogus"')


def test_unknown_check_field_is_400_decode_error(consul):
    """§1: unknown keys inside a check object are refused too."""
    assert consul.put(REG, {"Name": "web", "Check": {"TTL": "1s", "Nope": 1}}) == (
        400, 'Request decode failed: json: unknown field "Nope"')


def test_service_id_inside_a_check_is_accepted_and_ignored(consul):
    """§1: ServiceID / service_id in a service check are accepted and ignored."""
    body = {"Name": "web", "Checks": [{"TTL": "1s", "ServiceID": "other"}, {"TTL": "1s", "service_id": "x"}]}
    assert consul.put(REG, body)[0] == 200
    assert {c["ServiceID"] for c in consul.checks().values()} == {"web"}


def test_non_integer_port_is_400_decode_error(consul):
    """§2.1: a non-integer Port → 400 Request decode failed: json: cannot unmarshal …"""
    status, text = consul.put(REG, {"Name": "web", "Port": "80"})
    assert status == 400 and text.startswith("Request decode failed: json: cannot unmarshal string")


def test_invalid_json_is_400_decode_error(consul):
    """§1: a body that is not JSON is a decode failure."""
    status, text = consul.put(REG, b"{nope")
    assert status == 400 and text.startswith("Request decode failed: ")


def test_null_tags_come_back_as_empty_list(consul):
    """§2.1: Tags null or missing → []; Meta empty → {}."""
    consul.put(REG, {"Name": "web", "Tags": None})
    svc = consul.services()["web"]
    assert (svc["Tags"], svc["Meta"]) == ([], {})


def test_any_address_is_400_invalid_service_address(consul):
    """§2.1: Address 0.0.0.0 / :: → 400 Invalid service address."""
    assert consul.put(REG, {"Name": "web", "Address": "0.0.0.0"}) == (400, "Invalid service address")
    assert consul.put(REG, {"Name": "web", "Address": "::"}) == (400, "Invalid service address")


def test_ipv4_address_auto_adds_tagged_addresses(consul):
    """§2.1: a literal IPv4 Address adds lan_ipv4 / wan_ipv4 TaggedAddresses."""
    consul.put(REG, {"Name": "web", "Address": "10.0.0.5", "Port": 8080})
    tagged = consul.services()["web"]["TaggedAddresses"]
    assert tagged["lan_ipv4"] == {"Address": "10.0.0.5", "Port": 8080}
    assert tagged["wan_ipv4"] == {"Address": "10.0.0.5", "Port": 8080}


def test_ipv6_address_auto_adds_ipv6_tagged_addresses(consul):
    """§2.1: a literal IPv6 Address adds lan_ipv6 / wan_ipv6."""
    consul.put(REG, {"Name": "web", "Address": "fd00::5", "Port": 1})
    assert set(consul.services()["web"]["TaggedAddresses"]) == {"lan_ipv6", "wan_ipv6"}


def test_hostname_address_adds_no_tagged_addresses(consul):
    """§2.1/§10: TaggedAddresses is omitted when empty."""
    consul.put(REG, {"Name": "web", "Address": "db.internal"})
    assert "TaggedAddresses" not in consul.services()["web"]


def test_weights_default_to_one_and_one(consul):
    """§2.1: Weights default {Passing:1, Warning:1}."""
    consul.put(REG, {"Name": "web"})
    assert consul.services()["web"]["Weights"] == {"Passing": 1, "Warning": 1}


def test_passing_weight_below_one_is_400_invalid_weights(consul):
    """§2.1: Passing must be ≥ 1 → 400 Invalid Weights: …"""
    status, text = consul.put(REG, {"Name": "web", "Weights": {"Passing": 0, "Warning": 1}})
    assert status == 400 and text.startswith("Invalid Weights: ")


def test_negative_warning_weight_is_400_invalid_weights(consul):
    """§2.1: Warning must be ≥ 0."""
    status, text = consul.put(REG, {"Name": "web", "Weights": {"Passing": 1, "Warning": -1}})
    assert status == 400 and text.startswith("Invalid Weights: ")


@pytest.mark.parametrize("meta", [
    {"consul-x": "v"}, {"bad key": "v"}, {"k" * 129: "v"}, {"k": "v" * 513},
    {"k%d" % i: "v" for i in range(65)},
], ids=["reserved-prefix", "bad-chars", "long-key", "long-value", "too-many"])
def test_meta_limits_are_400_invalid_service_meta(consul, meta):
    """§2.1: Meta limits → 400 Invalid Service Meta: <detail>."""
    status, text = consul.put(REG, {"Name": "web", "Meta": meta})
    assert status == 400 and text.startswith("Invalid Service Meta: ")


def test_valid_meta_is_stored(consul):
    """§2.1: Meta is stored and returned."""
    consul.put(REG, {"Name": "web", "Meta": {"version": "1.2", "a_b-c": ""}})
    assert consul.services()["web"]["Meta"] == {"version": "1.2", "a_b-c": ""}


def test_single_check_id_is_service_colon_id(consul):
    """§2.3: one check without CheckID → service:<serviceID>."""
    consul.put(REG, ttl_service())
    assert list(consul.checks()) == ["service:web-1"]


def test_multiple_checks_are_numbered_check_first(consul):
    """§2.3: several checks → service:<id>:1, :2 … with Check first, then Checks."""
    body = {"Name": "web", "ID": "w", "Check": {"TTL": "1s", "Name": "first"},
            "Checks": [{"TTL": "1s", "Name": "second"}, {"TTL": "1s", "Name": "third"}]}
    consul.put(REG, body)
    checks = consul.checks()
    assert {k: v["Name"] for k, v in checks.items()} == {
        "service:w:1": "first", "service:w:2": "second", "service:w:3": "third"}


def test_explicit_check_id_is_used_verbatim(consul):
    """§2.3: an explicit CheckID is used as is."""
    consul.put(REG, ttl_service(CheckID="my-ttl"))
    assert list(consul.checks()) == ["my-ttl"]


def test_default_check_name_names_the_service(consul):
    """§2.3: default check name is "Service '<name>' check"."""
    consul.put(REG, ttl_service())
    assert consul.checks()["service:web-1"]["Name"] == "Service 'web' check"


def test_check_without_status_starts_critical(consul):
    """§0.1: default check status is critical."""
    consul.put(REG, ttl_service())
    assert consul.checks()["service:web-1"]["Status"] == "critical"


def test_check_status_is_honoured_on_first_registration(consul):
    """§2.3: Initial Status is taken from the request."""
    consul.put(REG, ttl_service(Status="passing"))
    assert consul.checks()["service:web-1"]["Status"] == "passing"


def test_check_fields_in_responses(consul):
    """§2.3: checks carry Type ttl, empty Interval/Timeout, ServiceID/Name/Tags and Notes."""
    consul.put(REG, {"Name": "web", "ID": "w", "Tags": ["a"], "Check": {"TTL": "5s", "Notes": "n"}})
    c = consul.checks()["service:w"]
    assert (c["Type"], c["Interval"], c["Timeout"], c["ServiceID"], c["ServiceName"], c["ServiceTags"],
            c["Notes"]) == ("ttl", "", "", "w", "web", ["a"], "n")


def test_empty_check_object_is_ignored(consul):
    """§2.2: an entirely empty Check: {} is ignored."""
    assert consul.put(REG, {"Name": "web", "Check": {}})[0] == 200
    assert consul.checks() == {}


def test_ttl_and_interval_together_are_400(consul):
    """§2.2: TTL and Interval both set → Invalid check."""
    assert consul.put(REG, ttl_service(Interval="10s")) == (
        400, "Invalid check: Interval and TTL cannot both be specified")


def test_check_without_type_is_400_ttl_must_be_positive(consul):
    """§2.2: no type at all → Invalid check: TTL must be > 0 for TTL checks."""
    assert consul.put(REG, {"Name": "web", "Check": {"Notes": "x"}}) == (
        400, "Invalid check: TTL must be > 0 for TTL checks")


@pytest.mark.parametrize("ttl", ["0s", "-5s", 0])
def test_zero_or_negative_ttl_is_400(consul, ttl):
    """§12: zero or negative TTL → not a TTL check → Invalid check."""
    assert consul.put(REG, {"Name": "web", "Checks": [{"TTL": ttl}]}) == (
        400, "Invalid check: TTL must be > 0 for TTL checks")


def test_check_object_with_only_a_zero_ttl_counts_as_empty(consul):
    """§2.2: Check: {"TTL": "0s"} equals Go's zero CheckType, so it is ignored like Check: {}."""
    assert consul.put(REG, {"Name": "web", "Check": {"TTL": "0s"}}) == (200, "")
    assert consul.checks() == {}


def test_interval_check_without_interval_is_400(consul):
    """§2.2: an HTTP check without Interval is refused."""
    assert consul.put(REG, {"Name": "web", "Check": {"HTTP": "http://x/"}}) == (
        400, "Invalid check: Interval must be > 0 for Script, HTTP, H2PING, TCP, UDP or OSService checks")


def test_negative_output_max_size_is_400(consul):
    """§2.2: negative OutputMaxSize → MaxOutputMaxSize must be positive."""
    assert consul.put(REG, ttl_service(OutputMaxSize=-1)) == (
        400, "Invalid check: MaxOutputMaxSize must be positive")


def test_bad_duration_is_400_invalid_duration(consul):
    """§2.2: a bad duration fails at decode time."""
    assert consul.put(REG, ttl_service(ttl="abc")) == (
        400, 'Request decode failed: time: invalid duration "abc"')


def test_bare_number_string_is_400_missing_unit(consul):
    """§0.8: "10" has no unit."""
    assert consul.put(REG, ttl_service(ttl="10")) == (
        400, 'Request decode failed: time: missing unit in duration "10"')


def test_day_unit_is_refused(consul):
    """§12: there is no d unit."""
    status, text = consul.put(REG, ttl_service(ttl="1d"))
    assert status == 400 and text.startswith("Request decode failed: time: unknown unit")


def test_bad_dcsa_duration_is_400(consul):
    """§2.2: a bad DeregisterCriticalServiceAfter fails at decode time too."""
    assert consul.put(REG, ttl_service(DeregisterCriticalServiceAfter="5")) == (
        400, 'Request decode failed: time: missing unit in duration "5"')


def test_bad_status_is_400_with_consul_wording(consul):
    """§2.2: Status outside passing/warning/critical → the exact ungrammatical message."""
    assert consul.put(REG, ttl_service(Status="ok")) == (
        400, "Status for checks must 'passing', 'warning', 'critical'")


def test_script_check_is_refused_with_500(consul):
    """§2.2: script checks over HTTP need enable_script_checks → 500."""
    status, text = consul.put(REG, {"Name": "web", "Check": {"Args": ["true"], "Interval": "10s"}})
    assert status == 500 and text.startswith("Scripts are disabled on this agent from remote calls;")


def test_snake_case_dcsa_alias_is_accepted(consul_double):
    """§2.2/§6: deregister_critical_service_after is an accepted alias."""
    body = ttl_service(deregister_critical_service_after="90s")
    assert consul_double.put(REG, body)[0] == 200
    assert consul_double.double.state.checks["service:web-1"].reap_after == 90.0


def test_json_number_ttl_is_nanoseconds(consul_double):
    """§0.8: {"TTL": 10} is a 10 ns TTL (it expires at once)."""
    consul_double.put(REG, {"Name": "web", "Check": {"TTL": 10, "Status": "passing"}})
    wait_until(lambda: consul_double.checks()["service:web"]["Status"] == "critical", timeout=2)


def test_http_check_type_and_interval_are_reported(consul):
    """§2.3: non-TTL checks report Type and canonical Interval/Timeout strings."""
    consul.put(REG, {"Name": "web", "Check": {"HTTP": "http://127.0.0.1:1/", "Interval": "60s", "Timeout": "1500ms"}})
    c = consul.checks()["service:web"]
    assert (c["Type"], c["Interval"], c["Timeout"]) == ("http", "1m0s", "1.5s")


def test_reregistration_keeps_status_and_output(consul):
    """§0.2/§2.5: re-registering keeps Status and Output; the new Status is ignored."""
    consul.put(REG, ttl_service(Status="passing"))
    consul.put("/v1/agent/check/warn/service:web-1?note=slow")
    consul.put(REG, ttl_service(Status="critical"))
    c = consul.checks()["service:web-1"]
    assert (c["Status"], c["Output"]) == ("warning", "slow")


def test_reregistration_replaces_the_definition(consul):
    """§2.5: tags, port, meta and address are replaced."""
    consul.put(REG, {"Name": "web", "Tags": ["a"], "Port": 1, "Meta": {"k": "v"}})
    consul.put(REG, {"Name": "web", "Tags": ["b"], "Port": 2})
    svc = consul.services()["web"]
    assert (svc["Tags"], svc["Port"], svc["Meta"]) == (["b"], 2, {})


def test_checks_left_out_survive_reregistration(consul):
    """§0.2: checks left out of a new request survive without replace-existing-checks."""
    consul.put(REG, {"Name": "web", "Check": {"TTL": "5s", "CheckID": "a"}})
    consul.put(REG, {"Name": "web", "Check": {"TTL": "5s", "CheckID": "b"}})
    assert set(consul.checks()) == {"a", "b"}


@pytest.mark.parametrize("query", ["?replace-existing-checks", "?replace-existing-checks=true"])
def test_replace_existing_checks_removes_left_out_checks(consul, query):
    """§2.4: ?replace-existing-checks (empty or true) removes checks not in the request."""
    consul.put(REG, {"Name": "web", "Check": {"TTL": "5s", "CheckID": "a"}})
    consul.put(REG + query, {"Name": "web", "Check": {"TTL": "5s", "CheckID": "b"}})
    assert set(consul.checks()) == {"b"}


def test_replace_existing_checks_false_keeps_them(consul):
    """§2.4: any other value is not "replace"."""
    consul.put(REG, {"Name": "web", "Check": {"TTL": "5s", "CheckID": "a"}})
    consul.put(REG + "?replace-existing-checks=false", {"Name": "web", "Check": {"TTL": "5s", "CheckID": "b"}})
    assert set(consul.checks()) == {"a", "b"}


def test_same_explicit_check_id_in_two_services_collides(consul):
    """§2.3: an explicit CheckID is not scoped to the service."""
    consul.put(REG, {"Name": "a", "Check": {"TTL": "5s", "CheckID": "shared"}})
    consul.put(REG, {"Name": "b", "Check": {"TTL": "5s", "CheckID": "shared"}})
    checks = consul.checks()
    assert list(checks) == ["shared"] and checks["shared"]["ServiceID"] == "b"


def test_path_ids_may_be_percent_encoded(consul):
    """§1: service%3Aweb and service:web address the same check."""
    consul.put(REG, ttl_service(sid="web"))
    assert consul.put("/v1/agent/check/pass/service%3Aweb")[0] == 200
    assert consul.checks()["service:web"]["Status"] == "passing"
