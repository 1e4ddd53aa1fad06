"""Test helpers: run loads against a sandbox and compare the warehouse with the sandbox's data."""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import dlt

from leadrat_source.client import LeadRatClient
from leadrat_source.contract import LEAD_SCALAR_FIELDS
from leadrat_source.load import LoadRequest, LoadSummary, run_load
from leadrat_source.sandbox import Sandbox
from leadrat_source.timestamps import parse_timestamp

TIMESTAMP_FIELDS = ("created_at", "updated_at", "deleted_at")
#: The JSON object of the custom fields that have no column of their own (written here
#: rather than imported: the tests judge the loader against the sandbox, not itself).
OVERFLOW = "custom_fields__overflow"
JSON_COLUMNS = (OVERFLOW, "custom_fields")


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


#: A custom field a lead does not have: its column must be NULL (a JSON null is a value).
class _Absent:
    def __repr__(self) -> str:
        return "<absent>"


ABSENT = _Absent()
VARIANT_SUFFIX = "__v_text"


def same_value(stored: Any, expected: Any) -> bool:
    """Equal in value and in JSON kind: `1` is not `True`, `""` is not NULL, `"1"` is not `1`.

    A number may come back as float or Decimal (a double column holds the int 5 as 5.0);
    objects and lists come back as JSON text and are compared after parsing.
    """
    if isinstance(expected, (dict, list)):
        return isinstance(stored, str) and same_json(json.loads(stored), expected)
    return same_json(stored, expected)


def same_json(stored: Any, expected: Any) -> bool:
    """Structural equality of JSON values that keeps bools, numbers, strings and null apart."""
    if expected is None or stored is None:
        return stored is None and expected is None
    if isinstance(expected, bool) or isinstance(stored, bool):
        return isinstance(stored, bool) and isinstance(expected, bool) and stored == expected
    if isinstance(expected, (int, float)):
        return isinstance(stored, (int, float, Decimal)) and float(stored) == float(expected)
    if isinstance(expected, str):
        return isinstance(stored, str) and stored == expected
    if isinstance(expected, list):
        return (isinstance(stored, list) and len(stored) == len(expected)
                and all(same_json(a, b) for a, b in zip(stored, expected, strict=True)))
    if isinstance(expected, dict):
        return (isinstance(stored, dict) and stored.keys() == expected.keys()
                and all(same_json(stored[key], expected[key]) for key in expected))
    return bool(stored == expected)


def stored_custom_value(row: dict[str, Any], column: str, variant_column: str | None = None
                        ) -> Any:
    """A custom field's value as stored: its column, or the variant column that takes the
    values of another JSON type (text: a string as is, anything else as JSON); ABSENT when
    both are NULL. Raises when both hold a value: a value must sit in one place.
    `variant_column`: the variant's name where dlt shortened it (default: column__v_text)."""
    value, variant = row.get(column), row.get(variant_column or column + VARIANT_SUFFIX)
    if value is not None and variant is not None:
        raise AssertionError(f"{column} and its variant both hold a value: {value!r}, {variant!r}")
    if variant is not None:
        return Variant(variant)
    return ABSENT if value is None else value


@dataclass(frozen=True)
class Variant:
    """Text from a variant column: a string value itself, or another type's JSON."""

    text: str

    def matches(self, expected: Any) -> bool:
        if isinstance(expected, str):
            return self.text == expected
        try:
            return same_json(json.loads(self.text), expected)
        except ValueError:
            return False


def custom_value_matches(stored: Any, expected: Any) -> bool:
    if stored is ABSENT or expected is ABSENT:
        return stored is expected
    if isinstance(stored, Variant):
        return stored.matches(expected)
    return same_value(stored, expected)


def custom_field_places(
    row: dict[str, Any], lead: dict[str, Any], column_name: Callable[[str], str]
) -> tuple[dict[str, str], list[tuple[str, Any, Any]]]:
    """Where each of the lead's custom fields sits in its warehouse row — "column" (its
    own column, named by dlt's naming, or that column's variant for a value of another
    type) or "overflow" (the JSON object `custom_fields__overflow`, or `custom_fields`
    holding all of them) — and the problems: a value missing, different in value or JSON
    kind, in two places, or a value the lead does not have."""
    fields = {key: value for key, value in (lead.get("custom_fields") or {}).items()
              if value is not None}
    overflow: dict[str, Any] = {}
    for name in JSON_COLUMNS:
        if row.get(name) is not None:
            overflow.update(json.loads(row[name]))
    columns = {key: column_name(f"custom_fields__{key}") for key in fields}
    sharing = Counter(columns.values())  # keys that dlt names alike share one name
    places: dict[str, str] = {}
    problems: list[tuple[str, Any, Any]] = []
    used: set[str] = set()
    for key, expected in fields.items():
        column = columns[key]
        variant = column_name(column + VARIANT_SUFFIX)
        # a key named like the overflow column cannot have that column
        stored = ABSENT if column in JSON_COLUMNS else stored_custom_value(row, column, variant)
        if key in overflow:
            places[key] = "overflow"
            if not same_json(overflow[key], expected):
                problems.append((f"{OVERFLOW}[{key!r}]", overflow[key], expected))
            if stored is not ABSENT and sharing[column] == 1:
                problems.append((f"{key!r} in a column and in the overflow", stored, expected))
        elif stored is not ABSENT:
            places[key] = "column"
            used.update((column, variant))
            if not custom_value_matches(stored, expected):
                problems.append((column, stored, expected))
        else:
            problems.append((f"{key!r} is missing", ABSENT, expected))
    problems += [(f"{OVERFLOW}[{key!r}]", value, ABSENT) for key, value in overflow.items()
                 if key not in fields]
    # a column holding a value the lead does not have (a key removed, another lead's key)
    problems += [(name, value, ABSENT) for name, value in row.items()
                 if name.startswith("custom_fields__") and name != OVERFLOW
                 and value is not None and name not in used and sharing[name] <= 1]
    return places, problems


def expected_leads(server: Sandbox, delete_mode: str = "soft") -> dict[str, dict[str, Any]]:
    return {
        lead["id"]: lead
        for lead in server.export_leads()
        if delete_mode == "soft" or lead.get("deleted_at") is None
    }


def assert_equal_to_sandbox(
    warehouse: Warehouse, delete_mode: str = "soft", changed_since: dt.datetime | None = None,
    read_so_far: bool = False, leads: list[dict[str, Any]] | None = None,
) -> None:
    """The warehouse holds exactly LeadRat's leads and tags: no lead lost, none twice,
    every field equal in value and JSON kind, every custom field in exactly one place (its
    column or the JSON overflow) and no value a lead does not have.

    `changed_since` judges a run that leads were changed during: a lead LeadRat last
    updated at or after that instant may still be missing or hold an older version; every
    other lead must be exact. With `read_so_far` (a run that could not read every lead),
    only the leads it holds are judged: each one LeadRat has, none twice, every field equal.
    `leads`: the `leads` rows if already read (a wide table takes seconds to read)."""
    expected = expected_leads(warehouse.server, delete_mode)
    # in history mode (SCD2) the current versions
    rows = [row for row in (warehouse.rows("leads") if leads is None else leads)
            if row.get("_dlt_valid_to") is None]
    stored = {row["id"]: row for row in rows}
    assert len(rows) == len(stored), "a lead is stored twice"
    if changed_since is not None:
        moving = {lead_id for lead_id, lead in expected.items()
                  if parse_timestamp(lead["updated_at"]) >= changed_since}
        expected = {lead_id: lead for lead_id, lead in expected.items()
                    if lead_id not in moving or lead_id in stored}
    if read_so_far:
        assert stored.keys() <= expected.keys(), "a lead is stored that LeadRat does not have"
        expected = {lead_id: expected[lead_id] for lead_id in stored}
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
            if not same_value(got, value):
                differences.append((lead_id, name, got, value))
        _, problems = custom_field_places(row, lead, column_name)
        differences += [(lead_id, *problem) for problem in problems]
        # top-level fields beyond the contract's (a newer deployment) have columns too
        for name in lead.keys() - {*LEAD_SCALAR_FIELDS, "tags", "custom_fields"}:
            got = row.get(column_name(name), ABSENT)
            if not same_value(got, lead[name]):
                differences.append((lead_id, name, got, lead[name]))
    assert not differences, f"{len(differences)} differences, e.g. {differences[:5]}"

    tag_rows = [(row["lead_id"], row["tag"]) for row in warehouse.rows("lead_tags")]
    assert len(tag_rows) == len(set(tag_rows)), "a tag row is stored twice"
    expected_tags = {(lead["id"], tag) for lead in expected.values() for tag in lead["tags"]}
    if changed_since is not None:
        tag_rows = [(lead_id, tag) for lead_id, tag in tag_rows if lead_id in expected]
    assert set(tag_rows) == expected_tags


def assert_tombstones_of_deleted_leads(warehouse: Warehouse) -> None:
    """With delete_mode = hard, `lead_tombstones` holds exactly the leads LeadRat deleted
    (the sandbox's export still lists them), each with its deletion's time."""
    expected = {lead["id"]: parse_timestamp(lead["deleted_at"])
                for lead in warehouse.server.export_leads() if lead.get("deleted_at")}
    rows = warehouse.rows("lead_tombstones")
    stored = {row["lead_id"]: row["deleted_at"] for row in rows}
    assert len(rows) == len(stored), "a lead has two tombstones"
    stored = {lead_id: at if at.tzinfo else at.replace(tzinfo=dt.UTC)
              for lead_id, at in stored.items()}
    assert stored == expected
