"""`leadrat check`: is everything a load needs in place? Verified without loading anything.

It asks the API for one lead (key valid? plan and quota from the rate-limit headers) and
opens the destination: reads only. The contract has no read-only way to learn a key's
scope, so only with `probe_write` (`leadrat check --probe-write`) does it send an update of
a lead that cannot exist (a read key gets 403, a read_write key 404, and nothing changes
either way); that PUT shows in the account's audit log and spends a request.
"""

from __future__ import annotations

from dataclasses import dataclass

from leadrat_source.client import LeadRatClient
from leadrat_source.client_config import open_client
from leadrat_source.contract import PLANS
from leadrat_source.destinations import get_profile
from leadrat_source.errors import InvalidRequest, NotFound, PermissionDenied, ValidationFailed
from leadrat_source.load import LoadRequest, make_pipeline
from leadrat_source.pacing import RateLimitStatus

#: An ID no LeadRat lead has (IDs are `lead_` + ULID-like text); used only to probe scope.
SCOPE_PROBE_LEAD_ID = "lead_leadrat_check_scope_probe"


@dataclass(frozen=True)
class CheckReport:
    base_url: str
    #: None: not probed (a write probe is opt-in)
    scope: str | None
    plan: str
    limit: int | None
    remaining: int | None
    resets_at: str | None
    destination: str
    dataset: str

    def lines(self) -> list[str]:
        budget = (
            f"{self.remaining} of {self.limit} requests left in this window, resets {self.resets_at}"
            if self.limit is not None
            else "no rate-limit headers seen"
        )
        scope = self.scope or "not checked (--probe-write tests it with one PUT)"
        return [
            f"api: ok ({self.base_url}); key scope {scope}; plan {self.plan}; {budget}",
            f"destination: ok (profile {self.destination!r}, dataset {self.dataset!r})",
        ]


def plan_for_limit(limit: int | None) -> str:
    """The plan whose per-minute limit the API reports, or 'unknown'."""
    return next((plan.name for plan in PLANS.values() if plan.per_minute == limit), "unknown")


def key_scope(client: LeadRatClient) -> str:
    """'read_write' or 'read', learned from how the API answers an update it cannot apply."""
    try:
        client.leads.update(SCOPE_PROBE_LEAD_ID, score=0)
    except PermissionDenied:
        return "read"
    except (NotFound, ValidationFailed, InvalidRequest):
        # past the permission check: the write was allowed, only the lead was wrong
        return "read_write"
    return "read_write"


def _ask_api(client: LeadRatClient, probe_write: bool
             ) -> tuple[str, str | None, RateLimitStatus | None]:
    """One list request (the key works), and the key's scope when asked to probe it: the
    API's address, the scope and the budget it reported."""
    client.leads.list_page(per_page=1)
    scope = key_scope(client) if probe_write else None
    return client.base_url, scope, client.rate_limit


def run_check(request: LoadRequest, client: LeadRatClient | None = None,
              probe_write: bool = False) -> CheckReport:
    """Raise the first problem found (with its advice); return what was verified.
    Sends only reads unless `probe_write`."""
    profile = get_profile(request.destination)
    with open_client(client) as opened:
        base_url, scope, status = _ask_api(opened, probe_write)
    pipeline = make_pipeline(request, profile)
    with pipeline.sql_client() as sql:
        sql.execute_sql("SELECT 1")
    return CheckReport(
        base_url=base_url,
        scope=scope,
        plan=plan_for_limit(status.limit if status else None),
        limit=status.limit if status else None,
        remaining=status.remaining if status else None,
        resets_at=status.reset.isoformat() if status else None,
        destination=profile.name,
        dataset=pipeline.dataset_name,
    )
