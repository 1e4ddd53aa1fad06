"""Thread-safe request counters of a client, for the run summary and for tests."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field


@dataclass(frozen=True)
class RequestStatsSnapshot:
    """A consistent copy of the counters at one instant."""

    requests: int
    retries: int
    rate_limited: int
    transport_errors: int
    by_status: dict[int, int] = field(default_factory=dict)
    #: seconds slept before retrying a 429 (summed over threads)
    rate_limit_retry_seconds: float = 0.0


class RequestStats:
    """Counts HTTP attempts (`requests`), `retries`, 429s received (`rate_limited`),
    attempts without a usable response (`transport_errors`) and attempts `by_status`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests = 0
        self._retries = 0
        self._rate_limited = 0
        self._transport_errors = 0
        self._by_status: Counter[int] = Counter()
        self._rate_limit_retry_seconds = 0.0

    def record_response(self, status: int) -> None:
        with self._lock:
            self._requests += 1
            self._by_status[status] += 1
            if status == 429:
                self._rate_limited += 1

    def record_transport_error(self) -> None:
        """An attempt that got no usable response (timeout, dropped or garbled)."""
        with self._lock:
            self._requests += 1
            self._transport_errors += 1

    def record_retry(self, rate_limit_wait: float = 0.0) -> None:
        """A retry is due; `rate_limit_wait`: the seconds it sleeps because of a 429."""
        with self._lock:
            self._retries += 1
            self._rate_limit_retry_seconds += rate_limit_wait

    @property
    def requests(self) -> int:
        with self._lock:
            return self._requests

    @property
    def retries(self) -> int:
        with self._lock:
            return self._retries

    @property
    def rate_limited(self) -> int:
        with self._lock:
            return self._rate_limited

    @property
    def by_status(self) -> dict[int, int]:
        with self._lock:
            return dict(self._by_status)

    def snapshot(self) -> RequestStatsSnapshot:
        with self._lock:
            return RequestStatsSnapshot(
                self._requests,
                self._retries,
                self._rate_limited,
                self._transport_errors,
                dict(self._by_status),
                self._rate_limit_retry_seconds,
            )
