"""Per-key request budgets: fixed windows plus a daily cap that resets at UTC midnight.

The three `X-RateLimit-*` headers describe the budget that binds: the window's, or the
day's when fewer requests are left for the day than for the window (its reset is then
the day's end, the next UTC midnight unless `day_seconds` is shorter, and `Remaining` the
day's remaining total). `next_day` lets tests play a new day without waiting for it.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from leadrat_source.contract import (
    RATE_LIMIT_LIMIT_HEADER,
    RATE_LIMIT_REMAINING_HEADER,
    RATE_LIMIT_RESET_HEADER,
    RETRY_AFTER_HEADER,
)
from leadrat_source.sandbox.config import UNLIMITED

DAY_SECONDS = 86_400


@dataclass(frozen=True)
class Verdict:
    """Whether a request may proceed, and the headers every API response carries."""

    allowed: bool
    headers: dict[str, str]
    daily_cap_spent: bool = False


class RateLimiter:
    """Counts requests per key; over-limit requests are refused and do not count."""

    def __init__(self, window_limit: int | None, day_limit: int | None, window_seconds: float,
                 clock: Callable[[], float] = time.time, day_seconds: float = DAY_SECONDS):
        self.window_limit = window_limit
        self.day_limit = day_limit
        self.window_seconds = window_seconds
        self.day_seconds = day_seconds
        self.clock = clock
        self._lock = threading.Lock()
        self._windows: dict[str, tuple[int, int]] = {}  # key -> (window index, count)
        self._days: dict[str, tuple[int, int]] = {}  # key -> (UTC day index, count)
        self._days_played = 0  # days started by next_day(), ahead of the clock

    def next_day(self) -> int:
        """Start a new day for every key (fresh daily caps); returns the days played so far."""
        with self._lock:
            self._days_played += 1
            return self._days_played

    def consume(self, key: str) -> Verdict:
        return self._check(key, spend=True)

    def peek(self, key: str) -> Verdict:
        """The headers as they stand, without spending (for injected faults)."""
        return self._check(key, spend=False)

    def _check(self, key: str, spend: bool) -> Verdict:
        now = self.clock()
        window = int(now // self.window_seconds)
        with self._lock:
            day = int(now // self.day_seconds) + self._days_played
            window_used = self._used(self._windows, key, window)
            day_used = self._used(self._days, key, day)
            window_left = (self.window_limit - window_used) if self.window_limit else UNLIMITED
            day_left = (self.day_limit - day_used) if self.day_limit is not None else UNLIMITED
            allowed = window_left > 0 and day_left > 0
            if spend and allowed:
                self._windows[key] = (window, window_used + 1)
                self._days[key] = (day, day_used + 1)
                window_left -= 1 if self.window_limit else 0
                day_left -= 1 if self.day_limit is not None else 0
        window_reset = (window + 1) * self.window_seconds
        capped = day_left <= 0
        day_binds = capped or day_left < window_left
        day_reset = (now // self.day_seconds + 1) * self.day_seconds
        reset = day_reset if day_binds else window_reset
        headers = {
            RATE_LIMIT_LIMIT_HEADER: str(self.window_limit or UNLIMITED),
            RATE_LIMIT_REMAINING_HEADER: str(max(0, min(window_left, day_left))),
            RATE_LIMIT_RESET_HEADER: str(math.ceil(reset)),
        }
        if spend and not allowed:
            headers[RETRY_AFTER_HEADER] = str(max(1, math.ceil(reset - now)))
        return Verdict(allowed or not spend, headers, capped and spend and not allowed)

    @staticmethod
    def _used(counts: dict[str, tuple[int, int]], key: str, period: int) -> int:
        stored = counts.get(key)
        return stored[1] if stored and stored[0] == period else 0
