"""Tokens of the Consul double and the key rules of a limited token (reference §9, §16.9).

A token is given as ``SECRET`` (allowed everything) or ``SECRET=RULES``, RULES a comma-separated
list of ``key:PREFIX`` (``key_prefix "PREFIX" { policy = "write" }``: read and write below PREFIX)
and ``key-read:PREFIX`` (``policy = "read"``). A limited token may do nothing but what its key rules
allow (no service, node or agent rights). The longest matching prefix decides; for the same prefix
given twice, write wins over read, as when Consul merges policies. There is no deny rule, and the
default is deny.
"""
from __future__ import annotations

import uuid
from typing import Dict, FrozenSet, Iterable, List, Optional, Tuple

READ = "read"
WRITE = "write"
_KINDS = {"key": WRITE, "key-read": READ}


class KeyRules:
    """The key rules of one limited token."""

    def __init__(self, rules: Dict[str, str]) -> None:
        self.rules = dict(rules)  # prefix -> READ | WRITE

    @classmethod
    def parse(cls, text: str) -> "KeyRules":
        rules: Dict[str, str] = {}
        for item in (part.strip() for part in text.split(",")):
            if not item:
                continue
            kind, sep, prefix = item.partition(":")
            if not sep or kind not in _KINDS:
                raise ValueError("bad ACL rule %r: expected key:PREFIX or key-read:PREFIX" % item)
            if rules.get(prefix) != WRITE:
                rules[prefix] = _KINDS[kind]
        return cls(rules)

    def policy(self, key: str) -> Optional[str]:
        """The policy of the longest prefix rule matching ``key``, or None (default deny)."""
        best: Optional[str] = None
        for prefix in self.rules:
            if key.startswith(prefix) and (best is None or len(prefix) > len(best)):
                best = prefix
        return None if best is None else self.rules[best]

    def can_read(self, key: str) -> bool:
        return self.policy(key) in (READ, WRITE)

    def can_write(self, key: str) -> bool:
        return self.policy(key) == WRITE

    def can_write_prefix(self, prefix: str) -> bool:
        """KeyWritePrefix: write on the prefix itself and no narrower rule below it that is less."""
        if not self.can_write(prefix):
            return False
        return all(policy == WRITE for p, policy in self.rules.items() if p.startswith(prefix))


def accessor_id(secret: str) -> str:
    """A stable AccessorID for a limited token that does not reveal its secret."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "consul-double-token:" + secret))


def parse_tokens(specs: Iterable[str]) -> Tuple[FrozenSet[str], Dict[str, KeyRules]]:
    """Split ``SECRET`` / ``SECRET=RULES`` strings into full-rights secrets and limited tokens.

    Raises ValueError (naming the rule, never the secret) on a bad rule or an empty secret.
    """
    full: List[str] = []
    limited: Dict[str, KeyRules] = {}
    for spec in specs:
        if not spec:
            continue
        secret, sep, rules = spec.partition("=")
        if not secret:
            raise ValueError("an ACL token needs a secret before '='")
        if sep:
            limited[secret] = KeyRules.parse(rules)
        else:
            full.append(secret)
    return frozenset(full), limited
