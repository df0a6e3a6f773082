"""Contract tests: py-consul 1.8.0's KV and catalog calls against the agent under test (§14.1, §16, §10)."""
from __future__ import annotations

import consul as pyconsul
import pytest

from tests.kv_support import blocked, kv, register  # noqa: F401 (fixtures)


@pytest.fixture
def client(consul):
    return pyconsul.Consul(host=consul.host, port=consul.port, token=consul.token)


def test_kv_put_then_get_decodes_the_value(client, kv):
    """§16.1: py-consul decodes the base64 Value to bytes."""
    assert client.kv.put(kv.prefix + "k", "hello") is True
    index, entry = client.kv.get(kv.prefix + "k")
    assert entry["Value"] == b"hello" and int(index) == entry["ModifyIndex"]


def test_kv_get_of_a_missing_key_is_index_and_none(client, kv):
    """§16.1, §0.13: the 404 with X-Consul-Index becomes (index, None)."""
    index, entry = client.kv.get(kv.prefix + "nope")
    assert entry is None and int(index) >= 1


def test_kv_get_recurse_lists_the_prefix(client, kv):
    """§16.2: recurse=True returns every entry under the prefix."""
    client.kv.put(kv.prefix + "d/a", "1")
    client.kv.put(kv.prefix + "d/b", "2")
    _, entries = client.kv.get(kv.prefix + "d/", recurse=True)
    assert [(e["Key"], e["Value"]) for e in entries] == [(kv.prefix + "d/a", b"1"), (kv.prefix + "d/b", b"2")]


def test_kv_get_keys_with_a_separator(client, kv):
    """§16.3: keys=True, separator="/"."""
    client.kv.put(kv.prefix + "d/a", "1")
    client.kv.put(kv.prefix + "d/sub/x", "2")
    assert client.kv.get(kv.prefix + "d/", keys=True, separator="/")[1] == [kv.prefix + "d/a", kv.prefix + "d/sub/"]


def test_kv_cas_put_returns_false_on_a_stale_index(client, kv):
    """§16.5: put(cas=N) returns the JSON bool."""
    client.kv.put(kv.prefix + "k", "1")
    stale = client.kv.get(kv.prefix + "k")[1]["ModifyIndex"]
    client.kv.put(kv.prefix + "k", "2")
    assert client.kv.put(kv.prefix + "k", "3", cas=stale) is False


def test_kv_blocking_get_returns_on_a_write(client, kv):
    """§16.8: get(index=, wait=) returns the new value once the key is written."""
    client.kv.put(kv.prefix + "k", "1")
    index, _ = client.kv.get(kv.prefix + "k")
    job = blocked(kv.cut, lambda: client.kv.get(kv.prefix + "k", index=index, wait="30s"))
    client.kv.put(kv.prefix + "k", "2")
    new_index, entry = job.result()
    assert entry["Value"] == b"2" and int(new_index) > int(index)


def test_kv_delete_recurse(client, kv):
    """§16.6: delete(recurse=True) removes the tree."""
    client.kv.put(kv.prefix + "d/a", "1")
    assert client.kv.delete(kv.prefix + "d/", recurse=True) is True
    assert client.kv.get(kv.prefix + "d/a")[1] is None


def test_catalog_services_is_index_and_a_name_to_tags_object(client, consul):
    """§10: catalog.services() → (index, {name: [tags]})."""
    register(consul, "pc-web-1", "pc-web", ["blue"])
    index, services = client.catalog.services()
    assert services["pc-web"] == ["blue"] and int(index) >= 1
