"""Opaque list cursors: the keyset position plus the sort and filters of the scan that made it.

Carrying the scan inside the cursor lets a request omit its filters, and lets the
server reject a request whose filters differ (400) instead of silently mixing scans.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

import orjson

from leadrat_source.sandbox.errors import ApiError


@dataclass(frozen=True)
class Cursor:
    scope: str  # "leads" or "pipelines": a cursor is only good for the list that made it
    sort: str
    filters: dict[str, Any]
    key: tuple[int, str]

    def encode(self) -> str:
        payload = orjson.dumps({"l": self.scope, "s": self.sort, "f": self.filters,
                                "k": list(self.key)}, option=orjson.OPT_SORT_KEYS)
        return base64.urlsafe_b64encode(payload).decode().rstrip("=")


def decode(text: str, scope: str) -> Cursor:
    """The cursor, or 400 invalid_request when it was not made by this server for this list."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        payload = orjson.loads(raw)
        key = payload["k"]
        if (payload["l"] != scope or not isinstance(payload["s"], str)
                or not isinstance(payload["f"], dict) or not isinstance(key[0], int)
                or not isinstance(key[1], str) or len(key) != 2):
            raise ValueError("cursor fields")
        return Cursor(scope, payload["s"], payload["f"], (key[0], key[1]))
    except (binascii.Error, ValueError, KeyError, TypeError, IndexError, orjson.JSONDecodeError):
        raise ApiError("invalid_request", "The cursor is malformed or expired.",
                       [{"field": "cursor", "issue": "invalid"}]) from None
