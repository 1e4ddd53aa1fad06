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
              max_leads: int | None, pages_each: int | None = None) -> Split | None:
        """Slices for the rest of a range after its first page, whose last lead is
        `last_seen`, given the range's `meta.total` (None: one cursor reads it).

        `pages_each`: the range is itself a slice, cut to hold about that many pages; it
        is cut again only if it holds at least twice as many, into slices of about that
        size (each costs a partial page more, so a slice only somewhat fuller is not).

        A range holding more than `max_leads` is cut even when it is too small to slice
        (one slice reads it up to the cut): the cut does not depend on the slicing.
        """
        pages_left = (total or 0) // self.per_page
        count = (min(self.workers * 2, pages_left // (pages_each or self.pages_per_slice))
                 if self.workers > 1 else 1)
        cut_at = self._cut_at(last_seen[0], end, total, max_leads)
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

    @staticmethod
    def _cut_at(start: dt.datetime, end: dt.datetime, total: int | None,
                max_leads: int | None) -> dt.datetime | None:
        """Where `[start, end)`, holding `total` leads, ends when cut so that about
        `max_leads` fall before (None: it holds no more, it is not cut)."""
        if not max_leads or not total or total <= max_leads:
            return None
        # assume leads spread evenly in time; a skewed spread gives a smaller or larger
        # part, never a wrong one
        share = (end - start) * (max_leads / total)
        return max(start + dt.timedelta(milliseconds=1), floor_ms(start + share))
