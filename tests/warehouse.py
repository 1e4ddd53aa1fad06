"""Test helpers: run loads against a sandbox and compare the warehouse with the sandbox's data."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dlt

from leadrat_source.client import LeadRatClient
from leadrat_source.contract import LEAD_SCALAR_FIELDS
from leadrat_source.lead_tables import parse_timestamp
from leadrat_source.load import LoadRequest, LoadSummary, run_load
from leadrat_source.sandbox import Sandbox

TIMESTAMP_FIELDS = ("created_at", "updated_at", "deleted_at")


@dataclass
class Warehouse:
    """One pipeline + destination for a test: run loads, read tables back."""

    server: Sandbox
    client: LeadRatClient
    pipelines_dir: Path
    destination: str = "duckdb"
    dataset: str = "leadrat"
    pipeline_name: str = "leadrat_test"
    summaries: list[LoadSummary] = field(default_factory=list)
    #: False reads rows through DB-API instead, for drivers without Arrow fetches (fakesnow)
    read_with_arrow: bool = True

    def load(self, **request: Any) -> LoadSummary:
        summary = run_load(
            LoadRequest(
                destination=self.destination,
                dataset=self.dataset,
                pipeline_name=self.pipeline_name,
                pipelines_dir=str(self.pipelines_dir),
                **request,
            ),
            client=self.client,
        )
        self.summaries.append(summary)
        return summary

    def pipeline(self) -> dlt.Pipeline:
        return dlt.attach(self.pipeline_name, pipelines_dir=str(self.pipelines_dir))

    def rows(self, table: str) -> list[dict[str, Any]]:
        relation = self.pipeline().dataset()[table]
        if not self.read_with_arrow:
            return [dict(zip(relation.columns, row)) for row in relation.fetchall()]
        rows: list[dict[str, Any]] = relation.arrow().to_pylist()
        return rows


def _same(stored: Any, expected: Any) -> bool:
    """Whether a warehouse value stands for an API value: JSON text for objects and lists,
    numbers by value; a boolean only for a boolean (1 is not True)."""
    if isinstance(expected, bool) or isinstance(stored, bool):
        return type(stored) is type(expected) and stored == expected
    if isinstance(expected, (dict, list)):
        return isinstance(stored, str) and json.loads(stored) == expected
    if isinstance(expected, float) or isinstance(stored, float):
        return stored is not None and expected is not None and float(stored) == float(expected)
    return bool(stored == expected)


def expected_leads(server: Sandbox, delete_mode: str = "soft") -> dict[str, dict[str, Any]]:
    return {
        lead["id"]: lead
        for lead in server.export_leads()
        if delete_mode == "soft" or lead.get("deleted_at") is None
    }


def assert_equal_to_sandbox(
    warehouse: Warehouse, delete_mode: str = "soft", changed_since: dt.datetime | None = None,
) -> None:
    """The warehouse holds exactly LeadRat's leads and tags: no lead lost, none twice,
    every field equal (a NULL for a null or absent custom field).

    `changed_since` judges a run that leads were changed during: a lead LeadRat last
    updated at or after that instant may still be missing or hold an older version; every
    other lead must be exact."""
    expected = expected_leads(warehouse.server, delete_mode)
    rows = warehouse.rows("leads")
    stored = {row["id"]: row for row in rows}
    assert len(rows) == len(stored), "a lead is stored twice"
    if changed_since is not None:
        moving = {lead_id for lead_id, lead in expected.items()
                  if parse_timestamp(lead["updated_at"]) >= changed_since}
        expected = {lead_id: lead for lead_id, lead in expected.items()
                    if lead_id not in moving or lead_id in stored}
    assert stored.keys() == expected.keys(), (
        f"missing {sorted(expected.keys() - stored.keys())[:5]}, "
        f"extra {sorted(stored.keys() - expected.keys())[:5]}"
    )
    if changed_since is not None:
        expected = {k: v for k, v in expected.items() if k not in moving}
    differences = []
    column_name = warehouse.pipeline().default_schema.naming.normalize_path
    for lead_id, lead in expected.items():
        row = stored[lead_id]
        for name in LEAD_SCALAR_FIELDS:
            value = lead.get(name)
            if name in TIMESTAMP_FIELDS and value is not None:
                value = parse_timestamp(value)
            got = row[name]
            if isinstance(got, dt.datetime) and got.tzinfo is None:
                got = got.replace(tzinfo=dt.UTC)
            if not (got is None and value is None) and not _same(got, value):
                differences.append((lead_id, name, got, value))
        custom = {column_name(f"custom_fields__{key}"): value
                  for key, value in (lead.get("custom_fields") or {}).items()}
        for column in {*custom, *(c for c in row if c.startswith("custom_fields__"))}:
            value, got = custom.get(column), row.get(column)
            if column.endswith("__v_text"):
                continue
            if got is None and row.get(column + "__v_text") is not None:
                continue  # a value that did not fit the column's type went to its variant
            if (value is None) != (got is None) or value is not None and not _same(got, value):
                differences.append((lead_id, column, got, value))
    assert not differences, f"{len(differences)} differences, e.g. {differences[:5]}"

    tag_rows = [(row["lead_id"], row["tag"]) for row in warehouse.rows("lead_tags")]
    assert len(tag_rows) == len(set(tag_rows)), "a tag row is stored twice"
    expected_tags = {(lead["id"], tag) for lead in expected.values() for tag in lead["tags"]}
    if changed_since is not None:
        tag_rows = [(lead_id, tag) for lead_id, tag in tag_rows if lead_id in expected]
    assert set(tag_rows) == expected_tags
