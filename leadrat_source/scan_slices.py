"""Cutting what is left of a large range into time slices that are read concurrently.

With 200 ms of API latency one sequential cursor makes 5 requests/s, far below a Pro
plan's budget; slices, each with its own cursor, fill it under the client's shared pacer.
Each slice ends with a partial page (up to one request more per slice, half of one on
average), so a range is cut into at most one slice per `pages_per_slice` pages
(`ScanSettings` says why 20).

Slices are cut to equal lengths of time, but leads are rarely spread evenly in time (a
CRM's recent months hold more updates). A slice much fuller than the others would be
read last by one cursor, far below the budget, while the other readers sit idle: so a
slice whose first page finds at least twice the pages it was cut to hold is cut again.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Callable
from dataclasses import dataclass

from leadrat_source.scan_ranges import Keyset, ScanRange, floor_ms


def split_window(
    start: dt.datetime, end: dt.datetime, parts: int
) -> list[tuple[dt.datetime, dt.datetime]]:
    """Cut `[start, end)` into `parts` adjacent windows of equal length (millisecond edges)."""
    if parts <= 1 or end <= start:
        return [(start, end)]
    step = (end - start) / parts
    edges = [start, *(floor_ms(start + step * i) for i in range(1, parts)), end]
    return [(a, b) for a, b in itertools.pairwise(edges) if a < b]


@dataclass(frozen=True)
class Split:
    """A range's reader hands the rest of its range to new slices (read concurrently)."""

    slices: list[ScanRange]
    #: the end of the window once cut to `max_leads` (None: not cut)
    cut_at: dt.datetime | None = None
    #: the pages each slice holds if the leads are spread evenly in time
    pages_each: int = 0


@dataclass(frozen=True)
class Slicing:
    """How many slices the rest of a range is cut into (see `ScanSettings`)."""

    per_page: int
    workers: int
    pages_per_slice: int

    def split(self, last_seen: Keyset, end: dt.datetime, total: int | None,
              max_leads: int | None, pages_each: int | None = None,
              count_leads: CountLeads | None = None) -> Split | None:
        """Slices for the rest of a range after its first page, whose last lead is
        `last_seen`, given the range's `meta.total` (None: one cursor reads it).

        `pages_each`: the range is itself a slice, cut to hold about that many pages; it
        is cut again only if it holds at least twice as many, into slices of about that
        size (each costs a partial page more, so a slice only somewhat fuller is not).

        A range holding more than `max_leads` is cut even when it is too small to slice
        (one slice reads it up to the cut): the cut does not depend on the slicing.
        `count_leads` (a few one-lead requests) makes the cut fall near `max_leads` when
        leads are not spread evenly in time (see `cut_at_max_leads`).
        """
        pages_left = (total or 0) // self.per_page
        count = (min(self.workers * 2, pages_left // (pages_each or self.pages_per_slice))
                 if self.workers > 1 else 1)
        cut_at = cut_at_max_leads(last_seen[0], end, total, max_leads, count_leads)
        if cut_at is not None:
            end = cut_at
            cut_to = max_leads or 0
            count = max(1, min(count, max(2, cut_to // (self.per_page * self.pages_per_slice))))
            pages_left = min(pages_left, cut_to // self.per_page)
        elif count < 2:
            return None
        # The rest starts at the first page's last lead; leads at that very instant that
        # the first page already had are skipped by keyset.
        slices = [ScanRange(a, b, last_seen[1] if a == last_seen[0] else None)
                  for a, b in split_window(last_seen[0], end, count)]
        return Split(slices, cut_at, max(pages_left // count, self.pages_per_slice))


#: How many leads were updated in `[since, until)` (one request), or None if unknown.
CountLeads = Callable[[dt.datetime, dt.datetime], int | None]
#: Counts a cut may ask for, and how close to `max_leads` a part needs to be to stop.
CUT_PROBES = 6
CUT_TOLERANCE = 0.05


def cut_at_max_leads(start: dt.datetime, end: dt.datetime, total: int | None,
                     max_leads: int | None, count_leads: CountLeads | None = None
                     ) -> dt.datetime | None:
    """Where `[start, end)`, holding `total` leads, ends when cut so that about `max_leads`
    fall before (None: it holds no more, it is not cut).

    Without `count_leads` the guess assumes leads spread evenly in time. A CRM's recent
    months hold more updates, so for an oldest-first scan that guess falls short (parts of
    0.6-0.8x `max_leads` at 200k and 1M sandbox leads: 15 loads instead of 10 for 1M,
    each with its merge). With it, each guess is counted (one request) and the next one
    interpolated between the counted times that bracket `max_leads` (regula falsi, with
    the Illinois step so a skewed spread does not keep it on one side), up to
    `CUT_PROBES` requests or until a part is within `CUT_TOLERANCE` of `max_leads`. A
    skewed spread only makes a part smaller or larger, never wrong.
    """
    if not max_leads or not total or total <= max_leads:
        return None
    earliest = start + dt.timedelta(milliseconds=1)
    # the bracket: times, and their counts' distance from max_leads (< 0 before, > 0 after)
    low_at, high_at = start, end
    low_miss, high_miss = float(-max_leads), float(total - max_leads)
    replaced = 0  # the side replaced last: 1 low, -1 high
    best: tuple[float, dt.datetime] | None = None
    for _probe in range(CUT_PROBES if count_leads is not None else 1):
        share = -low_miss / (high_miss - low_miss)
        guess = max(earliest, floor_ms(low_at + (high_at - low_at) * share))
        before = count_leads(start, guess) if count_leads is not None else None
        if before is None:
            return guess
        miss = before - max_leads
        best = min(best or (abs(miss), guess), (abs(miss), guess))
        if abs(miss) <= max_leads * CUT_TOLERANCE:
            break
        if miss < 0:
            low_at, low_miss = guess, miss
            high_miss /= 2 if replaced == 1 else 1
            replaced = 1
        else:
            high_at, high_miss = guess, miss
            low_miss /= 2 if replaced == -1 else 1
            replaced = -1
    assert best is not None
    return best[1]
