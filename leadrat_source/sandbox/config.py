"""Settings of one sandbox instance, and the budgets they resolve to."""

from __future__ import annotations

from dataclasses import dataclass

from leadrat_source.contract import PLANS, Plan

#: What X-RateLimit-Limit/Remaining report when the limit is switched off (rate_limit=0),
#: so clients that pace from the headers never slow down.
UNLIMITED: int = 1_000_000


@dataclass(frozen=True)
class SandboxConfig:
    """Everything that shapes a sandbox: data size and seed, plan budget, faults-free defaults."""

    leads: int = 10_000
    seed: int = 7
    plan: str = "growth"
    rate_limit: int | None = None
    daily_cap: int | None = -1
    window_seconds: float = 60.0
    #: Length of the daily cap's "day" (its reset is the next multiple of this since the
    #: epoch, UTC midnight by default); tests shorten it to see a new day come.
    day_seconds: float = 86_400.0
    cursor: bool = True
    churn_per_minute: float = 0
    webhook_url: str | None = None
    webhook_secret: str | None = None
    pipelines: int = 3
    #: extra custom field keys of a wide account (0: the usual six)
    custom_keys: int = 0
    host: str = "127.0.0.1"
    port: int = 0
    api_key: str | None = None
    read_key: str | None = None

    def __post_init__(self) -> None:
        if self.plan not in PLANS:
            raise ValueError(f"unknown plan {self.plan!r}; expected one of {sorted(PLANS)}")
        if self.leads < 0 or self.pipelines < 1 or self.custom_keys < 0:
            raise ValueError("leads and custom_keys must be >= 0, and pipelines >= 1")
        if self.window_seconds <= 0 or self.day_seconds <= 0:
            raise ValueError("window_seconds and day_seconds must be > 0")

    @property
    def plan_budget(self) -> Plan:
        return PLANS[self.plan]

    @property
    def window_limit(self) -> int | None:
        """Requests allowed per window; None means unlimited."""
        limit = self.plan_budget.per_minute if self.rate_limit is None else self.rate_limit
        return limit or None

    @property
    def day_limit(self) -> int | None:
        """Requests allowed per UTC day; None means no cap."""
        if self.daily_cap == -1:
            return self.plan_budget.per_day
        return self.daily_cap
