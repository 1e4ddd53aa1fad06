"""One reverse-sync run: read the input, diff it against the ledger, deliver the changes,
and write the confirmations back in batches (the orchestration of the package's parts)."""

from __future__ import annotations

import datetime as dt
import logging
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

import dlt

from leadrat_source import settings
from leadrat_source.client import LeadRatClient
from leadrat_source.client_config import open_client
from leadrat_source.destinations import DestinationProfile, get_profile
from leadrat_source.errors import ConfigurationError
from leadrat_source.reverse_sync.columns import ColumnMap, LeadChange
from leadrat_source.reverse_sync.delivery import Delivery, Outcome
from leadrat_source.reverse_sync.ledger import LeadMemory, Ledger
from leadrat_source.reverse_sync.reader import InputSpec, iter_chunks
from leadrat_source.warehouse_pipeline import profile_pipeline

log = logging.getLogger("leadrat_source.reverse_sync")

SAMPLE_ROWS = 5
#: The reverse sync's settings in dlt's config: `[leadrat.reverse_sync]` in
#: .dlt/config.toml, or LEADRAT__REVERSE_SYNC__<NAME>. Read by their exact key, without
#: dlt's fallback to shorter sections: the source's `workers` are scan slices, not these.
CONFIG_SECTION = "leadrat.reverse_sync"
T = TypeVar("T")


def _configured(name: str, kind: type[T], default: T) -> T:
    """The setting `name` of CONFIG_SECTION from dlt's config, else `default`."""
    value: T | None = dlt.config.get(f"{CONFIG_SECTION}.{name}", kind)
    return default if value is None else value


def _configured_field(name: str, kind: type[T], default: T) -> T:
    """A request field that a caller may set, else read from dlt's config when the
    request is made (so a flag or an argument wins, as with the source's arguments)."""
    return field(default_factory=lambda: _configured(name, kind, default))


@dataclass(frozen=True)
class ReverseSyncRequest:
    """What to push and from where; `None` means the configured or built-in default.
    Fields a caller leaves out come from CONFIG_SECTION of dlt's config, as do `table`
    and `query` when neither is given; the destination and dataset come from `[leadrat]`
    (destinations.py) like every command's."""

    destination: str | None = None
    dataset: str | None = None
    table: str | None = None
    query: str | None = None
    dry_run: bool = False
    retry_failed: bool = False
    max_rows: int | None = None
    #: send null for a NULL input value (clearing the field) instead of leaving it alone
    null_clears: bool = _configured_field("null_clears", bool, False)
    workers: int = _configured_field("workers", int, settings.DELIVERY_WORKERS)
    batch_rows: int = _configured_field("batch_rows", int, settings.REVERSE_SYNC_BATCH_ROWS)
    batch_seconds: float = _configured_field(
        "batch_seconds", float, settings.REVERSE_SYNC_BATCH_SECONDS)
    #: None: `leadrat_reverse_sync_<profile>`, one ledger pipeline per warehouse
    pipeline_name: str | None = None
    #: dlt's pipelines folder; None means dlt's default
    pipelines_dir: str | None = None

    def check(self) -> None:
        if self.table and self.query:
            raise ConfigurationError("give --table or --query, not both")
        self.input_spec()
        if self.max_rows is not None and self.max_rows < 0:
            raise ConfigurationError("--max-rows must be 0 or more")
        if self.workers < 1 or self.batch_rows < 1:
            raise ConfigurationError(
                f"--workers and --batch-rows ({CONFIG_SECTION}.workers, .batch_rows) must be "
                "at least 1")

    def input_spec(self) -> InputSpec:
        """The input: the table or query given, else the configured one, else the table
        `lead_scores` (reader.py)."""
        if self.table or self.query:
            return InputSpec(self.table, self.query, self.max_rows)
        table = _configured("table", str, None)
        query = _configured("query", str, None)
        if table and query:
            raise ConfigurationError(
                f"{CONFIG_SECTION}: set table or query, not both (LEADRAT__REVERSE_SYNC__TABLE"
                " / LEADRAT__REVERSE_SYNC__QUERY)")
        return InputSpec(table, query, self.max_rows)


@dataclass
class ReverseSyncSummary:
    """The run's counts; also the row written to `reverse_sync_runs`."""

    run_id: str
    destination: str
    dataset: str
    dry_run: bool
    started_at: dt.datetime
    finished_at: dt.datetime | None = None
    rows_read: int = 0
    sent: int = 0
    confirmed: int = 0
    failed: int = 0
    skipped_unchanged: int = 0
    skipped_failed: int = 0
    skipped_empty: int = 0
    requests: int = 0
    rate_limited: int = 0
    status: str = "running"
    sample: list[dict[str, Any]] = field(default_factory=list)

    def run_row(self) -> dict[str, Any]:
        row = asdict(self)
        del row["sample"], row["destination"], row["dataset"], row["dry_run"]
        return row

    def lines(self) -> list[str]:
        seconds = ((self.finished_at or dt.datetime.now(dt.UTC)) - self.started_at)
        verb = "would send" if self.dry_run else "sent"
        lines = [
            (f"reverse sync {'(dry run) ' if self.dry_run else ''}from {self.destination} "
             f"dataset {self.dataset!r} in {seconds.total_seconds():.1f}s (run {self.run_id})"),
            (f"rows read: {self.rows_read}, {verb}: {self.sent}, confirmed: {self.confirmed}, "
             f"failed: {self.failed}, unchanged: {self.skipped_unchanged}, "
             f"failed before and unchanged: {self.skipped_failed}, nothing to push: "
             f"{self.skipped_empty}"),
            f"requests: {self.requests}, 429s: {self.rate_limited}",
        ]
        lines += [f"  {row}" for row in self.sample]
        if self.failed:
            lines.append("failed rows are listed in reverse_sync_errors; fix them and run "
                         "again, or pass --retry-failed")
        return lines


def ledger_pipeline(request: ReverseSyncRequest, profile: DestinationProfile) -> dlt.Pipeline:
    """The dlt pipeline that reads the input and writes the ledger, in one dataset."""
    name = request.pipeline_name or f"{settings.REVERSE_SYNC_PIPELINE_PREFIX}_{profile.name}"
    return profile_pipeline(profile, name, request.dataset, request.pipelines_dir)


def decide(memory: LeadMemory | None, digest: str, retry_failed: bool) -> str:
    """"send", "unchanged" (confirmed with this hash) or "failed" (failed permanently with
    this hash, and not asked to retry)."""
    if memory is None:
        return "send"
    if memory.confirmed_hash == digest:
        return "unchanged"
    if memory.failed_hash == digest and memory.failed_permanently and not retry_failed:
        return "failed"
    return "send"


class _Run:
    """One run's moving parts: counts, the ledger buffer and when to write it."""

    def __init__(self, request: ReverseSyncRequest, ledger: Ledger,
                 summary: ReverseSyncSummary) -> None:
        self.request = request
        self.ledger = ledger
        self.summary = summary
        self.had_error: set[str] = set()
        self.last_flush = time.monotonic()

    def record(self, outcome: Outcome) -> None:
        lead_id = outcome.change.lead_id
        if outcome.error is None:
            self.summary.confirmed += 1
            self.ledger.confirm(lead_id, outcome.digest, self.summary.run_id,
                                lead_id in self.had_error)
        else:
            self.summary.failed += 1
            log.warning("lead %s: %s", lead_id, outcome.error)
            self.ledger.fail(lead_id, outcome.digest, self.summary.run_id, outcome.error_row())
        self.had_error.discard(lead_id)

    def maybe_flush(self) -> None:
        due = time.monotonic() - self.last_flush >= self.request.batch_seconds
        if self.ledger.pending >= self.request.batch_rows or (due and self.ledger.pending):
            self.flush()

    def flush(self, run: dict[str, Any] | None = None) -> None:
        self.ledger.flush(run)
        self.last_flush = time.monotonic()
        s = self.summary
        log.info("ledger saved: %d confirmed, %d failed of %d sent so far (%d rows read)",
                 s.confirmed, s.failed, s.sent, s.rows_read)

    def keep_sample(self, to_send: list[tuple[LeadChange, str]]) -> None:
        """A dry run shows the first few changes it would send."""
        sample = self.summary.sample
        sample += [change.sample() for change, _ in to_send[:SAMPLE_ROWS - len(sample)]]

    def finish(self) -> None:
        """Write the last confirmations and the run's row; a dry run writes nothing, and
        bad input or settings fail before anything is sent."""
        summary = self.summary
        summary.finished_at = dt.datetime.now(dt.UTC)
        recorded = not self.request.dry_run and summary.status != "ConfigurationError"
        history = summary.run_row() if recorded else None
        try:
            self.flush(history)
        except Exception:
            if summary.status == "ok":
                raise
            # the run's own error matters more than a ledger that could not be written
            log.exception("could not write the ledger after the run failed")


def _changes(run: _Run, chunk_columns: list[str], rows: list[dict[str, Any]],
             columns: ColumnMap | None) -> tuple[ColumnMap, list[tuple[LeadChange, str]]]:
    """The rows of one chunk that need sending, after the diff against the ledger."""
    columns = columns or ColumnMap.from_columns(chunk_columns)
    summary, request = run.summary, run.request
    changes: list[tuple[LeadChange, str]] = []
    for row in rows:
        try:
            change = columns.change_for(row, request.null_clears)
        except ValueError as error:
            summary.failed += 1
            log.warning("skipped an input row: %s", error)
            continue
        if change.is_empty:
            summary.skipped_empty += 1
        else:
            changes.append((change, change.digest()))
    memory = run.ledger.recall([change.lead_id for change, _ in changes])
    to_send = []
    for change, digest in changes:
        verdict = decide(memory.get(change.lead_id), digest, request.retry_failed)
        if verdict == "unchanged":
            summary.skipped_unchanged += 1
        elif verdict == "failed":
            summary.skipped_failed += 1
        else:
            known = memory.get(change.lead_id)
            if known is not None and known.failed_hash is not None:
                run.had_error.add(change.lead_id)
            to_send.append((change, digest))
    return columns, to_send


def run_reverse_sync(
    request: ReverseSyncRequest, client: LeadRatClient | None = None
) -> ReverseSyncSummary:
    """Run one reverse sync. Raises ConfigurationError for bad input (before anything is
    sent), and the client's AuthenticationFailed / PermissionDenied / QuotaExhausted, which
    stop the run after recording what was already confirmed."""
    request.check()
    profile = get_profile(request.destination)
    pipeline = ledger_pipeline(request, profile)
    summary = ReverseSyncSummary(
        run_id=uuid.uuid4().hex[:16], destination=profile.name,
        dataset=pipeline.dataset_name, dry_run=request.dry_run,
        started_at=dt.datetime.now(dt.UTC),
    )
    ledger = Ledger(pipeline, profile.loader_file_format)
    if request.dry_run:
        ledger.open_to_read()  # a dry run leaves the warehouse exactly as it was
    elif finished := ledger.open():
        log.warning("wrote %d ledger batch(es) left by an interrupted run", finished)
    run = _Run(request, ledger, summary)
    if request.dry_run:
        _sync(run, pipeline, None)
    else:
        with open_client(client) as opened:
            _sync(run, pipeline, opened)
    return summary


def _sync(run: _Run, pipeline: dlt.Pipeline, client: LeadRatClient | None) -> None:
    """Read, diff and (unless `client` is None: a dry run) deliver; then write the ledger,
    also when the run fails."""
    summary = run.summary
    before = client.stats.snapshot() if client is not None else None
    delivery = Delivery(client, run.request.workers) if client is not None else None
    try:
        _read_and_send(run, pipeline, delivery)
        summary.status = "ok"
    except BaseException as error:
        summary.status = type(error).__name__
        if delivery is not None:
            delivery.stop(run.record)
        raise
    finally:
        if delivery is not None:
            delivery.close()
        if client is not None and before is not None:
            stats = client.stats.snapshot()
            summary.requests = stats.requests - before.requests
            summary.rate_limited = stats.rate_limited - before.rate_limited
        run.finish()


def _read_and_send(run: _Run, pipeline: dlt.Pipeline, delivery: Delivery | None) -> None:
    """Every chunk of the input, diffed against the ledger; the changes go to `delivery`
    (their outcomes into the ledger), or, in a dry run, into the summary's sample."""
    request, summary = run.request, run.summary
    spec = request.input_spec()
    columns: ColumnMap | None = None
    for chunk_columns, rows in iter_chunks(pipeline.dataset(), spec):
        summary.rows_read += len(rows)
        columns, to_send = _changes(run, chunk_columns, rows, columns)
        summary.sent += len(to_send)
        if delivery is None:
            run.keep_sample(to_send)
            continue
        for change, digest in to_send:
            for outcome in delivery.submit(change, digest):
                run.record(outcome)
            run.maybe_flush()
    if delivery is not None:
        for outcome in delivery.drain():
            run.record(outcome)
