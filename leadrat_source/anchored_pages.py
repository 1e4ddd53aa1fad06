"""Page mode for the lead scan (a deployment without `next_cursor`), anchored so that
pages shifting under the scan lose nothing.

Page numbers are not stable while data changes: when a lead leaves the window, later
leads shift to earlier pages and one would be skipped. So each request asks for page 1 of
`[instant of the last lead delivered, end)` and drops what is not after that lead (keyset
on `updated_at`, `id`). Only a group of leads sharing one instant that fills more than a
page needs page numbers; if the window shrinks meanwhile (`meta.total` drops) the group is
read again from its page 1.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator

from leadrat_source.pagination import Page, is_last_page
from leadrat_source.scan_ranges import Keyset, Lead, keyset

#: `fetch(start, number)`: page `number` of the leads updated from `start` to the range's end.
FetchFrom = Callable[[dt.datetime, int], Page]


def read_anchored_pages(fetch: FetchFrom, per_page: int, after: Keyset) -> Iterator[list[Lead]]:
    """Every lead after `after` up to the range's end, page by page, each once."""
    number, anchored_total = 1, None
    while True:
        page = fetch(after[0], number)
        total = page.total
        if number > 1 and anchored_total is not None and total is not None \
                and total < anchored_total:
            number, anchored_total = 1, None
            continue
        fresh = [lead for lead in page.items if keyset(lead) > after]
        if fresh:
            yield fresh
        if is_last_page(page, number, per_page):
            return
        if fresh and keyset(fresh[-1])[0] > after[0]:
            number, anchored_total = 1, None
        else:
            number, anchored_total = number + 1, anchored_total or total
        if fresh:
            after = keyset(fresh[-1])
