"""The lead scan's order of reading. Its slices are equal lengths of time, but a CRM's
recent months hold more updates: read in time order, the fullest slice would start last
and end the scan alone, one cursor far below the budget (the quota benchmark lost ~3 s
of 45 so). So the newest slices start first, and a slice much fuller than it was cut to
be is cut again, its parts read before the slices not started yet.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from leadrat_source.lead_scan import LeadScanner, ScanSettings
from leadrat_source.pagination import Page
from leadrat_source.scan_ranges import ScanRange


class Recording:
    """`client.leads`, noting the `[since, before)` of each first page asked for."""

    def __init__(self, leads: Any) -> None:
        self._leads = leads
        self.first_pages: list[tuple[dt.datetime, dt.datetime]] = []

    def list_page(self, **request: Any) -> Page:
        if request.get("cursor") is None:
            self.first_pages.append((request["updated_since"], request["updated_before"]))
        page: Page = self._leads.list_page(**request)
        return page


def test_the_newest_slices_start_first_and_a_much_fuller_one_is_cut_again(
    make_sandbox: Callable[..., Any], make_client: Callable[..., Any]
) -> None:
    server = make_sandbox(leads=4_000, rate_limit=0)
    leads = Recording(make_client(server).leads)
    start = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
    end = dt.datetime.now(dt.UTC)
    # 4 readers, 8 slices of ~5 pages: the newest holds about twice that (cut again)
    scanner = LeadScanner(leads, ScanSettings(workers=4, pages_per_slice=2))
    read = [lead["id"] for page in scanner.scan(ScanRange(start, end), catch_up=False)
            for lead in page]
    assert len(read) == len(set(read)) == 4_000
    slices = leads.first_pages[1:]  # after the window's own first page, in the order asked
    newest = next(part for part in slices if part[1] == end)
    assert slices.index(newest) < 4, "the newest slice was not among the first started"
    parts = [part for part in slices if part != newest and part[0] >= newest[0]]
    assert len(parts) >= 2, "the fullest slice was not cut again"
    first_level = sorted(part for part in slices if part not in parts)
    assert len(first_level) == 8
    oldest = [slices.index(part) for part in first_level[:4]]
    assert max(slices.index(part) for part in parts) < min(oldest), (
        "the fuller slice's parts waited behind older slices")
