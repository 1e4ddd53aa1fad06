"""Reading one range of a lead scan: its first page, then the rest by the cheapest way
the deployment allows.

The first page says how many leads the range holds (`meta.total`) and whether the API
has cursors. A range with many pages is handed to slices read concurrently
(`scan_slices`); otherwise one reader goes on, by cursor (keyset-based, stable while
data changes) or, without cursors, by anchored pages (`anchored_pages`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from leadrat_source.anchored_pages import read_anchored_pages
from leadrat_source.pagination import Page, follow_cursor, is_last_page
from leadrat_source.scan_ranges import Lead, ScanRange, keyset
from leadrat_source.scan_slices import Slicing, Split


class LeadPageReader(Protocol):
    """The slice of the client the scanner needs (`client.leads`)."""

    def list_page(self, *, per_page: int = ..., page: int | None = ..., cursor: str | None = ...,
                  **filters: Any) -> Page: ...


@dataclass(frozen=True)
class RangeReader:
    """Reads ranges of leads (`read`) through `leads` (`client.leads`), sorted by
    `updated_at`."""

    leads: LeadPageReader
    per_page: int
    include_deleted: bool
    slicing: Slicing
    #: told the `meta.total` of each range that is not a slice (for progress displays)
    expect: Callable[[int], None]

    def read(self, part: ScanRange, max_leads: int | None, pages_each: int | None = None,
             ) -> Iterator[list[Lead] | Split]:
        """The leads of `part`, page by page, or, when it holds many pages, its first page
        then a `Split` of the rest (cut to about `max_leads`). `pages_each`: `part` is a
        slice of a `Split` (its `pages_each`), cut again only when much fuller."""
        first = self._fetch(part.start, part.end)
        if pages_each is None and first.total is not None:
            self.expect(first.total)
        if items := part.unread(first.items):
            yield items
        if not first.items or is_last_page(first, 1, self.per_page):
            return
        last_seen = keyset(first.items[-1])
        if slices := self.slicing.split(last_seen, part.end, first.total, max_leads, pages_each,
                                        count_leads=self._count):
            yield slices
        elif first.next_cursor is not None:
            for page in follow_cursor(
                    lambda cursor: self._fetch(part.start, part.end, cursor=cursor),
                    first.next_cursor):
                if items := part.unread(page.items):
                    yield items
        else:
            yield from read_anchored_pages(
                lambda start, number: self._fetch(start, part.end, page=number),
                self.per_page, after=last_seen)

    def _count(self, since: dt.datetime, until: dt.datetime) -> int | None:
        """How many leads were updated in `[since, until)`: one page of one lead."""
        return self.leads.list_page(
            per_page=1, sort="updated_at", updated_since=since, updated_before=until,
            include_deleted=self.include_deleted,
        ).total

    def _fetch(self, since: dt.datetime, until: dt.datetime, *, page: int | None = None,
               cursor: str | None = None) -> Page:
        """A page of the leads updated in `[since, until)`, oldest first."""
        return self.leads.list_page(
            per_page=self.per_page, page=page, cursor=cursor, sort="updated_at",
            updated_since=since, updated_before=until, include_deleted=self.include_deleted,
        )
