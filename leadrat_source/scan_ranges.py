"""What a lead scan reads and what it leaves for the next run: ranges of `updated_at`.

A range is positioned by keyset, `(updated_at, id)`, the order the API sorts leads in
(ties at one instant are ordered by id), so a slice that stops can say exactly where the
next read starts, and the quota's leftovers survive in dlt's state (`ScanProgress`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from leadrat_source.timestamps import parse_timestamp

Lead = dict[str, Any]
Keyset = tuple[dt.datetime, str]


def keyset(lead: Mapping[str, Any]) -> Keyset:
    """Where `lead` sits in the API's `updated_at` order."""
    return parse_timestamp(lead["updated_at"]), lead["id"]


def floor_ms(instant: dt.datetime) -> dt.datetime:
    """The instant at the API's millisecond precision."""
    return instant.replace(microsecond=instant.microsecond // 1000 * 1000)


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
        if self.after_id is None or not leads or keyset(leads[0]) > (self.start, self.after_id):
            return leads
        after = (self.start, self.after_id)
        return [lead for lead in leads if keyset(lead) > after]

    def past(self, lead: Lead) -> ScanRange:
        """What is left of the range once `lead` (and all before it) is delivered."""
        instant, lead_id = keyset(lead)
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
