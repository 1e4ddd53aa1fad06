"""The receiver's counters, served at `GET /metrics` in Prometheus' text format."""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections import Counter
from collections.abc import Callable
from multiprocessing.sharedctypes import Synchronized

PREFIX = "leadrat_webhooks"


class FlushCounters:
    """Counted by the flusher process, read by the server's `/metrics`."""

    def __init__(self) -> None:
        context = multiprocessing.get_context("spawn")
        self.flushed: Synchronized[int] = context.Value("q", 0)
        self.failures: Synchronized[int] = context.Value("q", 0)

    @staticmethod
    def add(counter: Synchronized[int], amount: int) -> None:
        with counter.get_lock():
            counter.value += amount


class Metrics:
    """The server's counters (updated on the event loop), and the flusher's."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.received = 0
        self.duplicates = 0
        self.rejected: Counter[str] = Counter()
        self.flushes = FlushCounters()

    def count(self, name: str, amount: int = 1) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + amount)

    def reject(self, reason: str) -> None:
        with self._lock:
            self.rejected[reason] += 1

    def render(self, depth: Callable[[], tuple[int, float | None]], flusher_up: bool) -> str:
        """The exposition text; `depth` gives the journal's pending count and oldest time."""
        pending, oldest = depth()
        age = time.time() - oldest if oldest is not None else 0.0
        with self._lock:
            lines = [
                f"{PREFIX}_received_total {self.received}",
                f"{PREFIX}_duplicates_total {self.duplicates}",
                f"{PREFIX}_flushed_total {self.flushes.flushed.value}",
                f"{PREFIX}_flush_failures_total {self.flushes.failures.value}",
                *(f'{PREFIX}_rejected_total{{reason="{reason}"}} {count}'
                  for reason, count in sorted(self.rejected.items())),
            ]
        lines += [f"{PREFIX}_flusher_up {int(flusher_up)}",
                  f"{PREFIX}_journal_depth {pending}",
                  f"{PREFIX}_oldest_unflushed_age_seconds {age:.3f}"]
        return "\n".join(lines) + "\n"
