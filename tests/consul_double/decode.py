"""Go ``encoding/json`` decoding with ``DisallowUnknownFields`` for the bodies the double accepts.

Consul decodes request bodies into Go structs: key matching is case-insensitive, unknown keys
are rejected with ``json: unknown field "<key>"``, ``null`` leaves a field at its zero value, and
a value of the wrong JSON type fails with ``json: cannot unmarshal <type> into Go struct field
...``. Duration fields of a check accept a Go duration string or a JSON number of nanoseconds
(reference §1, §2.2, §12). Every error here becomes ``400 Request decode failed: <msg>``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

from .durations import DurationError, json_duration


class DecodeError(ValueError):
    """Carries the text that follows ``Request decode failed: ``."""


def _json_type(v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number " + json.dumps(v)
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    if isinstance(v, dict):
        return "object"
    return "null"


def _type_error(v: Any, struct: str, fld: str, gotype: str) -> DecodeError:
    return DecodeError(
        "json: cannot unmarshal %s into Go struct field %s.%s of type %s"
        % (_json_type(v), struct, fld, gotype)
    )


# Field kinds -------------------------------------------------------------------------------
def _str(v: Any, struct: str, fld: str) -> str:
    if not isinstance(v, str):
        raise _type_error(v, struct, fld, "string")
    return v


def _int(v: Any, struct: str, fld: str) -> int:
    # Python parses 80 as int and 80.0 / 8e1 as float; Go refuses the latter for an int field.
    if isinstance(v, bool) or not isinstance(v, int):
        raise _type_error(v, struct, fld, "int")
    return v


def _bool(v: Any, struct: str, fld: str) -> bool:
    if not isinstance(v, bool):
        raise _type_error(v, struct, fld, "bool")
    return v


def _strlist(v: Any, struct: str, fld: str) -> List[str]:
    if not isinstance(v, list):
        raise _type_error(v, struct, fld, "[]string")
    return [_str(x, struct, fld) if x is not None else "" for x in v]


def _strmap(v: Any, struct: str, fld: str) -> Dict[str, str]:
    if not isinstance(v, dict):
        raise _type_error(v, struct, fld, "map[string]string")
    return {k: (_str(x, struct, fld) if x is not None else "") for k, x in v.items()}


def _header(v: Any, struct: str, fld: str) -> Dict[str, List[str]]:
    if not isinstance(v, dict):
        raise _type_error(v, struct, fld, "map[string][]string")
    return {k: (_strlist(x, struct, fld) if x is not None else []) for k, x in v.items()}


def _opaque(v: Any, struct: str, fld: str) -> Any:
    # Connect / mesh fields: accepted without validating their inner structure.
    if not isinstance(v, dict):
        raise _type_error(v, struct, fld, "struct")
    return v


def _duration(v: Any, struct: str, fld: str) -> Optional[int]:
    try:
        return json_duration(v)
    except DurationError as exc:
        raise DecodeError(str(exc)) from None


def _object(raw: Any, struct: str, fields: Dict[str, Tuple[str, Callable[[Any, str, str], Any]]],
            gotype: str) -> Dict[str, Any]:
    """Decode a JSON object into {CanonicalName: value} honouring Go's rules."""
    if not isinstance(raw, dict):
        raise DecodeError("json: cannot unmarshal %s into Go value of type %s" % (_json_type(raw).split(" ")[0], gotype))
    out: Dict[str, Any] = {}
    for key, value in raw.items():
        spec = fields.get(key.lower())
        if spec is None:
            raise DecodeError("json: unknown field %s" % json.dumps(key, ensure_ascii=False))
        name, conv = spec
        if value is None:
            continue
        out[name] = conv(value, struct, name)
    return out


# CheckType (agent/structs/check_type.go) ----------------------------------------------------
_CHECK_FIELDS: Dict[str, Tuple[str, Callable[[Any, str, str], Any]]] = {}
for _name, _conv in [
    ("CheckID", _str), ("Name", _str), ("Status", _str), ("Notes", _str),
    ("ScriptArgs", _strlist), ("HTTP", _str), ("H2PING", _str), ("H2PingUseTLS", _bool),
    ("Header", _header), ("Method", _str), ("Body", _str), ("DisableRedirects", _bool),
    ("TCP", _str), ("UDP", _str), ("Interval", _duration), ("AliasNode", _str),
    ("AliasService", _str), ("DockerContainerID", _str), ("Shell", _str), ("GRPC", _str),
    ("GRPCUseTLS", _bool), ("OSService", _str), ("TLSServerName", _str), ("TLSSkipVerify", _bool),
    ("Timeout", _duration), ("TTL", _duration), ("SuccessBeforePassing", _int),
    ("FailuresBeforeWarning", _int), ("FailuresBeforeCritical", _int), ("ProxyHTTP", _str),
    ("ProxyGRPC", _str), ("DeregisterCriticalServiceAfter", _duration), ("OutputMaxSize", _int),
    # snake_case aliases and accepted-but-ignored keys
    ("args", _strlist), ("script_args", _strlist), ("deregister_critical_service_after", _duration),
    ("docker_container_id", _str), ("tls_server_name", _str), ("tls_skip_verify", _bool),
    ("grpc_use_tls", _bool), ("h2ping_use_tls", _bool), ("ServiceID", _str), ("service_id", _str),
]:
    _CHECK_FIELDS[_name.lower()] = (_name, _conv)


@dataclass
class CheckType:
    """The parts of a decoded check definition the double acts on."""

    check_id: str = ""
    name: str = ""
    status: str = ""
    notes: str = ""
    ttl: int = 0  # ns
    interval: int = 0
    timeout: int = 0
    dcsa: int = 0
    output_max_size: int = 0
    script_args: List[str] = field(default_factory=list)
    http: str = ""
    tcp: str = ""
    udp: str = ""
    grpc: str = ""
    h2ping: str = ""
    os_service: str = ""
    alias_node: str = ""
    alias_service: str = ""
    docker_container_id: str = ""
    failures_before_warning: int = 0
    failures_before_critical: int = 0
    raw: Dict[str, Any] = field(default_factory=dict)

    def empty(self) -> bool:
        return not self.raw

    @property
    def type(self) -> str:
        if self.grpc and self.interval > 0:
            return "grpc"
        if self.http and self.interval > 0:
            return "http"
        if self.ttl > 0:
            return "ttl"
        if self.tcp and self.interval > 0:
            return "tcp"
        if self.udp and self.interval > 0:
            return "udp"
        if self.alias_node or self.alias_service:
            return "alias"
        if self.script_args and self.docker_container_id and self.interval > 0:
            return "docker"
        if self.script_args and self.interval > 0:
            return "script"
        if self.h2ping and self.interval > 0:
            return "h2ping"
        if self.os_service and self.interval > 0:
            return "os_service"
        return ""

    def validate(self) -> Optional[str]:
        """CheckType.Validate: the text after ``Invalid check: `` or None."""
        interval_check = bool(self.script_args or self.http or self.tcp or self.udp or self.grpc
                              or self.h2ping or self.os_service)
        is_alias = bool(self.alias_node or self.alias_service)
        if self.interval > 0 and self.ttl > 0:
            return "Interval and TTL cannot both be specified"
        if interval_check and self.interval <= 0:
            return "Interval must be > 0 for Script, HTTP, H2PING, TCP, UDP or OSService checks"
        if interval_check and is_alias:
            return "Interval cannot be set for Alias checks"
        if is_alias and self.ttl > 0:
            return "TTL must be not be set for Alias checks"
        if not interval_check and not is_alias and self.ttl <= 0:
            return "TTL must be > 0 for TTL checks"
        if self.output_max_size < 0:
            return "MaxOutputMaxSize must be positive"
        if self.failures_before_warning > self.failures_before_critical:
            return "FailuresBeforeWarning can't be higher than FailuresBeforeCritical"
        return None


def decode_check(raw: Any) -> CheckType:
    d = _object(raw, "CheckType", _CHECK_FIELDS, "structs.CheckType")
    # An all-zero check is "empty" (Go compares with the zero struct); track non-zero values.
    nonzero = {k: v for k, v in d.items() if v not in ("", 0, False, [], {}, None)}
    c = CheckType(raw=nonzero)
    c.check_id = d.get("CheckID", "")
    c.name = d.get("Name", "")
    c.status = d.get("Status", "")
    c.notes = d.get("Notes", "")
    c.ttl = d.get("TTL") or 0
    c.interval = d.get("Interval") or 0
    c.timeout = d.get("Timeout") or 0
    dcsa = d.get("DeregisterCriticalServiceAfter")
    if dcsa is None:
        dcsa = d.get("deregister_critical_service_after")
    c.dcsa = dcsa or 0
    c.output_max_size = d.get("OutputMaxSize", 0)
    c.script_args = d.get("ScriptArgs") or d.get("args") or d.get("script_args") or []
    c.http = d.get("HTTP", "")
    c.tcp = d.get("TCP", "")
    c.udp = d.get("UDP", "")
    c.grpc = d.get("GRPC", "")
    c.h2ping = d.get("H2PING", "")
    c.os_service = d.get("OSService", "")
    c.alias_node = d.get("AliasNode", "")
    c.alias_service = d.get("AliasService", "")
    c.docker_container_id = d.get("DockerContainerID") or d.get("docker_container_id") or ""
    c.failures_before_warning = d.get("FailuresBeforeWarning", 0)
    c.failures_before_critical = d.get("FailuresBeforeCritical", 0)
    # Durations that decoded to zero do not make the check non-empty.
    for k in ("TTL", "Interval", "Timeout", "DeregisterCriticalServiceAfter", "deregister_critical_service_after"):
        if not d.get(k):
            c.raw.pop(k, None)
    return c


def _check(v: Any, struct: str, fld: str) -> CheckType:
    return decode_check(v)


def _checks(v: Any, struct: str, fld: str) -> List[CheckType]:
    if not isinstance(v, list):
        raise _type_error(v, struct, fld, "structs.CheckTypes")
    return [decode_check(x) if x is not None else CheckType() for x in v]


_WEIGHT_FIELDS = {"passing": ("Passing", _int), "warning": ("Warning", _int)}


def _weights(v: Any, struct: str, fld: str) -> Dict[str, int]:
    d = _object(v, "Weights", _WEIGHT_FIELDS, "structs.Weights")
    return {"Passing": d.get("Passing", 0), "Warning": d.get("Warning", 0)}


_SVC_ADDR_FIELDS = {"address": ("Address", _str), "port": ("Port", _int)}


def _tagged(v: Any, struct: str, fld: str) -> Dict[str, Dict[str, Any]]:
    if not isinstance(v, dict):
        raise _type_error(v, struct, fld, "map[string]structs.ServiceAddress")
    out = {}
    for k, x in v.items():
        d = _object(x, "ServiceAddress", _SVC_ADDR_FIELDS, "structs.ServiceAddress") if x is not None else {}
        out[k] = {"Address": d.get("Address", ""), "Port": d.get("Port", 0)}
    return out


# ServiceDefinition (agent/structs/service_definition.go, CE build) -------------------------
_SERVICE_FIELDS: Dict[str, Tuple[str, Callable[[Any, str, str], Any]]] = {}
for _name, _conv in [
    ("Kind", _str), ("ID", _str), ("Name", _str), ("Tags", _strlist), ("Address", _str),
    ("TaggedAddresses", _tagged), ("Meta", _strmap), ("Port", _int), ("SocketPath", _str),
    ("Check", _check), ("Checks", _checks), ("Weights", _weights), ("Token", _str),
    ("EnableTagOverride", _bool), ("Proxy", _opaque), ("Connect", _opaque), ("Locality", _opaque),
    ("enable_tag_override", _bool), ("tagged_addresses", _tagged),
]:
    _SERVICE_FIELDS[_name.lower()] = (_name, _conv)


@dataclass
class ServiceDefinition:
    id: str = ""
    name: str = ""
    kind: str = ""
    tags: List[str] = field(default_factory=list)
    address: str = ""
    tagged_addresses: Dict[str, Dict[str, Any]] = field(default_factory=dict)
    meta: Dict[str, str] = field(default_factory=dict)
    port: int = 0
    socket_path: str = ""
    check: CheckType = field(default_factory=CheckType)
    checks: List[CheckType] = field(default_factory=list)
    weights: Optional[Dict[str, int]] = None
    enable_tag_override: bool = False
    proxy: Optional[Dict[str, Any]] = None
    connect: Optional[Dict[str, Any]] = None
    locality: Optional[Dict[str, Any]] = None

    def check_types(self) -> List[CheckType]:
        """ServiceDefinition.CheckTypes: Check (if not empty) followed by Checks."""
        out = []
        if not self.check.empty():
            out.append(self.check)
        out.extend(self.checks)
        return out


def parse_json_body(body: bytes) -> Any:
    """Parse a request body; empty → ``EOF`` like Go's decoder."""
    text = body.decode("utf-8", errors="replace")
    if not text.strip():
        raise DecodeError("EOF")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        ch = text[exc.pos] if exc.pos < len(text) else ""
        if not ch:
            raise DecodeError("unexpected EOF") from None
        raise DecodeError("invalid character %s looking for beginning of value" % _go_char(ch)) from None


def _go_char(ch: str) -> str:
    return "'%s'" % ch if ch != "'" else "'\\''"


def decode_service_definition(body: bytes) -> ServiceDefinition:
    raw = parse_json_body(body)
    d = _object(raw, "ServiceDefinition", _SERVICE_FIELDS, "structs.ServiceDefinition")
    sd = ServiceDefinition()
    sd.id = d.get("ID", "")
    sd.name = d.get("Name", "")
    sd.kind = d.get("Kind", "")
    sd.tags = d.get("Tags", [])
    sd.address = d.get("Address", "")
    sd.tagged_addresses = d.get("TaggedAddresses") or d.get("tagged_addresses") or {}
    sd.meta = d.get("Meta", {})
    sd.port = d.get("Port", 0)
    sd.socket_path = d.get("SocketPath", "")
    sd.check = d.get("Check", CheckType())
    sd.checks = d.get("Checks", [])
    sd.weights = d.get("Weights")
    sd.enable_tag_override = bool(d.get("EnableTagOverride") or d.get("enable_tag_override"))
    sd.proxy = d.get("Proxy")
    sd.connect = d.get("Connect")
    sd.locality = d.get("Locality")
    return sd


_UPDATE_FIELDS = {"status": ("Status", _str), "output": ("Output", _str)}


def decode_check_update(body: bytes) -> Tuple[str, str]:
    """The ``{"Status","Output"}`` body of PUT /v1/agent/check/update/:id."""
    d = _object(parse_json_body(body), "checkUpdate", _UPDATE_FIELDS, "agent.checkUpdate")
    return d.get("Status", ""), d.get("Output", "")
