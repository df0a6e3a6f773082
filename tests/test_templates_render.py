"""The template functions (issue 11 "What the user writes"), rendered by
the manager against an in-process fake Consul with the test's clock: what
each function gives and how it sorts. How their watches follow Consul (a
write, a tombstone, a new catalog entry, blocking) is tested against the
double in test_templates_consul.py."""
from __future__ import annotations

import pytest

from tests.templates_support import Harness

UPSTREAMS = ("upstream web {\n{% for s in service('web') %}"
             "  server {{ s.address }}:{{ s.port }};\n{% endfor %}}\n")


def test_service_lists_the_healthy_instances_with_the_service_address_else_the_nodes(tmp_path):
    h = Harness(tmp_path, {"up.conf": UPSTREAMS})
    h.consul.register("web-1", "web", 8001, address="10.1.0.1")
    h.consul.register("web-2", "web", 8002, node_address="10.2.0.2", node="node2")
    h.consul.register("web-3", "web", 8003, status="critical")
    h.settle()
    assert h.text("up.conf") == ("upstream web {\n  server 10.1.0.1:8001;\n"
                                 "  server 10.2.0.2:8002;\n}\n")


def test_service_with_passing_false_lists_every_instance_with_its_status(tmp_path):
    h = Harness(tmp_path, {"all": "{% for s in service('web', passing=False) %}"
                                  "{{ s.id }}={{ s.status }} {% endfor %}"})
    h.consul.register("web-1", "web", 1)
    h.consul.register("web-2", "web", 2, status="warning")
    h.settle()
    assert h.text("all") == "web-1=passing web-2=warning "


def test_service_with_a_tag_lists_only_the_instances_carrying_it(tmp_path):
    h = Harness(tmp_path, {"t": "{% for s in service('web', tag='v2') %}{{ s.id }}"
                                "{{ s.tags }}{{ s.meta }}{{ s.node }}{% endfor %}"})
    h.consul.register("web-1", "web", 1, tags=["v1"])
    h.consul.register("web-2", "web", 2, tags=["v2"], meta={"b": "2", "a": "1"})
    h.settle()
    assert h.text("t") == "web-2['v2']{'a': '1', 'b': '2'}node1"


def test_an_unchanged_set_of_instances_renders_identical_bytes_whatever_consuls_order(tmp_path):
    h = Harness(tmp_path, {"up.conf": UPSTREAMS})
    for i in (3, 1, 2):
        h.consul.register(f"web-{i}", "web", 8000 + i, node=f"n{i}")
    h.settle()
    first = h.text("up.conf")
    h.consul.instances = dict(reversed(list(h.consul.instances.items())))
    h.consul.index += 1
    h.settle()
    assert h.text("up.conf") == first
    assert first.index("8001") < first.index("8002") < first.index("8003")


def test_services_lists_the_catalog_by_name_with_sorted_tags(tmp_path):
    h = Harness(tmp_path, {"s": "{% for s in services() %}{{ s.name }}:{{ s.tags|join(',') }} "
                                "{% endfor %}"})
    h.consul.register("web-1", "web", 1, tags=["b", "a"])
    h.consul.register("db-1", "db", 2)
    h.settle()
    assert h.text("s") == "db: web:a,b "


def test_key_waits_until_the_key_exists_then_renders_its_value(tmp_path):
    h = Harness(tmp_path, {"k": "max={{ key('app/max') }}"})
    h.settle()
    assert h.manager.waiting() == {str(tmp_path / "k"): ["key('app/max')"]}
    assert not (tmp_path / "k").exists()
    h.consul.put("app/max", "15")
    h.settle()
    assert h.text("k") == "max=15"
    assert h.manager.first_render_done.is_set()


def test_key_or_default_renders_the_default_for_a_missing_key(tmp_path):
    h = Harness(tmp_path, {"k": "{{ key_or_default('app/max', '5') }}"
                                "/{{ key_or_default('app/min', '1') }}"})
    h.consul.put("app/min", "2")
    h.settle()
    assert h.text("k") == "5/2"


def test_tree_lists_every_key_below_the_prefix_and_ls_only_the_direct_children(tmp_path):
    h = Harness(tmp_path, {
        "tree": "{% for p in tree('app') %}{{ p.key }}={{ p.value }} {% endfor %}",
        "ls": "{% for p in ls('app/') %}{{ p.key }}={{ p.value }} {% endfor %}"})
    for key, value in [("app/a", "1"), ("app/sub/", ""), ("app/sub/b", "2"), ("app2/x", "3"),
                       ("app/c", "")]:
        h.consul.put(key, value)
    h.settle()
    assert h.text("tree") == "a=1 c= sub/b=2 "
    assert h.text("ls") == "a=1 c= "
    assert len([w for w in h.watches if w.query.kind == "prefix"]) == 1


def test_an_empty_prefix_renders_an_empty_list(tmp_path):
    h = Harness(tmp_path, {"ls": "[{% for p in ls('none') %}{{ p.key }}{% endfor %}]"})
    h.settle()
    assert h.text("ls") == "[]"


def test_env_reads_svcwraps_environment_and_is_empty_when_unset(tmp_path):
    h = Harness(tmp_path, {"e": "{{ env('REGION') }}|{{ env('UNSET') }}"},
                environ={"REGION": "eu"})
    h.settle()
    assert h.text("e") == "eu|"


def test_a_template_names_every_query_it_waits_for_in_one_pass(tmp_path):
    h = Harness(tmp_path, {"w": "{{ key('a') }}{% for s in service('db') %}{{ s.id }}"
                                "{% endfor %}{{ key('b') }}"})
    h.manager.run_once()
    assert h.manager.waiting() == {str(tmp_path / "w"): ["key('a')", "service('db')",
                                                          "key('b')"]}


def test_a_query_that_depends_on_another_answer_is_found_on_the_next_pass(tmp_path):
    h = Harness(tmp_path, {"all": "{% for svc in services() %}{% for s in service(svc.name) %}"
                                  "{{ s.id }} {% endfor %}{% endfor %}"})
    h.consul.register("web-1", "web", 1)
    h.consul.register("db-1", "db", 2)
    h.settle()
    assert h.text("all") == "db-1 web-1 "


def test_one_watch_serves_every_template_asking_the_same_query(tmp_path):
    h = Harness(tmp_path, {"a": UPSTREAMS, "b": UPSTREAMS, "c": "{{ service('web')|length }}"})
    h.consul.register("web-1", "web", 1)
    h.settle()
    assert [w.query.describe() for w in h.watches] == ["service('web')"]
    assert h.text("c") == "1"


def test_an_undefined_name_is_an_error_and_leaves_the_file_alone(tmp_path):
    h = Harness(tmp_path, {"bad": "{{ nosuch }}"})
    (tmp_path / "bad").write_text("old")
    h.settle()
    assert (tmp_path / "bad").read_text() == "old"
    assert "nosuch" in h.manager.failures()[str(tmp_path / "bad")]


def test_the_sandbox_refuses_reaching_python_internals(tmp_path):
    h = Harness(tmp_path, {"evil": "{{ env.__globals__ }}"})
    h.settle()
    assert "unsafe" in h.manager.failures()[str(tmp_path / "evil")]
    assert not (tmp_path / "evil").exists()


def test_a_template_with_a_syntax_error_is_refused_at_start_naming_the_file_and_line(tmp_path):
    from svcwrap.templates.spec import TemplateError

    with pytest.raises(TemplateError, match=r"bad\.j2:2: "):
        Harness(tmp_path, {"bad": "ok\n{% for %}"})


def test_an_empty_key_path_or_service_name_is_a_template_error_not_a_query(tmp_path):
    h = Harness(tmp_path, {"k": "{{ key('') }}", "s": "{{ service('') }}"})
    h.settle()
    assert h.manager.failures() == {str(tmp_path / "k"): "ValueError: key(): the path is empty",
                                    str(tmp_path / "s"): "ValueError: service(): the name is "
                                                         "empty"}
    assert h.watches == []


def test_a_template_whose_output_explodes_is_refused(tmp_path):
    h = Harness(tmp_path, {"big": "{% for i in range(99999) %}{% for j in range(99999) %}"
                                  "{{ i }}{% endfor %}{% endfor %}"})
    h.manager.renderer.max_output = 100_000   # 64 Mi characters by default
    h.settle()
    assert "larger than 100000 characters" in h.manager.failures()[str(tmp_path / "big")]
    assert not (tmp_path / "big").exists()
