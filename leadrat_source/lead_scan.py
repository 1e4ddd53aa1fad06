"""Read every lead updated in a time window exactly once, fast and without gaps.

Why not just follow one cursor: with 200 ms of API latency one sequential cursor makes
5 requests/s, far below a Pro plan's budget. So a large window is cut into time slices
that are read concurrently, each with its own cursor, under the client's shared pacer.

Guarantees (given the contract):
- The window is `[since, until)` on `updated_at` with `until` fixed before the scan
  starts, so a lead updated during the scan leaves the window instead of showing up
  twice; the next incremental run picks up its new version.
- Cursor mode is keyset-based, hence stable while data changes.
- Page mode (a deployment without `next_cursor`) is not: when a lead leaves the window,
  later leads shift to earlier pages and one would be skipped. The scanner watches
  `meta.total` (it can only shrink inside a fixed window) and, when it shrinks, restarts
  from the last `updated_at` it saw, skipping the ids it already has at that instant.
"""

from __future__ import annotations

import datetime as dt
import itertools
import queue
import threading
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from leadrat_source.errors import QuotaExhausted
from leadrat_source.lead_tables import parse_timestamp

Lead = dict[str, Any]


class LeadPageReader(Protocol):
    """The slice of the client the scanner needs (`client.leads`)."""

    def list_page(self, *, per_page: int = ..., page: int | None = ..., cursor: str | None = ...,
                  **filters: Any) -> Any: ...


@dataclass(frozen=True)
class ScanSettings:
    per_page: int = 100
    #: Slices read at once; the pacer keeps them within the rate budget.
    workers: int = 4
    #: Slicing costs about one request per slice (its last, partial page), so a window is
    #: cut into at most one slice per this many pages, and one with fewer pages than two
    #: slices' worth is read by one cursor.
    pages_per_slice: int = 10
    include_deleted: bool = True
    #: Pages buffered between the reading threads and dlt; bounds memory.
    buffered_pages: int = 32
    #: A window holding more leads than this is read only up to an instant chosen so
    #: that about this many fall before it (`scanned_until`); None reads it all. This
    #: lets a huge first load run as several loads of bounded size.
    max_leads: int | None = None


@dataclass
class ScanStats:
    pages: int = 0
    leads: int = 0
    slices: int = 0
    restarts: int = 0
    expected: int | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add_page(self, leads: int) -> None:
        with self._lock:
            self.pages += 1
            self.leads += leads


Keyset = tuple[dt.datetime, str]


def _keyset(lead: Mapping[str, Any]) -> Keyset:
    return parse_timestamp(lead["updated_at"]), lead["id"]


def _floor_ms(instant: dt.datetime) -> dt.datetime:
    """The instant at the API's millisecond precision."""
    return instant.replace(microsecond=instant.microsecond // 1000 * 1000)


def split_window(
    start: dt.datetime, end: dt.datetime, parts: int
) -> list[tuple[dt.datetime, dt.datetime]]:
    """Cut `[start, end)` into `parts` adjacent windows of equal length (millisecond edges)."""
    if parts <= 1 or end <= start:
        return [(start, end)]
    step = (end - start) / parts
    edges = [start, *(_floor_ms(start + step * i) for i in range(1, parts)), end]
    return [(a, b) for a, b in itertools.pairwise(edges) if a < b]


class LeadScanner:
    """Yields pages (lists of lead dicts) of every lead with `since <= updated_at < until`."""

    def __init__(self, leads_api: LeadPageReader, settings: ScanSettings | None = None) -> None:
        self._api = leads_api
        self.settings = settings or ScanSettings()
        self.stats = ScanStats()
        self.stopped_by: QuotaExhausted | None = None
        #: the end of the part of the window that was read (see ScanSettings.max_leads)
        self.scanned_until: dt.datetime | None = None
        #: slice id -> instant before which that slice has delivered everything
        self._open: dict[int, dt.datetime] = {}

    def _filters(self, since: dt.datetime, until: dt.datetime) -> dict[str, Any]:
        return {
            "sort": "updated_at",
            "updated_since": since,
            "updated_before": until,
            "include_deleted": self.settings.include_deleted,
        }

    def scan(self, since: dt.datetime, until: dt.datetime) -> Iterator[list[Lead]]:
        """Every lead of the window, page by page.

        When the daily quota runs out the scan ends early instead of failing, with
        `stopped_by` set and `resume_point` the instant before which every lead has been
        delivered: a caller that moves its cursor there resumes without a gap.
        """
        self.stopped_by = None
        self.scanned_until = until
        self._open = {0: since}
        try:
            yield from self._scan(since, until)
        except QuotaExhausted as error:
            self.stopped_by = error

    @property
    def resume_point(self) -> dt.datetime | None:
        """Every lead updated before this instant was delivered (None: all were)."""
        return min(self._open.values(), default=None)

    def _deliver(self, slice_id: int, items: list[Lead]) -> list[Lead]:
        """Note that a slice's leads up to the last of `items` have been handed on."""
        self._open[slice_id] = parse_timestamp(items[-1]["updated_at"])
        return items

    def _scan(self, since: dt.datetime, until: dt.datetime) -> Iterator[list[Lead]]:
        first = self._api.list_page(per_page=self.settings.per_page, **self._filters(since, until))
        total = first.meta.get("total")
        self.stats.expected = total if isinstance(total, int) else None
        self.stats.add_page(len(first.items))
        cursor_mode = "next_cursor" in first.meta
        last_page = first.next_cursor is None if cursor_mode else (
            len(first.items) < self.settings.per_page
        )
        if not first.items or last_page:
            if first.items:
                yield self._deliver(0, first.items)
            del self._open[0]
            return
        yield self._deliver(0, first.items)
        pages_left = (total or 0) // self.settings.per_page
        slice_count = min(self.settings.workers * 2, pages_left // self.settings.pages_per_slice)
        if slice_count < 2 or self.settings.workers <= 1:
            if cursor_mode:
                rest = self._follow_cursor(first.next_cursor, since, until)
            else:
                rest = self._scan_pages(since, until, after=_keyset(first.items[-1]))
            for items in rest:
                yield self._deliver(0, items)
            del self._open[0]
            return
        # Re-window the rest: it starts at the last lead of the first page; leads at that
        # very instant that the first page already had are skipped by keyset.
        last_seen = _keyset(first.items[-1])
        if self.settings.max_leads and total and total > self.settings.max_leads:
            # assume leads spread evenly in time; a skewed spread gives a smaller or larger
            # part, never a wrong one
            share = (until - last_seen[0]) * (self.settings.max_leads / total)
            until = self.scanned_until = max(
                last_seen[0] + dt.timedelta(milliseconds=1), _floor_ms(last_seen[0] + share)
            )
            slice_count = min(slice_count, max(2, self.settings.max_leads // (
                self.settings.per_page * self.settings.pages_per_slice)))
        slices = split_window(last_seen[0], until, slice_count)
        self.stats.slices = len(slices)
        del self._open[0]
        self._open.update({index: start for index, (start, _) in enumerate(slices, 1)})
        yield from self._scan_concurrently(slices, last_seen, cursor_mode)

    def _follow_cursor(self, cursor: str | None, since: dt.datetime, until: dt.datetime,
                       ) -> Iterator[list[Lead]]:
        while cursor is not None:
            page = self._api.list_page(
                per_page=self.settings.per_page, cursor=cursor, **self._filters(since, until)
            )
            self.stats.add_page(len(page.items))
            if page.items:
                yield page.items
            cursor = page.next_cursor

    def _scan_slice(self, since: dt.datetime, until: dt.datetime, after: Keyset,
                    cursor_mode: bool) -> Iterator[list[Lead]]:
        """One slice, dropping leads at or before `after` (the first page's last lead)."""
        if not cursor_mode:
            yield from self._scan_pages(since, until, after if after[0] >= since else None)
            return
        first = self._api.list_page(per_page=self.settings.per_page, **self._filters(since, until))
        self.stats.add_page(len(first.items))
        pages = itertools.chain([first.items], self._follow_cursor(first.next_cursor, since, until))
        for items in pages:
            if items and _keyset(items[0]) <= after:
                items = [lead for lead in items if _keyset(lead) > after]
            if items:
                yield items

    def _scan_pages(self, since: dt.datetime, until: dt.datetime,
                    after: Keyset | None = None) -> Iterator[list[Lead]]:
        """Page mode, anchored at the last lead delivered so that shifting pages lose nothing.

        Each request asks for page 1 of `[instant of the last lead seen, until)` and drops
        what is not after that lead (keyset on `updated_at`, `id`). Only a group of leads
        sharing one instant that fills more than a page needs page numbers; if the window
        shrinks meanwhile (`meta.total` drops) the group is read again from its page 1.
        """
        page_number, anchored_total = 1, None
        while True:
            start = after[0] if after else since
            page = self._api.list_page(
                per_page=self.settings.per_page, page=page_number, **self._filters(start, until)
            )
            self.stats.add_page(len(page.items))
            total = page.meta.get("total")
            total = total if isinstance(total, int) else None
            if page_number > 1 and anchored_total is not None and total is not None \
                    and total < anchored_total:
                self.stats.restarts += 1
                page_number, anchored_total = 1, None
                continue
            fresh = [lead for lead in page.items if after is None or _keyset(lead) > after]
            if fresh:
                yield fresh
            is_last = (
                len(page.items) < self.settings.per_page
                or (total is not None and page_number * self.settings.per_page >= total)
            )
            if is_last:
                return
            if fresh and (after is None or _keyset(fresh[-1])[0] > after[0]):
                page_number, anchored_total = 1, None
            else:
                page_number, anchored_total = page_number + 1, anchored_total or total
            if fresh:
                after = _keyset(fresh[-1])

    def _scan_concurrently(self, slices: list[tuple[dt.datetime, dt.datetime]],
                           after: Keyset, cursor_mode: bool,
                           ) -> Iterator[list[Lead]]:
        # (slice id, leads | the error that ended the slice | None when it is done)
        pages: queue.Queue[tuple[int, list[Lead] | BaseException | None]] = queue.Queue(
            self.settings.buffered_pages
        )
        stop = threading.Event()

        def put(item: tuple[int, list[Lead] | BaseException | None]) -> None:
            while not stop.is_set():
                try:
                    pages.put(item, timeout=0.2)
                    return
                except queue.Full:
                    continue

        def read_slice(slice_id: int, window: tuple[dt.datetime, dt.datetime]) -> None:
            try:
                for items in self._scan_slice(window[0], window[1], after, cursor_mode):
                    if stop.is_set():
                        return
                    put((slice_id, items))
                put((slice_id, None))
            except BaseException as error:  # noqa: BLE001 - handed to the consuming thread, raised there
                put((slice_id, error))

        executor = ThreadPoolExecutor(self.settings.workers, thread_name_prefix="leadrat-scan")
        interrupted = False
        try:
            for slice_id, window in enumerate(slices, 1):
                executor.submit(read_slice, slice_id, window)
            while self._open:
                slice_id, item = pages.get()
                if item is None:
                    del self._open[slice_id]
                elif isinstance(item, BaseException):
                    raise item
                else:
                    yield self._deliver(slice_id, item)
        except KeyboardInterrupt:
            interrupted = True
            raise
        finally:
            stop.set()
            # Ctrl-C does not wait for readers held back by the rate limit (up to a window)
            executor.shutdown(wait=not interrupted, cancel_futures=True)
