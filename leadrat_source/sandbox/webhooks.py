"""Signed, retried webhook delivery of lead events (at-least-once, possibly out of order)."""

from __future__ import annotations

import hashlib
import heapq
import hmac
import itertools
import threading
import time
import uuid
from typing import Any

import orjson
import requests

from leadrat_source.contract import ID_PREFIX_EVENT, SIGNATURE_HEADER
from leadrat_source.sandbox.clock import now_ms, to_iso

TIMEOUT_SECONDS = 10.0
MAX_BACKOFF_SECONDS = 60.0
#: LeadRat retries for up to 3 days; the sandbox keeps that promise while it runs.
GIVE_UP_SECONDS = 3 * 86_400


def signature(secret: str, body: bytes, timestamp: int) -> str:
    """`t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<body>">`, the LeadRat-Signature header value."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def event(event_type: str, lead: dict[str, Any], previous: dict[str, Any] | None) -> bytes:
    return orjson.dumps({"id": f"{ID_PREFIX_EVENT}{uuid.uuid4().hex[:20]}", "type": event_type,
                         "created_at": to_iso(now_ms()),
                         "data": {"lead": lead, "previous": previous}})


class WebhookSender:
    """Queues events and POSTs them from one background thread, retrying with backoff."""

    def __init__(self, url: str, secret: str):
        self.url = url
        self._secret = secret
        self._queue: list[tuple[float, int, float, int, bytes]] = []
        self._order = itertools.count()
        self._wake = threading.Condition()
        self._stopped = False
        self._session = requests.Session()
        self._thread = threading.Thread(target=self._run, name="sandbox-webhooks", daemon=True)
        self.delivered = 0
        self.failed_attempts = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with self._wake:
            self._stopped = True
            self._wake.notify()
        self._thread.join(timeout=2)
        self._session.close()

    def publish(self, event_type: str, lead: dict[str, Any],
                previous: dict[str, Any] | None) -> None:
        self._schedule(time.monotonic(), time.monotonic(), 0, event(event_type, lead, previous))

    def pending(self) -> int:
        with self._wake:
            return len(self._queue)

    def _schedule(self, due: float, first: float, attempt: int, body: bytes) -> None:
        with self._wake:
            heapq.heappush(self._queue, (due, next(self._order), first, attempt, body))
            self._wake.notify()

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._stopped and (
                        not self._queue or self._queue[0][0] > time.monotonic()):
                    delay = self._queue[0][0] - time.monotonic() if self._queue else None
                    self._wake.wait(delay)
                if self._stopped:
                    return
                _, _, first, attempt, body = heapq.heappop(self._queue)
            if self._send(body):
                self.delivered += 1
                continue
            self.failed_attempts += 1
            if time.monotonic() - first < GIVE_UP_SECONDS:
                backoff = min(MAX_BACKOFF_SECONDS, 0.5 * 2**attempt)
                self._schedule(time.monotonic() + backoff, first, attempt + 1, body)

    def _send(self, body: bytes) -> bool:
        headers = {"Content-Type": "application/json",
                   SIGNATURE_HEADER: signature(self._secret, body, int(time.time()))}
        try:
            response = self._session.post(self.url, data=body, headers=headers,
                                          timeout=TIMEOUT_SECONDS)
        except requests.RequestException:
            return False
        return 200 <= response.status_code < 300
