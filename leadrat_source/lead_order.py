"""Newest state wins: the merge conditions that keep an older lead state from overwriting a newer one.

Two writers put leads into the same tables: the scheduled load (a snapshot read from the
API) and the webhook receiver (one event at a time, at least once, in any order). dlt's
merge replaces the stored row unconditionally, so each writer hands dlt a `source_filter`
(a condition on the staged rows, evaluated inside dlt's own merge transaction): a staged
row is merged only if the stored row of the same lead is not newer.

"Newer" compares `updated_at`, then the id of the event that wrote the row
(`_leadrat_event_id`, NULL for rows the poll wrote):

- an event replaces a stored row with an older `updated_at`, or with the same one written
  by an event with a smaller id;
- a poll row replaces a stored row unless that row's `updated_at` is newer.

So at equal `updated_at` the poll wins. Two changes of one lead in the same millisecond
carry the same `updated_at` (the contract has no finer order); the poll read the lead after
both, while the order of their events is unknown (event ids only make the choice the same
on every receiver).

`lead_tags` rows are judged against the lead's row in `leads`, so a lead's tags always
belong to the state `leads` holds.

With `delete_mode = "hard"` a deleted lead has no row left to be newer than the staged
one, so an older state of it (a late event, or a poll snapshot read before the deletion
that the receiver already applied) would come back. Both writers then also record each
deletion in `lead_tombstones` (`lead_id`, `deleted_at`, `updated_at`), and a staged row
is refused when its lead has a tombstone not older than it (`updated_at` at least the
row's: a deleted lead never changes again, so a state of the deletion's millisecond is
older). The deletion itself passes (a `leads` row with `deleted_at` set, a `lead_tags`
no-tags marker): it only deletes, and its tombstone may already be stored. A tombstone
is merged on `lead_id` and kept for good: one small row per deleted lead, since an event
may arrive days late (LeadRat retries for 3 days, a journal may hold it longer).

The stored table is read through a derived table with renamed columns, so the staged
row's columns, written bare, can only resolve to the staged row (dlt aliases the staging
table differently in its DELETE and INSERT statements).
"""

from __future__ import annotations

from typing import Final

from dlt.common.schema.typing import TWriteDispositionConfig

from leadrat_source.lead_tables import NO_TAGS_MARKER

#: The event that wrote a `leads` / `lead_tags` row; NULL when the scheduled load wrote it.
EVENT_ID_COLUMN: Final = "_leadrat_event_id"
#: One row per lead deleted with `delete_mode = "hard"`: what keeps it deleted.
TOMBSTONES_TABLE: Final = "lead_tombstones"


def _newer_stored_lead(dataset: str, lead_id_column: str, from_events: bool) -> str:
    newer = "stored.stored_updated_at > updated_at"
    stored_columns = "id AS stored_id, updated_at AS stored_updated_at"
    if from_events:
        newer = (
            f"({newer} OR (stored.stored_updated_at = updated_at AND (stored.stored_event_id"
            f" IS NULL OR stored.stored_event_id > {EVENT_ID_COLUMN})))"
        )
        stored_columns += f", {EVENT_ID_COLUMN} AS stored_event_id"
    return (
        f"NOT EXISTS (SELECT 1 FROM (SELECT {stored_columns} FROM {dataset}.leads) AS stored"
        f" WHERE stored.stored_id = {lead_id_column} AND {newer})"
    )


def _not_deleted_since(dataset: str, lead_id_column: str, deletion: str) -> str:
    """The staged row is a deletion (`deletion`), or its lead has no tombstone as new."""
    return (
        f"({deletion} OR NOT EXISTS (SELECT 1 FROM (SELECT lead_id AS tombstone_lead_id,"
        f" updated_at AS tombstone_updated_at FROM {dataset}.{TOMBSTONES_TABLE}) AS tombstone"
        f" WHERE tombstone.tombstone_lead_id = {lead_id_column}"
        f" AND tombstone.tombstone_updated_at >= updated_at))"
    )


def _merge(condition: str) -> TWriteDispositionConfig:
    return {"disposition": "merge", "strategy": "delete-insert", "source_filter": condition}


def leads_disposition(dataset: str, *, from_events: bool,
                      hard_deletes: bool = False) -> TWriteDispositionConfig:
    """`leads` merged on `id`, skipping staged rows older than the stored row (and, with
    hard deletes, live rows of a lead deleted since)."""
    condition = _newer_stored_lead(dataset, "id", from_events)
    if hard_deletes:
        condition += " AND " + _not_deleted_since(dataset, "id", "deleted_at IS NOT NULL")
    return _merge(condition)


def lead_tags_merged_by_lead(condition: str | None = None) -> TWriteDispositionConfig:
    """`lead_tags`' disposition: each lead with staged rows (passing `condition`) has its
    stored tags deleted and the staged ones inserted.

    The rows keep dlt's primary key `(lead_id, tag)`, on which dlt deduplicates the staged
    rows: in a user's own pipeline, a load job killed after its rows committed, but before
    dlt recorded that, runs again on the next run and stages its rows twice (our load and
    receiver restart such a load step instead, `repair_killed_commits`). The delete goes through
    `destination_scope`, which replaces dlt's `merge_key`: next to a primary key a merge
    key makes dlt delete by `(lead_id, tag) OR lead_id`, an OR DuckDB cannot hash-join
    (into 2M tag rows: 0.4 s and +290 MB against 0.05 s and nothing, and it grows with the
    table). `lead_id IN (...)` is a plain semi-join in every warehouse."""
    staged = "SELECT lead_id FROM {staging_table}"
    if condition is None:
        return {"disposition": "merge", "strategy": "delete-insert",
                "destination_scope": f"lead_id IN ({staged})"}
    return {"disposition": "merge", "strategy": "delete-insert", "source_filter": condition,
            "destination_scope": f"lead_id IN ({staged} WHERE {condition})"}


def lead_tags_disposition(dataset: str, *, from_events: bool,
                          hard_deletes: bool = False) -> TWriteDispositionConfig:
    """`lead_tags` merged by lead, skipping tags of a state older than the stored lead
    (and, with hard deletes, tags of a lead deleted since)."""
    condition = _newer_stored_lead(dataset, "lead_id", from_events)
    if hard_deletes:
        condition += " AND " + _not_deleted_since(dataset, "lead_id", NO_TAGS_MARKER)
    return lead_tags_merged_by_lead(condition)
