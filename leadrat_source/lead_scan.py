"""Read every lead updated in a time window exactly once, fast, without gaps, and resumably.

Why not just follow one cursor: with 200 ms of API latency one sequential cursor makes
5 requests/s, far below a Pro plan's budget. So a large window is cut into time slices
(`scan_slices`) that are read concurrently (`fan_in`), each with its own cursor, under the
client's shared pacer. `range_reader` reads one range; this module runs the scan.

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
  later leads shift to earlier pages and one would be skipped. The scan anchors each
  request at the last lead it delivered (`anchored_pages`).
- Every slice knows how far it got (the keyset of its last lead delivered). When the
  daily quota runs out, every slice runs until it is refused itself, so every page the
  API served is delivered, and `unread` lists the ranges still to read: a later run reads
  only those (`resumed`), never a page twice (`scan_ranges`).
"""

from __future__ import annotations

import datetime as dt
import functools
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from leadrat_source.errors import QuotaExhausted
from leadrat_source.fan_in import FanIn
from leadrat_source.range_reader import LeadPageReader, RangeReader
from leadrat_source.scan_ranges import Lead, ScanProgress, ScanRange, floor_ms
from leadrat_source.scan_slices import Slicing, Split
from leadrat_source.settings import PER_PAGE, SCAN_WORKERS
from leadrat_source.timestamps import parse_timestamp


@dataclass(frozen=True)
class ScanSettings:
    """How a scan reads: page size, concurrency, slicing, buffering, size of a run.

    Why `pages_per_slice` is 20: every slice ends with a partial page, so a range cut
    into k slices costs up to k - 1 requests more than one cursor would (about k / 2 on
    average). At most one slice per 20 pages keeps that to about one request per 40 pages
    (2.5%). A range of ~100 pages, which 1% churn of 1M leads gives an incremental run,
    gets 5 slices, at most 4 extra requests and about 2, so with the catch-up pass's one
    request the run stays within issue 12's ceil(changed / 100) + 5. At 10 it got 9 or
    10 slices and about 5 extra (106 requests at 1M against a bound of 105). A range of
    `workers * 2 * 20` pages or more (32k leads with 8 workers: every large full load)
    gets `workers * 2` slices as before. Smaller ranges get fewer readers: from 80 pages
    on, 4 or more, which at 200 ms of latency already ask for more than a Pro plan's
    1,000 requests a minute; below that a range costs at most a few seconds more. A
    range of fewer than 40 pages is read by one cursor. A slice that holds at least
    twice its share is cut again (`scan_slices`): more partial pages, but only where
    leads crowd in time.
    """

    per_page: int = PER_PAGE
    #: Slices read at once; the pacer keeps them within the rate budget.
    workers: int = SCAN_WORKERS
    #: A range is cut into at most one slice per this many pages (why 20: see above).
    pages_per_slice: int = 20
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




class LeadScanner:
    """Yields pages (lists of lead dicts) of every lead of a window (`ScanRange`)."""

    def __init__(self, leads: LeadPageReader, settings: ScanSettings | None = None) -> None:
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
        self._delivered: set[str] = set()
        settings = self.settings
        self._reader = RangeReader(
            leads, settings.per_page, settings.include_deleted,
            Slicing(settings.per_page, settings.workers, settings.pages_per_slice),
            self.stats.expect,
        )

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
            end = floor_ms(dt.datetime.now(dt.UTC))
            if end <= start:
                break
            delivered = len(self._delivered)
            yield from self._read([(ScanRange(start, end), None)])
            self.read_until = start = end
            if self.stopped_by is not None or len(self._delivered) == delivered:
                break

    def _read(self, ranges: list[tuple[ScanRange, int | None]]) -> Iterator[list[Lead]]:
        """Read `(range, max_leads)` pairs concurrently; a range with many leads is split.

        At most `workers` ranges are read at once; the others wait on a stack, so the range
        put there last starts next: of a split's slices (cut to equal lengths of time) the
        newest, which in a CRM hold the most updates, and a slice cut again because it
        was fuller than the others goes before those not started yet. The fullest ranges
        start first and the small ones fill the end, instead of one full slice read late
        by a lone cursor, below the budget.
        """
        settings = self.settings
        with FanIn[list[Lead] | Split](settings.workers, settings.buffered_pages,
                                       "leadrat-scan") as fan_in:
            #: what each running reader has left to read
            open_ranges: dict[int, ScanRange] = {}
            waiting: list[tuple[ScanRange, int | None, int | None]] = []

            def start_waiting() -> None:
                while waiting and len(open_ranges) < settings.workers:
                    part, max_leads, pages_each = waiting.pop()
                    reader = functools.partial(self._reader.read, part, max_leads, pages_each)
                    open_ranges[fan_in.start(reader)] = part

            waiting.extend((part, max_leads, None) for part, max_leads in ranges)
            start_waiting()
            while open_ranges:
                reader_id, message = fan_in.get()
                if message is None:
                    del open_ranges[reader_id]
                elif isinstance(message, Split):
                    # the slices take over the range; its reader's None follows
                    if message.cut_at is not None:
                        self.read_until, self.partial = message.cut_at, True
                    waiting.extend((part, None, message.pages_each) for part in message.slices)
                elif isinstance(message, QuotaExhausted):
                    # the other slices go on until they are refused too: what the API
                    # serves is paid for, so it is delivered
                    self.stopped_by = message
                    self.unread.append(open_ranges.pop(reader_id))
                elif isinstance(message, BaseException):
                    raise message
                else:
                    open_ranges[reader_id] = open_ranges[reader_id].past(message[-1])
                    if fresh := self._first_delivery(message):
                        yield fresh
                start_waiting()

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
