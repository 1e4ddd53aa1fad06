"""The receiver's counters, served at `GET /metrics` in Prometheus' text format."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable

PREFIX = "leadrat_webhooks"


class Metrics:
    """Counters updated from the event loop, the committer and the flusher threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.received = 0
        self.duplicates = 0
        self.rejected: Counter[str] = Counter()
        self.flushed = 0
        self.flush_failures = 0

    def count(self, name: str, amount: int = 1) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + amount)

    def reject(self, reason: str) -> None:
        with self._lock:
            self.rejected[reason] += 1

    def render(self, depth: Callable[[], tuple[int, float | None]]) -> str:
        """The exposition text; `depth` gives the journal's pending count and oldest time."""
        pending, oldest = depth()
        age = time.time() - oldest if oldest is not None else 0.0
        with self._lock:
            lines = [
                f"{PREFIX}_received_total {self.received}",
                f"{PREFIX}_duplicates_total {self.duplicates}",
                f"{PREFIX}_flushed_total {self.flushed}",
                f"{PREFIX}_flush_failures_total {self.flush_failures}",
                *(f'{PREFIX}_rejected_total{{reason="{reason}"}} {count}'
                  for reason, count in sorted(self.rejected.items())),
            ]
        lines += [f"{PREFIX}_journal_depth {pending}",
                  f"{PREFIX}_oldest_unflushed_age_seconds {age:.3f}"]
        return "\n".join(lines) + "\n"
