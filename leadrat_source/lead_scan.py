"""Read every lead updated in a time window exactly once, fast, without gaps, and resumably.

Why not just follow one cursor: with 200 ms of API latency one sequential cursor makes
5 requests/s, far below a Pro plan's budget. So a large window is cut into time slices
that are read concurrently, each with its own cursor, under the client's shared pacer.

Guarantees (given the contract):
- The window is `[since, until)` on `updated_at` with `until` fixed before the scan
  starts, so a lead updated during the scan leaves the window instead of showing up
  twice. Leads that leave it before their slice reads them are not lost: when the window
  is done, a catch-up pass reads `[until, now)`, which holds every lead that moved, and
  repeats over what moved during that pass until a pass brings no lead the run had not
  read (at most `catch_up_passes`). A lead the run already delivered is not delivered
  again (one version per lead and load); `earliest_skipped` tells the caller where its
  newer version waits for the next run.
- Cursor mode is keyset-based, hence stable while data changes.
- Page mode (a deployment without `next_cursor`) is not: when a lead leaves the window,
  later leads shift to earlier pages and one would be skipped. The scanner anchors each
  request at the last lead it delivered (see `_scan_pages`).
- Every slice knows how far it got (the keyset of its last lead delivered). When the
  daily quota runs out, every slice runs until it is refused itself, so every page the
  API served is delivered, and `unread` lists the ranges still to read: a later run reads
  only those (`resumed`), never a page twice.
"""

from __future__ import annotations

import datetime as dt
import itertools
import queue
import threading
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from leadrat_source.errors import QuotaExhausted
from leadrat_source.timestamps import parse_timestamp

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
    #: that about this many fall before it (`read_until`, `partial`); None reads it all.
    #: This lets a huge first load run as several loads of bounded size.
    max_leads: int | None = None
    #: Catch-up passes over what moved while the window was read (see the module doc).
    catch_up_passes: int = 4


@dataclass
class ScanStats:
    """The running scan's counters, for progress displays: leads delivered so far, and
    about how many the window holds (from the first pages' `meta.total`)."""

    leads: int = 0
    expected: int | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def expect(self, leads: int) -> None:
        """A range's first page says it holds about `leads` leads (for progress displays)."""
        with self._lock:
            self.expected = (self.expected or 0) + leads


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


@dataclass(frozen=True)
class ScanRange:
    """The leads with `start <= updated_at < end`, past the lead `after_id` at `start`.

    `after_id` set means a slice already delivered the leads at `start` up to that id
    (ties at one instant are ordered by id): a resumed range starts right after them.
    """

    start: dt.datetime
    end: dt.datetime
    after_id: str | None = None

    def unread(self, leads: list[Lead]) -> list[Lead]:
        """`leads` without those at or before the range's keyset start."""
        if self.after_id is None or not leads or _keyset(leads[0]) > (self.start, self.after_id):
            return leads
        after = (self.start, self.after_id)
        return [lead for lead in leads if _keyset(lead) > after]

    def past(self, lead: Lead) -> ScanRange:
        """What is left of the range once `lead` (and all before it) is delivered."""
        instant, lead_id = _keyset(lead)
        return replace(self, start=instant, after_id=lead_id)

    def as_state(self) -> dict[str, Any]:
        return {"start": self.start.isoformat(), "end": self.end.isoformat(),
                "after_id": self.after_id}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> ScanRange:
        return cls(parse_timestamp(state["start"]), parse_timestamp(state["end"]),
                   state.get("after_id"))


@dataclass(frozen=True)
class ScanProgress:
    """What a scan stopped by the quota leaves for the next run (kept in dlt's state).

    Every lead updated before `read_until` was delivered, except those in `unread`.
    """

    read_until: dt.datetime
    unread: tuple[ScanRange, ...]

    @property
    def resume_point(self) -> dt.datetime:
        """Every lead updated before this instant was delivered: the gap-free cursor."""
        return min((part.start for part in self.unread), default=self.read_until)

    def plan(self, fresh_start: dt.datetime, until: dt.datetime,
             ) -> tuple[ScanRange, list[ScanRange]]:
        """The next run's window and the unread ranges to read before it.

        The window is `[fresh_start, until)`, where what is new begins; unread ranges
        inside it are dropped (it holds them), and the one that holds `fresh_start` is read
        as the start of the window, so that one range costs no extra partial page.
        """
        window, resumed = ScanRange(fresh_start, until), []
        for part in self.unread:
            if part.end <= fresh_start:
                resumed.append(part)
            elif part.start < fresh_start:
                window = replace(part, end=until)
        return window, resumed

    def as_state(self) -> dict[str, Any]:
        return {"read_until": self.read_until.isoformat(),
                "unread": [part.as_state() for part in self.unread]}

    @classmethod
    def from_state(cls, state: Mapping[str, Any] | None) -> ScanProgress | None:
        if not state:
            return None
        return cls(parse_timestamp(state["read_until"]),
                   tuple(ScanRange.from_state(part) for part in state["unread"]))


@dataclass(frozen=True)
class _Split:
    """A range's worker hands the rest of its range to new slices (read concurrently)."""

    slices: list[ScanRange]
    #: the end of the window once cut to `max_leads` (None: not cut)
    cut_at: dt.datetime | None = None


#: A worker's message: a page of leads, a split, the error that ended it, or None when done.
_Message = list[Lead] | _Split | BaseException | None


class LeadScanner:
    """Yields pages (lists of lead dicts) of every lead of a window (`ScanRange`)."""

    def __init__(self, leads_api: LeadPageReader, settings: ScanSettings | None = None) -> None:
        self._api = leads_api
        self.settings = settings or ScanSettings()
        self.stats = ScanStats()
        self.stopped_by: QuotaExhausted | None = None
        #: every lead updated before this was read, except those in `unread`
        self.read_until: dt.datetime | None = None
        #: the window was cut to `max_leads`: a later run goes on from `read_until`
        self.partial = False
        #: the earliest `updated_at` of a newer version a catch-up pass did not deliver
        self.earliest_skipped: dt.datetime | None = None
        #: ranges of slices stopped by the quota
        self.unread: list[ScanRange] = []
        self._open: dict[int, ScanRange] = {}
        self._delivered: set[str] = set()

    def _filters(self, since: dt.datetime, until: dt.datetime) -> dict[str, Any]:
        return {
            "sort": "updated_at",
            "updated_since": since,
            "updated_before": until,
            "include_deleted": self.settings.include_deleted,
        }

    @property
    def progress(self) -> ScanProgress | None:
        """What is left to read after a stop (None: the window was read to its end)."""
        if self.read_until is None or not self.unread:
            return None
        return ScanProgress(self.read_until, tuple(sorted(self.unread, key=lambda r: r.start)))

    def scan(self, window: ScanRange, resumed: Sequence[ScanRange] = (),
             catch_up: bool = True) -> Iterator[list[Lead]]:
        """Every lead of the window and of the `resumed` ranges, page by page.

        When the daily quota runs out the scan ends early instead of failing, with
        `stopped_by` set and `progress` saying what is left; no catch-up pass runs then
        (what moved is above `read_until`, where the next run starts anyway).
        """
        self.stopped_by, self.unread, self.partial = None, [], False
        self.read_until = start = window.end
        yield from self._read([*((part, None) for part in resumed),
                               (window, self.settings.max_leads)])
        if self.stopped_by is not None or self.partial or not catch_up:
            return
        for _ in range(self.settings.catch_up_passes):
            end = _floor_ms(dt.datetime.now(dt.UTC))
            if end <= start:
                break
            delivered = len(self._delivered)
            yield from self._read([(ScanRange(start, end), None)])
            self.read_until = start = end
            if self.stopped_by is not None or len(self._delivered) == delivered:
                break

    def _read(self, ranges: list[tuple[ScanRange, int | None]]) -> Iterator[list[Lead]]:
        """Read `(range, max_leads)` pairs concurrently; a range with many leads is split."""
        messages: queue.Queue[tuple[int, _Message]] = queue.Queue(self.settings.buffered_pages)
        stop = threading.Event()
        slice_ids = itertools.count()

        def put(item: tuple[int, _Message]) -> None:
            while not stop.is_set():
                try:
                    messages.put(item, timeout=0.2)
                    return
                except queue.Full:
                    continue

        def read(slice_id: int, part: ScanRange, max_leads: int | None, split: bool) -> None:
            try:
                for message in self._read_range(part, max_leads, split):
                    if stop.is_set():
                        return
                    put((slice_id, message))
                put((slice_id, None))
            except BaseException as error:  # noqa: BLE001 - handed to the consuming thread
                put((slice_id, error))

        executor = ThreadPoolExecutor(self.settings.workers, thread_name_prefix="leadrat-scan")

        def start(part: ScanRange, max_leads: int | None, split: bool) -> None:
            slice_id = next(slice_ids)
            self._open[slice_id] = part
            executor.submit(read, slice_id, part, max_leads, split)

        interrupted = False
        try:
            for part, max_leads in ranges:
                start(part, max_leads, split=True)
            while self._open:
                slice_id, message = messages.get()
                if message is None:
                    del self._open[slice_id]
                elif isinstance(message, _Split):
                    # the slices take over the range; its worker's None follows
                    if message.cut_at is not None:
                        self.read_until, self.partial = message.cut_at, True
                    for part in message.slices:
                        start(part, None, split=False)
                elif isinstance(message, QuotaExhausted):
                    # the other slices go on until they are refused too: what the API
                    # serves is paid for, so it is delivered
                    self.stopped_by = message
                    self.unread.append(self._open.pop(slice_id))
                elif isinstance(message, BaseException):
                    raise message
                else:
                    self._open[slice_id] = self._open[slice_id].past(message[-1])
                    if fresh := self._first_delivery(message):
                        yield fresh
        except KeyboardInterrupt:
            interrupted = True
            raise
        finally:
            stop.set()
            # Ctrl-C does not wait for readers held back by the rate limit (up to a window)
            executor.shutdown(wait=not interrupted, cancel_futures=True)
            self._open.clear()

    def _first_delivery(self, leads: list[Lead]) -> list[Lead]:
        """The leads this run has not delivered yet; a newer version of one it has is left
        for the next run (one version per lead and load), noted in `earliest_skipped`."""
        fresh = []
        for lead in leads:
            if lead["id"] in self._delivered:
                instant = parse_timestamp(lead["updated_at"])
                if self.earliest_skipped is None or instant < self.earliest_skipped:
                    self.earliest_skipped = instant
            else:
                self._delivered.add(lead["id"])
                fresh.append(lead)
        self.stats.leads += len(fresh)
        return fresh

    def _read_range(self, part: ScanRange, max_leads: int | None, split: bool,
                    ) -> Iterator[list[Lead] | _Split]:
        """One range: its first page, then either a split into slices (when it holds many
        pages and `split`) or the rest by cursor, or by anchored pages without cursors."""
        first = self._api.list_page(
            per_page=self.settings.per_page, **self._filters(part.start, part.end)
        )
        total = first.meta.get("total")
        total = total if isinstance(total, int) else None
        cursor_mode = "next_cursor" in first.meta
        if split and total is not None:
            self.stats.expect(total)
        if items := part.unread(first.items):
            yield items
        if cursor_mode:
            last_page = first.next_cursor is None
        else:
            last_page = len(first.items) < self.settings.per_page or (
                total is not None and total <= self.settings.per_page)
        if not first.items or last_page:
            return
        last_seen = _keyset(first.items[-1])
        if split and (slices := self._split(last_seen, part.end, total, max_leads)):
            yield slices
        elif cursor_mode:
            for items in self._follow_cursor(first.next_cursor, part.start, part.end):
                if items := part.unread(items):
                    yield items
        else:
            yield from self._scan_pages(part.start, part.end, after=last_seen)

    def _split(self, last_seen: Keyset, end: dt.datetime, total: int | None,
               max_leads: int | None) -> _Split | None:
        """Slices for the rest of a range after its first page (None: one cursor reads it)."""
        settings = self.settings
        pages_left = (total or 0) // settings.per_page
        count = min(settings.workers * 2, pages_left // settings.pages_per_slice)
        if count < 2 or settings.workers <= 1:
            return None
        cut_at = None
        if max_leads and total and total > max_leads:
            # assume leads spread evenly in time; a skewed spread gives a smaller or larger
            # part, never a wrong one
            share = (end - last_seen[0]) * (max_leads / total)
            cut_at = end = max(
                last_seen[0] + dt.timedelta(milliseconds=1), _floor_ms(last_seen[0] + share)
            )
            count = min(count, max(2, max_leads // (settings.per_page * settings.pages_per_slice)))
        # The rest starts at the first page's last lead; leads at that very instant that
        # the first page already had are skipped by keyset.
        slices = [ScanRange(a, b, last_seen[1] if a == last_seen[0] else None)
                  for a, b in split_window(last_seen[0], end, count)]
        return _Split(slices, cut_at)

    def _follow_cursor(self, cursor: str | None, since: dt.datetime, until: dt.datetime,
                       ) -> Iterator[list[Lead]]:
        while cursor is not None:
            page = self._api.list_page(
                per_page=self.settings.per_page, cursor=cursor, **self._filters(since, until)
            )
            if page.items:
                yield page.items
            cursor = page.next_cursor

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
            total = page.meta.get("total")
            total = total if isinstance(total, int) else None
            if page_number > 1 and anchored_total is not None and total is not None \
                    and total < anchored_total:
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
