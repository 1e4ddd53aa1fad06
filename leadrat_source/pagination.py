"""Walking a paginated list endpoint (GET /leads, GET /pipelines) to its end.

Cursor mode is preferred: cursors are keyset-based and stay stable while records change
during a scan, so every record is seen exactly once. A deployment that sends no
`meta.next_cursor` only supports page numbers. When a page is the last one
(`is_last_page`) and how a cursor is followed, refusing one seen before in the same
loop (`follow_cursor`), are decided here once, for every reader of pages: the client's
`iter_pages` and the lead scan.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from leadrat_source.errors import LeadRatError


@dataclass
class Page:
    """One list response: its `items`, raw `meta`, the `next_cursor` (None on the last
    cursor page or in page mode) and the 1-based `page` number (None in cursor mode)."""

    items: list[dict[str, Any]]
    meta: dict[str, Any]
    next_cursor: str | None
    page: int | None

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> Page:
        meta = body.get("meta") or {}
        cursor = meta.get("next_cursor")
        page = meta.get("page")
        return cls(
            items=list(body.get("data") or []),
            meta=meta,
            next_cursor=cursor if isinstance(cursor, str) and cursor else None,
            page=page if isinstance(page, int) else None,
        )

    @property
    def total(self) -> int | None:
        """`meta.total`: how many records the scan's filters match (None if not sent)."""
        total = self.meta.get("total")
        return total if isinstance(total, int) else None


#: Fetches one page: `fetch(page=..., cursor=...)` with the scan's per_page and filters bound.
FetchPage = Callable[..., Page]


def is_last_page(page: Page, number: int, per_page: int) -> bool:
    """Whether `page` (page `number` of a scan asking for `per_page` records) ends the scan.

    In cursor mode (the deployment sends `meta.next_cursor`) the last page has none. In
    page mode it is a page shorter than `per_page` (an empty one too), or the one where
    `number * per_page` reaches `meta.total`.
    """
    if "next_cursor" in page.meta:
        return page.next_cursor is None
    total = page.total
    return len(page.items) < per_page or (total is not None and number * per_page >= total)


def follow_cursor(fetch: Callable[[str], Page], cursor: str | None) -> Iterator[Page]:
    """The non-empty pages from `cursor` on, each fetched with the cursor the one before
    it gave (`fetch(cursor)`), until a page gives none.

    A page that gives a cursor this loop has already fetched with (its own, A -> A, or an
    earlier one, A -> B -> A) would make the scan loop forever: that is refused with
    `LeadRatError` (code `invalid_cursor`). The loop remembers every cursor it fetched
    with: a loop reads one slice, at most a few thousand pages, and a cursor is a short
    string, so the set stays well under a megabyte, while remembering fewer would let a
    longer cycle through.
    """
    fetched: set[str] = set()
    while cursor is not None:
        fetched.add(cursor)
        page = fetch(cursor)
        if page.next_cursor in fetched:
            raise LeadRatError(
                f"The API sent a cursor it had already sent in this scan (after {len(fetched)} "
                "page(s) read by cursor), so following it would read the same pages forever. "
                "This is a LeadRat server bug, not a problem with your settings: please "
                "report it to LeadRat support and run the load again later.",
                code="invalid_cursor",
            )
        if page.items:
            yield page
        cursor = page.next_cursor


def iter_pages(fetch: FetchPage, per_page: int) -> Iterator[Page]:
    """Yield every page of a scan, in cursor mode if the server offers cursors.

    The first request names neither page nor cursor. If its answer has a `next_cursor`,
    the scan follows cursors until one is null; otherwise it counts pages up to the last.
    """
    page = fetch(page=None, cursor=None)
    yield page
    if page.next_cursor is not None:
        yield from follow_cursor(lambda cursor: fetch(page=None, cursor=cursor), page.next_cursor)
        return
    number = page.page or 1
    while not is_last_page(page, number, per_page):
        number += 1
        page = fetch(page=number, cursor=None)
        if not page.items:
            return
        yield page
