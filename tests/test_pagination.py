"""Every reader of pages, the client's `iter_pages` and the lead scan's cursor loop,
refuses an API that gives back the cursor it was given, instead of looping forever.

The sandbox has no fault that repeats a cursor, so a real client's answers from the
sandbox are altered on their way back, as a buggy server would send them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest

from leadrat_source.errors import LeadRatError
from leadrat_source.lead_scan import LeadScanner, ScanSettings
from leadrat_source.pagination import Page, iter_pages
from leadrat_source.scan_ranges import ScanRange

#: far more pages than the 1,000 leads of the session's sandbox make at 100 a page
LOOPING = 50


class RepeatsCursors:
    """`client.leads`, except that every page asked for by cursor names that same cursor
    as the next one (a server bug); asking for more than `LOOPING` pages fails the test."""

    def __init__(self, leads: Any) -> None:
        self._leads = leads
        self.requests = 0

    def list_page(self, **request: Any) -> Page:
        self.requests += 1
        assert self.requests <= LOOPING, "the scan went on following a repeated cursor"
        page: Page = self._leads.list_page(**request)
        if request.get("cursor") is not None:
            page.next_cursor = page.meta["next_cursor"] = request["cursor"]
        return page


def test_iter_pages_refuses_a_repeated_cursor(sandbox: Any, make_client: Callable[..., Any],
                                             ) -> None:
    leads = RepeatsCursors(make_client(sandbox).leads)

    def fetch(*, page: int | None, cursor: str | None) -> Page:
        return leads.list_page(per_page=100, page=page, cursor=cursor)

    with pytest.raises(LeadRatError, match="returned the cursor it was given") as refused:
        list(iter_pages(fetch, per_page=100))
    assert refused.value.code == "invalid_cursor"
    assert leads.requests == 2


def test_the_lead_scan_refuses_a_repeated_cursor(sandbox: Any, make_client: Callable[..., Any],
                                                 ) -> None:
    leads = RepeatsCursors(make_client(sandbox).leads)
    scanner = LeadScanner(leads, ScanSettings(workers=1))
    window = ScanRange(dt.datetime(2000, 1, 1, tzinfo=dt.UTC), dt.datetime.now(dt.UTC))
    with pytest.raises(LeadRatError, match="returned the cursor it was given") as refused:
        list(scanner.scan(window, catch_up=False))
    assert refused.value.code == "invalid_cursor"
    assert leads.requests == 2
