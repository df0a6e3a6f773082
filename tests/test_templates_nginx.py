"""The seed's load balancer with a real nginx from Debian (issue 11 "Tests
and measurements"): svcwrap renders nginx's upstreams from Consul, checks
them with `nginx -t`, and reloads nginx with SIGHUP; a file nginx refuses
is put back and the instance keeps serving its last good configuration."""
from __future__ import annotations

import shutil
import urllib.request
from pathlib import Path

import psutil
import pytest

from tests.support import assert_stays_false, free_port, wait_until
from tests.templates_support import Templated

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
pytestmark = pytest.mark.skipif(NGINX is None, reason="needs nginx (apt-get install nginx-light)")

UPSTREAMS = """upstream app {
{% for s in service('NAME-app') %}    server {{ s.address }}:{{ s.port }};
{% endfor %}}
server {
    listen 127.0.0.1:PORT;
    location / { return 200 "{% for s in service('NAME-app') %}{{ s.port }} {% endfor %}"; }
}
"""


class Nginx:
    """nginx in the foreground (daemon off), everything it writes in tmp."""

    def __init__(self, tmp: Path, upstreams: Path) -> None:
        self.port = free_port()
        self.errors = tmp / "nginx-error.log"
        self.conf = tmp / "nginx.conf"
        temp = {name: tmp / f"nginx-{name}" for name in ("body", "proxy", "fastcgi", "uwsgi",
                                                         "scgi")}
        self.conf.write_text(f"""daemon off;
worker_processes 1;
pid {tmp / 'nginx.pid'};
error_log {self.errors};
events {{ worker_connections 32; }}
http {{
    access_log off;
    client_body_temp_path {temp['body']};
    proxy_temp_path {temp['proxy']};
    fastcgi_temp_path {temp['fastcgi']};
    uwsgi_temp_path {temp['uwsgi']};
    scgi_temp_path {temp['scgi']};
    include {upstreams};
}}
""")

    @property
    def command(self) -> list[str]:
        return [NGINX, "-e", str(self.errors), "-c", str(self.conf)]

    @property
    def validate(self) -> list[str]:
        return [NGINX, "-t", "-q", "-e", str(self.errors), "-c", str(self.conf)]

    def served(self) -> str | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/", timeout=2) as answer:
                return answer.read().decode()
        except OSError:
            return None


def workers(w) -> set[int]:
    """The nginx workers: the children of svcwrap's child, the master."""
    found = set()
    for master in w.children():
        try:
            found |= {p.pid for p in master.children()}
        except psutil.Error:
            pass
    return found


@pytest.fixture
def lb(consul, tmp_path):
    t = Templated(consul, tmp_path)
    upstreams = tmp_path / "upstreams.conf"
    nginx = Nginx(tmp_path, upstreams)
    t.template("upstreams.conf", UPSTREAMS.replace("PORT", str(nginx.port)),
               reload="signal:HUP", validate=nginx.validate)
    yield t, nginx
    for n in (1, 2, 3):
        t.consul.put(f"/v1/agent/service/deregister/{t.name}-app-{n}")


def test_nginx_starts_on_the_rendered_upstreams_and_sighup_makes_it_serve_the_new_ones(wrap, lb):
    t, nginx = lb
    t.register(1)
    w = wrap(*t.args(child=nginx.command), env=t.env())
    wait_until(lambda: nginx.served() == "8001 ", timeout=15, message="nginx serving")
    before = wait_until(lambda: workers(w), message="nginx's worker")
    t.register(2)
    wait_until(lambda: nginx.served() == "8001 8002 ", timeout=15, message="the new upstreams")
    # SIGHUP: the master re-read its configuration and replaced its workers.
    wait_until(lambda: workers(w) and not workers(w) & before, message="new workers")


def test_upstreams_nginx_t_refuses_are_rolled_back_and_nginx_keeps_serving_the_last_good(
        wrap, lb):
    t, nginx = lb
    t.register(1)
    w = wrap(*t.args(child=nginx.command), env=t.env())
    wait_until(lambda: nginx.served() == "8001 ", timeout=15, message="nginx serving")
    upstreams = t.tmp / "upstreams.conf"
    good = upstreams.read_text()
    before = workers(w)
    t.deregister(1)   # an empty upstream block: "no servers are inside upstream"
    failure = wait_until(lambda: t.status()["templates"][0]["failure"], timeout=15,
                         message="the validation failure in status")
    assert "no servers are inside upstream" in failure
    assert upstreams.read_text() == good
    assert_stays_false(lambda: workers(w) != before, 0.5, "nginx was reloaded")
    assert nginx.served() == "8001 "
    t.register(3)
    wait_until(lambda: nginx.served() == "8003 ", timeout=15, message="recovered")
    assert t.status()["templates"][0]["failure"] is None
