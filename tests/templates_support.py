"""Helpers for the template tests: an in-process fake Consul (KV, catalog,
health; real JSON shapes, no blocking), a clock the test moves, a command
runner, and a manager wired to them with watches the test steps by hand."""
from __future__ import annotations

import base64
import json
import subprocess
import urllib.parse
from pathlib import Path

from svcwrap.logs import Logger
from svcwrap.templates.manager import TemplateManager
from svcwrap.templates.spec import TemplateSpec
from svcwrap.templates.watch import Watch
from tests.consul_fixture import register_ttl_service


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Answer:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body


class FakeConsul:
    """Answers GETs of /v1/kv, /v1/catalog/services and /v1/health/service
    at once (it ignores ?index/?wait) and records every call."""

    def __init__(self) -> None:
        self.index = 10
        self.kv: dict[str, str] = {}
        self.instances: dict[str, dict] = {}   # service ID -> entry
        self.calls: list[tuple[str, dict[str, str], float, int]] = []
        self.down = False
        self.index_override: int | None = None
        self.error: tuple[int, bytes] | None = None   # answer every call with this
        self.clock: Clock | None = None               # moved by latency on each call
        self.latency = 0.0

    # -- changing the data -------------------------------------------------
    def put(self, key: str, value: str) -> None:
        self.index += 1
        self.kv[key] = value

    def delete(self, key: str) -> None:
        self.index += 1
        self.kv.pop(key, None)

    def register(self, sid: str, name: str, port: int, *, address: str = "",
                 node_address: str = "10.0.0.1", tags=(), meta=None,
                 status: str = "passing", node: str = "node1") -> None:
        self.index += 1
        self.instances[sid] = {
            "Node": {"Node": node, "Address": node_address},
            "Service": {"ID": sid, "Service": name, "Tags": list(tags), "Address": address,
                        "Port": port, "Meta": meta or {}},
            "Checks": [{"CheckID": "serfHealth", "Status": "passing"},
                       {"CheckID": f"service:{sid}", "Status": status}],
        }

    def deregister(self, sid: str) -> None:
        self.index += 1
        self.instances.pop(sid, None)

    # -- the client (consul_http.AgentHTTP's shape) ---------------------------
    def close(self) -> None:
        pass

    def request(self, method: str, path: str, *, params: dict[str, str], body,
                 deadline: float, max_body: int) -> Answer:
        self.calls.append((path, dict(params), deadline, max_body))
        if self.clock is not None:
            self.clock.advance(self.latency)
        if self.down:
            raise ConnectionRefusedError(111, "Connection refused")
        index = self.index if self.index_override is None else self.index_override
        headers = {"X-Consul-Index": str(index)}
        if self.error is not None:
            return Answer(self.error[0], headers, self.error[1])
        if path.startswith("/v1/kv/"):
            return self._kv(urllib.parse.unquote(path[7:]), params, headers)
        if path == "/v1/catalog/services":
            tags: dict[str, set] = {}
            for entry in self.instances.values():
                tags.setdefault(entry["Service"]["Service"], set()).update(entry["Service"]["Tags"])
            return self._json({name: sorted(t, reverse=True) for name, t in tags.items()}, headers)
        if path.startswith("/v1/health/service/"):
            name = urllib.parse.unquote(path[19:])
            entries = [e for e in self.instances.values() if e["Service"]["Service"] == name]
            if "tag" in params:
                entries = [e for e in entries if params["tag"] in e["Service"]["Tags"]]
            if params.get("passing") == "true":
                entries = [e for e in entries if all(c["Status"] == "passing" for c in e["Checks"])]
            return self._json(list(reversed(entries)), headers)  # Consul's order is not stable
        return Answer(404, headers, b"404 page not found")

    def _kv(self, key: str, params: dict[str, str], headers: dict[str, str]) -> Answer:
        def item(k: str) -> dict:
            v = self.kv[k]
            return {"Key": k, "Value": base64.b64encode(v.encode()).decode() if v else None,
                    "Flags": 0, "LockIndex": 0, "CreateIndex": 1, "ModifyIndex": 1}

        if "recurse" in params:
            found = [item(k) for k in sorted(self.kv) if k.startswith(key)]
        else:
            found = [item(key)] if key in self.kv else []
        return self._json(found, headers) if found else Answer(404, headers, b"")

    @staticmethod
    def _json(data, headers: dict[str, str]) -> Answer:
        return Answer(200, headers, json.dumps(data).encode())


def run_command(argv: list[str], timeout: float) -> tuple[int | None, str]:
    """The runner outside svcwrap's supervisor (nothing else reaps here)."""
    try:
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, timeout=timeout)
    except subprocess.TimeoutExpired as err:
        return None, (err.output or b"").decode("utf-8", "replace")
    return done.returncode, done.stdout.decode("utf-8", "replace")


class Harness:
    """A TemplateManager on the fake Consul and clock, with no threads: the
    test moves answers along with pump() and passes with run_once()."""

    def __init__(self, tmp_path: Path, sources: dict[str, str], *,
                 wait: tuple[float, float] = (0.0, 0.0), environ=None, **spec_options) -> None:
        self.consul = FakeConsul()
        self.clock = Clock()
        self.watches: list[Watch] = []
        self.reloads: list[tuple[list[str], dict[str, str]]] = []
        self.specs = []
        for name, text in sources.items():
            source = tmp_path / (name + ".j2")
            source.write_text(text)
            self.specs.append(TemplateSpec(str(source), str(tmp_path / name), **spec_options))
        self.manager = TemplateManager(
            self.specs, connect=lambda: self.consul, environ=environ or {}, log=Logger(level="error"),
            runner=run_command, on_rendered=self._on_rendered, wait=wait, floor=0.0,
            clock=self.clock, watch_factory=self._watch)
        self.manager.load_sources()

    def _watch(self, query) -> Watch:
        watch = self.manager.make_watch(query)
        self.watches.append(watch)
        return watch

    def _on_rendered(self, changed: list[TemplateSpec], failures: dict[str, str]) -> None:
        self.reloads.append(([Path(s.destination).name for s in changed], failures))

    def pump(self) -> None:
        """Every live watch makes one call (new watches found meanwhile too)."""
        for watch in list(self.watches):
            if not watch.stopping.is_set():
                watch.step()

    def settle(self) -> int:
        """Pump and render until nothing more is due; the number of passes."""
        passes = 0
        for _ in range(20):
            self.pump()
            if not self.manager.run_once():
                return passes
            passes += 1
        raise AssertionError("the templates never settled")

    def text(self, name: str) -> str:
        return Path(self.specs[[Path(s.destination).name for s in self.specs].index(name)]
                    .destination).read_text()


def register_instance(consul, name: str, n: int, passing: bool = True) -> None:
    """Instance NAME-n of service NAME at 10.0.0.n:800n, in the Consul under test."""
    register_ttl_service(consul, f"{name}-{n}", name, "60s",
                         {"Port": 8000 + n, "Address": f"10.0.0.{n}"},
                         Status="passing" if passing else "critical")


def deregister_instance(consul, name: str, n: int) -> None:
    status, text = consul.put(f"/v1/agent/service/deregister/{name}-{n}")
    assert status == 200, text


class Templated:
    """svcwrap with templates, end to end, on the Consul under test: its own
    service name and KV prefix (a real agent is shared), template sources
    and a --config file in tmp_path, and a control socket for the verbs."""

    def __init__(self, consul, tmp_path: Path) -> None:
        import uuid

        self.consul = consul
        self.tmp = tmp_path
        self.name = f"svcwrap-test-{uuid.uuid4().hex[:8]}"
        self.prefix = self.name + "/"
        self.control = tmp_path / "control.sock"
        self.tables: list[str] = []

    def template(self, name: str, text: str, **keys: object) -> Path:
        """A [[template]] rendering `text` (NAME becomes self.name) to tmp/name."""
        source = self.tmp / (name + ".j2")
        source.write_text(text.replace("NAME", self.name))
        dest = self.tmp / name
        lines = ["[[template]]", f"source = {json.dumps(str(source))}",
                 f"destination = {json.dumps(str(dest))}"]
        lines += [f"{key.replace('_', '-')} = {json.dumps(value)}" for key, value in keys.items()]
        self.tables.append("\n".join(lines))
        return dest

    def args(self, *extra: str, child: list[str], register: bool = False) -> list[str]:
        config = self.tmp / "svcwrap.toml"
        config.write_text("\n\n".join(self.tables) + "\n")
        head = [] if register else ["--no-register"]
        return [*head, "--consul", self.consul.addr, "--control", str(self.control),
                "--config", str(config), *extra, "--", *child]

    def env(self) -> dict[str, str]:
        import os

        env = {k: v for k, v in os.environ.items() if not k.startswith(("CONSUL_", "SVCWRAP_"))}
        if self.consul.token:
            env["CONSUL_HTTP_TOKEN"] = self.consul.token
        return env

    def put_key(self, key: str, value: str) -> None:
        status, _, raw = self.consul.request("PUT", "/v1/kv/" + self.prefix + key,
                                             value.encode())
        assert status == 200, raw

    def delete_keys(self) -> None:
        self.consul.request("DELETE", "/v1/kv/" + self.prefix + "?recurse")

    def register(self, n: int, passing: bool = True) -> None:
        register_instance(self.consul, self.name + "-app", n, passing)

    def deregister(self, n: int) -> None:
        deregister_instance(self.consul, self.name + "-app", n)

    def verb(self, *args: str) -> subprocess.CompletedProcess:
        from tests.control_support import verb

        return verb(*args, env={"SVCWRAP_CONTROL": str(self.control)})

    def status(self) -> dict:
        done = self.verb("status", "--json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)
