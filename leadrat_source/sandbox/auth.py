"""The sandbox's credentials: a read_write key, a read key and an OAuth-style bearer token."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

READ = "read"
READ_WRITE = "read_write"


def derived(seed: int, purpose: str, prefix: str) -> str:
    """A stable secret per seed, so a restarted sandbox keeps its keys."""
    return prefix + hashlib.sha256(f"leadrat-sandbox:{seed}:{purpose}".encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Keys:
    read_write: str
    read: str
    bearer: str

    @classmethod
    def for_seed(cls, seed: int, read_write: str | None, read: str | None) -> Keys:
        return cls(read_write or derived(seed, "read_write", "lr_test_"),
                   read or derived(seed, "read", "lr_test_"),
                   derived(seed, "bearer", "oat_"))

    def identify(self, headers: dict[str, str]) -> tuple[str, str] | None:
        """(role, rate-limit bucket) of the request's credentials, or None when invalid."""
        presented = headers.get("x-api-key")
        authorization = headers.get("authorization", "")
        if presented is None and authorization[:7].lower() == "bearer ":
            presented = authorization[7:].strip()
        if not presented:
            return None
        for secret, role in ((self.read_write, READ_WRITE), (self.bearer, READ_WRITE),
                             (self.read, READ)):
            if hmac.compare_digest(presented.encode(), secret.encode()):
                return role, secret
        return None
