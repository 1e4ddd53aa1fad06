"""Input columns → what to send for one lead, and the hash that says whether it changed.

A warehouse row names lead fields by column: `lead_id` (required), the PUT fields of the
contract (`score`, `status`, `name`, ...), custom fields, `tags_add`, and `pipeline_id`
with `stage_id` for a stage move. Custom fields come in either form the load writes them:
a column per key (`custom_fields__<key>`), or a JSON object (`custom_fields`, the "json"
layout, and `custom_fields__overflow`, the keys without a column of their own); a key's
own column wins over the same key in an object. Anything else is an error before a
request is sent, so a typo never turns into a half-applied sync.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from leadrat_source.contract import LEAD_UPDATABLE_FIELDS
from leadrat_source.custom_fields import CUSTOM_FIELDS_PREFIX, JSON_COLUMN, OVERFLOW_COLUMN
from leadrat_source.errors import ConfigurationError

LEAD_ID = "lead_id"
TAGS_ADD = "tags_add"
PIPELINE_ID = "pipeline_id"
STAGE_ID = "stage_id"
#: Input columns holding custom fields as one JSON object (text or the warehouse's JSON).
CUSTOM_OBJECT_COLUMNS = (JSON_COLUMN, OVERFLOW_COLUMN)
#: Plain PUT fields; custom fields arrive one column per key instead.
PUT_FIELDS = tuple(name for name in LEAD_UPDATABLE_FIELDS if name != "custom_fields")
#: PUT fields the contract's lead object allows to be null; `--null-clears` clears only
#: these (and custom field keys): a NULL name, email, status or source is never sent.
CLEARABLE_FIELDS = frozenset({"phone", "company", "score"})
#: dlt's bookkeeping columns, present when the input table was itself loaded by dlt.
IGNORED_PREFIX = "_dlt_"


@dataclass(frozen=True)
class LeadChange:
    """Everything one input row asks LeadRat to do to one lead."""

    lead_id: str
    update: dict[str, Any] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    stage: tuple[str, str] | None = None  # (pipeline_id, stage_id)

    @property
    def is_empty(self) -> bool:
        return not self.update and not self.tags and self.stage is None

    def digest(self) -> str:
        """A stable hash of the requests this row makes: equal hash, nothing to resend."""
        canonical = json.dumps(
            {"update": self.update, "tags": sorted(self.tags), "stage": self.stage},
            sort_keys=True, separators=(",", ":"),
        )
        return hashlib.sha256(canonical.encode()).hexdigest()[:32]

    def sample(self) -> dict[str, Any]:
        """What a dry run shows for this row."""
        shown: dict[str, Any] = {"lead_id": self.lead_id}
        if self.update:
            shown["put"] = self.update
        if self.tags:
            shown["tags_add"] = self.tags
        if self.stage:
            shown["move"] = {"pipeline_id": self.stage[0], "stage_id": self.stage[1]}
        return shown


@dataclass(frozen=True)
class ColumnMap:
    """The validated input columns, matched case-insensitively (Snowflake shouts)."""

    lead_id: str
    put: dict[str, str]  # lead field -> input column
    custom: dict[str, str]  # custom field key -> input column
    custom_objects: tuple[str, ...]  # input columns of JSON objects of custom fields
    tags_add: str | None
    pipeline_id: str | None
    stage_id: str | None

    @classmethod
    def from_columns(cls, columns: Iterable[str]) -> ColumnMap:
        """Validate input column names; raise ConfigurationError saying what is wrong."""
        by_name: dict[str, str] = {}
        custom: dict[str, str] = {}
        objects: list[str] = []
        unknown: list[str] = []
        for column in columns:
            lowered = column.lower()
            if lowered.startswith(IGNORED_PREFIX):
                continue
            if lowered in CUSTOM_OBJECT_COLUMNS:
                objects.append(column)
            elif lowered.startswith(CUSTOM_FIELDS_PREFIX) and len(column) > len(
                CUSTOM_FIELDS_PREFIX
            ):
                custom[column[len(CUSTOM_FIELDS_PREFIX):]] = column
            elif lowered in (LEAD_ID, TAGS_ADD, PIPELINE_ID, STAGE_ID, *PUT_FIELDS):
                if lowered in by_name:
                    raise ConfigurationError(f"input column {lowered!r} appears twice")
                by_name[lowered] = column
            else:
                unknown.append(column)
        if unknown:
            raise ConfigurationError(
                f"unknown input column(s) {', '.join(map(repr, unknown))}: columns must be "
                f"{LEAD_ID!r}, lead fields ({', '.join(PUT_FIELDS)}), "
                f"'{CUSTOM_FIELDS_PREFIX}<key>', {' or '.join(map(repr, CUSTOM_OBJECT_COLUMNS))} "
                f"(a JSON object of custom fields), {TAGS_ADD!r}, or {PIPELINE_ID!r} with "
                f"{STAGE_ID!r}; rename or drop them in --query"
            )
        if LEAD_ID not in by_name:
            raise ConfigurationError(
                f"the input has no {LEAD_ID!r} column; it must hold LeadRat lead IDs (lead_...)"
            )
        if (PIPELINE_ID in by_name) != (STAGE_ID in by_name):
            raise ConfigurationError(
                f"a stage move needs both {PIPELINE_ID!r} and {STAGE_ID!r} columns"
            )
        mapped = cls(
            lead_id=by_name[LEAD_ID],
            put={name: by_name[name] for name in PUT_FIELDS if name in by_name},
            custom=custom,
            custom_objects=tuple(objects),
            tags_add=by_name.get(TAGS_ADD),
            pipeline_id=by_name.get(PIPELINE_ID),
            stage_id=by_name.get(STAGE_ID),
        )
        if not (mapped.put or mapped.custom or mapped.custom_objects or mapped.tags_add
                or mapped.stage_id):
            raise ConfigurationError(
                f"the input has {LEAD_ID!r} but nothing to push: add a column such as 'score'"
            )
        return mapped

    def change_for(self, row: Mapping[str, Any], null_clears: bool = False) -> LeadChange:
        """The change one row asks for. NULL means "leave as is", unless `null_clears` and
        the field may be null."""
        lead_id = row[self.lead_id]
        if lead_id is None or str(lead_id).strip() == "":
            raise ValueError("lead_id is empty")
        update: dict[str, Any] = {}
        for name, column in self.put.items():
            value = json_value(row[column])
            if value is not None or (null_clears and name in CLEARABLE_FIELDS):
                update[name] = value
        given = {}
        for column in self.custom_objects:
            given.update(custom_fields_object(row[column], column))
        given.update((key, json_value(row[column])) for key, column in self.custom.items())
        custom = {key: value for key, value in given.items()
                  if value is not None or null_clears}
        if custom:
            update["custom_fields"] = custom
        tags = parse_tags(row[self.tags_add]) if self.tags_add else []
        stage = None
        if self.pipeline_id and self.stage_id:
            pipeline_id, stage_id = row[self.pipeline_id], row[self.stage_id]
            if pipeline_id is not None and stage_id is not None:
                stage = (str(pipeline_id), str(stage_id))
        return LeadChange(str(lead_id), update, tags, stage)


def custom_fields_object(value: Any, column: str) -> dict[str, Any]:
    """The custom fields of a JSON object column: JSON text, or an object the driver
    already decoded; NULL is no keys. Values are sent as the JSON has them (80.0 stays
    a float here, unlike a DOUBLE column's 80.0, which may only be a widened 80)."""
    if value is None:
        return {}
    if isinstance(value, (str, bytes)):
        try:
            value = json.loads(value)
        except ValueError:
            raise ValueError(f"{column} is not valid JSON: {str(value)[:80]!r}") from None
    if not isinstance(value, Mapping):
        # ValueError like every bad input value: the row is reported and skipped
        raise ValueError(f"{column} must hold a JSON object of custom fields, not "  # noqa: TRY004
                         f"{type(value).__name__}")
    return {str(key): item for key, item in value.items()}


def parse_tags(value: Any) -> list[str]:
    """Tags to add from a list column or a comma-separated string; NULL adds none."""
    if value is None:
        return []
    items = value if isinstance(value, (list, tuple)) else str(value).split(",")
    return sorted({str(item).strip() for item in items if item is not None and str(item).strip()})


def json_value(value: Any) -> Any:
    """A warehouse value as JSON the API accepts: integral numbers as ints (so DuckDB's
    DOUBLE 80.0 and Postgres' NUMERIC 80 hash and send alike), timestamps as ISO 8601."""
    if isinstance(value, Decimal):
        value = float(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    return value
