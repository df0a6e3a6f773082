"""Contract tests: key ACLs on the KV store (reference §16.9, §9) and ``--acl-token SECRET=RULES``.

A token given as ``SECRET=RULES`` may only do what its key rules allow: ``key:PREFIX`` is
read+write below PREFIX, ``key-read:PREFIX`` read only; the longest matching prefix wins.
"""
from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from tests.consul_double import start
from tests.consul_fixture import ConsulUnderTest
from tests.kv_support import KV
from tests.test_consul_double_cli import first_line_url, spawn

ROOT = "root-secret"
APP = "app-secret"  # key:app/ (read+write), key-read:app/ro/ and key-read:shared/
TOKENS = [ROOT, APP + "=key:app/,key-read:app/ro/,key-read:shared/", "none-secret="]


@pytest.fixture
def acl():
    """A double with ACLs on: a full token, a key-limited token and a token with no rules."""
    with start(acl_tokens=TOKENS) as d:
        root = KV(ConsulUnderTest(d.addr, d, 60, 30, token=ROOT), "")
        for key in ("app/a", "app/ro/b", "shared/c", "secret/d"):
            assert root.put(key, key.encode()) == (200, True)
        yield d


def as_token(double, token):
    return KV(ConsulUnderTest(double.addr, double, 60, 30, token=token), "")


def test_a_key_token_reads_and_writes_below_its_prefix(acl):
    """§16.9: key:app/ allows read and write of app/…."""
    app = as_token(acl, APP)
    assert app.put("app/new", b"v") == (200, True)
    assert app.get("app/new", "?raw")[::2] == (200, b"v")


def test_a_write_outside_the_rules_is_403_permission_denied(acl):
    """§16.9: PUT needs key:write; default deny → 403 Permission denied… lacking key:write."""
    status, text = as_token(acl, APP).put("secret/d", b"x")
    assert status == 403 and text.startswith("Permission denied") and "'key:write' on \"secret/d\"" in text


def test_a_read_only_rule_refuses_writes(acl):
    """§16.9: key-read:shared/ allows reads only."""
    app = as_token(acl, APP)
    assert app.get("shared/c")[0] == 200 and app.put("shared/c", b"x")[0] == 403


def test_the_longest_matching_prefix_wins(acl):
    """§16.9: key-read:app/ro/ narrows key:app/ for keys below app/ro/."""
    assert as_token(acl, APP).put("app/ro/b", b"x")[0] == 403


def test_a_delete_outside_the_rules_is_403(acl):
    """§16.9: DELETE needs key:write."""
    assert as_token(acl, APP).delete("shared/c")[0] == 403


def test_a_recursive_delete_needs_write_over_the_whole_prefix(acl):
    """§16.6, §16.9: a read rule under the prefix makes DELETE ?recurse 403 (KeyWritePrefix)."""
    app = as_token(acl, APP)
    assert app.delete("app/", "?recurse")[0] == 403
    assert as_token(acl, ROOT).get("app/a")[0] == 200


def test_a_recursive_delete_inside_a_write_rule_is_allowed(acl):
    """§16.9: with write over the whole prefix the recursive delete goes through."""
    app = as_token(acl, APP)
    assert app.delete("app/a", "?recurse") == (200, True)
    assert app.get("app/a")[0] == 404


def test_a_single_get_outside_the_rules_is_403(acl):
    """§16.9: a single-key GET needs key:read."""
    status, _, raw = as_token(acl, APP).get("secret/d")
    assert status == 403 and raw.decode().startswith("Permission denied")


def test_a_single_get_of_a_missing_key_outside_the_rules_is_403_not_404(acl):
    """§16.9: the read check applies to a missing key too."""
    assert as_token(acl, APP).get("secret/missing")[0] == 403


def test_recurse_drops_unreadable_entries_silently_and_says_so(acl):
    """§16.9: ?recurse is filtered, not refused; X-Consul-Results-Filtered-By-ACLs: true."""
    status, headers, raw = as_token(acl, APP).get("", "?recurse")
    assert status == 200 and [e["Key"] for e in json.loads(raw)] == ["app/a", "app/ro/b", "shared/c"]
    assert headers["X-Consul-Results-Filtered-By-ACLs"] == "true"


def test_the_filtered_header_is_absent_when_nothing_was_dropped(acl):
    """§16.9: the header is only set when something was dropped."""
    headers = as_token(acl, APP).get("app/", "?recurse")[1]
    assert "X-Consul-Results-Filtered-By-ACLs" not in headers


def test_recurse_with_nothing_readable_is_404_and_says_it_filtered(acl):
    """§16.9: if nothing readable is left, the usual 404."""
    status, headers, _ = as_token(acl, APP).get("secret/", "?recurse")
    assert status == 404 and headers["X-Consul-Results-Filtered-By-ACLs"] == "true"


def test_keys_are_filtered_like_recurse(acl):
    """§16.9: ?keys drops unreadable names."""
    status, headers, raw = as_token(acl, APP).get("", "?keys&separator=/")
    assert (status, json.loads(raw)) == (200, ["app/", "shared/"])
    assert headers["X-Consul-Results-Filtered-By-ACLs"] == "true"


def test_keys_at_the_root_with_nothing_readable_is_an_empty_list(acl):
    """§16.9, §16.3: at the root the answer stays 200 [] even when everything was filtered."""
    status, headers, raw = as_token(acl, "none-secret").get("", "?keys")
    assert (status, json.loads(raw), headers["X-Consul-Results-Filtered-By-ACLs"]) == (200, [], "true")


def test_a_hidden_write_still_answers_a_blocked_list(acl):
    """§16.9: the index is computed before filtering, so hidden keys changing wake the reader."""
    app = as_token(acl, APP)
    n = app.index("secret/", "?recurse")
    job = app.watch("secret/", n, "?recurse")
    as_token(acl, ROOT).put("secret/d", b"changed")
    status, headers, _ = job.result()
    assert status == 404 and int(headers["X-Consul-Index"]) > n


def test_an_unknown_token_on_kv_is_403_acl_not_found(acl):
    """§16.9, §9: an unknown secret → 403 ACL not found, for reads and writes."""
    nobody = as_token(acl, "bogus")
    assert nobody.get("app/a")[::2] == (403, b"ACL not found")
    assert nobody.put("app/a", b"x") == (403, "ACL not found")


def test_the_anonymous_token_may_not_read_a_key(acl):
    """§16.9: without a token, default deny: a single GET is 403."""
    assert as_token(acl, None).get("app/a")[0] == 403


def test_a_key_token_has_no_service_rights(acl):
    """§16.9, §9: a token limited to keys may not register a service."""
    cut = ConsulUnderTest(acl.addr, acl, 60, 30, token=APP)
    status, text = cut.put("/v1/agent/service/register", {"Name": "web"})
    assert status == 403 and text.startswith("Permission denied")


def test_a_denial_names_an_accessor_id_never_the_secret(acl):
    """Security: the 403 text carries an AccessorID derived from the token, not its secret."""
    _, text = as_token(acl, APP).put("secret/d", b"x")
    assert APP not in text and "AccessorID '" in text


def test_a_full_token_may_do_everything(acl):
    """§9: a token given without rules is allowed everything."""
    root = as_token(acl, ROOT)
    assert root.delete("", "?recurse") == (200, True) and root.get("", "?keys")[2] == b"[]"


def test_a_bad_rule_in_start_is_a_value_error():
    """Handle API: start() refuses a rule that is neither key: nor key-read:."""
    with pytest.raises(ValueError, match="key-read"):
        start(acl_tokens=["s=service:web"])


# ---------------------------------------------------------------- CLI
def test_cli_acl_token_with_rules_limits_the_token_to_those_keys():
    """CLI: --acl-token SECRET=key:app/ may write app/x but not other/x."""
    p = spawn("--acl-token", "lim=key:app/")
    try:
        url = first_line_url(p)

        def put(key):
            req = urllib.request.Request(url + "/v1/kv/" + key, data=b"v", method="PUT",
                                         headers={"X-Consul-Token": "lim"})
            try:
                with urllib.request.urlopen(req, timeout=5) as r:
                    return r.status
            except urllib.error.HTTPError as err:
                return err.code

        assert (put("app/x"), put("other/x")) == (200, 403)
    finally:
        p.kill()
        p.wait(5)


def test_cli_bad_acl_rule_is_a_usage_error_naming_the_rule():
    """CLI: a bad rule → exit 2 with the rule named, the secret not."""
    p = spawn("--acl-token", "topsecret=nodes:all")
    assert p.wait(10) == 2
    err = p.stderr.read()
    assert "nodes:all" in err and "topsecret" not in err
