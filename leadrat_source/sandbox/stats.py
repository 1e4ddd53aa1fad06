"""Counters of what the sandbox served, read by tests and benchmarks via /_sandbox/stats."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any


class Stats:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.requests = 0
            self.rate_limited = 0
            self.faults_injected = 0
            self.by_route: Counter[str] = Counter()
            self.by_status: Counter[str] = Counter()

    def request(self, route: str) -> None:
        with self._lock:
            self.requests += 1
            self.by_route[route] += 1

    def response(self, status: int, rate_limited: bool = False) -> None:
        with self._lock:
            self.by_status[str(status)] += 1
            self.rate_limited += rate_limited

    def fault(self) -> None:
        with self._lock:
            self.faults_injected += 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"requests": self.requests, "by_route": dict(self.by_route),
                    "by_status": dict(self.by_status), "rate_limited": self.rate_limited,
                    "faults_injected": self.faults_injected}
