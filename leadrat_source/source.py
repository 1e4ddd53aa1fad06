"""The dlt source: LeadRat leads, tags, pipelines and analytics as warehouse tables.

Tables (dataset `leadrat` by default) and how each is kept equal to LeadRat:

- `leads`: merged on `id`. Incremental on `updated_at` with a lookback (dlt's `lag`);
  deletions arrive through `include_deleted=true` and either stay as rows with
  `deleted_at` set (the default) or remove the row (`delete_mode="hard"`). With
  `history=True` the table is SCD2 (dlt's `scd2` strategy, retiring only leads that were
  read in the run; a new version exactly when the lead changed, see lead_history.py) so
  analysts can follow status and stage changes.
- `lead_tags`: `(lead_id, tag)` merged with `lead_id` as merge key: each lead read
  replaces its tag rows, a lead without tags leaves none.
- `lead_tombstones` (`delete_mode="hard"`, history off): one row per deleted lead, so that
  no older state of it, from a late webhook event or a snapshot read before the deletion,
  comes back (lead_order.py).
- `pipelines`, `pipeline_stages`: small, read in full and replaced every run.
- `analytics_summary`, `analytics_sources`, `analytics_funnel`: one snapshot per
  `snapshot_date`; a re-run of the same day replaces that day's snapshot.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import dlt
import pyarrow as pa
import pyarrow.compute as pc
from dlt.common.incremental.typing import IncrementalColumnState
from dlt.common.pipeline import SupportsPipeline
from dlt.common.schema.typing import TColumnSchema, TWriteDispositionConfig
from dlt.common.typing import TSecretStrValue
from dlt.extract.items import DataItemWithMeta
from dlt.sources import DltResource

from leadrat_source import lead_order, settings
from leadrat_source.client import LeadRatClient
from leadrat_source.client_config import new_client
from leadrat_source.contract import DEFAULT_BASE_URL
from leadrat_source.custom_fields import (
    COLUMNS_AND_OVERFLOW,
    CustomFieldsConfig,
    current_layout,
)
from leadrat_source.errors import ConfigurationError, QuotaExhausted
from leadrat_source.lead_history import HISTORY_DISPOSITION, with_row_versions
from leadrat_source.lead_scan import LeadScanner, ScanSettings
from leadrat_source.lead_tables import (
    NO_TAGS_MARKER,
    PLACEHOLDER_MARKER,
    LeadTableBuilder,
    lead_tags_table,
    lead_tombstones_table,
)
from leadrat_source.run_report import SOURCE_NAME, RunNotes, UnreadPart
from leadrat_source.scan_ranges import ScanProgress, ScanRange
from leadrat_source.table_docs import document
from leadrat_source.timestamps import parse_timestamp

DeleteMode = Literal["soft", "hard"]
T = TypeVar("T")


RESOURCE_NAMES = ("leads", "pipelines", "analytics")
#: Key of the `leads` resource state holding the ranges a run stopped by the quota left
SCAN_PROGRESS_KEY = "scan_progress"


@dlt.source(name=SOURCE_NAME, section="leadrat", max_table_nesting=0)
def leadrat_source(
    api_key: TSecretStrValue | None = dlt.secrets.value,
    bearer_token: TSecretStrValue | None = dlt.secrets.value,
    base_url: str = DEFAULT_BASE_URL,
    lookback_seconds: float = settings.DEFAULT_LOOKBACK_SECONDS,
    # a plain datetime: dlt does not resolve config values into union-typed arguments
    initial_updated_at: dt.datetime = settings.DEFAULT_INITIAL_UPDATED_AT,
    since: dt.datetime | str | None = None,
    until: dt.datetime | str | None = None,
    delete_mode: str = "soft",
    history: bool = False,
    workers: int = settings.SCAN_WORKERS,
    leads_per_batch: int = settings.LEADS_PER_BATCH,
    max_leads_per_run: int = settings.MAX_LEADS_PER_RUN,
    custom_fields: str = COLUMNS_AND_OVERFLOW,
    custom_field_columns: list[str] | None = None,
    leads_max_columns: int | None = None,
    snapshot_date: dt.date | str | None = None,
    timeout: float = settings.REQUEST_TIMEOUT_SECONDS,
    max_attempts: int = settings.MAX_ATTEMPTS,
    max_wait_seconds: float = settings.MAX_WAIT_SECONDS,
    client: LeadRatClient | None = None,
    notes: RunNotes | None = None,
) -> Sequence[DltResource]:
    """LeadRat as dlt resources `leads` (with `lead_tags`), `pipelines` and `analytics`.

    Credentials: `api_key` (X-API-Key) or `bearer_token` (OAuth), from dlt's secrets
    (`[sources.leadrat]` in .dlt/secrets.toml, SOURCES__LEADRAT__API_KEY, ...); every
    other argument can come from dlt's config the same way. `since`/`until` load a fixed
    `updated_at` window (a backfill) without touching the incremental state; otherwise
    each run continues where the last one ended, `lookback_seconds` earlier, starting at
    `initial_updated_at` on the first run. `snapshot_date` (default: today, UTC) dates the
    analytics snapshot; a scheduler passes its own date. `client` lets a caller share its
    client (and read its request counters) instead of one built from the settings;
    `notes` lets it follow the run (the scan's counters, for a progress display).

    A run that cannot read everything (the daily quota ran out, or a huge first load
    reached `max_leads_per_run`) loads what it read, logs a WARNING naming what is left,
    and notes it in the pipeline state: `raise_if_incomplete(pipeline)` then raises.
    `custom_fields`, `custom_field_columns` and `leads_max_columns` say which custom
    field keys get columns of their own (see `custom_fields.py`).
    """
    _check_delete_mode(delete_mode)
    custom_fields_config = CustomFieldsConfig.from_settings(
        custom_fields, custom_field_columns, leads_max_columns
    )
    client = client or new_client(
        base_url, api_key, bearer_token, timeout, max_attempts, max_wait_seconds
    )
    notes = notes if notes is not None else RunNotes()
    updated_at = _updated_at(since or initial_updated_at, until, lookback_seconds)
    resources = (
        leads_resource(
            client, notes, delete_mode, history, workers, leads_per_batch, max_leads_per_run,
            custom_fields_config,
        )(updated_at),  # type: ignore[arg-type]
        pipelines_resource(client, notes),
        analytics_resource(client, notes, _snapshot_date(snapshot_date)),
    )
    return [document(resource) for resource in resources]  # descriptions and references


def _check_delete_mode(delete_mode: str) -> None:
    if delete_mode not in ("soft", "hard"):
        raise ConfigurationError(
            f"delete_mode must be 'soft' or 'hard', not {delete_mode!r} "
            "(sources.leadrat.delete_mode)"
        )


def _updated_at(start: dt.datetime | str, end: dt.datetime | str | None,
                lookback_seconds: float) -> dlt.sources.incremental[dt.datetime]:
    """The `leads` cursor: from `start` (or where the last run ended, less the lookback)
    up to `end` (a backfill window, which keeps no state), or open-ended."""
    return dlt.sources.incremental[dt.datetime](
        "updated_at",
        initial_value=parse_timestamp(start),
        end_value=parse_timestamp(end) if end else None,
        lag=lookback_seconds,
        range_end="open",
        # duplicates at the boundary are harmless (rows are merged on their keys), and the
        # `lead_tags` rows travelling with the leads have no `id` to deduplicate on
        primary_key=(),
    )


def leads_resource(
    client: LeadRatClient,
    notes: RunNotes,
    delete_mode: DeleteMode | str,
    history: bool,
    workers: int,
    leads_per_batch: int,
    max_leads_per_run: int,
    custom_fields: CustomFieldsConfig,
) -> DltResource:
    """`leads` plus the `lead_tags` rows of the same leads, read in one pass."""
    hints = LeadsHints.of(delete_mode, history)

    @dlt.resource(
        name="leads", write_disposition=hints.disposition, columns=hints.columns, **hints.keys
    )
    def leads(
        # dlt's idiom: the incremental is declared as the argument's default
        updated_at: dlt.sources.incremental[dt.datetime] = dlt.sources.incremental(  # noqa: B008
            "updated_at"
        ),
    ) -> Iterator[Any]:
        notes.reading("leads")
        now = dt.datetime.now(dt.UTC)
        window_start = updated_at.start_value
        window_end = min(updated_at.end_value or now, now)
        if window_start is None or window_start >= window_end:
            return
        tags_disposition = hints.newest_wins(dlt.current.resource(), dlt.current.pipeline())
        known = dlt.current.source_schema().tables.get("leads", {}).get("columns", {})
        builder = LeadTableBuilder(known, current_layout(custom_fields, known))
        # A backfill window (end_value) keeps no state to resume from: it is read in one go,
        # and what moves out of it during the run belongs to a later window.
        incremental = updated_at.end_value is None
        scanner = LeadScanner(client.leads, ScanSettings(
            per_page=settings.PER_PAGE, workers=workers,
            max_leads=max_leads_per_run if incremental else None,
        ))
        resource_state = dlt.current.resource_state()
        window = ScanRange(window_start, window_end)
        resumed: list[ScanRange] = []
        if incremental:
            window, resumed = _resume_plan(window, resource_state, updated_at.lag or 0)
        notes.scan = scanner.stats
        pages = scanner.scan(window, resumed, catch_up=incremental)
        for batch in _batches(pages, leads_per_batch):
            table = builder.leads_table(batch)
            yield hints.versioned(table, batch)
            yield _lead_tags_item(hints.tag_states(batch), notes, tags_disposition)
            yield from hints.tombstones(batch)
        builder.layout.finish(dlt.current.source_schema())
        if incremental:
            _keep_position(scanner, updated_at.get_state(), resource_state)
        _report_unread(notes, scanner, window)

    return leads


def _resume_plan(window: ScanRange, resource_state: dict[str, Any], lookback_seconds: float
                 ) -> tuple[ScanRange, list[ScanRange]]:
    """The window to read and the ranges to resume. An earlier run stopped by the quota
    left ranges unread: read only them, and the new window from where that run's window
    ended (less the lookback)."""
    progress = ScanProgress.from_state(resource_state.get(SCAN_PROGRESS_KEY))
    if progress is None:
        return window, []
    lookback = dt.timedelta(seconds=lookback_seconds)
    return progress.plan(max(window.start, progress.read_until - lookback), window.end)


def _report_unread(notes: RunNotes, scanner: LeadScanner, window: ScanRange) -> None:
    """Tell the caller (a WARNING and the dlt state) which leads this run left unread."""
    if scanner.stopped_by is not None:
        progress = scanner.progress
        ranges = progress.unread if progress is not None else (window,)
        what = ", ".join(_updated_between(part.start, part.end) for part in ranges[:3])
        if len(ranges) > 3:
            what += f" and {len(ranges) - 3} more ranges"
        notes.left_unread(UnreadPart("leads", what, "quota", scanner.stopped_by.resets_at))
    elif scanner.partial and scanner.read_until is not None:
        notes.left_unread(UnreadPart(
            "leads", _updated_between(scanner.read_until, window.end), "max_leads_per_run"
        ))


def _updated_between(start: dt.datetime, end: dt.datetime) -> str:
    return f"leads updated from {start.isoformat()} to {end.isoformat()}"


def _keep_position(scanner: LeadScanner, cursor_state: IncrementalColumnState,
                   resource_state: dict[str, Any]) -> None:
    """Leave the incremental cursor (and the unread ranges) where the next run must begin.

    dlt moves the cursor to the latest `updated_at` delivered. That is too far when the
    quota stopped the scan (slices leave holes above the slowest one: the unread ranges
    are kept, the cursor goes back to the first of them) or when a catch-up pass left a
    newer version of a lead for the next run; and not far enough when only a part of a
    huge window was read (everything before `read_until` was, even if no lead was as late).
    """
    cursor = cursor_state.get("last_value")
    progress = scanner.progress
    if progress is not None:
        resource_state[SCAN_PROGRESS_KEY] = progress.as_state()
        cursor_state["last_value"] = progress.resume_point
        return
    resource_state.pop(SCAN_PROGRESS_KEY, None)
    if scanner.partial and scanner.read_until is not None:
        cursor_state["last_value"] = max(cursor or scanner.read_until, scanner.read_until)
    elif scanner.earliest_skipped is not None and (
            cursor is None or scanner.earliest_skipped < cursor):
        cursor_state["last_value"] = scanner.earliest_skipped


def _lead_tags_item(leads: list[dict[str, Any]], notes: RunNotes,
                    disposition: TWriteDispositionConfig) -> DataItemWithMeta:
    table = lead_tags_table(leads)
    notes.tag_markers += pc.sum(table[NO_TAGS_MARKER]).as_py() or 0
    return lead_tags_item(table, disposition)


@dataclass(frozen=True)
class LeadsHints:
    """dlt hints of `leads`, shared by the scheduled load and the webhook receiver."""

    disposition: TWriteDispositionConfig
    keys: dict[str, Any]
    columns: dict[str, TColumnSchema]
    history: bool
    #: delete_mode = hard: a deleted lead's row and tags are removed, a tombstone kept
    hard_deletes: bool = False

    @classmethod
    def of(cls, delete_mode: DeleteMode | str, history: bool) -> LeadsHints:
        disposition: TWriteDispositionConfig
        if history:
            disposition, keys = HISTORY_DISPOSITION, {"merge_key": "id"}
        else:
            disposition = {"disposition": "merge", "strategy": "delete-insert"}
            keys = {"primary_key": "id"}
        columns: dict[str, TColumnSchema] = {"updated_at": {"dedup_sort": "desc"}}
        if delete_mode == "hard":
            columns["deleted_at"] = {"hard_delete": True}
        return cls(disposition, keys, columns, history, hard_deletes=delete_mode == "hard")

    def versioned(self, table: pa.Table, leads: Sequence[Mapping[str, Any]]) -> pa.Table:
        """The `leads` rows of `leads` as this disposition needs them: in history mode with
        each lead's own row version (lead_history.py), whichever path read the lead."""
        return with_row_versions(table, leads) if self.history else table

    def newest_wins(self, resource: DltResource, pipeline: SupportsPipeline,
                    from_events: bool = False) -> TWriteDispositionConfig:
        """Make `resource` merge only leads not older than the stored ones (`lead_order`);
        returns the matching disposition of `lead_tags` (merged by lead, see
        `lead_order.lead_tags_merged_by_lead`). A history table keeps every version, so
        it stays as it is."""
        if self.history:
            return lead_order.lead_tags_merged_by_lead()
        dataset, hard_deletes = pipeline.dataset_name, self.hard_deletes
        resource.apply_hints(write_disposition=lead_order.leads_disposition(
            dataset, from_events=from_events, hard_deletes=hard_deletes))
        return lead_order.lead_tags_disposition(
            dataset, from_events=from_events, hard_deletes=hard_deletes)

    def tag_states(self, leads: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The leads as `lead_tags` gets them: with hard deletes a deleted lead has no tags
        (its no-tags marker removes the stored ones with its row)."""
        if not self.hard_deletes:
            return leads
        return [{**lead, "tags": []} if lead.get("deleted_at") else lead for lead in leads]

    def tombstones(self, leads: Sequence[Mapping[str, Any]]) -> Iterator[DataItemWithMeta]:
        """With hard deletes, the `lead_tombstones` rows of the deleted leads among `leads`,
        with the placeholder row that makes sure the table the merge conditions read exists
        (a history table has no such conditions, so no tombstones either)."""
        if self.hard_deletes and not self.history:
            yield dlt.mark.with_hints(
                lead_tombstones_table(leads),
                dlt.mark.make_hints(
                    table_name=lead_order.TOMBSTONES_TABLE,
                    write_disposition={"disposition": "merge", "strategy": "delete-insert"},
                    primary_key="lead_id",
                    # the placeholder row is not stored; a tombstone is, although its
                    # deleted_at is set (`leads` gives that column the hard-delete hint)
                    columns={PLACEHOLDER_MARKER: {"hard_delete": True},
                             "deleted_at": {"hard_delete": False}},
                ),
                create_table_variant=True,
            )


def lead_tags_item(table: pa.Table, disposition: TWriteDispositionConfig) -> DataItemWithMeta:
    """`lead_tags` rows with their table's hints, to be yielded by the `leads` resource."""
    return dlt.mark.with_hints(
        table,
        dlt.mark.make_hints(
            table_name="lead_tags",
            write_disposition=disposition,
            primary_key=["lead_id", "tag"],
            merge_key=[],  # not the `leads` resource's `id` (history mode)
            columns={NO_TAGS_MARKER: {"hard_delete": True}},
        ),
        create_table_variant=True,
    )


def _batches(pages: Iterator[list[dict[str, Any]]], size: int) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for page in pages:
        batch.extend(page)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _unless_quota_spent(notes: RunNotes, resource: str, what: str, read: Callable[[], T]
                        ) -> T | None:
    """`read()`, or None (noted) when the daily quota is spent: the tables keep their rows."""
    notes.reading(resource)
    try:
        return read()
    except QuotaExhausted as error:
        notes.left_unread(UnreadPart(resource, what, "quota", error.resets_at))
        return None


def pipelines_resource(client: LeadRatClient, notes: RunNotes) -> DltResource:
    """`pipelines` and `pipeline_stages`, replaced in full: there are few, and replacing is
    the only way to notice a pipeline or stage that was removed."""

    # parallelized: fetched in dlt's worker threads while the leads are being read
    @dlt.resource(
        name="pipelines", write_disposition="replace", primary_key="id", parallelized=True
    )
    def pipelines() -> Iterator[Any]:
        pipelines = _unless_quota_spent(
            notes, "pipelines", "pipelines and their stages (the tables keep the last ones)",
            lambda: list(client.pipelines.iter(per_page=settings.PER_PAGE)),
        )
        if pipelines is None:
            return
        yield [{k: v for k, v in pipeline.items() if k != "stages"} for pipeline in pipelines]
        stages = [
            {"pipeline_id": pipeline["id"], **stage}
            for pipeline in pipelines
            for stage in pipeline.get("stages") or ()
        ]
        yield dlt.mark.with_hints(
            stages,
            dlt.mark.make_hints(
                table_name="pipeline_stages",
                write_disposition="replace",
                primary_key=["pipeline_id", "id"],
            ),
            create_table_variant=True,
        )

    return pipelines


def _snapshot_date(value: dt.date | str | None) -> dt.date:
    """The run's snapshot date: given, else today (UTC)."""
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        return dt.date.fromisoformat(value)
    return dt.datetime.now(dt.UTC).date()


def analytics_resource(client: LeadRatClient, notes: RunNotes, snapshot_date: dt.date
                       ) -> DltResource:
    """The three analytics reports as of `snapshot_date`, one snapshot per day."""
    date_from = snapshot_date - dt.timedelta(days=settings.ANALYTICS_DAYS - 1)
    day_snapshot: TWriteDispositionConfig = {"disposition": "merge", "strategy": "delete-insert"}

    @dlt.resource(
        name="analytics",
        parallelized=True,
        table_name="analytics_summary",
        write_disposition=day_snapshot,
        primary_key="snapshot_date",
    )
    def analytics() -> Iterator[Any]:
        # all three read before any is written, so a day's snapshot is never half new
        reports = _unless_quota_spent(
            notes, "analytics", f"the analytics snapshot of {snapshot_date.isoformat()}",
            lambda: (
                client.analytics.summary(date_from, snapshot_date),
                client.analytics.sources(date_from, snapshot_date),
                client.analytics.funnel(date_from, snapshot_date),
            ),
        )
        if reports is None:
            return
        summary, sources, funnel = reports
        yield {"snapshot_date": snapshot_date, **summary}
        for table, rows, key in (
            ("analytics_sources", sources, ["source"]),
            ("analytics_funnel", funnel, ["pipeline_id", "stage_id"]),
        ):
            yield dlt.mark.with_hints(
                [{"snapshot_date": snapshot_date, **row} for row in rows],
                dlt.mark.make_hints(
                    table_name=table,
                    write_disposition=day_snapshot,
                    merge_key="snapshot_date",
                    primary_key=["snapshot_date", *key],
                ),
                create_table_variant=True,
            )

    return analytics
