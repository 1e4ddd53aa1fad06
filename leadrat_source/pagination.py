"""Walking a paginated list endpoint (GET /leads, GET /pipelines) to its end.

Cursor mode is preferred: cursors are keyset-based and stay stable while records change
during a scan, so every record is seen exactly once. A deployment that sends no
`meta.next_cursor` only supports page numbers; then pages are walked until
`page * per_page >= total` or a page comes back empty.
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


#: Fetches one page: `fetch(page=..., cursor=...)` with the scan's per_page and filters bound.
FetchPage = Callable[..., Page]


def iter_pages(fetch: FetchPage) -> Iterator[Page]:
    """Yield every page of a scan, in cursor mode if the server offers cursors.

    The first request names neither page nor cursor. If its answer has a `next_cursor`,
    the scan follows cursors until one is null; otherwise it counts pages.
    """
    page = fetch(page=None, cursor=None)
    yield page
    if page.next_cursor is not None:
        while page.next_cursor is not None:
            cursor = page.next_cursor
            page = fetch(page=None, cursor=cursor)
            if page.next_cursor == cursor:
                raise LeadRatError(
                    "The API returned the cursor it was given, which would loop forever; "
                    "this is a server bug, please report it.",
                    code="invalid_cursor",
                )
            if page.items:
                yield page
        return
    number = page.page or 1
    while not _is_last_numbered_page(page, number):
        number += 1
        page = fetch(page=number, cursor=None)
        if not page.items:
            return
        yield page


def _is_last_numbered_page(page: Page, number: int) -> bool:
    """Page mode's end: an empty page, or `number * per_page` reaching `meta.total`."""
    if not page.items:
        return True
    total = page.meta.get("total")
    per_page = page.meta.get("per_page") or len(page.items)
    if isinstance(total, int) and isinstance(per_page, int):
        return number * per_page >= total
    return False
