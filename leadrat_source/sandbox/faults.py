"""Injected failures, switched on at run time; random ones come from a seeded RNG.

Every `set` reseeds the RNG from the sandbox seed, so a test that sets the same faults
and sends the same requests sees the same failures. It also forgets which scan each
cursor belongs to (`scan_start`), the only memory a fault keeps.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass
from typing import Any

RATES = ("error_rate", "gateway_error_rate", "spurious_429_rate", "drop_rate",
         "truncate_rate", "drift_rate", "repeat_cursor_rate",
         "cursor_cycle_rate")
GATEWAY_STATUSES = (502, 503, 504)


@dataclass
class FailRule:
    """Fail the next `count` requests whose path starts with `path_prefix` with `status`."""

    status: int
    count: int
    path_prefix: str = ""


class Faults:
    def __init__(self, seed: int):
        self._seed = seed
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self.rates = dict.fromkeys(RATES, 0.0)
        self.latency_ms = 0.0
        self.fail_next: list[FailRule] = []
        #: cursor -> the first cursor of its scan, filled only while `cursor_cycle_rate` is on
        self._scan_starts: dict[str, str] = {}

    def set(self, reset: bool = False, **faults: Any) -> None:
        """Change the named faults (others keep their value unless `reset`)."""
        unknown = set(faults) - {*RATES, "latency_ms", "fail_next"}
        if unknown:
            raise ValueError(f"unknown faults: {sorted(unknown)}")
        rules = [FailRule(int(r["status"]), int(r.get("count", 1)), str(r.get("path_prefix", "")))
                 for r in faults.get("fail_next") or []]
        for name in RATES:
            value = float(faults.get(name, 0.0 if reset else self.rates[name]))
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1")
            faults[name] = value
        with self._lock:
            self._rng = random.Random(self._seed)
            self.rates = {name: faults[name] for name in RATES}
            self.latency_ms = float(faults.get("latency_ms", 0.0 if reset else self.latency_ms))
            if reset or "fail_next" in faults:
                self.fail_next = rules
            self._scan_starts = {}

    def roll(self, name: str) -> bool:
        rate = self.rates[name]
        if rate <= 0:
            return False
        with self._lock:
            return self._rng.random() < rate

    def scan_start(self, asked: str, given: str | None) -> str:
        """The first cursor of the scan whose page was asked for by `asked` (the first one
        seen since the faults were last set: `asked` itself if unknown), remembering that
        `given`, the next cursor that page names, belongs to the same scan.

        One entry per cursor handed out while `cursor_cycle_rate` is on: a scan of the
        default 10,000 leads adds 100 short strings, and every `set` frees them.
        """
        with self._lock:
            start = self._scan_starts.get(asked, asked)
            if given is not None:
                self._scan_starts[given] = start
            return start

    def gateway_status(self) -> int:
        with self._lock:
            return self._rng.choice(GATEWAY_STATUSES)

    def take_fail_next(self, path: str) -> int | None:
        """The status to fail this request with, spending one count of the first matching rule."""
        if not self.fail_next:
            return None
        with self._lock:
            for rule in self.fail_next:
                if path.startswith(rule.path_prefix) and rule.count > 0:
                    rule.count -= 1
                    if rule.count == 0:
                        self.fail_next.remove(rule)
                    return rule.status
        return None

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {**self.rates, "latency_ms": self.latency_ms,
                    "fail_next": [vars(rule).copy() for rule in self.fail_next]}
