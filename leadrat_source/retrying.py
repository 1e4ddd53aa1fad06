"""The retry policy: which failures are retried, and how long to wait between attempts.

Built on tenacity so the whole policy is one declarative object. Retried: 429, 5xx
(including the gateway's non-JSON 502/503/504), timeouts, dropped connections and
truncated or malformed bodies — all surface as `RETRYABLE_ERRORS`. Never retried: the
other 4xx, which would fail the same way again. The wait is exponential with jitter,
capped, and never shorter than what the server asked for (`Retry-After` or
`X-RateLimit-Reset`, carried on the error as `retry_after`).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt

from leadrat_source import settings
from leadrat_source.errors import RETRYABLE_ERRORS, QuotaExhausted


def is_retryable(error: BaseException) -> bool:
    """True for transient failures; a spent daily quota is not transient."""
    return isinstance(error, RETRYABLE_ERRORS) and not isinstance(error, QuotaExhausted)


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter: attempt n waits about `base * 2**(n-1)`, at most `cap`.

    `max_wait_seconds` bounds any single wait, including one the server asks for: a
    longer one means the quota is spent (see `QuotaExhausted`), not a blip.
    """

    max_attempts: int = settings.MAX_ATTEMPTS
    backoff_base: float = settings.BACKOFF_BASE_SECONDS
    backoff_cap: float = settings.BACKOFF_CAP_SECONDS
    max_wait_seconds: float = settings.MAX_WAIT_SECONDS

    def backoff(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based), before hints.

        "Equal jitter": half the exponential step is fixed, half random, so concurrent
        clients spread out but never retry immediately.
        """
        step = min(self.backoff_cap, self.backoff_base * 2 ** (attempt - 1))
        return step / 2 + random.uniform(0, step / 2)

    def wait(self, state: RetryCallState) -> float:
        """tenacity wait: the backoff, or the server's requested wait if that is longer."""
        seconds = self.backoff(state.attempt_number)
        error = state.outcome.exception() if state.outcome else None
        hint = getattr(error, "retry_after", None)
        if hint is not None:
            seconds = max(seconds, hint)
        return min(seconds, self.max_wait_seconds)

    def retrying(self, before_sleep: Callable[[RetryCallState], None] | None = None) -> Retrying:
        """A tenacity `Retrying` that re-raises the last error once attempts run out."""
        return Retrying(
            retry=retry_if_exception(is_retryable),
            stop=stop_after_attempt(self.max_attempts),
            wait=self.wait,
            before_sleep=before_sleep,
            reraise=True,
        )
