"""Verify a `LeadRat-Signature` header: `t=<unix seconds>,v1=<hex HMAC-SHA256>[,v1=...]`.

The approach of Stripe's and the Standard Webhooks reference verifiers, on LeadRat's
header format (CONTRACT.md):

- the HMAC is computed over `"<t>." + the raw request bytes`, never re-serialized JSON;
- every `v1=` entry is compared, in constant time, with the HMAC under every configured
  secret (several `v1=` entries and several secrets both happen during a rotation);
  entries of other schemes (`v0=`, `v2=`, ...) are ignored;
- `t` must lie within `tolerance` seconds of now on both sides: an old `t` is a replay,
  a future one a forged or badly clocked sender. LeadRat signs every attempt afresh, so
  a legitimate retry always carries a recent `t`.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass

SCHEME = "v1"


class SignatureRejected(Exception):
    """The delivery is not provably from LeadRat; `reason` is safe to return and log."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class SignatureHeader:
    timestamp: int
    signatures: tuple[bytes, ...]

    @classmethod
    def parse(cls, value: str | None) -> SignatureHeader:
        if not value:
            raise SignatureRejected(400, "missing LeadRat-Signature header")
        timestamp: int | None = None
        signatures: list[bytes] = []
        for part in value.split(","):
            key, sep, item = part.strip().partition("=")
            if not sep:
                raise SignatureRejected(400, "malformed LeadRat-Signature header")
            if key == "t":
                if timestamp is not None or not item.isascii() or not item.isdigit():
                    raise SignatureRejected(400, "malformed timestamp in LeadRat-Signature")
                timestamp = int(item)
            elif key == SCHEME:
                try:
                    signatures.append(bytes.fromhex(item))
                except ValueError:
                    raise SignatureRejected(400, "malformed v1 signature") from None
        if timestamp is None:
            raise SignatureRejected(400, "no timestamp in LeadRat-Signature")
        if not signatures:
            raise SignatureRejected(400, "no v1 signature in LeadRat-Signature")
        return cls(timestamp, tuple(signatures))


class SignatureVerifier:
    """Checks deliveries against the configured secrets (several during a rotation)."""

    def __init__(self, secrets: Sequence[str], tolerance_seconds: float):
        if not secrets:
            raise ValueError("at least one webhook secret is needed")
        self._keys = tuple(secret.encode() for secret in secrets)
        self.tolerance_seconds = tolerance_seconds

    def verify(self, header: str | None, body: bytes, now: float) -> None:
        """Return if `body` is signed by a configured secret within the tolerance;
        raise SignatureRejected with a short reason otherwise."""
        parsed = SignatureHeader.parse(header)
        if parsed.timestamp < now - self.tolerance_seconds:
            raise SignatureRejected(401, "timestamp too old (replay?)")
        if parsed.timestamp > now + self.tolerance_seconds:
            raise SignatureRejected(401, "timestamp in the future")
        signed = f"{parsed.timestamp}.".encode() + body
        matched = False
        for key in self._keys:
            expected = hmac.new(key, signed, hashlib.sha256).digest()
            for candidate in parsed.signatures:
                # no early exit: the time taken does not tell which entry or secret matched
                matched |= hmac.compare_digest(expected, candidate)
        if not matched:
            raise SignatureRejected(401, "signature does not match")
