"""Every reader of pages, the client's `iter_pages` and the lead scan's cursor loop,
refuses an API that sends a cursor already followed in the same loop, instead of looping
forever: the cursor it was given (A -> A) or an earlier one (A -> B -> ... -> A).

Over real HTTP, the sandbox's `repeat_cursor_rate` fault makes every page asked for by
cursor name that same cursor as its next one, and its `cursor_cycle_rate` fault makes
the last page of a scan name the scan's first cursor instead of none; the sandbox counts
the pages it served. Its daily cap of `LOOPING` requests ends a reader that follows the
cursor anyway (the client stops with `QuotaExhausted`, the scan ends early at the
quota), so a broken guard fails these tests instead of hanging them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from served import served

from leadrat_source.errors import LeadRatError
from leadrat_source.lead_scan import LeadScanner, ScanSettings
from leadrat_source.sandbox import Sandbox
from leadrat_source.scan_ranges import ScanRange

#: far more pages than the sandbox's 300 leads make at 100 (or `SMALL_PAGE`) a page
LOOPING = 20
#: a page size that cuts the 300 leads into six pages: a first page and five by cursor,
#: so the cycle the `cursor_cycle_rate` fault makes is five cursors long
SMALL_PAGE = 50
REFUSED = "a cursor it had already sent in this scan"


@pytest.fixture
def repeating(make_sandbox: Callable[..., Sandbox]) -> Sandbox:
    """A sandbox whose every page asked for by cursor gives that cursor back as the next."""
    server = make_sandbox(rate_limit=0, daily_cap=LOOPING)
    server.set_faults(repeat_cursor_rate=1.0)
    return server


@pytest.fixture
def cycling(make_sandbox: Callable[..., Sandbox]) -> Sandbox:
    """A sandbox whose scans start over: each one's last page names its first cursor."""
    server = make_sandbox(rate_limit=0, daily_cap=LOOPING)
    server.set_faults(cursor_cycle_rate=1.0)
    return server


def test_iter_pages_refuses_a_repeated_cursor(repeating: Sandbox,
                                             make_client: Callable[..., Any]) -> None:
    client = make_client(repeating)
    with pytest.raises(LeadRatError, match=REFUSED) as refused:
        list(client.leads.iter_pages(per_page=100))
    assert refused.value.code == "invalid_cursor"
    assert served(repeating)["pages"] == 2


def test_the_lead_scan_refuses_a_repeated_cursor(repeating: Sandbox,
                                                 make_client: Callable[..., Any]) -> None:
    scanner = LeadScanner(make_client(repeating).leads, ScanSettings(workers=1))
    window = ScanRange(dt.datetime(2000, 1, 1, tzinfo=dt.UTC), dt.datetime.now(dt.UTC))
    with pytest.raises(LeadRatError, match=REFUSED) as refused:
        list(scanner.scan(window, catch_up=False))
    assert refused.value.code == "invalid_cursor"
    assert served(repeating)["pages"] == 2


def test_iter_pages_refuses_a_cursor_cycle(cycling: Sandbox,
                                           make_client: Callable[..., Any]) -> None:
    client = make_client(cycling)
    with pytest.raises(LeadRatError, match=REFUSED) as refused:
        list(client.leads.iter_pages(per_page=SMALL_PAGE))
    assert refused.value.code == "invalid_cursor"
    assert served(cycling) == {"requests": 6, "pages": 6, "429s": 0, "faults": 1}


def test_the_lead_scan_refuses_a_cursor_cycle(cycling: Sandbox,
                                              make_client: Callable[..., Any]) -> None:
    scanner = LeadScanner(make_client(cycling).leads, ScanSettings(per_page=SMALL_PAGE,
                                                                   workers=1))
    window = ScanRange(dt.datetime(2000, 1, 1, tzinfo=dt.UTC), dt.datetime.now(dt.UTC))
    with pytest.raises(LeadRatError, match=REFUSED) as refused:
        list(scanner.scan(window, catch_up=False))
    assert refused.value.code == "invalid_cursor"
    assert served(cycling) == {"requests": 6, "pages": 6, "429s": 0, "faults": 1}
