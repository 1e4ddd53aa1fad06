"""What every warehouse table and column means, in one place.

The source applies these as dlt hints (`document`): table and column descriptions, and
`references` between the tables, so they live in the pipeline's schema, where
`dlt pipeline <name> schema --format mermaid` draws them and `docs/tables.md` is rendered
from (`leadrat_source.tables_page`). The traps analysts meet and the example queries are
kept here too, beside the columns they are about.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dlt.common.schema.typing import TTableReference
from dlt.sources import DltResource


@dataclass(frozen=True)
class TableDoc:
    description: str
    columns: dict[str, str]
    #: (our columns, the table they point at, its columns)
    references: tuple[tuple[tuple[str, ...], str, tuple[str, ...]], ...] = ()
    #: columns whose names depend on the account, documented by pattern
    column_patterns: dict[str, str] = field(default_factory=dict)


_SNAPSHOT_DATE = ("the day this snapshot is of (UTC date of the run, or the start of the "
                  "Airflow data interval); one snapshot per day, a re-run replaces that day's")

#: Descriptions hold no double quotes: dlt's mermaid output puts them between such quotes.
TABLES: dict[str, TableDoc] = {
    "leads": TableDoc(
        "One row per LeadRat lead, deleted ones included (see deleted_at). Merged on id; "
        "each load brings the leads updated since the last one.",
        {
            "id": "the lead's LeadRat id (`lead_...`), unique",
            "name": "the lead's full name",
            "email": "email address, unique among live leads in LeadRat",
            "phone": "phone number as entered; NULL when unknown",
            "company": "company name; NULL when unknown",
            "status": "new, contacted, qualified, converted or lost",
            "source": "where the lead came from: website, referral, google_ads, "
                      "facebook_ads, walk_in, partner or another text",
            "score": "lead score 0..100; NULL when unscored",
            "pipeline_id": "the sales pipeline the lead is in (pipelines.id); NULL if none",
            "stage_id": "its stage in that pipeline (pipeline_stages.id); NULL if none",
            "created_at": "when the lead was created in LeadRat (UTC)",
            "updated_at": "when the lead last changed in LeadRat (UTC, millisecond "
                          "precision); the incremental cursor",
            "deleted_at": "when the lead was deleted in LeadRat (UTC); NULL for live leads. "
                          "Deleted leads stay as rows unless delete_mode = hard",
        },
        references=(
            (("pipeline_id",), "pipelines", ("id",)),
            (("pipeline_id", "stage_id"), "pipeline_stages", ("pipeline_id", "id")),
        ),
        column_patterns={
            "custom_fields__<key>": "one column per custom field key (the key normalized to "
                                    "snake_case); numbers, booleans and text keep their type, "
                                    "objects and lists are JSON text",
            "<column>__v_text": "a value that did not fit its column's type, as text (the "
                                "column itself is NULL in that row)",
            "<other>": "a top-level field LeadRat added that the contract does not name",
        },
    ),
    "lead_tags": TableDoc(
        "One row per (lead, tag). Each lead read replaces its tag rows, so removed tags "
        "disappear.",
        {
            "lead_id": "the tagged lead (leads.id)",
            "tag": "the tag, as written in LeadRat",
            "_no_tags": "always false in the table: a load sends one marker row with true "
                        "for a lead read without tags, which only deletes its old tags",
            "updated_at": "the lead's updated_at when these tags were read",
        },
        references=((("lead_id",), "leads", ("id",)),),
    ),
    "lead_tombstones": TableDoc(
        "Only with delete_mode = hard (and history off): one row per lead deleted in "
        "LeadRat, whose row and tags the loads removed. Keeps the lead deleted: no load or "
        "webhook event writes a state of the lead that is not newer than its deletion. "
        "Merged on lead_id, kept for good.",
        {
            "lead_id": "the deleted lead's LeadRat id (no longer in leads)",
            "deleted_at": "when the lead was deleted in LeadRat (UTC)",
            "updated_at": "the lead's updated_at at its deletion (UTC; equal to deleted_at)",
            "_placeholder": "always false in the table: each load sends one row with true, "
                            "which only makes sure the table exists, and is not kept",
        },
    ),
    "pipelines": TableDoc(
        "One row per sales pipeline; replaced in full by every load, so removed pipelines "
        "disappear.",
        {
            "id": "the pipeline's LeadRat id (`pipe_...`)",
            "name": "the pipeline's name",
            "created_at": "when the pipeline was created (UTC)",
            "updated_at": "when the pipeline last changed (UTC)",
        },
    ),
    "pipeline_stages": TableDoc(
        "One row per stage of a pipeline; replaced in full by every load.",
        {
            "pipeline_id": "the pipeline the stage belongs to (pipelines.id)",
            "id": "the stage's LeadRat id (`stage_...`)",
            "name": "the stage's name",
            "position": "order of the stage in its pipeline, from 1",
            "probability": "chance of winning a lead in this stage, 0..1",
        },
        references=((("pipeline_id",), "pipelines", ("id",)),),
    ),
    "analytics_summary": TableDoc(
        "LeadRat's summary report over the 30 days up to snapshot_date, one row per day "
        "the connector ran.",
        {
            "snapshot_date": _SNAPSHOT_DATE,
            "total_leads": "leads created in the 30 days, deleted ones excluded",
            "new_leads": "of those, leads still in status new",
            "converted_leads": "of those, leads in status converted",
            "lost_leads": "of those, leads in status lost",
            "conversion_rate": "converted_leads / total_leads, 0..1",
            "from": "first day of the report (text YYYY-MM-DD); a reserved word, quote it "
                    "in SQL",
            "to": "last day of the report (text YYYY-MM-DD); a reserved word, quote it in SQL",
            "generated_at": "when LeadRat computed the report (UTC)",
        },
    ),
    "analytics_sources": TableDoc(
        "LeadRat's leads and conversions per source over the 30 days up to snapshot_date, "
        "one set of rows per day the connector ran.",
        {
            "snapshot_date": _SNAPSHOT_DATE,
            "source": "the lead source (as in leads.source)",
            "leads": "leads from this source created in the 30 days",
            "converted": "of those, leads in status converted",
            "conversion_rate": "converted / leads, 0..1",
        },
    ),
    "analytics_funnel": TableDoc(
        "LeadRat's funnel per pipeline stage over the 30 days up to snapshot_date, one set "
        "of rows per day the connector ran.",
        {
            "snapshot_date": _SNAPSHOT_DATE,
            "pipeline_id": "the pipeline (pipelines.id)",
            "stage_id": "the stage (pipeline_stages.id)",
            "stage_name": "the stage's name when the report was made",
            "position": "the stage's position in its pipeline",
            "leads": "leads in this stage",
            "conversion_rate": "LeadRat's conversion rate for this stage, 0..1",
        },
        references=((("pipeline_id", "stage_id"), "pipeline_stages", ("pipeline_id", "id")),),
    ),
}

#: Columns dlt adds to the tables it writes row by row (not to leads and lead_tags).
DLT_COLUMNS = {
    "_dlt_load_id": "the load that wrote the row (see the _dlt_loads table)",
    "_dlt_id": "dlt's unique id of the row",
}

#: The tables written by each resource of the source.
RESOURCE_TABLES = {
    "leads": ("leads", "lead_tags", "lead_tombstones"),
    "pipelines": ("pipelines", "pipeline_stages"),
    "analytics": ("analytics_summary", "analytics_sources", "analytics_funnel"),
}

#: What trips analysts up, for docs/tables.md.
TRAPS = {
    "Reserved words": "`analytics_summary` has columns named `from` and `to`. Quote them: "
                      "`select \"from\", \"to\" from leadrat.analytics_summary`.",
    "Soft-deleted leads": "A lead deleted in LeadRat stays in `leads` with `deleted_at` set "
                          "(the default `delete_mode = soft`); filter `deleted_at is null` for "
                          "live leads. With `delete_mode = hard` the row and its tags are "
                          "removed instead, and `lead_tombstones` keeps the deletion.",
    "The `_no_tags` marker": "`lead_tags._no_tags` is false in every stored row. Loads send "
                             "a row with `_no_tags = true` for a lead read without tags; it "
                             "deletes that lead's old tags and is not kept. The load summary "
                             "counts these markers in `lead_tags` and names them.",
    "Custom fields": "Each custom field key becomes a column `custom_fields__<key>` of "
                     "`leads`. Objects and lists are stored as JSON text: use your "
                     "warehouse's JSON functions (`json_extract` in DuckDB, `::jsonb` in "
                     "PostgreSQL).",
    "`__v_text` variant columns": "When a value does not fit its column's type (a text in "
                                  "a number column), it goes to `<column>__v_text` and the "
                                  "column holds NULL in that row: look at both, e.g. "
                                  "`coalesce(cast(custom_fields__budget as text), "
                                  "custom_fields__budget__v_text)`.",
    "History mode (SCD2)": "With `history = true`, `leads` keeps every version of a lead: "
                           "`_dlt_valid_from` (when the version was loaded) and "
                           "`_dlt_valid_to` (NULL for the current version). Current leads "
                           "are `_dlt_valid_to is null`; the other versions show how status "
                           "and stage changed. `lead_tags` is not versioned.",
    "Analytics are snapshots": "The `analytics_*` tables hold LeadRat's own reports over "
                               "the 30 days before each `snapshot_date`; compare days by "
                               "`snapshot_date`, do not sum them (the windows overlap).",
}


@dataclass(frozen=True)
class ExampleQuery:
    title: str
    sql: str
    #: needs `leads` loaded with history = true
    history_mode: bool = False


#: Example SQL for docs/tables.md, run by the tests on DuckDB and PostgreSQL. `leadrat` is
#: the dataset (schema) name.
EXAMPLE_QUERIES = {
    "current_leads": ExampleQuery(
        "Current leads (deleted ones left out)",
        """\
select id, name, email, status, source, score, updated_at
from leadrat.leads
where deleted_at is null
order by updated_at desc""",
    ),
    "leads_by_stage": ExampleQuery(
        "Live leads by pipeline and stage, with their names",
        """\
select p.name as pipeline, s.position, s.name as stage, count(l.id) as leads
from leadrat.pipeline_stages as s
join leadrat.pipelines as p on p.id = s.pipeline_id
left join leadrat.leads as l
  on l.pipeline_id = s.pipeline_id and l.stage_id = s.id and l.deleted_at is null
group by p.name, s.position, s.name
order by p.name, s.position""",
    ),
    "conversion_by_source": ExampleQuery(
        "Conversion by source over time (one row per snapshot day and source)",
        """\
select snapshot_date, source, leads, converted, conversion_rate
from leadrat.analytics_sources
order by snapshot_date, source""",
    ),
    "stage_history": ExampleQuery(
        "Stage history of each lead (history mode): one row per version, newest last",
        """\
select id, pipeline_id, stage_id, status, _dlt_valid_from as valid_from,
       _dlt_valid_to as valid_to
from leadrat.leads
order by id, _dlt_valid_from""",
        history_mode=True,
    ),
}


def table_hints(table: str) -> dict[str, Any]:
    """dlt hints carrying a table's description, its columns' and its references."""
    doc = TABLES[table]
    references: list[TTableReference] = [
        {"columns": list(columns), "referenced_table": target,
         "referenced_columns": list(target_columns), "cardinality": "many_to_one",
         "label": ", ".join(columns)}
        for columns, target, target_columns in doc.references
    ]
    return {
        "columns": {name: {"name": name, "description": text}
                    for name, text in doc.columns.items()},
        "references": references,
        "additional_table_hints": {"description": doc.description},
    }


def document(resource: DltResource) -> DltResource:
    """Apply the docs of every table the resource writes: the tables it yields under
    another name as table variants (before its own table's docs, which variants would
    otherwise start from)."""
    own, *others = RESOURCE_TABLES[resource.name]
    for table in others:
        resource.apply_hints(table_name=table, create_table_variant=True, **table_hints(table))
    resource.apply_hints(**table_hints(own))
    return resource
