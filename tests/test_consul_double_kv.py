"""Contract tests: the KV store, /v1/kv/:key (reference §16, §0.13–§0.15, §11).

Each test works below its own key prefix (fixture ``kv``) so that it also runs against a real agent;
tests that need an empty store, a knob or the injectable clock use the double only.
"""
from __future__ import annotations

import base64
import http.client
import json

import pytest

from tests.consul_double import start
from tests.consul_fixture import ConsulUnderTest
from tests.kv_support import KV, clocked, kv, kv_double, register  # noqa: F401 (fixtures)

FIVE_MINUTES = 300.0


# ---------------------------------------------------------------- §16.1 one key
def test_a_missing_key_is_404_with_an_empty_body_and_an_index(kv):
    """§16.1, §0.13: a missing key is 404, no body, but X-Consul-Index (never 200 [])."""
    status, headers, raw = kv.get("nope")
    assert (status, raw) == (404, b"") and int(headers["X-Consul-Index"]) >= 1


def test_a_found_key_is_an_array_holding_one_entry_in_go_field_order(kv):
    """§16.1: [{LockIndex, Key, Flags, Value, CreateIndex, ModifyIndex}], Session omitted."""
    kv.put("k", b"v")
    entries = kv.entries("k")
    assert len(entries) == 1
    assert list(entries[0]) == ["LockIndex", "Key", "Flags", "Value", "CreateIndex", "ModifyIndex"]
    assert (entries[0]["LockIndex"], entries[0]["Key"], entries[0]["Flags"]) == (0, kv.prefix + "k", 0)


def test_a_found_key_is_json(kv):
    """§16.1: the answer is application/json."""
    kv.put("k", b"v")
    assert kv.get("k")[1]["Content-Type"] == "application/json"


def test_values_are_padded_standard_base64_of_the_bytes(kv):
    """§16.1: Value is standard base64 with padding (+ and /), not the text itself."""
    value = b"\xfb\xff\xbf?>"
    kv.put("k", value)
    encoded = kv.entry("k")["Value"]
    assert encoded == "+/+/Pz4=" and base64.b64decode(encoded) == value


def test_an_empty_value_is_null_not_an_empty_string(kv):
    """§16.1: a key written with an empty body has Value null."""
    kv.put("k", b"")
    assert kv.entry("k")["Value"] is None


def test_a_new_key_has_equal_create_and_modify_indexes(kv):
    """§16.1: CreateIndex == ModifyIndex for a new key."""
    kv.put("k", b"v")
    e = kv.entry("k")
    assert e["CreateIndex"] == e["ModifyIndex"] > 0


def test_rewriting_a_key_keeps_create_index_and_moves_modify_index(kv):
    """§16.5: a plain set carries CreateIndex over; ModifyIndex becomes the write's index."""
    kv.put("k", b"1")
    first = kv.entry("k")
    kv.put("k", b"2")
    second = kv.entry("k")
    assert second["CreateIndex"] == first["CreateIndex"] and second["ModifyIndex"] > first["ModifyIndex"]


def test_a_found_key_reports_its_own_modify_index(kv):
    """§16.1: X-Consul-Index of a found key is its ModifyIndex, not the table index."""
    kv.put("k", b"v")
    mine = kv.modify_index("k")
    kv.put("other", b"x")
    assert kv.index("k") == mine


def test_a_missing_key_reports_the_kv_table_index(kv_double):
    """§16.1: X-Consul-Index of a missing key is the KV table index (the last KV write anywhere)."""
    kv_double.put("a", b"1")
    assert kv_double.index("nope") == kv_double.modify_index("a")


def test_a_missing_key_in_an_empty_store_reports_index_one(kv_double):
    """§16.1: the index is never 0; 0 is sent as 1."""
    assert kv_double.index("nope") == 1


def test_an_empty_key_is_400_missing_key_name(consul):
    """§16.1: GET /v1/kv/ without ?recurse or ?keys → 400 Missing key name."""
    assert consul.get("/v1/kv/") == (400, "Missing key name")


@pytest.mark.parametrize("method", ["POST", "PATCH"])
def test_kv_refuses_other_methods_with_405(consul, method):
    """§16.1, §1: /v1/kv/ takes GET, PUT and DELETE only."""
    status, headers, _ = consul.request(method, "/v1/kv/k", b"")
    assert status == 405 and {"GET", "PUT", "DELETE"} <= {m.strip() for m in headers["Allow"].split(",")}


def test_an_encoded_slash_in_the_path_is_a_slash_in_the_key(kv):
    """§16.1: the key is the decoded path, so %2F arrives as /."""
    kv.cut.request("PUT", "/v1/kv/" + kv.prefix + "a%2Fb", b"v")
    assert kv.entry("a/b")["Key"] == kv.prefix + "a/b"


# ---------------------------------------------------------------- §16.2 ?recurse
def test_recurse_is_a_plain_string_prefix_not_a_path(kv):
    """§16.2: app/a matches app/a, app/ab and app/a/b, not app/b."""
    for key in ("app/a", "app/ab", "app/a/b", "app/b"):
        kv.put(key, b"v")
    keys = [e["Key"] for e in kv.entries("app/a", "?recurse")]
    assert keys == [kv.prefix + k for k in ("app/a", "app/a/b", "app/ab")]


def test_recurse_lists_entries_in_byte_order_of_the_key(kv):
    """§16.2: byte order: upper case before lower case, "a" before "a/", multi-byte UTF-8 last."""
    for key in ("b", "é", "a/", "B", "a"):
        kv.put(key, b"v")
    keys = [e["Key"][len(kv.prefix):] for e in kv.entries("", "?recurse")]
    assert keys == ["B", "a", "a/", "b", "é"]


def test_recurse_over_a_prefix_with_nothing_under_it_is_404_with_an_index(kv):
    """§16.2, §0.13: nothing under the prefix → 404 (not []), with X-Consul-Index."""
    status, headers, raw = kv.get("empty/", "?recurse")
    assert (status, raw) == (404, b"") and int(headers["X-Consul-Index"]) >= 1


def test_recurse_index_is_the_highest_modify_index_under_the_prefix(kv):
    """§16.2: X-Consul-Index of a list is the highest ModifyIndex of its entries."""
    kv.put("dir/a", b"1")
    kv.put("dir/b", b"2")
    kv.put("elsewhere", b"3")
    assert kv.index("dir/", "?recurse") == kv.modify_index("dir/b")


def test_recurse_ignores_raw(kv):
    """§16.2: ?raw is ignored with ?recurse; the answer stays the JSON array."""
    kv.put("dir/a", b"plain")
    assert kv.entries("dir/", "?recurse&raw")[0]["Value"] == base64.b64encode(b"plain").decode()


def test_recurse_with_the_empty_key_lists_the_whole_store(kv_double):
    """§16.2: ?recurse with an empty key lists every key."""
    kv_double.put("a", b"1")
    kv_double.put("z/y", b"2")
    assert [e["Key"] for e in kv_double.entries("", "?recurse")] == ["a", "z/y"]


# ---------------------------------------------------------------- §16.3 ?keys
def test_keys_lists_key_names_only_in_byte_order(kv):
    """§16.3: ?keys is a JSON array of key names, walking the prefix without ?recurse."""
    for key in ("web/b", "web/a/x", "web/a"):
        kv.put(key, b"v")
    assert kv.entries("web/", "?keys") == [kv.prefix + k for k in ("web/a", "web/a/x", "web/b")]


def test_separator_cuts_each_key_after_the_first_separator_past_the_prefix(kv):
    """§16.3: web/a, web/sub/x, web/sub/y under web/ with / → [web/a, web/sub/]."""
    for key in ("web/a", "web/sub/x", "web/sub/y"):
        kv.put(key, b"v")
    assert kv.entries("web/", "?keys&separator=/") == [kv.prefix + "web/a", kv.prefix + "web/sub/"]


def test_the_misspelt_seperator_is_read_too(kv):
    """§16.3: ?seperator= works like ?separator=."""
    kv.put("web/sub/x", b"v")
    assert kv.entries("web/", "?keys&seperator=/") == [kv.prefix + "web/sub/"]


def test_separator_wins_over_seperator(kv):
    """§16.3: with both spellings, ?separator wins."""
    kv.put("web/sub-x/y", b"v")
    assert kv.entries("web/", "?keys&seperator=/&separator=-") == [kv.prefix + "web/sub-"]


def test_keys_wins_over_recurse(kv):
    """§16.3: with both ?keys and ?recurse the answer is key names."""
    kv.put("web/a", b"v")
    assert kv.entries("web/", "?keys&recurse") == [kv.prefix + "web/a"]


def test_keys_under_a_non_empty_prefix_with_nothing_below_is_404(kv):
    """§16.3, §0.13: ?keys under a non-empty prefix with nothing below → 404."""
    status, headers, raw = kv.get("nothing/", "?keys")
    assert (status, raw) == (404, b"") and "X-Consul-Index" in headers


def test_keys_at_the_root_of_an_empty_store_is_an_empty_list(kv_double):
    """§16.3: ?keys at the root is always 200, [] for an empty store."""
    status, _, raw = kv_double.get("", "?keys")
    assert (status, json.loads(raw)) == (200, [])


def test_keys_index_counts_keys_folded_away_by_the_separator(kv):
    """§16.3: the index is the prefix's, so a write to a folded-away key moves it."""
    kv.put("web/sub/x", b"1")
    before = kv.index("web/", "?keys&separator=/")
    kv.put("web/sub/x", b"2")
    assert kv.index("web/", "?keys&separator=/") == kv.modify_index("web/sub/x") > before


# ---------------------------------------------------------------- §16.4 ?raw
def test_raw_answers_the_bytes_as_the_body(kv):
    """§16.4: ?raw → 200 with the value's bytes."""
    kv.put("k", b"\x00binary\xff")
    status, _, raw = kv.get("k", "?raw")
    assert (status, raw) == (200, b"\x00binary\xff")


def test_raw_is_text_plain_nosniff_and_sandboxed(kv):
    """§16.4: Content-Type text/plain (no charset), nosniff, Content-Security-Policy sandbox."""
    kv.put("k", b"<script>alert(1)</script>")
    headers = kv.get("k", "?raw")[1]
    assert (headers["Content-Type"], headers["X-Content-Type-Options"], headers["Content-Security-Policy"]) == (
        "text/plain", "nosniff", "sandbox")


def test_raw_carries_the_query_headers(kv):
    """§16.4: a raw answer still has X-Consul-Index (the key's ModifyIndex)."""
    kv.put("k", b"v")
    assert int(kv.get("k", "?raw")[1]["X-Consul-Index"]) == kv.modify_index("k")


def test_raw_of_an_empty_value_is_an_empty_200(kv):
    """§16.4: an empty value gives an empty 200 body."""
    kv.put("k", b"")
    assert kv.get("k", "?raw")[::2] == (200, b"")


def test_raw_of_a_missing_key_is_404(kv):
    """§16.4: a missing key with ?raw is still 404."""
    assert kv.get("nope", "?raw")[0] == 404


# ---------------------------------------------------------------- §16.5 PUT
def test_a_put_answers_json_true(kv):
    """§16.5, §0.12: a plain set answers 200 with JSON true."""
    status, _, raw = kv.request("PUT", "k", body=b"v")
    assert (status, raw) == (200, b"true")


def test_the_body_is_stored_raw_whatever_its_content_type(kv):
    """§16.5: the body becomes the value as is: no JSON decoding, Content-Type ignored."""
    body = b'{"a": 1}'
    kv.request("PUT", "k", body=body, headers={"Content-Type": "application/json"})
    assert kv.get("k", "?raw")[2] == body


def test_flags_are_stored(kv):
    """§16.5: ?flags= is stored as given."""
    kv.put("k", b"v", "?flags=42")
    assert kv.entry("k")["Flags"] == 42


def test_a_put_without_flags_resets_them_to_zero(kv):
    """§16.5: flags are not kept: a PUT without ?flags sets them to 0."""
    kv.put("k", b"v", "?flags=42")
    kv.put("k", b"v")
    assert kv.entry("k")["Flags"] == 0


def test_an_identical_rewrite_keeps_the_modify_index(kv):
    """§16.5: a no-op write (same value and flags) writes nothing but still answers true."""
    kv.put("k", b"v", "?flags=7")
    before = kv.modify_index("k")
    assert kv.put("k", b"v", "?flags=7") == (200, True)
    assert kv.modify_index("k") == before


def test_cas_zero_creates_a_missing_key(kv):
    """§16.5, §0.15: ?cas=0 on a missing key writes it and answers true."""
    assert kv.put("k", b"v", "?cas=0") == (200, True)
    assert kv.get("k", "?raw")[2] == b"v"


def test_cas_zero_on_an_existing_key_answers_false_and_writes_nothing(kv):
    """§16.5, §0.15: ?cas=0 is create-only."""
    kv.put("k", b"old")
    assert kv.put("k", b"new", "?cas=0") == (200, False)
    assert kv.get("k", "?raw")[2] == b"old"


def test_cas_with_the_current_modify_index_writes(kv):
    """§16.5: ?cas=N writes when the key's ModifyIndex is N."""
    kv.put("k", b"old")
    assert kv.put("k", b"new", "?cas=%d" % kv.modify_index("k")) == (200, True)
    assert kv.get("k", "?raw")[2] == b"new"


def test_cas_with_a_stale_modify_index_answers_false(kv):
    """§16.5: ?cas=N with another ModifyIndex answers false and leaves the key alone."""
    kv.put("k", b"old")
    stale = kv.modify_index("k")
    kv.put("k", b"newer")
    assert kv.put("k", b"lost", "?cas=%d" % stale) == (200, False)
    assert kv.get("k", "?raw")[2] == b"newer"


def test_cas_with_a_non_zero_index_on_a_missing_key_answers_false(kv):
    """§16.5: ?cas=N (N > 0) needs the key to exist."""
    assert kv.put("k", b"v", "?cas=5") == (200, False)
    assert kv.get("k")[0] == 404


def test_a_failed_cas_still_takes_a_raft_index(kv):
    """§16.5: every apply takes a raft index, so the next real write skips one."""
    kv.put("k", b"1")
    first = kv.modify_index("k")
    kv.put("k", b"x", "?cas=0")
    kv.put("k", b"2")
    assert kv.modify_index("k") >= first + 2


@pytest.mark.parametrize("query,text", [
    ("?flags=abc", 'strconv.ParseUint: parsing "abc": invalid syntax'),
    ("?flags=-1", 'strconv.ParseUint: parsing "-1": invalid syntax'),
    ("?flags=18446744073709551616", 'strconv.ParseUint: parsing "18446744073709551616": value out of range'),
    ("?cas=x", 'strconv.ParseUint: parsing "x": invalid syntax'),
])
def test_a_bad_flags_or_cas_value_is_500_with_gos_parse_error(kv, query, text):
    """§16.5: ?flags/?cas are parsed as uint64; a bad value is 500, not 400, and writes nothing."""
    assert kv.put("k", b"v", query) == (500, text)
    assert kv.get("k")[0] == 404


def test_two_of_cas_acquire_release_are_400_conflicting_flags(kv):
    """§16.5: the text is the whole query, URL-encoded with sorted keys (newer releases add \\n)."""
    status, text = kv.put("k", b"v", "?release=s2&cas=0&acquire=s1")
    assert status == 400 and text.rstrip("\n") == "Conflicting flags: acquire=s1&cas=0&release=s2"


def test_an_empty_key_on_put_is_400_missing_key_name(consul):
    """§16.5: PUT /v1/kv/ → 400 Missing key name."""
    status, _, raw = consul.request("PUT", "/v1/kv/", b"v")
    assert (status, raw) == (400, b"Missing key name")


def test_a_bad_index_on_a_put_is_400_invalid_index(kv):
    """§16.1: query options come first for every method; a bad ?index is 400 on a PUT too."""
    assert kv.put("k", b"v", "?index=x") == (400, "Invalid index")


def test_a_value_of_exactly_the_default_limit_is_accepted(kv):
    """§16.5: limits.kv_max_value_size defaults to 512 KiB; a body of exactly that is allowed."""
    assert kv.put("k", b"x" * 524288) == (200, True)


def test_a_value_above_the_default_limit_is_413(kv):
    """§16.5: one byte more than 512 KiB → 413 Request body(… bytes) too large, nothing written."""
    status, text = kv.put("k", b"x" * 524289)
    assert status == 413 and text.startswith("Request body(524289 bytes) too large, max size: 524288 bytes. See ")
    assert kv.get("k")[0] == 404


def test_the_value_limit_is_a_knob_of_the_double():
    """§15: start(kv_max_value_size=…) models limits.kv_max_value_size."""
    with start(kv_max_value_size=4) as d:
        store = KV(ConsulUnderTest(d.addr, d, 60, 30), "")
        assert (store.put("k", b"1234")[0], store.put("k", b"12345")[0]) == (200, 413)


def test_acquire_without_a_live_session_is_500_invalid_session(kv):
    """§16.5: ?acquire needs a live session; the double has none."""
    status, text = kv.put("k", b"v", "?acquire=0c8bd5b5-3d4e-4bb5-a53a-4e8a2f6a71f1")
    assert (status, text) == (500, 'invalid session "0c8bd5b5-3d4e-4bb5-a53a-4e8a2f6a71f1"')


def test_release_by_a_session_that_does_not_hold_the_key_answers_false(kv):
    """§16.5: ?release answers false when that session does not hold the key."""
    kv.put("k", b"v")
    assert kv.put("k", b"v", "?release=0c8bd5b5-3d4e-4bb5-a53a-4e8a2f6a71f1") == (200, False)


# ---------------------------------------------------------------- §16.6 DELETE
def test_a_delete_answers_true_and_the_key_is_gone(kv):
    """§16.6: a plain delete answers true."""
    kv.put("k", b"v")
    assert kv.delete("k") == (200, True)
    assert kv.get("k")[0] == 404


def test_deleting_a_missing_key_answers_true(kv):
    """§16.6: a plain delete is true whether the key existed or not."""
    assert kv.delete("nope") == (200, True)


def test_a_recursive_delete_removes_every_key_with_the_string_prefix(kv):
    """§16.6: ?recurse deletes every key starting with the string (app/a takes app/ab too)."""
    for key in ("app/a", "app/ab", "app/a/b", "app/b"):
        kv.put(key, b"v")
    assert kv.delete("app/a", "?recurse") == (200, True)
    assert [e["Key"] for e in kv.entries("", "?recurse")] == [kv.prefix + "app/b"]


def test_recurse_with_cas_on_delete_is_400_conflicting_flags(kv):
    """§16.6: ?recurse together with ?cas → 400 Conflicting flags."""
    status, text = kv.delete("k", "?recurse&cas=1")
    assert status == 400 and text.startswith("Conflicting flags: ")


def test_delete_of_the_empty_key_without_recurse_is_400(consul):
    """§16.6: DELETE /v1/kv/ without ?recurse → 400 Missing key name."""
    status, _, raw = consul.request("DELETE", "/v1/kv/")
    assert (status, raw) == (400, b"Missing key name")


def test_delete_cas_with_the_current_modify_index_deletes(kv):
    """§16.6: ?cas=N deletes when ModifyIndex is N, answering true."""
    kv.put("k", b"v")
    assert kv.delete("k", "?cas=%d" % kv.modify_index("k")) == (200, True)
    assert kv.get("k")[0] == 404


def test_delete_cas_with_another_index_answers_false_and_keeps_the_key(kv):
    """§16.6: ?cas=N with another ModifyIndex answers false."""
    kv.put("k", b"v")
    assert kv.delete("k", "?cas=%d" % (kv.modify_index("k") + 1000)) == (200, False)
    assert kv.get("k")[0] == 200


def test_delete_cas_zero_never_deletes_an_existing_key(kv):
    """§16.6, §0.15: ?cas=0 on DELETE never removes an existing key."""
    kv.put("k", b"v")
    assert kv.delete("k", "?cas=0") == (200, False)


def test_delete_cas_on_a_missing_key_answers_true(kv):
    """§16.6: nothing is left to delete, so any ?cas answers true."""
    assert kv.delete("nope", "?cas=17") == (200, True)


def test_a_bad_cas_on_delete_is_500(kv):
    """§16.6: ?cas is parsed like on PUT."""
    assert kv.delete("k", "?cas=abc") == (500, 'strconv.ParseUint: parsing "abc": invalid syntax')


# ---------------------------------------------------------------- §16.7 keys and paths
def test_a_trailing_slash_is_part_of_the_key(kv):
    """§16.7: dir/ and dir are two keys; a "folder" key holds null."""
    kv.put("dir/", b"")
    kv.put("dir", b"file")
    assert (kv.entry("dir/")["Value"], kv.get("dir", "?raw")[2]) == (None, b"file")


def test_a_double_slash_in_the_path_is_a_301_to_the_cleaned_path(kv):
    """§16.7: ServeMux cleans the path: /v1/kv//foo → 301 to /v1/kv/foo (query kept)."""
    conn = http.client.HTTPConnection(kv.cut.host, kv.cut.port, timeout=5)
    try:
        conn.request("GET", "/v1/kv//%sfoo/?raw" % kv.prefix)
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 301 and resp.getheader("Location") == "/v1/kv/%sfoo/?raw" % kv.prefix
    finally:
        conn.close()


def test_keys_with_spaces_colons_and_non_ascii_are_accepted(kv_double):
    """§16.7: the double keeps the pre-1.21.5 rules: no key checks beyond the empty key."""
    for key in ("with space", "a:b", "100%", "ç/ü"):
        assert kv_double.put(key, b"v") == (200, True), key
        assert kv_double.entry(key)["Key"] == key


# ---------------------------------------------------------------- §16.8 blocking and indexes
def test_a_blocked_read_of_a_key_returns_on_its_write(kv):
    """§16.8, §11: ?index=ModifyIndex blocks until the key is written again."""
    kv.put("k", b"1")
    n = kv.modify_index("k")
    job = kv.watch("k", n)
    kv.put("k", b"2")
    status, headers, raw = job.result()
    assert status == 200 and int(headers["X-Consul-Index"]) > n
    assert base64.b64decode(json.loads(raw)[0]["Value"]) == b"2"


def test_a_blocked_read_of_a_key_answers_404_at_once_on_its_delete(kv):
    """§16.8, §0.14: the tombstone's index answers the blocked reader with 404."""
    kv.put("k", b"1")
    n = kv.modify_index("k")
    job = kv.watch("k", n)
    kv.delete("k")
    status, headers, _ = job.result()
    assert status == 404 and int(headers["X-Consul-Index"]) > n


def test_a_blocked_read_of_a_missing_key_returns_on_its_creation(kv):
    """§16.8: the key's creation answers a reader of the missing key."""
    n = kv.index("k")
    job = kv.watch("k", n)
    kv.put("k", b"born")
    status, headers, _ = job.result()
    assert status == 200 and int(headers["X-Consul-Index"]) > n


def test_a_missing_key_whose_index_already_moved_answers_at_once(kv):
    """§16.8: if the first check already exceeds N, the answer comes at once (404)."""
    kv.put("other", b"v")
    status, headers, _ = kv.get("nope", "?index=1&wait=30s")
    assert status == 404 and int(headers["X-Consul-Index"]) > 1


@pytest.mark.parametrize("nudge", ["write another key", "identical rewrite", "failed cas"])
def test_a_blocked_read_of_a_key_is_not_answered_by_other_writes(clocked, nudge):
    """§16.8, §0.14: other keys, no-op PUTs and failed CAS writes do not answer a key's reader."""
    store = clocked.kv
    store.put("k", b"v")
    n = store.modify_index("k")
    job = store.watch("k", n, wait="5m")
    {"write another key": lambda: store.put("other", b"x"),
     "identical rewrite": lambda: store.put("k", b"v"),
     "failed cas": lambda: store.put("k", b"w", "?cas=0")}[nudge]()
    assert int(clocked.outlast(job, nudge)[1]["X-Consul-Index"]) == n


def test_a_blocked_read_of_a_missing_key_ignores_writes_to_other_keys(clocked):
    """§16.8: 1.12+ (errNotFound): each pass that still finds nothing raises the floor."""
    store = clocked.kv
    n = store.index("k")
    job = store.watch("k", n, wait="5m")
    store.put("other", b"x")
    store.put("other", b"y")
    assert clocked.outlast(job, "writes to another key")[0] == 404


def test_legacy_mode_wakes_a_missing_key_reader_on_any_kv_write():
    """§16.8: before 1.12 any KV write answers every blocked read of a missing key (issue #9449)."""
    with start(legacy=True) as d:
        store = KV(ConsulUnderTest(d.addr, d, 60, 30), "")
        n = store.index("k")
        job = store.watch("k", n)
        store.put("other", b"x")
        status, headers, _ = job.result()
        assert status == 404 and int(headers["X-Consul-Index"]) > n


def test_a_blocked_recurse_returns_on_a_write_under_the_prefix(kv):
    """§16.8: a prefix read returns when any key under it is written."""
    kv.put("dir/a", b"1")
    n = kv.index("dir/", "?recurse")
    job = kv.watch("dir/", n, "?recurse")
    kv.put("dir/b", b"2")
    status, headers, raw = job.result()
    assert status == 200 and int(headers["X-Consul-Index"]) > n and len(json.loads(raw)) == 2


def test_a_blocked_recurse_returns_on_a_delete_under_the_prefix(kv):
    """§16.8: deleting a key under the prefix answers the list's reader (tombstone)."""
    kv.put("dir/a", b"1")
    kv.put("dir/b", b"2")
    n = kv.index("dir/", "?recurse")
    job = kv.watch("dir/", n, "?recurse")
    kv.delete("dir/a")
    status, headers, raw = job.result()
    assert status == 200 and int(headers["X-Consul-Index"]) > n and len(json.loads(raw)) == 1


def test_a_blocked_keys_read_returns_on_a_write_under_the_prefix(kv):
    """§16.8: ?keys blocks like ?recurse."""
    kv.put("dir/a", b"1")
    n = kv.index("dir/", "?keys")
    job = kv.watch("dir/", n, "?keys")
    kv.put("dir/b", b"2")
    assert json.loads(job.result()[2]) == [kv.prefix + "dir/a", kv.prefix + "dir/b"]


def test_deleting_the_newest_key_moves_the_prefix_index_forward(kv):
    """§16.8: the tombstone keeps a list's index from sliding back to the next-newest key."""
    kv.put("dir/a", b"1")
    kv.put("dir/b", b"2")
    before = kv.index("dir/", "?recurse")
    kv.delete("dir/b")
    assert kv.index("dir/", "?recurse") > before


def test_a_recursive_delete_moves_the_prefix_index_forward(kv):
    """§16.6, §16.8: a recursive delete writes one tombstone for the prefix; its 404 carries it."""
    kv.put("dir/a", b"1")
    before = kv.index("dir/", "?recurse")
    kv.delete("dir/", "?recurse")
    assert kv.index("dir/", "?recurse") > before


def test_a_blocked_recurse_is_not_answered_by_writes_outside_the_prefix(clocked):
    """§16.8: only keys under the prefix move its index."""
    store = clocked.kv
    store.put("dir/a", b"1")
    n = store.index("dir/", "?recurse")
    job = store.watch("dir/", n, "?recurse", wait="5m")
    store.put("other", b"x")
    assert int(clocked.outlast(job, "a write outside the prefix")[1]["X-Consul-Index"]) == n


def test_wait_runs_out_on_the_agents_clock_with_the_same_index(clocked):
    """§11: a blocked read returns when wait has passed on the agent's clock, index unchanged."""
    store = clocked.kv
    store.put("k", b"v")
    n = store.modify_index("k")
    job = store.watch("k", n, wait="5m")
    clocked.clock.advance(FIVE_MINUTES - 1)
    status, headers, _ = clocked.outlast(job, "4m59s passing", wait=1)
    assert (status, int(headers["X-Consul-Index"])) == (200, n)


def test_without_wait_a_blocked_read_waits_the_default_five_minutes(clocked):
    """§11: wait defaults to 5m."""
    store = clocked.kv
    store.put("k", b"v")
    n = store.modify_index("k")
    job = store.watch("k", n, wait="")
    clocked.clock.advance(FIVE_MINUTES - 1)
    assert clocked.outlast(job, "4m59s passing", wait=1)[0] == 200


def test_wait_is_capped_at_ten_minutes(clocked):
    """§11: a longer wait is cut to 10m."""
    store = clocked.kv
    store.put("k", b"v")
    job = store.watch("k", store.modify_index("k"), wait="1h")
    clocked.clock.advance(2 * FIVE_MINUTES - 1)
    assert clocked.outlast(job, "9m59s passing", wait=1)[0] == 200


def test_wait_runs_out_in_real_time_too(kv_double):
    """§11: with the real clock, ?wait=200ms returns after about 200 ms with the same index."""
    kv_double.put("k", b"v")
    n = kv_double.modify_index("k")
    job = kv_double.watch("k", n, wait="200ms")
    assert int(job.result(timeout=5)[1]["X-Consul-Index"]) == n


def test_reads_never_move_an_index(kv):
    """§16.8: reading does not move any index."""
    kv.put("k", b"v")
    before = kv.index("k"), kv.index("k", "?recurse"), kv.index("nope")
    kv.get("k", "?raw")
    kv.get("", "?keys")
    assert (kv.index("k"), kv.index("k", "?recurse"), kv.index("nope")) == before


def test_kv_writes_and_registrations_draw_from_one_counter(kv):
    """§16.8: KV write, then registration, then KV write: indexes strictly increase across both."""
    kv.put("k", b"1")
    first = kv.modify_index("k")
    register(kv.cut, "kv-counter-1", "kv-counter")
    registered = int(kv.cut.request("GET", "/v1/health/service/kv-counter")[1]["X-Consul-Index"])
    kv.put("k", b"2")
    assert first < registered < kv.modify_index("k")


def test_a_kv_write_does_not_move_the_health_index(kv):
    """§16.8, §11: a KV write never moves a /v1/health/* index."""
    register(kv.cut, "kv-health-1", "kv-health")
    before = int(kv.cut.request("GET", "/v1/health/service/kv-health")[1]["X-Consul-Index"])
    kv.put("k", b"v")
    assert int(kv.cut.request("GET", "/v1/health/service/kv-health")[1]["X-Consul-Index"]) == before


def test_a_registration_does_not_move_the_kv_index(kv_double):
    """§16.8: catalog writes never move a KV index (here: a missing key's table index)."""
    kv_double.put("a", b"v")
    before = kv_double.index("nope")
    register(kv_double.cut, "web-1", "web")
    assert kv_double.index("nope") == before


# ---------------------------------------------------------------- §16.10 consistency headers
def test_every_kv_read_carries_the_leader_and_consistency_headers(kv):
    """§16.10: KnownLeader, LastContact, Effective-Consistency leader, Query-Backend; 404s included."""
    headers = kv.get("nope")[1]
    assert headers["X-Consul-KnownLeader"] == "true" and int(headers["X-Consul-LastContact"]) >= 0
    assert (headers["X-Consul-Effective-Consistency"], headers["X-Consul-Query-Backend"]) == (
        "leader", "blocking-query")


@pytest.mark.parametrize("query,mode", [("?stale", "stale"), ("?consistent", "consistent"),
                                        ("?max_stale=5s", "stale"), ("?max_stale=0s", "leader")])
def test_the_effective_consistency_header_names_the_mode(kv, query, mode):
    """§16.10: ?stale, ?consistent and ?max_stale above 0 (which means stale)."""
    assert kv.get("nope", query)[1]["X-Consul-Effective-Consistency"] == mode


def test_stale_with_consistent_is_400(kv):
    """§16.10: conflicting consistency modes → 400."""
    status, _, raw = kv.get("k", "?stale&consistent")
    assert (status, raw) == (400, b"Cannot specify ?stale with ?consistent, conflicting semantics.")


def test_a_bad_max_stale_is_400(kv):
    """§16.10: a bad ?max_stale → 400 Invalid max_stale value "<v>"."""
    status, _, raw = kv.get("k", "?max_stale=soon")
    assert (status, raw) == (400, b'Invalid max_stale value "soon"')


def test_an_empty_max_stale_is_no_value(kv):
    """§16.10: ?max_stale= with nothing after it is ignored, not an error."""
    assert kv.get("nope", "?max_stale=")[1]["X-Consul-Effective-Consistency"] == "leader"


def test_without_a_leader_a_default_read_is_500_no_cluster_leader(kv_double):
    """§16.10: the default read is forwarded to the leader; with none: 500 No cluster leader."""
    kv_double.put("k", b"v")
    kv_double.cut.double.lose_leader()
    assert kv_double.get("k")[::2] == (500, b"No cluster leader")


def test_without_a_leader_a_stale_read_still_works(kv_double):
    """§16.10: ?stale is answered from the server's own copy: KnownLeader false."""
    kv_double.put("k", b"v")
    kv_double.cut.double.lose_leader()
    status, headers, raw = kv_double.get("k", "?stale&raw")
    assert (status, raw, headers["X-Consul-KnownLeader"]) == (200, b"v", "false")


def test_without_a_leader_last_contact_keeps_growing(clocked):
    """§16.10: X-Consul-LastContact is the milliseconds since the leader was last heard."""
    clocked.double.lose_leader()
    clocked.clock.advance(2.5)
    assert clocked.kv.get("k", "?stale")[1]["X-Consul-LastContact"] == "2500"


def test_without_a_leader_a_write_is_500_and_writes_nothing(kv_double):
    """§16.5: the raft write needs a leader; writes ignore ?stale."""
    kv_double.cut.double.lose_leader()
    assert kv_double.put("k", b"v", "?stale") == (500, "No cluster leader")
    kv_double.cut.double.lose_leader(False)
    assert kv_double.get("k")[0] == 404


def test_without_a_leader_status_leader_is_an_empty_string(consul_double):
    """§10: /v1/status/leader is "" when there is no leader."""
    consul_double.double.lose_leader()
    assert consul_double.get("/v1/status/leader") == (200, "")


def test_without_a_leader_the_agent_still_accepts_registrations(consul_double):
    """§10: agent-local endpoints keep working; health reads need ?stale."""
    consul_double.double.lose_leader()
    register(consul_double, "web-1", "web")
    assert consul_double.get("/v1/health/service/web")[0] == 500
    assert len(consul_double.get("/v1/health/service/web?stale")[1]) == 1


# ---------------------------------------------------------------- handle API
def test_the_handle_puts_a_key_that_http_reads(kv_double):
    """Handle API: put_key writes like a plain PUT and returns the ModifyIndex."""
    index = kv_double.cut.double.put_key("cfg/x", "text", flags=3)
    e = kv_double.entry("cfg/x")
    assert (e["ModifyIndex"], e["Flags"], base64.b64decode(e["Value"])) == (index, 3, b"text")


def test_the_handle_deletes_keys_and_answers_blocked_readers(kv_double):
    """Handle API: delete_key(recurse=True) removes a tree and wakes its readers."""
    double = kv_double.cut.double
    double.put_key("cfg/a", b"1")
    n = kv_double.index("cfg/", "?recurse")
    job = kv_double.watch("cfg/", n, "?recurse")
    double.delete_key("cfg/", recurse=True)
    assert job.result()[0] == 404

