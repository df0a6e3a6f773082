"""Everything that talks to Consul: register, report check status,
maintenance, deregister.

Runs only on svcwrap's worker threads, never on the supervisor's. Every call
goes through consul_http.AgentHTTP: one overall deadline per call, a small
cap on every answer. Errors become two exception types the lifecycle acts
on: NotRegistered (the agent has forgotten us: register again) and
ConsulUnavailable (down, slow, erroring or refusing: retry later). Neither
message ever contains the ACL token: it travels in the X-Consul-Token
header, and every text from the agent is redacted before it is shown.

The agent's HTTP API is called directly rather than through py-consul:
importing the `consul` package imports requests, urllib3 and
importlib.metadata (about 130 ms of CPU and 200 modules per instance, paid by
every one of 300 containers), its HTTP client has per-read timeouts only,
and svcwrap uses three endpoints whose bodies are a few lines to build.
"""
from __future__ import annotations

import json
import os
import socket

from svcwrap.config import ConsulConfig, HealthConfig, ServiceConfig, format_duration
from svcwrap.consul_http import AgentHTTP, ConsulUnavailable, Response

CALL_TIMEOUT = 2.0    # any one call to the agent, overall (the agent is local: it answers in ms)
MAX_ANSWER = 16 * 1024  # the agent answers writes with an empty body or one line of text

__all__ = ["ConsulUnavailable", "NotRegistered", "Registry"]


class NotRegistered(Exception):
    """The agent does not know our check (an agent restarted without its data)."""


class Registry:
    def __init__(self, consul_config: ConsulConfig, service: ServiceConfig,
                 health: HealthConfig, notes: str) -> None:
        self.config = consul_config
        self.service = service
        self.health = health
        self.notes = notes
        self.check_id = f"service:{service.id}"
        self.address = advertised_address(service.address, consul_config)
        # A connection per purpose, each used by one thread at a time (an
        # AgentHTTP is not thread-safe): registration and heartbeats (the
        # worker); the deregistration on stop, which must never queue behind
        # a heartbeat stuck on a slow agent; and maintenance, switched from a
        # `svcwrap maintenance` thread or the worker, always under the
        # backend's lock (opened on first use only).
        self.http = AgentHTTP(consul_config)
        self.stop_http = AgentHTTP(consul_config)
        self.maintenance_http = AgentHTTP(consul_config)

    @property
    def url(self) -> str:
        return self.config.base_url

    def register(self, status: str, output: str) -> None:
        """Register the service and its TTL check (with `status`, so a
        re-registration never claims passing for a failing service), replacing
        any older definition."""
        check = {
            "CheckID": self.check_id,
            "Name": f"svcwrap TTL check for {self.service.name}",
            "Notes": self.notes,
            "TTL": format_duration(self.health.ttl),
            "Status": status,
        }
        if self.health.deregister_after > 0:
            check["DeregisterCriticalServiceAfter"] = format_duration(self.health.deregister_after)
        body: dict = {"Name": self.service.name, "ID": self.service.id,
                      "Tags": self.service.tags, "Check": check}
        if self.address:
            body["Address"] = self.address
        if self.service.port is not None:
            body["Port"] = self.service.port
        if self.service.meta:
            body["Meta"] = self.service.meta
        answer = self._call(self.http, "PUT", "/v1/agent/service/register",
                            {"replace-existing-checks": "true"}, json.dumps(body).encode())
        if answer.status != 200:
            raise ConsulUnavailable(self._answered(answer, "the registration"))

    def update(self, status: str, output: str) -> None:
        """PUT /v1/agent/check/update/:id."""
        answer = self._call(self.http, "PUT", f"/v1/agent/check/update/{self.check_id}", None,
                            json.dumps({"Status": status, "Output": output}).encode())
        if answer.status == 200:
            return
        text = self._answered(answer, "the status update")
        # 404 from 1.11 on; before, a 500: "Unknown check" with ACLs, "does
        # not have associated TTL" without (reference §4.3). All mean "not registered".
        if answer.status == 404 or (answer.status == 500 and (
                "Unknown check" in text or "does not have associated TTL" in text)):
            raise NotRegistered(text)
        raise ConsulUnavailable(text)

    def maintenance(self, on: bool, reason: str = "") -> None:
        """PUT /v1/agent/service/maintenance/:id (reference section 7): on adds
        the critical check `_service_maintenance:<id>`, which takes the
        service out of ?passing; off removes it. Both are no-ops when
        already so. NotRegistered if the agent does not know the service."""
        params = {"enable": "true" if on else "false"}
        if on and reason:
            params["reason"] = reason
        answer = self._call(self.maintenance_http, "PUT",
                            f"/v1/agent/service/maintenance/{self.service.id}", params, None)
        if answer.status == 200:
            return
        text = self._answered(answer, "maintenance")
        if answer.status == 404:
            raise NotRegistered(text)
        raise ConsulUnavailable(text)

    def prepare_stop(self) -> None:
        """Open the stop connection ahead of time, so a stop costs one request."""
        self.stop_http.connect(CALL_TIMEOUT)

    def deregister(self, deadline: float = CALL_TIMEOUT) -> bool:
        """Remove the service; False if the agent did not know it (404)."""
        answer = self._call(self.stop_http, "PUT",
                            f"/v1/agent/service/deregister/{self.service.id}", None, None,
                            deadline)
        if answer.status in (200, 404):
            return answer.status == 200
        # <= 1.10 with ACLs answers an unknown ID with 500 `Unknown service` (§3).
        text = self._answered(answer, "the deregistration")
        if answer.status == 500 and "Unknown service" in text:
            return False
        raise ConsulUnavailable(text)

    def _call(self, http: AgentHTTP, method: str, path: str, params: dict | None,
              body: bytes | None, deadline: float = CALL_TIMEOUT) -> Response:
        try:
            # (a 403 makes AgentHTTP read --token-file again and try once more)
            return http.request(method, path, params=params, body=body, deadline=deadline,
                                max_body=MAX_ANSWER)
        except ConsulUnavailable as err:
            raise ConsulUnavailable(f"cannot reach Consul at {self.url}: "
                                    f"{self.redact(str(err))}") from None

    def _answered(self, answer: Response, what: str) -> str:
        text = " ".join(answer.text.split())[:300]
        return f"Consul at {self.url} answered {answer.status} to {what}: {self.redact(text)}"

    def redact(self, text: str) -> str:
        return self.config.redact(text)


def token_file_warning(path: str) -> str | None:
    """Why a token file is exposed (readable by group/others, another owner), or None."""
    if not path:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    problems = []
    if st.st_mode & 0o077:
        problems.append(f"readable by group or others (mode {st.st_mode & 0o777:o})")
    if st.st_uid != os.geteuid():
        problems.append(f"owned by uid {st.st_uid}, not {os.geteuid()}")
    return "token file " + " and ".join(problems) if problems else None


def advertised_address(setting: str, consul: ConsulConfig) -> str | None:
    """The Address to register, or None to let Consul use its node's address.

    auto: the source address the kernel would use to reach the agent; a
    loopback one (or a unix socket) means the agent is local, so its node
    address is right.
    """
    if setting.startswith("iface:"):
        import psutil

        name = setting[6:]
        addrs = psutil.net_if_addrs().get(name, [])
        for family in (socket.AF_INET, socket.AF_INET6):
            for addr in addrs:
                if addr.family == family:
                    return addr.address.split("%")[0]
        raise ValueError(f"--address: interface {name!r} has no IP address")
    if setting != "auto":
        return setting
    if consul.scheme == "unix":
        return None
    try:
        family, _, _, _, sockaddr = socket.getaddrinfo(consul.host, consul.port,
                                                       type=socket.SOCK_DGRAM)[0]
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.connect(sockaddr)  # UDP: picks a route, sends nothing
            source = probe.getsockname()[0]
    except OSError:
        return None
    import ipaddress

    return None if ipaddress.ip_address(source).is_loopback else source
