"""The KV store of the Consul double (reference §16): entries, tombstones and their indexes.

The store lives inside :class:`~tests.consul_double.state.AgentState` and shares its lock, its
``changed`` condition (which wakes blocked readers) and its one raft counter (§16.8). Every method
here is called with the state lock held.

State-store rules modelled [KST]:

* every apply takes a raft index, even one that writes nothing (a failed CAS, a no-op write, a
  delete of a missing key, a failed lock), so ModifyIndexes may skip numbers;
* a plain set keeps CreateIndex and the Session, sets Flags to what the request says (0 without
  ``?flags``); an identical entry (value, flags, session, lock index) is not rewritten;
* ``cas=0`` is create-only, ``cas=N`` needs the key to exist with ModifyIndex N;
* a delete writes a tombstone at the delete's index (one for the key, or one for the prefix of a
  recursive delete; none for the empty prefix); the double never reaps tombstones;
* the table index (the larger of the kvs and tombstones table indexes) moves on every real write.
"""
from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

if TYPE_CHECKING:  # pragma: no cover
    from .state import AgentState


class KVApplyError(Exception):
    """An error raised by the state store during the raft apply (answered as 500 with the text)."""


@dataclass
class DirEntry:
    key: str
    value: bytes
    flags: int
    create_index: int
    modify_index: int
    lock_index: int = 0
    session: str = ""

    def same_content(self, other: "DirEntry") -> bool:
        """structs.DirEntry.Equal: value, flags, session and lock index (not the indexes)."""
        return (self.value, self.flags, self.session, self.lock_index) == (
            other.value, other.flags, other.session, other.lock_index)


def entry_json(e: DirEntry) -> Dict[str, Any]:
    """A DirEntry in Go's field order; Value is padded standard base64, or null when empty (§16.1)."""
    out: Dict[str, Any] = {"LockIndex": e.lock_index, "Key": e.key, "Flags": e.flags,
                           "Value": base64.b64encode(e.value).decode("ascii") if e.value else None}
    if e.session:
        out["Session"] = e.session
    out["CreateIndex"] = e.create_index
    out["ModifyIndex"] = e.modify_index
    return out


class KVStore:
    def __init__(self, state: "AgentState") -> None:
        self._st = state
        self.entries: Dict[str, DirEntry] = {}
        self.tombstones: Dict[str, int] = {}
        self.table_index = 0

    # ------------------------------------------------------------------ reads (§16.1–16.3)
    def get(self, key: str) -> Tuple[int, Optional[DirEntry]]:
        """KVS.Get: the key's own ModifyIndex, or the table index (at least 1) when missing."""
        e = self.entries.get(key)
        if e is not None:
            return e.modify_index, e
        return max(self.table_index, 1), None

    def list(self, prefix: str) -> Tuple[int, List[DirEntry]]:
        """KVS.List: entries under a string prefix in byte order; the index is the highest
        ModifyIndex or tombstone under the prefix, else the table index (kvsListTxn)."""
        found = [self.entries[k] for k in sorted(self.entries, key=_byte_order) if k.startswith(prefix)]
        if prefix:
            sub = max([e.modify_index for e in found] +
                      [i for k, i in self.tombstones.items() if k.startswith(prefix)] + [0])
        else:
            sub = self.table_index
        return max(sub or self.table_index, 1), found

    # ------------------------------------------------------------------ writes (§16.5, §16.6)
    def _changed(self, index: int) -> None:
        self.table_index = index
        self._st.changed.notify_all()

    def _write(self, key: str, value: bytes, flags: int, index: int) -> None:
        old = self.entries.get(key)
        new = DirEntry(key, value, flags, create_index=old.create_index if old else index, modify_index=index,
                       lock_index=old.lock_index if old else 0, session=old.session if old else "")
        if old is not None and old.same_content(new):
            return  # no-op write: nothing changes, nobody is woken
        self.entries[key] = new
        self._changed(index)

    def put(self, key: str, value: bytes, flags: int = 0, cas: Optional[int] = None) -> bool:
        """A plain set (``cas`` None, always True) or a check-and-set."""
        index = self._st.raft_apply()
        if cas is not None:
            old = self.entries.get(key)
            if cas == 0 and old is not None:
                return False
            if cas > 0 and (old is None or old.modify_index != cas):
                return False
        self._write(key, value, flags, index)
        return True

    def acquire(self, key: str, value: bytes, flags: int, session: str) -> bool:
        """kvsLockTxn. The double has no sessions, so every lock fails as for an unknown session."""
        self._st.raft_apply()
        if not session:
            raise KVApplyError("missing session")
        raise KVApplyError("invalid session %s" % json.dumps(session))

    def release(self, key: str, value: bytes, flags: int, session: str) -> bool:
        """kvsUnlockTxn: True (and the session cleared) only if that session holds the key."""
        index = self._st.raft_apply()
        old = self.entries.get(key)
        if old is None or old.session != session:
            return False
        new = DirEntry(key, value, flags, old.create_index, index, old.lock_index, "")
        if not old.same_content(new):
            self.entries[key] = new
            self._changed(index)
        return True

    def delete(self, key: str, cas: Optional[int] = None) -> bool:
        """A plain delete (always True) or a delete-CAS: a missing key answers True for any N."""
        index = self._st.raft_apply()
        old = self.entries.get(key)
        if old is None:
            return True
        if cas is not None and old.modify_index != cas:
            return False
        del self.entries[key]
        self.tombstones[key] = index
        self._changed(index)
        return True

    def delete_tree(self, prefix: str) -> None:
        """A recursive delete: every key starting with the string; one tombstone for the prefix."""
        index = self._st.raft_apply()
        doomed = [k for k in self.entries if k.startswith(prefix)]
        if not doomed:
            return
        for k in doomed:
            del self.entries[k]
        if prefix:
            self.tombstones[prefix] = index
        self._changed(index)


def _byte_order(key: str) -> bytes:
    return key.encode("utf-8", errors="surrogateescape")
