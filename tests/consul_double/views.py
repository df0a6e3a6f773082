"""JSON shapes of the read endpoints (reference §10). Call with the state lock held."""
from __future__ import annotations

from typing import Any, Dict, List

from .state import NODE_ADDRESS, NODE_CREATE_INDEX, NODE_ID, PASSING, SERF_CREATE_INDEX, AgentState, Check, Service

VERSION = "1.17.0"
REVISION = "4e3f428b"


def agent_service(st: AgentState, s: Service) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    if s.kind:
        out["Kind"] = s.kind
    out.update({"ID": s.id, "Service": s.name, "Tags": list(s.tags), "Meta": dict(s.meta),
                "Port": s.port, "Address": s.address})
    if s.socket_path:
        out["SocketPath"] = s.socket_path
    if s.tagged_addresses:
        out["TaggedAddresses"] = {k: dict(v) for k, v in s.tagged_addresses.items()}
    out["Weights"] = dict(s.weights)
    out["EnableTagOverride"] = s.enable_tag_override
    if s.proxy:
        out["Proxy"] = s.proxy
    if s.connect:
        out["Connect"] = s.connect
    out["Datacenter"] = st.datacenter
    if s.locality:
        out["Locality"] = s.locality
    return out


def _definition(c: Check) -> Dict[str, Any]:
    return {"Interval": "0s", "Timeout": "0s", "DeregisterCriticalServiceAfter": "0s", "HTTP": "",
            "Header": None, "Method": "", "Body": "", "TLSServerName": "", "TLSSkipVerify": False,
            "TCP": "", "TCPUseTLS": False, "UDP": "", "GRPC": "", "OSService": "", "GRPCUseTLS": False}


def check_json(st: AgentState, c: Check, catalog: bool, with_indexes: bool = True) -> Dict[str, Any]:
    """A HealthCheck. ``catalog`` selects the synced Output (health/*) instead of the local one."""
    return {
        "Node": st.node_name, "CheckID": c.check_id, "Name": c.name, "Status": c.status,
        "Notes": c.notes, "Output": c.catalog_output if catalog else c.output,
        "ServiceID": c.service_id, "ServiceName": c.service_name, "ServiceTags": list(c.service_tags),
        "Type": c.type, "Interval": c.interval, "Timeout": c.timeout, "ExposedPort": 0,
        "Definition": _definition(c),
        "CreateIndex": c.create_index if (catalog and with_indexes) else 0,
        "ModifyIndex": c.modify_index if (catalog and with_indexes) else 0,
    }


def serf_health(st: AgentState) -> Dict[str, Any]:
    return {
        "Node": st.node_name, "CheckID": "serfHealth", "Name": "Serf Health Status", "Status": PASSING,
        "Notes": "", "Output": "Agent alive and reachable", "ServiceID": "", "ServiceName": "",
        "ServiceTags": [], "Type": "", "Interval": "", "Timeout": "", "ExposedPort": 0,
        "Definition": {"Interval": "0s", "Timeout": "0s", "DeregisterCriticalServiceAfter": "0s",
                       "HTTP": "", "Header": None, "Method": "", "Body": "", "TLSServerName": "",
                       "TLSSkipVerify": False, "TCP": "", "TCPUseTLS": False, "UDP": "", "GRPC": "",
                       "OSService": "", "GRPCUseTLS": False},
        "CreateIndex": SERF_CREATE_INDEX, "ModifyIndex": SERF_CREATE_INDEX,
    }


def _node_tagged() -> Dict[str, str]:
    return {"lan": NODE_ADDRESS, "lan_ipv4": NODE_ADDRESS, "wan": NODE_ADDRESS, "wan_ipv4": NODE_ADDRESS}


def _node_meta() -> Dict[str, str]:
    return {"consul-network-segment": "", "consul-version": VERSION}


def node_json(st: AgentState) -> Dict[str, Any]:
    return {"ID": NODE_ID, "Node": st.node_name, "Address": NODE_ADDRESS, "Datacenter": st.datacenter,
            "TaggedAddresses": _node_tagged(), "Meta": _node_meta(),
            "CreateIndex": NODE_CREATE_INDEX, "ModifyIndex": NODE_CREATE_INDEX}


def _proxy() -> Dict[str, Any]:
    return {"Mode": "", "MeshGateway": {}, "Expose": {}}


def catalog_service_json(st: AgentState, s: Service) -> Dict[str, Any]:
    out: Dict[str, Any] = {"ID": s.id, "Service": s.name, "Tags": list(s.tags), "Address": s.address}
    if s.tagged_addresses:
        out["TaggedAddresses"] = {k: dict(v) for k, v in s.tagged_addresses.items()}
    out.update({"Meta": dict(s.meta), "Port": s.port, "Weights": dict(s.weights),
                "EnableTagOverride": s.enable_tag_override, "Proxy": s.proxy or _proxy(),
                "Connect": s.connect or {}, "PeerName": "", "CreateIndex": s.create_index,
                "ModifyIndex": s.modify_index})
    if s.kind:
        out = {"Kind": s.kind, **out}
    return out


def node_checks(st: AgentState) -> List[Dict[str, Any]]:
    out = [serf_health(st)]
    out += [check_json(st, c, catalog=True) for c in st.checks.values() if not c.service_id]
    return out


def service_checks(st: AgentState, sid: str, catalog: bool) -> List[Dict[str, Any]]:
    return [check_json(st, c, catalog=catalog) for c in sorted(st.checks.values(), key=lambda c: c.check_id)
            if c.service_id == sid]


def health_entries(st: AgentState, name: str) -> List[Dict[str, Any]]:
    entries = []
    for s in sorted(st.services.values(), key=lambda s: s.id):
        if s.name != name:
            continue
        entries.append({"Node": node_json(st), "Service": catalog_service_json(st, s),
                        "Checks": node_checks(st) + service_checks(st, s.id, catalog=True)})
    return entries


def catalog_entries(st: AgentState, name: str) -> List[Dict[str, Any]]:
    out = []
    for s in sorted(st.services.values(), key=lambda s: s.id):
        if s.name != name:
            continue
        entry: Dict[str, Any] = {
            "ID": NODE_ID, "Node": st.node_name, "Address": NODE_ADDRESS, "Datacenter": st.datacenter,
            "TaggedAddresses": _node_tagged(), "NodeMeta": _node_meta(), "ServiceKind": s.kind,
            "ServiceID": s.id, "ServiceName": s.name, "ServiceTags": list(s.tags),
            "ServiceAddress": s.address,
        }
        if s.tagged_addresses:
            entry["ServiceTaggedAddresses"] = {k: dict(v) for k, v in s.tagged_addresses.items()}
        entry.update({
            "ServiceWeights": dict(s.weights), "ServiceMeta": dict(s.meta), "ServicePort": s.port,
            "ServiceSocketPath": s.socket_path, "ServiceEnableTagOverride": s.enable_tag_override,
            "ServiceProxy": s.proxy or _proxy(), "ServiceConnect": s.connect or {}, "ServicePeerName": "",
            "CreateIndex": s.create_index, "ModifyIndex": s.modify_index,
        })
        out.append(entry)
    return out


def agent_self(st: AgentState) -> Dict[str, Any]:
    return {
        "Config": {"Datacenter": st.datacenter, "PrimaryDatacenter": st.datacenter,
                   "NodeName": st.node_name, "NodeID": NODE_ID, "Revision": REVISION, "Server": False,
                   "Version": VERSION, "BuildDate": "2023-11-01T00:00:00Z"},
        "DebugConfig": {"CheckDeregisterIntervalMin": "%gs" % st.dcsa_min,
                        "CheckReapInterval": "%gs" % st.reap_interval,
                        "CheckOutputMaxSize": st.output_max_size,
                        "CheckUpdateInterval": "%gs" % st.check_update_interval},
        "Coord": {"Vec": [0.0] * 8, "Error": 1.5, "Adjustment": 0.0, "Height": 1e-05},
        "Member": {"Name": st.node_name, "Addr": NODE_ADDRESS, "Port": 8301,
                   "Tags": {"build": "%s:%s" % (VERSION, REVISION), "dc": st.datacenter, "id": NODE_ID,
                            "role": "node", "segment": "", "vsn": "2", "vsn_max": "3", "vsn_min": "2"},
                   "Status": 1, "ProtocolMin": 1, "ProtocolMax": 5, "ProtocolCur": 2,
                   "DelegateMin": 2, "DelegateMax": 5, "DelegateCur": 4},
        "Stats": {"agent": {"check_monitors": "0", "check_ttls": str(sum(1 for c in st.checks.values() if c.ttl)),
                            "checks": str(len(st.checks)), "services": str(len(st.services))}},
        "Meta": {"consul-network-segment": "", "consul-version": VERSION},
    }
