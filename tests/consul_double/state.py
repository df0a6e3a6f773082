"""Agent state of the Consul double: services, checks, TTL timers, the reaper and a raft-like index.

Everything is guarded by one lock. A single background thread ("ticker") sleeps on a condition
variable until the next deadline (TTL expiry, deferred output sync, reaper pass) instead of one
timer thread per check, so hundreds of TTL services cost nothing.

Modelled after the reference (``/work/shared/consul-agent-api.md``):

* §2.3/§2.5 check IDs, default ``critical``, Status/Output carried over on re-registration, a fresh
  TTL timer and a fresh "critical since" on re-registration, ``replace-existing-checks``.
* §4.4 output truncation, §5 TTL expiry output, §6 CriticalTime and the reaper, §7 maintenance.
* §10 "Output changes reach the catalog late": an Output change without a status change is
  visible at once in agent/checks but reaches health/catalog views only after
  ``check_update_interval`` (Consul: a random 0.5–1.5 × 5m; here exactly the interval).
  A status change syncs at once. Pass ``check_update_interval=0`` to sync output immediately.
* §11 a raft-like ``index`` that grows on every catalog-visible change (service definition,
  check status, synced output, additions and removals). Idempotent writes do not bump it, like
  Consul's state store which skips unchanged entries.
* §16.8 one raft counter (``index``) shared by the catalog and the KV store (``kv``, see
  ``kv.py``); each query reports its own tables' index: ``catalog_index`` (the last catalog write,
  what health/catalog queries for an unknown name report), ``services_index`` (the services table:
  moves only when a service instance is added, removed or changed, §10 catalog/services) and
  the KV store's own table index. A KV write never moves a catalog index and the other way round.
"""
from __future__ import annotations

import hashlib
import ipaddress
import json
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, List, Optional, Set, Tuple

from .decode import CheckType, ServiceDefinition
from .durations import SECOND, format_duration
from .kv import KVStore

PASSING = "passing"
WARNING = "warning"
CRITICAL = "critical"
VALID_STATUSES = (PASSING, WARNING, CRITICAL)

SERVICE_MAINT_PREFIX = "_service_maintenance:"
NODE_MAINT_CHECK_ID = "_node_maintenance"
DEFAULT_SERVICE_MAINT_REASON = (
    "Maintenance mode is enabled for this service, but no reason was provided. This is a default message."
)
DEFAULT_NODE_MAINT_REASON = (
    "Maintenance mode is enabled for this node, but no reason was provided. This is a default message."
)

NODE_ID = "6ed8ae6c-5c4f-4d1a-9d5b-2a7c0c0ffee1"
NODE_ADDRESS = "127.0.0.1"
NODE_CREATE_INDEX = 5
SERF_CREATE_INDEX = 6


def truncate_output(output: str, limit: int) -> str:
    """CheckTTL.SetStatus: cut by bytes and append `` ... (captured N of M bytes)`` (§4.4)."""
    raw = output.encode("utf-8", errors="surrogatepass")
    if len(raw) <= limit:
        return output
    head = raw[:limit].decode("utf-8", errors="replace")
    return "%s ... (captured %d of %d bytes)" % (head, limit, len(raw))


def expired_output(last_output: str) -> str:
    """CheckTTL expiry output (§5)."""
    if not last_output:
        return "TTL expired"
    return "TTL expired (last output before timeout follows): " + last_output


@dataclass
class Service:
    id: str
    name: str
    tags: List[str]
    address: str
    port: int
    meta: Dict[str, str]
    tagged_addresses: Dict[str, Dict[str, Any]]
    weights: Dict[str, int]
    enable_tag_override: bool
    kind: str = ""
    socket_path: str = ""
    proxy: Optional[Dict[str, Any]] = None
    connect: Optional[Dict[str, Any]] = None
    locality: Optional[Dict[str, Any]] = None
    create_index: int = 0
    modify_index: int = 0


@dataclass
class Check:
    check_id: str
    name: str
    status: str
    notes: str
    output: str
    service_id: str
    service_name: str
    service_tags: List[str]
    type: str
    interval: str = ""
    timeout: str = ""
    ttl: Optional[float] = None  # seconds; not None iff the check has a TTL runner
    deadline: Optional[float] = None  # monotonic expiry time of the TTL timer
    last_output: str = ""  # what CheckTTL remembers for the expiry text
    output_max: int = 4096
    reap_after: Optional[float] = None  # effective DCSA in seconds
    dcsa_ns: int = 0
    critical_time: Optional[float] = None
    catalog_output: str = ""  # the Output the catalog (health/*) has seen
    defer_deadline: Optional[float] = None
    create_index: int = 0
    modify_index: int = 0


SyncKey = Tuple[str, str]


class AgentState:
    """The agent's local state plus the slice of the catalog that belongs to this node."""

    def __init__(
        self,
        *,
        dcsa_min: float = 60.0,
        reap_interval: float = 30.0,
        output_max_size: int = 4096,
        check_update_interval: float = 300.0,
        node_name: str = "double-node",
        datacenter: str = "dc1",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.dcsa_min = dcsa_min
        self.reap_interval = reap_interval
        self.output_max_size = output_max_size
        self.check_update_interval = check_update_interval
        self.node_name = node_name
        self.datacenter = datacenter
        self.clock = clock
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)  # catalog/agent state changed
        self._wake = threading.Condition(self.lock)  # a new, possibly earlier, deadline
        self.services: Dict[str, Service] = {}
        self.checks: Dict[str, Check] = {}  # service checks and node maintenance; not serfHealth
        self.index = SERF_CREATE_INDEX
        self.catalog_index = SERF_CREATE_INDEX  # last catalog write (health/catalog tables)
        self.services_index = SERF_CREATE_INDEX  # services table only (§10 catalog/services)
        self.blocking_queries = 0  # blocked readers right now (Consul's rpc.queries_blocking)
        self.kv = KVStore(self)
        self.name_index: Dict[str, int] = {}
        self._synced: Dict[SyncKey, Tuple[Optional[str], Any]] = {}
        self._next_reap = clock() + reap_interval
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="consul-double-ticker", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        with self.lock:
            self._closed = True
            self._wake.notify_all()
            self.changed.notify_all()
        self._thread.join(timeout=2)

    @property
    def closed(self) -> bool:
        return self._closed

    def tick(self) -> None:
        """Act at once on every deadline ``clock()`` has passed: TTL expiry, deferred output sync,
        the reaper. The ticker thread does this by itself; a test driving a manual clock calls it
        after moving the clock, so that what follows sees the effects; it also wakes every
        blocking query to re-read the clock (a ``wait`` that has run out returns)."""
        with self.lock:
            self._tick(self.clock())
            self._wake.notify_all()
            self.changed.notify_all()

    # ------------------------------------------------------------------ writes
    def register(self, sd: ServiceDefinition, check_types: List[CheckType], replace_existing: bool) -> None:
        """AddService (§2.3, §2.5)."""
        now = self.clock()
        with self.lock:
            sid = sd.id or sd.name
            old = self.services.get(sid)
            affected: Set[str] = {sd.name}
            if old is not None:
                affected.add(old.name)
            tagged = {k: dict(v) for k, v in sd.tagged_addresses.items()}
            try:
                ip = ipaddress.ip_address(sd.address)
            except ValueError:
                ip = None
            if ip is not None:
                v4 = ip.version == 4 or getattr(ip, "ipv4_mapped", None) is not None
                lan, wan = ("lan_ipv4", "wan_ipv4") if v4 else ("lan_ipv6", "wan_ipv6")
                for key in (lan, wan):
                    tagged.setdefault(key, {"Address": sd.address, "Port": sd.port})
            svc = Service(
                id=sid, name=sd.name, tags=list(sd.tags), address=sd.address, port=sd.port,
                meta=dict(sd.meta), tagged_addresses=tagged,
                weights=dict(sd.weights) if sd.weights is not None else {"Passing": 1, "Warning": 1},
                enable_tag_override=sd.enable_tag_override, kind=sd.kind, socket_path=sd.socket_path,
                proxy=sd.proxy, connect=sd.connect, locality=sd.locality,
                create_index=old.create_index if old else 0, modify_index=old.modify_index if old else 0,
            )
            self.services[sid] = svc
            snapshot = {cid: (c.status, c.output) for cid, c in self.checks.items()}
            wanted: Set[str] = set()
            for i, ct in enumerate(check_types):
                cid = ct.check_id or ("service:%s" % sid + (":%d" % (i + 1) if len(check_types) > 1 else ""))
                wanted.add(cid)
                status = ct.status or CRITICAL
                output = ""
                if cid in snapshot:
                    status, output = snapshot[cid]
                prev = self.checks.get(cid)
                if prev is not None and prev.service_name:
                    affected.add(prev.service_name)
                ttl = ct.ttl / SECOND if ct.type == "ttl" else None
                limit = self.output_max_size
                if 0 < ct.output_max_size < limit:
                    limit = ct.output_max_size
                self.checks[cid] = Check(
                    check_id=cid, name=ct.name or "Service '%s' check" % sd.name, status=status,
                    notes=ct.notes, output=output, service_id=sid, service_name=sd.name,
                    service_tags=list(sd.tags), type=ct.type,
                    interval=format_duration(ct.interval) if ct.interval else "",
                    timeout=format_duration(ct.timeout) if ct.timeout else "",
                    ttl=ttl, deadline=(now + ttl) if ttl is not None else None, output_max=limit,
                    reap_after=max(ct.dcsa / SECOND, self.dcsa_min) if ct.dcsa > 0 else None,
                    dcsa_ns=ct.dcsa, catalog_output=output,
                    create_index=prev.create_index if prev else 0,
                    modify_index=prev.modify_index if prev else 0,
                )
            for cid, c in list(self.checks.items()):
                if c.service_id == sid and cid not in wanted:
                    if replace_existing:
                        del self.checks[cid]
                    else:
                        c.service_name, c.service_tags = sd.name, list(sd.tags)
            self._reconcile(affected)
            self._wake.notify_all()

    def _remove_service(self, sid: str) -> None:
        svc = self.services.pop(sid)
        for cid in [cid for cid, c in self.checks.items() if c.service_id == sid]:
            del self.checks[cid]
        self._reconcile({svc.name})

    def deregister(self, sid: str) -> bool:
        """RemoveService (§3). Returns False when the ID is unknown."""
        with self.lock:
            if sid not in self.services:
                return False
            self._remove_service(sid)
            return True

    def set_service_maintenance(self, sid: str, enable: bool, reason: str) -> None:
        """§7: caller has checked that the service exists."""
        with self.lock:
            svc = self.services[sid]
            cid = SERVICE_MAINT_PREFIX + sid
            if enable:
                if cid in self.checks:
                    return
                self.checks[cid] = Check(
                    check_id=cid, name="Service Maintenance Mode", status=CRITICAL,
                    notes=reason or DEFAULT_SERVICE_MAINT_REASON, output="", service_id=sid,
                    service_name=svc.name, service_tags=list(svc.tags), type="maintenance",
                )
            else:
                if self.checks.pop(cid, None) is None:
                    return
            self._reconcile({svc.name})

    def set_node_maintenance(self, enable: bool, reason: str) -> None:
        with self.lock:
            if enable:
                if NODE_MAINT_CHECK_ID in self.checks:
                    return
                self.checks[NODE_MAINT_CHECK_ID] = Check(
                    check_id=NODE_MAINT_CHECK_ID, name="Node Maintenance Mode", status=CRITICAL,
                    notes=reason or DEFAULT_NODE_MAINT_REASON, output="", service_id="",
                    service_name="", service_tags=[], type="maintenance",
                )
            elif self.checks.pop(NODE_MAINT_CHECK_ID, None) is None:
                return
            self._reconcile((), node=True)

    def remove_check(self, cid: str) -> bool:
        """RemoveCheck (PUT /v1/agent/check/deregister/:id)."""
        with self.lock:
            c = self.checks.pop(cid, None)
            if c is None:
                return False
            self._reconcile({c.service_name} if c.service_id else (), node=not c.service_id)
            return True

    def has_service(self, sid: str) -> bool:
        with self.lock:
            return sid in self.services

    def service_name(self, sid: str) -> Optional[str]:
        with self.lock:
            s = self.services.get(sid)
            return s.name if s else None

    def has_check(self, cid: str) -> bool:
        with self.lock:
            return cid in self.checks

    def check_service_name(self, cid: str) -> Optional[str]:
        with self.lock:
            c = self.checks.get(cid)
            return c.service_name if c else None

    def has_ttl(self, cid: str) -> bool:
        with self.lock:
            c = self.checks.get(cid)
            return c is not None and c.ttl is not None

    def update_ttl(self, cid: str, status: str, output: str) -> bool:
        """updateTTLCheck + CheckTTL.SetStatus (§4, §5). False when there is no TTL runner."""
        now = self.clock()
        with self.lock:
            c = self.checks.get(cid)
            if c is None or c.ttl is None:
                return False
            output = truncate_output(output, c.output_max)
            c.last_output = output
            c.deadline = now + c.ttl
            self._update_check(c, status, output, now)
            return True

    def forget_everything(self) -> None:
        """An agent replaced with an empty data dir: all services and checks are gone."""
        with self.lock:
            names = {s.name for s in self.services.values()}
            self.services.clear()
            self.checks.clear()
            self._reconcile(names, node=True)

    def _update_check(self, c: Check, status: str, output: str, now: float) -> None:
        """local.State.UpdateCheck: CriticalTime bookkeeping and deferred output sync (§6, §10)."""
        if status == CRITICAL:
            if c.critical_time is None:
                c.critical_time = now
        else:
            c.critical_time = None
        if c.status == status and c.output == output:
            return
        if self.check_update_interval > 0 and c.status == status:
            c.output = output
            if c.defer_deadline is None:
                c.defer_deadline = now + self.check_update_interval
                self._wake.notify_all()
            self.changed.notify_all()
            return
        c.status = status
        c.output = output
        c.catalog_output = output
        self._reconcile({c.service_name} if c.service_id else (), node=not c.service_id)

    # ------------------------------------------------------------------ index bookkeeping
    @staticmethod
    def _service_view(s: Service) -> str:
        return json.dumps([s.name, s.tags, s.address, s.port, s.meta, s.tagged_addresses, s.weights,
                           s.enable_tag_override, s.kind, s.socket_path, s.proxy, s.connect], sort_keys=True)

    @staticmethod
    def _check_view(c: Check) -> str:
        return json.dumps([c.name, c.status, c.notes, c.catalog_output, c.service_id, c.service_name,
                           c.service_tags, c.type, c.interval, c.timeout], sort_keys=True)

    def _reconcile(self, names: Iterable[str], node: bool = False) -> None:
        """Compare the catalog-visible view of ``names`` with what was last synced; bump the index."""
        names = set(names)
        current: Dict[SyncKey, Tuple[Optional[str], str, Any]] = {}
        for s in self.services.values():
            if s.name in names:
                current[("svc", s.id)] = (s.name, self._service_view(s), s)
        for c in self.checks.values():
            if c.service_id:
                if c.service_name in names:
                    current[("chk", c.check_id)] = (c.service_name, self._check_view(c), c)
            elif node:
                current[("node", c.check_id)] = (None, self._check_view(c), c)
        keys = set(current)
        keys |= {k for k, (n, _) in self._synced.items() if (n in names) or (n is None and node)}
        dirty = []
        for key in keys:
            old = self._synced.get(key)
            cur = current.get(key)
            if (old[1] if old else None) != (cur[1] if cur else None):
                dirty.append((key, old, cur))
        self.changed.notify_all()
        if not dirty:
            return
        self.index += 1
        self.catalog_index = self.index
        if any(key[0] == "svc" for key, _, _ in dirty):
            self.services_index = self.index
        touched: Set[Optional[str]] = set()
        node_changed = False
        for key, old, cur in dirty:
            if old is not None:
                touched.add(old[0])
            if cur is None:
                del self._synced[key]
            else:
                entity = cur[2]
                if old is None:
                    entity.create_index = self.index
                entity.modify_index = self.index
                self._synced[key] = (cur[0], cur[1])
                touched.add(cur[0])
            node_changed = node_changed or key[0] == "node"
        if node_changed:
            touched |= {s.name for s in self.services.values()} | set(self.name_index)
        for n in touched:
            if n is not None:
                self.name_index[n] = self.index

    def index_for_service(self, name: str) -> int:
        """X-Consul-Index of health/catalog queries for ``name`` (§11)."""
        with self.lock:
            if any(s.name == name for s in self.services.values()):
                return max(self.name_index.get(name, self.catalog_index), 1)
            return max(self.catalog_index, 1)

    def raft_apply(self) -> int:
        """Take the next number of the one raft counter (§16.8); call with the lock held."""
        self.index += 1
        return self.index

    def block_query(self, run: Callable[[], Tuple[int, bool, Any]], min_index: int, wait: float,
                    not_found_floor: bool = False) -> Tuple[int, bool, Any]:
        """blockingquery.Query (§11, §16.8): re-run ``run`` until its index exceeds ``min_index``
        or ``wait`` runs out, and return its last ``(index, found, result)``.

        With ``not_found_floor`` (Consul 1.12+ ``errNotFound``), a pass that finds nothing after an
        earlier pass that also found nothing takes the index it sees as the new floor, so writes
        elsewhere do not answer a reader of a missing key.
        """
        deadline = self.clock() + wait
        with self.lock:
            not_found = False
            blocking = min_index > 0
            self.blocking_queries += blocking
            try:
                while True:
                    result = run()
                    if not_found_floor and not result[1]:
                        if not_found:
                            min_index = result[0]
                        not_found = True
                    if not blocking or result[0] > min_index or self._closed:
                        return result
                    remaining = deadline - self.clock()
                    if remaining <= 0:
                        return result
                    self.changed.wait(remaining)
            finally:
                self.blocking_queries -= blocking

    def block(self, current_index: Callable[[], int], min_index: int, wait: float) -> None:
        """Blocking query: wait until ``current_index() > min_index`` or ``wait`` elapses."""
        deadline = self.clock() + wait
        with self.lock:
            while not self._closed and current_index() <= min_index:
                remaining = deadline - self.clock()
                if remaining <= 0:
                    return
                self.changed.wait(remaining)

    def block_hash(self, current_hash: Callable[[], Optional[str]], old_hash: str, wait: float) -> None:
        deadline = self.clock() + wait
        with self.lock:
            while not self._closed and current_hash() == old_hash:
                remaining = deadline - self.clock()
                if remaining <= 0:
                    return
                self.changed.wait(remaining)

    # ------------------------------------------------------------------ ticker
    def _run(self) -> None:
        with self.lock:
            while not self._closed:
                now = self.clock()
                self._tick(now)
                nxt = self._next_reap
                for c in self.checks.values():
                    if c.deadline is not None and c.deadline < nxt:
                        nxt = c.deadline
                    if c.defer_deadline is not None and c.defer_deadline < nxt:
                        nxt = c.defer_deadline
                self._wake.wait(min(max(nxt - self.clock(), 0.0), 1.0) + 0.0005)

    def _tick(self, now: float) -> None:
        for c in list(self.checks.values()):
            if c.deadline is not None and c.deadline <= now:
                c.deadline = None  # one-shot: stays critical until the next update re-arms it
                self._update_check(c, CRITICAL, expired_output(c.last_output), now)
            if c.defer_deadline is not None and c.defer_deadline <= now:
                c.defer_deadline = None
                if c.catalog_output != c.output:
                    c.catalog_output = c.output
                    self._reconcile({c.service_name} if c.service_id else (), node=not c.service_id)
        if now >= self._next_reap:
            self._next_reap += self.reap_interval
            if self._next_reap <= now:
                self._next_reap = now + self.reap_interval
            self._reap(now)

    def _reap(self, now: float) -> None:
        """reapServicesInternal (§6)."""
        reaped: Set[str] = set()
        for c in list(self.checks.values()):
            sid = c.service_id
            if not sid or sid in reaped or sid not in self.services:
                continue
            if c.reap_after is None or c.status != CRITICAL or c.critical_time is None:
                continue
            if now - c.critical_time > c.reap_after:
                reaped.add(sid)
                self._remove_service(sid)

    # ------------------------------------------------------------------ reads
    def content_hash(self, sid: str) -> Optional[str]:
        with self.lock:
            s = self.services.get(sid)
            if s is None:
                return None
            return hashlib.sha256(self._service_view(s).encode()).hexdigest()[:16]
