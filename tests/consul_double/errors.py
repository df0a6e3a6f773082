"""Errors that map to Consul's plain-text HTTP error responses (reference §1)."""
from __future__ import annotations

from typing import Dict, Optional

ANONYMOUS_ACCESSOR = "00000000-0000-0000-0000-000000000002"


class APIError(Exception):
    """An HTTP error answered as ``status`` with ``text`` as a text/plain body."""

    def __init__(self, status: int, text: str, headers: Optional[Dict[str, str]] = None) -> None:
        super().__init__(text)
        self.status = status
        self.text = text
        self.headers = headers or {}


def bad_request(text: str) -> APIError:
    return APIError(400, text)


def permission_denied(permission: str, resource: str, accessor: str = ANONYMOUS_ACCESSOR) -> APIError:
    """acl.PermissionDeniedError, by default for the anonymous token (default policy deny)."""
    return APIError(403, "Permission denied: token with AccessorID '%s' lacks permission '%s' on \"%s\""
                    % (accessor, permission, resource))


ACL_NOT_FOUND = "ACL not found"
