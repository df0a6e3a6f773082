"""Everything that talks to Consul: register, report check status, deregister.

Runs only on svcwrap's worker threads, never on the supervisor's. Every call
has a short timeout. Errors become two exception types the lifecycle acts
on: NotRegistered (the agent has forgotten us: register again) and
ConsulUnavailable (down, slow, erroring or refusing: retry later). Neither
message ever contains the ACL token: it travels in the X-Consul-Token
header, never in a URL.
"""
from __future__ import annotations

import json
import socket

import consul
import requests
from consul.callback import CB

from svcwrap.config import ConsulConfig, HealthConfig, ServiceConfig, format_duration

CALL_TIMEOUT = 2.0   # any one call to the agent (the agent is local: it answers in ms)
LEAVE_TIMEOUT = 1.0  # deregistration on stop, which holds up the child's stop signal


class ConsulUnavailable(Exception):
    """Consul could not be reached or refused the call; worth retrying."""


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
        self.address = advertised_address(service.address, consul_config.host,
                                          consul_config.port)
        # Two clients (two HTTP sessions): the deregistration on stop must not
        # queue behind a heartbeat stuck on a slow agent.
        self.client = self._client(CALL_TIMEOUT)
        self.stop_client = self._client(LEAVE_TIMEOUT)

    def _client(self, timeout: float) -> consul.Consul:
        c = self.config
        host = f"[{c.host}]" if ":" in c.host else c.host
        # Everything is passed explicitly: py-consul would otherwise read some
        # CONSUL_* variables itself, differently from Consul's own client
        # (e.g. CONSUL_HTTP_SSL_VERIFY=1 would turn verification off).
        client = consul.Consul(host=host, port=c.port, scheme=c.scheme, verify=c.verify,
                               cert=c.cert, connections_timeout=timeout)
        client.token = c.token.reveal() or None  # py-consul lets CONSUL_HTTP_TOKEN override
        if c.tls_server_name:
            client.http.session.mount("https://", ServerNameAdapter(c.tls_server_name))
        return client

    @property
    def url(self) -> str:
        return self.config.base_url

    def register(self) -> None:
        """Register the service and its TTL check, replacing any older definition."""
        check = consul.Check.ttl(format_duration(self.health.ttl))
        check.update({
            "CheckID": self.check_id,
            "Name": f"svcwrap TTL check for {self.service.name}",
            "Notes": self.notes,
            "Status": "passing",
        })
        if self.health.deregister_after > 0:
            check["DeregisterCriticalServiceAfter"] = format_duration(self.health.deregister_after)
        done = self._call(self.client.agent.service.register, name=self.service.name,
                          service_id=self.service.id, address=self.address,
                          port=self.service.port, tags=self.service.tags,
                          meta=self.service.meta or None, check=check,
                          replace_existing_checks=True)
        if not done:  # py-consul turns a 404 into False: not an agent we understand
            raise ConsulUnavailable(f"Consul at {self.url} answered 404 to the registration")

    def update(self, status: str, output: str) -> None:
        """PUT /v1/agent/check/update/:id (py-consul has no wrapper for it)."""
        headers = {"Content-Type": "application/json"}
        if self.client.token:
            headers["X-Consul-Token"] = self.client.token
        body = json.dumps({"Status": status, "Output": output})
        try:
            found = self._call(self.client.http.put, CB.boolean(),
                               f"/v1/agent/check/update/{self.check_id}", data=body,
                               headers=headers)
        except ConsulUnavailable as err:
            # Consul 1.10 and older answer an unknown check with a 500.
            if "does not have associated TTL" in str(err):
                raise NotRegistered(str(err)) from None
            raise
        if not found:  # py-consul turns a 404 into False
            raise NotRegistered(f"404 unknown check {self.check_id}")

    def deregister(self) -> bool:
        """Remove the service; False if the agent did not know it (404)."""
        return bool(self._call(self.stop_client.agent.service.deregister, self.service.id))

    def _call(self, method, *args, **kwargs):
        try:
            return method(*args, **kwargs)
        except requests.RequestException as err:
            raise ConsulUnavailable(f"cannot reach Consul at {self.url}: {why(err)}") from None
        except consul.ConsulException as err:
            # py-consul's messages are "<status> <agent's plain-text body>".
            text = " ".join(str(err).split())[:300]
            raise ConsulUnavailable(f"Consul at {self.url} answered {text}") from None


def why(err: requests.RequestException) -> str:
    """A short reason for a failed call: requests' own messages run to
    several hundred characters of connection-pool detail."""
    text = str(err)
    for reason in ("Connection refused", "timed out", "Name or service not known",
                   "No route to host", "Connection reset", "certificate verify failed"):
        if reason in text:
            return f"{type(err).__name__} ({reason})"
    return type(err).__name__


class ServerNameAdapter(requests.adapters.HTTPAdapter):
    """CONSUL_TLS_SERVER_NAME: the name to send (SNI) and to verify, when it
    differs from the host in the address."""

    def __init__(self, server_name: str) -> None:
        self.server_name = server_name
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):
        kwargs["server_hostname"] = self.server_name
        kwargs["assert_hostname"] = self.server_name
        return super().init_poolmanager(*args, **kwargs)


def advertised_address(setting: str, consul_host: str, consul_port: int) -> str | None:
    """The Address to register, or None to let Consul use its node's address.

    auto: the source address the kernel would use to reach the agent; a
    loopback one means the agent is local, so its node address is right.
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
    try:
        family, _, _, _, sockaddr = socket.getaddrinfo(consul_host, consul_port,
                                                       type=socket.SOCK_DGRAM)[0]
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.connect(sockaddr)  # UDP: picks a route, sends nothing
            source = probe.getsockname()[0]
    except OSError:
        return None
    import ipaddress

    return None if ipaddress.ip_address(source).is_loopback else source
