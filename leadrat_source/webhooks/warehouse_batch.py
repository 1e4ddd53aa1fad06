"""Journaled events → the dlt resources of one micro-batch: `lead_events`, `leads`, `lead_tags`
(and `lead_tombstones` with delete_mode = hard).

`leads` and `lead_tags` have the shapes and hints the scheduled load gives them (the same
Arrow builder, `LeadsHints`), plus `_leadrat_event_id`, which orders two events of the same
`updated_at` (`lead_order`). `lead_events` keeps one row per event id, ever: dlt's
`insert-only` merge inserts an id the table does not hold yet and leaves the rest, so a
re-delivery, or an event that two receivers both journaled, lands once.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import dlt
import pyarrow as pa
from dlt.sources import DltResource

from leadrat_source.custom_fields import LEADS_TABLE, CustomFieldsConfig, current_layout
from leadrat_source.lead_order import EVENT_ID_COLUMN
from leadrat_source.lead_tables import TIMESTAMP, LeadTableBuilder, lead_tags_table
from leadrat_source.source import LeadsHints, lead_tags_item
from leadrat_source.webhooks.events import LeadEvent
from leadrat_source.webhooks.journal import JournalEntry

LEAD_EVENTS_TABLE = "lead_events"


def newest_per_lead(events: Sequence[LeadEvent]) -> list[LeadEvent]:
    """Of several events of one lead in a batch, the newest (by `updated_at`, then id)."""
    newest: dict[str, LeadEvent] = {}
    for event in events:
        current = newest.get(event.lead_id)
        if current is None or (event.lead_updated_at, event.id) > (
            current.lead_updated_at, current.id
        ):
            newest[event.lead_id] = event
    return list(newest.values())


def lead_events_table(entries: Sequence[JournalEntry], events: Sequence[LeadEvent]) -> pa.Table:
    """One row per event: its id, type, time, lead, the raw body as received, and when the
    receiver acknowledged it."""
    table = pa.table({
        "id": pa.array([event.id for event in events], pa.string()),
        "type": pa.array([event.type for event in events], pa.string()),
        "created_at": pa.array([event.created_at for event in events], pa.string()).cast(
            TIMESTAMP),
        "lead_id": pa.array([event.lead_id for event in events], pa.string()),
        "payload": pa.array([entry.body.decode() for entry in entries], pa.string()),
        "received_at": pa.array([round(entry.received_at * 1e6) for entry in entries],
                                pa.int64()).cast(TIMESTAMP),
    })
    # `id` is the primary key: non-null, as dlt's hints have it
    return table.cast(table.schema.set(0, pa.field("id", pa.string(), nullable=False)))


def _with_event_ids(table: pa.Table, lead_ids: pa.Array, event_of: Mapping[str, str]) -> pa.Table:
    return table.append_column(
        EVENT_ID_COLUMN, pa.array([event_of[lead_id] for lead_id in lead_ids.to_pylist()],
                                  pa.string()))


def batch_resources(
    entries: Sequence[JournalEntry], hints: LeadsHints, custom_fields: CustomFieldsConfig,
) -> list[DltResource]:
    """The batch's resources. `leads` is built as the scheduled load builds it, from the
    pipeline's schema (stable column types, the same custom field columns and budget)."""
    events = [LeadEvent.parse(entry.body) for entry in entries]
    latest = newest_per_lead(events)
    leads = [event.lead for event in latest]
    event_of = {event.lead_id: event.id for event in latest}
    tags_table = lead_tags_table(hints.tag_states(leads))
    tags_table = _with_event_ids(tags_table, tags_table["lead_id"], event_of)

    @dlt.resource(name="leads", write_disposition=hints.disposition, columns=hints.columns,
                  **hints.keys)
    def lead_states() -> Iterator[Any]:
        tags_disposition = hints.newest_wins(
            dlt.current.resource(), dlt.current.pipeline(), from_events=True)
        schema = dlt.current.source_schema()
        known = schema.tables.get(LEADS_TABLE, {}).get("columns", {})
        builder = LeadTableBuilder(known, current_layout(custom_fields, known))
        leads_table = hints.versioned(builder.leads_table(leads), leads)
        yield _with_event_ids(leads_table, leads_table["id"], event_of)
        builder.layout.finish(schema)
        yield lead_tags_item(tags_table, tags_disposition)
        yield from hints.tombstones(leads)

    lead_events = dlt.resource(
        lead_events_table(entries, events),
        name=LEAD_EVENTS_TABLE,
        write_disposition={"disposition": "merge", "strategy": "insert-only"},
        primary_key="id",
    )
    return [lead_events, lead_states]
