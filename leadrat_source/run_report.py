"""What a run of the source left unread, kept in dlt's state so every caller can tell.

A dlt source has no return channel: `pipeline.run(leadrat_source())` returns dlt's load
info, which knows nothing of a daily quota that ran out or of a huge first load that
stops after `max_leads_per_run`. So each resource notes how its read ended in its own
dlt resource state (committed with the load, restored with it from the destination)
and logs a WARNING naming what is left unread. A caller then asks the pipeline:

    pipeline.run(leadrat_source())
    raise_if_incomplete(pipeline)   # QuotaExhausted (with .resets_at) or LoadIncomplete

The next run reads what was left (the leads cursor stands where the gap-free part
ends); merging makes re-read rows land once.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Final, Literal

import dlt
from dlt.pipeline.pipeline import Pipeline

from leadrat_source.errors import LoadIncomplete, QuotaExhausted
from leadrat_source.lead_scan import ScanStats

log = logging.getLogger("leadrat_source.run_report")

#: The source's name in dlt's state (`@dlt.source(name=...)`).
SOURCE_NAME: Final = "leadrat"
#: The key of a resource's state that holds how its last read ended.
STATE_KEY: Final = "last_run"

StopReason = Literal["quota", "max_leads_per_run"]


@dataclass(frozen=True)
class UnreadPart:
    """A part of the data a run did not read, why, and when it can be read."""

    resource: str
    #: in words, e.g. "leads updated from 2026-01-02T00:00:00+00:00 to ..."
    what: str
    reason: StopReason
    #: when the spent quota comes back (None when the run stopped at max_leads_per_run)
    resets_at: dt.datetime | None = None

    def describe(self) -> str:
        if self.reason == "quota":
            when = self.resets_at.isoformat() if self.resets_at else "an unknown time"
            return (f"{self.resource}: not loaded: {self.what}; the LeadRat request quota is "
                    f"spent and resets at {when}; the next run after that loads it")
        return (f"{self.resource}: not loaded in this run: {self.what} (max_leads_per_run "
                "reached); the next run loads it")


class RunNotes:
    """Where the resources of one source instance report how their reads went.

    Each resource calls `reading()` when it starts and `left_unread()` if it stops
    early; both go into the dlt state. Runs are told apart by `started_at`, so a
    resource left out of a later run (`with_resources`) does not make that run look
    incomplete. A caller that passes its own notes can also follow the run live.
    """

    def __init__(self) -> None:
        self.started_at = dt.datetime.now(dt.UTC).isoformat()
        #: The running lead scan's counters, for progress displays.
        self.scan: ScanStats | None = None
        #: `lead_tags` marker rows written (one per lead read without tags; they delete
        #: that lead's old tags and are not kept in the table).
        self.tag_markers = 0

    def reading(self, resource: str) -> None:
        """The resource starts: unless it reports otherwise, it reads everything."""
        self._record(resource, None)

    def left_unread(self, part: UnreadPart) -> None:
        log.warning("%s", part.describe())
        self._record(part.resource, part)

    def _record(self, resource: str, part: UnreadPart | None) -> None:
        # named explicitly: parallelized resources run in dlt's worker threads
        state = dlt.current.resource_state(resource)
        state[STATE_KEY] = {
            "started_at": self.started_at,
            "unread": None if part is None else {
                **asdict(part), "resets_at": part.resets_at.isoformat() if part.resets_at else None
            },
        }


def leads_cursor(state: Mapping[str, Any]) -> Any:
    """Where the leads' incremental cursor (`updated_at`) stands in a pipeline state
    (None before the first load): the next incremental run starts there."""
    resources = state.get("sources", {}).get(SOURCE_NAME, {}).get("resources", {})
    incremental = resources.get("leads", {}).get("incremental", {}).get("updated_at", {})
    return incremental.get("last_value")


def unread_parts(pipeline: Pipeline) -> list[UnreadPart]:
    """What the pipeline's last run of the source left unread (empty: it read it all)."""
    source_state: dict[str, Any] = pipeline.state.get("sources", {}).get(SOURCE_NAME, {})
    notes = [
        resource[STATE_KEY]
        for resource in source_state.get("resources", {}).values()
        if isinstance(resource, dict) and STATE_KEY in resource
    ]
    if not notes:
        return []
    last_run = max(note["started_at"] for note in notes)
    parts = []
    for note in notes:
        unread = note.get("unread")
        if note["started_at"] == last_run and unread:
            resets_at = unread.get("resets_at")
            parts.append(UnreadPart(
                resource=unread["resource"], what=unread["what"], reason=unread["reason"],
                resets_at=dt.datetime.fromisoformat(resets_at) if resets_at else None,
            ))
    return sorted(parts, key=lambda part: part.resource)


def raise_if_incomplete(pipeline: Pipeline) -> None:
    """Fail the caller's job when the last run left something unread.

    Raises `QuotaExhausted` (its `resets_at` says when to run again) when the quota
    stopped it, `LoadIncomplete` when only `max_leads_per_run` did (run again at once).
    What was read is loaded either way, and the next run completes the rest.
    """
    parts = unread_parts(pipeline)
    if not parts:
        return
    unread = "; ".join(part.describe() for part in parts)
    resets = [part.resets_at for part in parts if part.reason == "quota" and part.resets_at]
    if any(part.reason == "quota" for part in parts):
        resets_at = max(resets) if resets else None
        raise QuotaExhausted(
            f"The load is incomplete: {unread}.", code="rate_limit_exceeded",
            resets_at=resets_at,
        )
    raise LoadIncomplete(f"The load is incomplete: {unread}.", parts=parts)
