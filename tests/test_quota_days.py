"""A first load bigger than a day's quota: each run uses the whole day's cap, no lead page
is read twice over the days, and the warehouse is exact for what was read after every run.

Days are played with the sandbox's `next_day`; each run is a new client, as a new cron
or Airflow run would be. Counts come from the sandbox's own stats, not from our client.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import pytest
from warehouse import assert_equal_to_sandbox

from leadrat_source.errors import QuotaExhausted
from leadrat_source.timestamps import parse_timestamp

LEADS = 6_000
DAILY_CAP = 25
WINDOW_LIMIT, WINDOW_SECONDS = 10, 2
#: Requests of a run that are not lead pages: `pipelines` and the three analytics reports.
OTHER_REQUESTS_PER_RUN = 4
#: Lead pages of a run beyond the pages of leads: the first page of its new window (what
#: changed since the last run; it holds the unread range of the last slice, if any). Once
#: per load: the last, partial page of each time slice (one per 20 pages: 3 here), and the
#: closing catch-up pass (2).
LEAD_PAGES_PER_RUN = 1
LEAD_PAGES_ONCE = 3 + 2
LEAD_LIST = "GET /leads"


def _served(stats: dict[str, Any]) -> tuple[int, int]:
    """Requests the sandbox served (not refused), and lead list pages among them (a refused
    request is taken for a lead page, so that it does not hide a lead page read twice)."""
    served = stats["requests"] - stats["rate_limited"]
    return served, stats["by_route"].get(LEAD_LIST, 0) - stats["rate_limited"]


def _assert_cursor_before_every_unread_lead(warehouse: Any) -> None:
    """The incremental cursor (dlt's state) stands at or before the oldest lead that is not
    in the warehouse yet: the concurrent slices left holes above it, and a cursor past one
    would tell `leadrat status` and the Airflow DAG that those leads were loaded."""
    stored = {row["id"] for row in warehouse.rows("leads")}
    unread = [parse_timestamp(lead["updated_at"]) for lead in warehouse.server.export_leads()
              if lead["id"] not in stored]
    state = warehouse.pipeline().state["sources"]["leadrat"]["resources"]["leads"]
    cursor = parse_timestamp(state["incremental"]["updated_at"]["last_value"])
    assert unread and cursor <= min(unread), f"cursor {cursor} is past unread {min(unread)}"


@pytest.mark.parametrize("cursor", [True, False], ids=["cursor", "page-only"])
def test_a_first_load_over_several_days_reads_each_page_once_and_uses_each_days_cap(
    make_sandbox: Callable[..., Any], make_warehouse: Callable[..., Any],
    make_client: Callable[..., Any], cursor: bool,
) -> None:
    server = make_sandbox(leads=LEADS, seed=71, rate_limit=WINDOW_LIMIT,
                          window_seconds=WINDOW_SECONDS, daily_cap=DAILY_CAP, cursor=cursor)
    warehouse = make_warehouse(server)
    leads = len(server.export_leads())
    ideal_pages = math.ceil(leads / 100)
    days, stored, figures = 0, 0, []
    while True:
        days += 1
        assert days <= 2 * math.ceil(ideal_pages / DAILY_CAP) + 2, "the load does not end"
        # each day's run is a new process: a new client, and a new day at the sandbox
        warehouse.client = make_client(server, api_key=server.read_key)
        served_before, pages_before = _served(server.stats())
        try:
            warehouse.load()
            finished = True
        except QuotaExhausted:
            finished = False
        served_after, pages_after = _served(server.stats())
        used = served_after - served_before
        # a run's first requests go out before the pacer has heard from the API
        assert server.stats()["rate_limited"] <= days, "the pacer let the API refuse requests"
        # exact for what was read, right after the run that was cut short
        assert_equal_to_sandbox(warehouse, read_so_far=not finished)
        now_stored = len(warehouse.rows("leads"))
        if not finished:
            _assert_cursor_before_every_unread_lead(warehouse)
        figures.append((days, used, pages_after - pages_before, now_stored))
        if finished:
            break
        # a day's cap is a total: a run ends only when it is spent
        assert used == DAILY_CAP, f"day {days} used {used} of {DAILY_CAP} requests"
        assert now_stored > stored, f"day {days} saved nothing"
        stored = now_stored
        server.next_day()
        time.sleep(WINDOW_SECONDS)  # days are hours apart: the next run starts a new window
    assert_equal_to_sandbox(warehouse)
    pages = _served(server.stats())[1]
    print(f"\n{'cursor' if cursor else 'page-only'}: {leads} leads, cap {DAILY_CAP}/day, "
          f"{days} days, {pages} lead pages (ideal {ideal_pages}); "
          f"(day, requests, lead pages, leads stored): {figures}")
    assert pages <= ideal_pages + days * LEAD_PAGES_PER_RUN + LEAD_PAGES_ONCE, (
        f"{pages} lead pages over {days} days: some were read twice")
    lead_pages_per_day = DAILY_CAP - OTHER_REQUESTS_PER_RUN - LEAD_PAGES_PER_RUN
    assert days <= math.ceil((ideal_pages + LEAD_PAGES_ONCE) / lead_pages_per_day), figures


def test_the_days_last_requests_are_used_not_spread_until_midnight(
    make_sandbox: Callable[..., Any], make_client: Callable[..., Any],
) -> None:
    """12 requests left for the day on a Free plan (30 a minute): all 12 go, none refused."""
    server = make_sandbox(leads=2_000, plan="free", daily_cap=12)
    client = make_client(server)
    with pytest.raises(QuotaExhausted) as caught:
        for page in client.leads.iter_pages(per_page=10):
            assert page.items
    stats = server.stats()
    assert stats["requests"] == 12 and stats["rate_limited"] == 0, stats
    assert caught.value.resets_at is not None and caught.value.resets_at.hour == 0
