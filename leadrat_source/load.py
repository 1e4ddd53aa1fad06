"""One load run: LeadRat → dlt → the warehouse of a destination profile, with a summary.

The CLI, the cron scripts and the Airflow DAG all run loads through here, so every way
of scheduling behaves the same.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from dlt.common.pipeline import LoadInfo
from dlt.pipeline.pipeline import Pipeline

from leadrat_source import settings
from leadrat_source.client import LeadRatClient
from leadrat_source.client_config import open_client
from leadrat_source.destinations import DestinationProfile, get_profile
from leadrat_source.errors import ConfigurationError
from leadrat_source.gc_pause import fewer_collections
from leadrat_source.progress import LoadProgress, LogDisplay
from leadrat_source.run_report import (
    RunNotes,
    UnreadPart,
    leads_cursor,
    raise_if_incomplete,
    unread_parts,
)
from leadrat_source.source import RESOURCE_NAMES, leadrat_source
from leadrat_source.warehouse_lock import run_when_free
from leadrat_source.warehouse_pipeline import finish_interrupted, profile_pipeline

log = logging.getLogger("leadrat_source.load")


@dataclass(frozen=True)
class LoadRequest:
    """What to load and where; `None` means the configured or built-in default."""

    destination: str | None = None
    dataset: str | None = None
    #: None: `leadrat_<profile>`, so each destination profile keeps its own state
    pipeline_name: str | None = None
    resources: Sequence[str] | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    full_refresh: bool = False
    #: A scheduler's data interval `[start, end)`. While the cursor has not reached its
    #: end, the run is incremental (so the first run on an empty warehouse loads the whole
    #: history, and a run after downtime fills the gap); once the cursor is past it (a
    #: re-run or backfill of a past interval), the interval is loaded as a window.
    interval: tuple[dt.datetime, dt.datetime] | None = None
    #: The analytics snapshot's date; None means today (UTC).
    snapshot_date: dt.date | None = None
    #: dlt's pipelines folder; None means dlt's default (`DLT_DATA_DIR`, else ~/.dlt)
    pipelines_dir: str | None = None


@dataclass
class LoadSummary:
    """What a run did, for the closing summary and the final JSON log line.

    `rows` counts the rows this run wrote per table (each merged into or replacing rows
    of its table), taken from dlt's extract step, so they do not depend on the load file
    format; `leadrat status` counts the rows the tables hold. `tag_markers` are `lead_tags`
    rows that only delete the old tags of a lead read without tags: they are in
    `rows["lead_tags"]` but never stay in the table.
    """

    pipeline_name: str
    destination: str
    dataset: str
    rows: dict[str, int] = field(default_factory=dict)
    tag_markers: int = 0
    requests: int = 0
    retries: int = 0
    rate_limited: int = 0
    rate_limit_wait_seconds: float = 0.0
    seconds: float = 0.0
    resumed_packages: int = 0

    def lines(self) -> list[str]:
        rows = ", ".join(
            f"{table}={count}" + (f" (incl. {self.tag_markers} no-tag markers, not kept)"
                                  if table == "lead_tags" and self.tag_markers else "")
            for table, count in sorted(self.rows.items())
        )
        return [
            (
                f"loaded into {self.destination} dataset {self.dataset!r} "
                f"(pipeline {self.pipeline_name!r}) in {self.seconds:.1f}s"
            ),
            f"rows written (merged or replaced into the tables): {rows or 'none'}",
            (
                f"requests: {self.requests}, retries: {self.retries}, 429s: {self.rate_limited}, "
                f"rate-limit wait: {self.rate_limit_wait_seconds:.1f}s"
                + (f", finished {self.resumed_packages} interrupted load(s) first"
                   if self.resumed_packages else "")
            ),
        ]

    def record(self) -> dict[str, Any]:
        """The summary as the fields of a structured log line."""
        return {
            "pipeline": self.pipeline_name,
            "destination": self.destination,
            "dataset": self.dataset,
            "rows": dict(sorted(self.rows.items())),
            "lead_tags_markers": self.tag_markers,
            "requests": self.requests,
            "retries": self.retries,
            "rate_limited": self.rate_limited,
            "rate_limit_wait_seconds": round(self.rate_limit_wait_seconds, 3),
            "load_seconds": round(self.seconds, 3),
            "resumed_packages": self.resumed_packages,
        }


def check_resources(names: Sequence[str] | None) -> list[str] | None:
    """The selected resource names, or a ConfigurationError naming the valid ones."""
    if not names:
        return None
    unknown = sorted(set(names) - set(RESOURCE_NAMES))
    if unknown:
        raise ConfigurationError(
            f"unknown resource(s) {', '.join(unknown)}; choose from {', '.join(RESOURCE_NAMES)}"
        )
    return list(names)


def pipeline_name_for(request: LoadRequest, profile: DestinationProfile) -> str:
    """The pipeline's name: given, or one per destination profile.

    Per profile because dlt keeps an incremental cursor per pipeline: one pipeline shared
    by two warehouses would let a load into the second start where the first stopped.
    """
    return request.pipeline_name or f"{settings.LOAD_PIPELINE_PREFIX}_{profile.name}"


def make_pipeline(request: LoadRequest, profile: DestinationProfile) -> Pipeline:
    """The load's dlt pipeline."""
    return profile_pipeline(
        profile, pipeline_name_for(request, profile), request.dataset, request.pipelines_dir
    )


def load_window(request: LoadRequest, pipeline: Pipeline
                ) -> tuple[dt.datetime | None, dt.datetime | None]:
    """The `since`/`until` of the leads to read; (None, None) means incremental."""
    if request.interval is None:
        if request.since is not None and request.until is None:
            # a window with no end would otherwise fall back to the incremental state
            return request.since, dt.datetime.now(dt.UTC)
        return request.since, request.until
    start, end = request.interval
    pipeline.sync_destination()  # a scheduler's worker may have no local state
    cursor = leads_cursor(pipeline.state)
    if cursor is None or cursor < end:
        log.info("interval %s to %s: incremental from the cursor (%s)", start, end,
                 cursor or "none yet: the whole history")
        return None, None
    log.info("interval %s to %s: the cursor (%s) is past it, loading the interval as a "
             "window", start, end, cursor)
    return start, end


def run_load(
    request: LoadRequest, client: LeadRatClient | None = None,
    progress: LoadProgress | None = None,
) -> LoadSummary:
    """Run one load; raises the client's errors (auth, quota, ...) and dlt's on failure.

    A first load larger than `max_leads_per_run` runs as several dlt runs in a row, each
    committing its part, until the leads are caught up. When the quota runs out, what was
    read is loaded and `QuotaExhausted` is raised (its `resets_at` says when to go on).
    `progress` shows how it goes (default: a log line every few seconds).
    """
    resources = check_resources(request.resources)
    profile = get_profile(request.destination)
    pipeline = make_pipeline(request, profile)
    started = time.monotonic()
    with open_client(client) as opened, fewer_collections():
        count_requests = _request_counter(opened, started)
        progress = progress or LoadProgress(LogDisplay())
        with progress:
            summary = LoadSummary(pipeline.pipeline_name, profile.name, pipeline.dataset_name)
            progress.summary = summary
            summary.resumed_packages = finish_interrupted(pipeline)
            run = _LoadRun(request, profile, pipeline, opened, progress, summary, count_requests)
            unread = run.until_caught_up(resources)
        if unread:
            # what was read is loaded and the cursor set to resume; still a failed run
            for line in summary.lines():
                log.info("%s", line)
            raise_if_incomplete(pipeline)
        return summary


@dataclass
class _LoadRun:
    """The parts of one load that each of its dlt runs uses."""

    request: LoadRequest
    profile: DestinationProfile
    pipeline: Pipeline
    client: LeadRatClient
    progress: LoadProgress
    summary: LoadSummary
    count_requests: Callable[[LoadSummary], None]

    def until_caught_up(self, resources: list[str] | None) -> list[UnreadPart]:
        """dlt runs until the leads are caught up or the quota is spent; what is left."""
        since, until = load_window(self.request, self.pipeline)
        refresh: dict[str, Any] = (
            {"refresh": "drop_sources"} if self.request.full_refresh else {}
        )
        selected = resources
        while True:
            unread = self.run_once(since, until, selected, refresh)
            if not unread or any(part.reason == "quota" for part in unread):
                return unread
            log.info("loaded a part of the leads (%s so far); going on",
                     self.summary.rows.get("leads"))
            refresh, selected = {}, ["leads"]  # the other resources are done

    def run_once(self, since: dt.datetime | None, until: dt.datetime | None,
                 selected: list[str] | None, refresh: dict[str, Any]) -> list[UnreadPart]:
        """One dlt run of the source into the pipeline; counts it in the summary."""
        pipeline, summary = self.pipeline, self.summary
        notes = RunNotes()
        self.progress.follow(notes, self.client)
        source = leadrat_source(
            since=since, until=until, snapshot_date=self.request.snapshot_date,
            client=self.client, notes=notes,
        )
        if selected:
            source = source.with_resources(*selected)
        info: LoadInfo = run_when_free(pipeline, partial(
            pipeline.run,
            source,
            loader_file_format=self.profile.loader_file_format,  # type: ignore[arg-type]
            **refresh,
        ))
        info.raise_on_failed_jobs()
        _count_rows(pipeline, summary)
        summary.tag_markers += notes.tag_markers
        self.count_requests(summary)
        return unread_parts(pipeline)


def _request_counter(client: LeadRatClient, started: float) -> Callable[[LoadSummary], None]:
    """Sets a summary's request counters and duration: the client's since now (a shared
    client counts earlier runs too), the time since `started`."""
    before = client.stats.snapshot()
    wait_before = client.rate_limit_wait_seconds

    def count(summary: LoadSummary) -> None:
        stats = client.stats.snapshot()
        summary.requests = stats.requests - before.requests
        summary.retries = stats.retries - before.retries
        summary.rate_limited = stats.rate_limited - before.rate_limited
        summary.rate_limit_wait_seconds = client.rate_limit_wait_seconds - wait_before
        summary.seconds = time.monotonic() - started

    return count


def _count_rows(pipeline: Pipeline, summary: LoadSummary) -> None:
    """Add the rows the pipeline's last run extracted to the summary, per table.

    From the extract step, not the normalize step: dlt 1.31's CSV writer (PostgreSQL's
    csv load format) counts values instead of rows, so normalize counts are wrong there.
    """
    trace = pipeline.last_trace
    info = trace.last_extract_info if trace else None
    for package_metrics in (info.metrics.values() if info else ()):
        for metrics in package_metrics:
            for table, table_metrics in metrics["table_metrics"].items():
                if not table.startswith("_dlt"):
                    summary.rows[table] = summary.rows.get(table, 0) + table_metrics.items_count
