"""What a lead scan costs in requests, counted by the sandbox: an incremental run after
churn asks for about the changed leads' pages (issue 12's target: at most
ceil(changed / 100) + 5), also when its range is large enough to be cut into slices,
each of which ends with a partial page."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from typing import Any

from served import served_during

from leadrat_source import settings
from leadrat_source.lead_scan import LeadScanner, ScanSettings
from leadrat_source.scan_ranges import ScanRange, floor_ms

#: requests an incremental run may make beyond the changed leads' pages
TARGET_EXTRA = 5
#: incremental runs judged; how many partial pages a run's slices end with varies from
#: run to run, so one run alone may not show a rule that slices too finely
RUNS = 4


def incremental_scan(server: Any, client: Any, since: dt.datetime) -> tuple[list[str], int]:
    """The ids of the leads a scan of `[since, now)` delivers (with its catch-up pass, as
    in a load) and the requests the sandbox served it."""
    scanner = LeadScanner(client.leads, ScanSettings(per_page=settings.PER_PAGE,
                                                     workers=settings.SCAN_WORKERS))
    delivered: list[str] = []

    def scan() -> None:
        for page in scanner.scan(ScanRange(since, floor_ms(dt.datetime.now(dt.UTC)))):
            delivered.extend(lead["id"] for lead in page)

    return delivered, served_during(server, scan)["requests"]


def test_an_incremental_scan_after_churn_costs_about_the_changed_pages(
    make_sandbox: Callable[..., Any], make_client: Callable[..., Any],
) -> None:
    # each run: ~11k leads changed, a range of ~110 pages (as 1% churn of 1M leads makes),
    # which the scan cuts into slices
    server = make_sandbox(leads=20_000, seed=5, rate_limit=0)
    client = make_client(server)
    for run in range(RUNS):
        since = floor_ms(dt.datetime.now(dt.UTC))
        changed = {change["lead_id"] for change in server.churn(14_000)}
        assert len(changed) >= 9_000, len(changed)
        delivered, requests = incremental_scan(server, client, since)
        assert sorted(delivered) == sorted(changed)
        bound = math.ceil(len(changed) / 100) + TARGET_EXTRA
        assert requests <= bound, f"run {run}: {requests} requests for {len(changed)} leads"
