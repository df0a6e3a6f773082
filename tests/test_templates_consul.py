"""Watches and renders against the Consul under test (the double, or a real
agent with SVCWRAP_TEST_CONSUL_ADDR) for /v1/health/service (issue 11
"Tests and measurements"): blocking queries that return on a change (a
write, a delete's tombstone, a new service in the catalog), the token on
every call, Consul down at start, a query dropped mid-way. The functions'
shapes are in test_templates_render.py, on the in-process fake."""
from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from svcwrap.config import ConsulConfig, Secret
from svcwrap.consul_http import AgentHTTP
from svcwrap.logs import Logger
from svcwrap.templates.manager import TemplateManager
from svcwrap.templates.spec import TemplateSpec
from svcwrap.templates.watch import Watch
from tests.consul_double import start
from tests.consul_fixture import REAL_AGENT_ENV, ConsulUnderTest, wait_until
from tests.support import assert_stays_false
from tests.templates_support import deregister_instance, register_instance, run_command

TOKEN = "7emplate-5ecre7-d0-not-print"


class Rendering:
    """A threaded manager rendering one upstreams file from service NAME."""

    def __init__(self, consul: ConsulUnderTest, tmp_path: Path, token: str = "",
                 text: str = "") -> None:
        self.consul = consul
        self.name = f"svcwrap-test-{uuid.uuid4().hex[:8]}"
        self.prefix = self.name + "/"   # its own KV keys (a real agent is shared)
        self.dest = tmp_path / "upstreams.conf"
        source = tmp_path / "upstreams.j2"
        source.write_text(text.replace("NAME", self.name) or
                          "{% for s in service('" + self.name + "') %}"
                          "server {{ s.address }}:{{ s.port }};\n{% endfor %}")
        self.log_path = tmp_path / "log"
        self.log_file = open(self.log_path, "w")
        self.reloads: list[list[TemplateSpec]] = []
        self.watches: list[Watch] = []
        config = ConsulConfig("http", consul.host, consul.port, Secret(token), True, None, "")
        self.manager = TemplateManager(
            [TemplateSpec(str(source), str(self.dest))],
            connect=lambda: AgentHTTP(config), environ={},
            log=Logger(fd=self.log_file.fileno()), runner=run_command,
            on_rendered=lambda changed, failures: self.reloads.append(changed),
            floor=0.05, block_wait=30.0, watch_factory=self._watch)

    def _watch(self, query) -> Watch:
        watch = self.manager.make_watch(query)
        self.watches.append(watch)
        watch.start()
        return watch

    def register(self, n: int, passing: bool = True) -> None:
        register_instance(self.consul, self.name, n, passing)

    def deregister(self, n: int) -> None:
        deregister_instance(self.consul, self.name, n)

    def put_key(self, key: str, value: str) -> None:
        status, _, raw = self.consul.request("PUT", "/v1/kv/" + self.prefix + key,
                                             value.encode())
        assert status == 200, raw

    def delete_key(self, key: str) -> None:
        status, _, raw = self.consul.request("DELETE", "/v1/kv/" + self.prefix + key)
        assert status == 200, raw

    def text(self) -> str:
        return self.dest.read_text() if self.dest.exists() else ""

    def log(self) -> str:
        return self.log_path.read_text()

    def close(self) -> None:
        # The log file's descriptor is closed only when nothing can write to
        # it any more: a line logged after the close would land in whatever
        # reuses the number (once, the next request to the agent: CI saw a
        # 400 "<!DOCTYPE HTML>" from the double).
        assert self.manager.stop(wait=10), "the render thread ended"
        self.log_file.close()
        self.consul.request("DELETE", "/v1/kv/" + self.prefix + "?recurse")


@pytest.fixture
def rendering(consul, tmp_path):
    r = Rendering(consul, tmp_path, consul.token or "")
    yield r
    r.close()


def test_a_template_renders_the_passing_instances_and_follows_every_change(rendering):
    rendering.register(1)
    rendering.register(2)
    rendering.register(3, passing=False)
    rendering.manager.start()
    assert rendering.manager.first_render_done.wait(10)
    assert rendering.text() == "server 10.0.0.1:8001;\nserver 10.0.0.2:8002;\n"
    rendering.register(4)
    wait_until(lambda: "10.0.0.4:8004" in rendering.text(), message="the new instance")
    rendering.deregister(1)
    wait_until(lambda: "10.0.0.1:" not in rendering.text(), message="the instance gone")
    assert rendering.text() == "server 10.0.0.2:8002;\nserver 10.0.0.4:8004;\n"
    # The file is in place a moment before the pass reports it.
    wait_until(lambda: len(rendering.reloads) == 2, message="the second reload decision")
    assert [len(changed) for changed in rendering.reloads] == [1, 1]


def test_an_idle_watch_blocks_in_consul_instead_of_polling(rendering, consul_double):
    rendering.register(1)
    rendering.manager.start()
    assert rendering.manager.first_render_done.wait(10)
    wait_until(lambda: rendering.watches[0].index > 0, message="a blocking call under way")

    def health_calls() -> int:
        return sum(r.path.startswith("/v1/health/service/") for r in consul_double.double.requests)

    calls = health_calls()
    assert_stays_false(lambda: health_calls() > calls, 1.0, "the idle watch called again")


def test_a_query_the_agent_drops_midway_is_asked_again_and_the_change_lands(rendering,
                                                                              consul_double):
    rendering.register(1)
    rendering.manager.start()
    assert rendering.manager.first_render_done.wait(10)
    watch = rendering.watches[0]
    wait_until(lambda: watch.index > 0, message="a blocking call under way")
    consul_double.double.refuse_connections(True)   # drops the blocked call's connection
    wait_until(lambda: watch.failures >= 1, message="the watch saw the drop")
    consul_double.double.refuse_connections(False)
    rendering.register(2)
    wait_until(lambda: "10.0.0.2:8002" in rendering.text(), message="the change after the drop")
    assert rendering.log().count("consul unavailable") == 1
    assert "consul available again" in rendering.log()


def test_consul_down_at_start_is_waited_out_with_backoff_and_logged_once(rendering,
                                                                         consul_double):
    rendering.register(1)
    consul_double.double.refuse_connections(True)
    rendering.manager.start()
    wait_until(lambda: rendering.watches and rendering.watches[0].failures >= 3,
               message="three failed calls")
    assert not rendering.manager.first_render_done.is_set()
    assert rendering.manager.waiting() == {str(rendering.dest): [f"service({rendering.name!r})"]}
    consul_double.double.refuse_connections(False)
    assert rendering.manager.first_render_done.wait(10)
    assert rendering.text() == "server 10.0.0.1:8001;\n"
    assert rendering.log().count("consul unavailable") == 1


@pytest.fixture
def render(consul, tmp_path):
    """render(text): a manager on `text` (NAME becomes the test's own name), started."""
    made: list[Rendering] = []

    def make(text: str) -> Rendering:
        r = Rendering(consul, tmp_path, consul.token or "", text)
        made.append(r)
        return r

    yield make
    for r in made:
        r.close()


def test_key_waits_for_the_key_and_its_blocking_query_returns_on_each_write(render):
    r = render("max={{ key('NAME/max') }}")
    r.manager.start()
    wait_until(lambda: r.watches and r.watches[0].answered, message="Consul's 404")
    assert not r.manager.first_render_done.is_set() and not r.dest.exists()
    r.put_key("max", "15")
    assert r.manager.first_render_done.wait(10)
    assert r.text() == "max=15"
    wait_until(lambda: r.watches[0].index > 0, message="a blocking call under way")
    r.put_key("max", "20")
    wait_until(lambda: r.text() == "max=20", message="the new value")
    wait_until(lambda: len(r.reloads) == 1, message="the reload decision")
    assert len(r.watches) == 1


def test_a_deleted_key_brings_back_the_default_through_the_tombstones_index(render):
    r = render("{{ key_or_default('NAME/mode', 'round-robin') }}")
    r.put_key("mode", "least-conn")
    r.manager.start()
    assert r.manager.first_render_done.wait(10)
    assert r.text() == "least-conn"
    wait_until(lambda: r.watches[0].index > 0, message="a blocking call under way")
    r.delete_key("mode")
    wait_until(lambda: r.text() == "round-robin", message="the default after the delete")


def test_tree_and_ls_follow_writes_and_deletes_below_their_prefix(render):
    r = render("{% for p in tree('NAME/app') %}{{ p.key }}={{ p.value }} {% endfor %}|"
               "{% for p in ls('NAME/app') %}{{ p.key }} {% endfor %}")
    r.put_key("app/a", "1")
    r.put_key("app/sub/b", "2")
    r.manager.start()
    assert r.manager.first_render_done.wait(10)
    assert r.text() == "a=1 sub/b=2 |a "
    wait_until(lambda: r.watches[0].index > 0, message="a blocking call under way")
    r.put_key("app/c", "3")
    wait_until(lambda: r.text() == "a=1 c=3 sub/b=2 |a c ", message="the new key")
    r.delete_key("app/a")
    wait_until(lambda: r.text() == "c=3 sub/b=2 |c ", message="the deleted key gone")
    wait_until(lambda: len(r.reloads) == 2, message="one reload decision per change")


def test_a_write_outside_the_prefix_rewrites_nothing_and_reloads_nothing(render):
    r = render("{% for p in tree('NAME/app') %}{{ p.key }}={{ p.value }}{% endfor %}")
    r.put_key("app/a", "1")
    r.manager.start()
    assert r.manager.first_render_done.wait(10)
    watch = r.watches[0]
    wait_until(lambda: watch.index > 0, message="a blocking call under way")
    before = watch.index
    r.put_key("other", "x")      # moves the KV table's index: the prefix's may move too
    r.put_key("app2/a", "x")     # shares the prefix's first letters, not its slash
    assert_stays_false(lambda: r.reloads, 0.5, "a write elsewhere reloaded")
    assert r.text() == "a=1" and watch.index >= before


def test_services_follows_a_new_service_in_the_catalog(render):
    r = render("{% for s in services() %}{% if s.name.startswith('NAME') %}"
               "{{ s.name[-2:] }}:{{ s.tags|join(',') }} {% endif %}{% endfor %}")
    r.name, base = r.name + "-a", r.name
    r.register(1)
    r.manager.start()
    assert r.manager.first_render_done.wait(10)
    assert r.text() == "-a: "
    wait_until(lambda: r.watches[0].index > 0, message="a blocking call under way")
    status, text = r.consul.put("/v1/agent/service/register", {
        "Name": base + "-b", "ID": base + "-b-1", "Tags": ["v2", "edge"],
        "Check": {"TTL": "60s", "Status": "passing"}})
    assert status == 200, text
    wait_until(lambda: r.text() == "-a: -b:edge,v2 ", message="the new service")


@pytest.fixture
def acl_consul():
    if os.environ.get(REAL_AGENT_ENV):
        pytest.skip("needs a double started with ACLs; a real agent is configured")
    double = start(acl_tokens=[TOKEN])
    try:
        yield ConsulUnderTest(double.addr, double, 60.0, 30.0, token=TOKEN)
    finally:
        double.stop()


def test_every_watch_call_carries_the_acl_token_and_never_in_the_url(acl_consul, tmp_path):
    r = Rendering(acl_consul, tmp_path, TOKEN)
    try:
        r.register(1)   # anonymous reads are filtered to nothing: only the token sees it
        r.manager.start()
        assert r.manager.first_render_done.wait(10)
        assert r.text() == "server 10.0.0.1:8001;\n"
        calls = [q for q in acl_consul.double.requests if q.path.startswith("/v1/health/")]
        assert calls and all(q.token == TOKEN and "token" not in q.query for q in calls)
        assert TOKEN not in r.log()
    finally:
        r.close()
