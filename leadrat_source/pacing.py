"""Proactive rate-limit pacing from the `X-RateLimit-*` headers.

A `RateLimitPacer` is shared by every request of a run, across threads. Before a request
it hands out a slot; after the response it learns the server's view of the budget. It
spreads the remaining budget evenly over the time left in the window, counting requests
still in flight as already spent, and when nothing is left it waits for the reset. A run
at the plan's limit thus uses the whole budget yet (almost) never sees a 429, which
reactive backoff alone cannot do.

A budget whose reset is far away (further than `window_horizon_seconds`: the daily cap,
which resets at the next UTC midnight) is a total, not a rate: spreading a dozen requests
over the hours until midnight would make every wait too long and end the run with
requests unused. Such a total is used as it is, still paced by the per-minute window as
last reported, and the run stops only when it is spent or the API refuses.

`quota_spent` is the one rule for a wait too long to sleep through; the transport applies
it to the wait a 429 asks for too.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from leadrat_source.contract import (
    RATE_LIMIT_LIMIT_HEADER,
    RATE_LIMIT_REMAINING_HEADER,
    RATE_LIMIT_RESET_HEADER,
)
from leadrat_source.errors import QuotaExhausted

#: Resets below this (2001-09-09) cannot be Unix times: they are deltas in seconds.
_EARLIEST_UNIX_RESET = 1_000_000_000


@dataclass(frozen=True)
class RateLimitStatus:
    """The budget as last reported by the API: `limit`, `remaining`, `reset` (UTC)."""

    limit: int
    remaining: int
    reset: datetime

    @classmethod
    def from_headers(cls, headers: Mapping[str, str]) -> RateLimitStatus | None:
        """Parse the three headers; None when any is missing or garbled (gateway errors).

        The contract's reset is Unix seconds; a small value is taken as seconds from now,
        as some APIs send, so such a deployment is still paced instead of ignored.
        """
        try:
            limit = int(headers[RATE_LIMIT_LIMIT_HEADER])
            remaining = int(float(headers[RATE_LIMIT_REMAINING_HEADER]))
            reset = float(headers[RATE_LIMIT_RESET_HEADER])
        except (KeyError, TypeError, ValueError):
            return None
        if reset < _EARLIEST_UNIX_RESET:
            reset += time.time()
        return cls(limit, max(remaining, 0), datetime.fromtimestamp(reset, UTC))


@dataclass(frozen=True)
class PacerStats:
    """How much the pacer held requests back: number of waits, their total seconds (summed
    over threads), and `held_seconds`: the wall-clock time during which at least one
    request was waiting, i.e. how long the rate limit slowed the run down."""

    waits: int
    wait_seconds: float
    held_seconds: float = 0.0


def quota_spent(wait_seconds: float, max_wait_seconds: float | None) -> bool:
    """Whether a wait for the budget is too long to sleep through: it is spent and resets
    more than `max_wait_seconds` from now (the daily cap, at the next UTC midnight).

    The one rule for the pacer's own wait and for the wait a 429 asks for, so a run stops
    with `QuotaExhausted` the same way whichever notices first, instead of sleeping for
    hours. `max_wait_seconds` None: any wait is slept through.
    """
    return max_wait_seconds is not None and wait_seconds > max_wait_seconds


class _HeldTime:
    """The pacer's tally of how long it held requests back (`PacerStats`), kept apart from
    its budget arithmetic. Not locked itself: the pacer calls it under its own lock."""

    def __init__(self) -> None:
        self._waits = 0
        self._wait_seconds = 0.0
        self._waiting = 0  # requests waiting right now
        self._since = 0.0  # monotonic instant the current stretch of waiting began
        self._held_seconds = 0.0

    def start(self, now: float) -> None:
        """One more request waits; the first opens a stretch of held time."""
        if not self._waiting:
            self._since = now
        self._waiting += 1

    def stop(self) -> None:
        """One request stops waiting; the last closes the stretch."""
        self._waiting -= 1
        if not self._waiting:
            self._held_seconds += time.monotonic() - self._since

    def count(self, waited: float) -> None:
        """A request goes out after waiting `waited` seconds (0: it did not wait)."""
        if waited > 0:
            self._waits += 1
            self._wait_seconds += waited

    def stats(self) -> PacerStats:
        held = self._held_seconds
        if self._waiting:
            held += time.monotonic() - self._since
        return PacerStats(self._waits, self._wait_seconds, held)


class RateLimitPacer:
    """Thread-safe request pacer shared by all requests of a run (one API key).

    Use `acquire()` before sending and `release(headers)` once the response (or failure)
    is in. `burst_fraction` of the window's limit may go out back to back, so short runs
    are not slowed down; beyond that requests are spaced evenly. `margin_seconds` is
    added to the reset time, whose header has only whole-second precision.
    """

    def __init__(
        self,
        *,
        burst_fraction: float = 0.1,
        margin_seconds: float = 0.05,
        window_horizon_seconds: float = 300.0,
    ) -> None:
        self._burst_fraction = burst_fraction
        self._margin = margin_seconds
        self._horizon = window_horizon_seconds
        self._cond = threading.Condition()
        self._status: RateLimitStatus | None = None
        self._remaining: int | None = None
        self._reset: float | None = None  # unix seconds; None once passed and not yet re-learnt
        #: the day's total when it binds (a far reset), with its reset (unix seconds)
        self._total: tuple[int, float] | None = None
        self._in_flight = 0
        self._tat = 0.0  # theoretical arrival time of the next evenly spaced request
        self._held = _HeldTime()

    @property
    def status(self) -> RateLimitStatus | None:
        """The last budget the API reported, or None before the first response."""
        with self._cond:
            return self._status

    @property
    def stats(self) -> PacerStats:
        with self._cond:
            return self._held.stats()

    def acquire(self, max_wait_seconds: float | None = None) -> None:
        """Block until a request may be sent, then count it as in flight.

        Raises `QuotaExhausted` without waiting when the budget is spent and resets more
        than `max_wait_seconds` from now (the daily cap).
        """
        waited = 0.0
        holding = False
        with self._cond:
            try:
                while (delay := self._delay()) > 0:
                    if quota_spent(delay, max_wait_seconds):
                        resets_at = datetime.fromtimestamp(self._binding_reset(), UTC)
                        raise QuotaExhausted.until(resets_at, status=None)
                    started = time.monotonic()
                    if not holding:
                        holding = True
                        self._held.start(started)
                    # Woken early by release() when a response brings news about the budget.
                    self._cond.wait(timeout=delay)
                    waited += time.monotonic() - started
            finally:
                if holding:
                    self._held.stop()
            self._in_flight += 1
            self._held.count(waited)

    def release(self, headers: Mapping[str, str] | None) -> None:
        """Mark one request done and learn the budget from its response headers, if any."""
        status = RateLimitStatus.from_headers(headers) if headers is not None else None
        with self._cond:
            self._in_flight = max(self._in_flight - 1, 0)
            if status is not None:
                self._learn(status)
            self._cond.notify_all()

    def _learn(self, status: RateLimitStatus) -> None:
        reset = status.reset.timestamp()
        if reset - time.time() > self._horizon:
            self._learn_total(status.remaining, reset)
            self._status = status
            return
        # Responses arrive out of order: within one window the lowest remaining is newest.
        same_window = self._reset is not None and abs(reset - self._reset) < 1.0
        if same_window and self._reset is not None and self._remaining is not None:
            self._remaining = min(self._remaining, status.remaining)
            self._reset = max(self._reset, reset)
        elif self._reset is None or reset > self._reset:
            self._remaining = status.remaining
            self._reset = reset
        else:
            return  # a straggler from an older window
        self._status = status

    def _learn_total(self, remaining: int, reset: float) -> None:
        """A far reset: `remaining` is what is left of the day, whenever it is used."""
        if self._total is not None and abs(reset - self._total[1]) < 1.0:
            remaining = min(remaining, self._total[0])  # out of order: the lowest is newest
        elif self._total is not None and reset < self._total[1]:
            return  # a straggler from an older day
        self._total = (remaining, reset)

    def _delay(self) -> float:
        """Seconds to wait before the next request may go (0: go now). Call under the lock."""
        if self._total is not None:
            remaining, reset = self._total
            if time.time() >= reset + self._margin:
                self._total = None  # a new day
            elif remaining - self._in_flight <= 0:
                return reset + self._margin - time.time()
        return self._window_delay()

    def _binding_reset(self) -> float:
        """When the budget that holds requests back resets (unix seconds)."""
        if self._total is not None and self._total[0] - self._in_flight <= 0:
            return self._total[1]
        return self._reset or time.time()

    def _window_delay(self) -> float:
        """The wait that spreads the window's budget evenly until its reset."""
        if self._remaining is None:
            return 0.0  # nothing learnt yet: the first responses will tell
        now = time.time()
        if self._reset is not None and now >= self._reset + self._margin:
            # The window has reset; assume a full budget until a response says otherwise.
            limit = self._status.limit if self._status else 0
            self._remaining = limit if limit > 0 else None  # a limit of 0 tells nothing
            self._reset = None
            self._tat = 0.0
        if self._remaining is None:
            return 0.0
        available = self._remaining - self._in_flight
        if self._reset is None:
            return 0.0 if available > 0 else 0.05  # re-learning the window from responses
        if available <= 0:
            return self._reset + self._margin - now
        interval = (self._reset + self._margin - now) / available
        limit = self._status.limit if self._status else available
        burst = max(self._burst_fraction * limit, 1.0) * interval
        tat = max(self._tat, now)
        if tat - now >= burst:
            return tat - now - burst + 1e-3
        self._tat = tat + interval
        return 0.0
