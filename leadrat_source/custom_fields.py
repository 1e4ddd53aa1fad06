"""Where each custom field key is stored: a `leads` column of its own, or one JSON column.

Accounts collect custom fields for years (one per form, per campaign), and every warehouse
caps a table's columns (PostgreSQL 1,600, BigQuery 10,000). A load that asks for one
column too many fails, and every later run fails the same way: the pipeline is wedged.
So, by default (`"columns+overflow"`), keys get columns of their own while the table's
column budget lasts, and the keys past it go, per lead, into one JSON object column
`custom_fields__overflow`. Nothing is lost, and a key sits in exactly one place per row.

Decisions are sticky: a key that has a column (in the dlt schema, i.e. in the warehouse)
keeps it in later runs, and the budget counts the columns the table already has. Each
column a key gets carries the key in the column hint `x-leadrat-custom-field`, so the
mapping (dlt may have shortened the name to the warehouse's identifier length, or a
second key may normalize to the same name) can always be read from the dlt schema.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import dlt
from dlt.common.schema import Schema
from dlt.common.schema.typing import TTableSchemaColumns

from leadrat_source.errors import ConfigurationError

log = logging.getLogger("leadrat_source.custom_fields")

COLUMNS_AND_OVERFLOW: Final = "columns+overflow"
COLUMNS: Final = "columns"
JSON: Final = "json"
MODES: Final = (COLUMNS_AND_OVERFLOW, COLUMNS, JSON)

#: The whole `custom_fields` object as JSON (mode "json").
JSON_COLUMN: Final = "custom_fields"
#: Columns of one key each are `custom_fields__<key>` (before dlt's naming), as dlt would
#: flatten the object.
CUSTOM_FIELDS_PREFIX: Final = JSON_COLUMN + "__"
#: The JSON object of a lead's keys that have no column (mode "columns+overflow").
OVERFLOW_COLUMN: Final = CUSTOM_FIELDS_PREFIX + "overflow"
VARIANT_SUFFIX: Final = "__v_text"
#: Column hint naming the custom field key a column holds (the data dictionary's source).
KEY_HINT: Final = "x-leadrat-custom-field"
LEADS_TABLE: Final = "leads"
_DESCRIPTIONS: Final = {
    OVERFLOW_COLUMN: "LeadRat custom fields without a column of their own, as a JSON object",
    JSON_COLUMN: "LeadRat custom fields, the whole object as JSON",
}

#: Hard column limits per table of the warehouses that publish one (dlt destination type).
COLUMN_LIMITS: Final[Mapping[str, int]] = {
    "postgres": 1_600, "redshift": 1_600, "bigquery": 10_000, "mssql": 1_024, "synapse": 1_024,
}
#: The budget where the warehouse publishes no limit (DuckDB, Snowflake, ...): PostgreSQL's,
#: so the `leads` table keeps one shape when a project moves between warehouses.
DEFAULT_COLUMN_BUDGET: Final = 1_600
#: Columns kept free for what this module does not place: dlt's own columns (`_dlt_id`,
#: `_dlt_load_id`, SCD2's validity pair), fields the API may add at the top level, and
#: variant columns of the contract's fields.
RESERVED_COLUMNS: Final = 24


@dataclass(frozen=True)
class CustomFieldsConfig:
    """The `sources.leadrat` settings `custom_fields`, `custom_field_columns`,
    `leads_max_columns`, validated."""

    mode: str = COLUMNS_AND_OVERFLOW
    #: Only these keys may get columns (the others go to the overflow); None: any key.
    allow: frozenset[str] | None = None
    #: Most columns `leads` may have; None: the warehouse's limit (or the default budget).
    max_columns: int | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigurationError(
                f"custom_fields must be one of {', '.join(map(repr, MODES))}, not "
                f"{self.mode!r} (sources.leadrat.custom_fields)"
            )
        if self.allow is not None and self.mode != COLUMNS_AND_OVERFLOW:
            raise ConfigurationError(
                "custom_field_columns (the keys that get columns) needs custom_fields = "
                f"{COLUMNS_AND_OVERFLOW!r}, where the other keys go to {OVERFLOW_COLUMN}; "
                f"it is {self.mode!r}"
            )
        if self.max_columns is not None and self.max_columns <= RESERVED_COLUMNS:
            raise ConfigurationError(
                f"leads_max_columns must be more than {RESERVED_COLUMNS} (columns kept for "
                f"the lead's own fields and dlt's), not {self.max_columns}"
            )

    @classmethod
    def from_settings(
        cls, mode: str, columns: Iterable[str] | None, max_columns: int | None
    ) -> CustomFieldsConfig:
        """From the source's arguments (`columns`: a TOML list, or a JSON list in
        `SOURCES__LEADRAT__CUSTOM_FIELD_COLUMNS`)."""
        return cls(mode, None if columns is None else frozenset(columns), max_columns)

    def budget(self, destination_type: str | None) -> tuple[int | None, bool]:
        """The table's column budget, and whether it is the warehouse's hard limit (a
        `max_columns` above that limit could only fail: the limit wins)."""
        limit = COLUMN_LIMITS.get(destination_type or "")
        if self.max_columns is not None and (limit is None or self.max_columns < limit):
            return self.max_columns, False
        if limit is not None:
            return limit, True
        return (None if self.mode == COLUMNS else DEFAULT_COLUMN_BUDGET), False


class CustomFieldLayout:
    """Places each custom field key of one extraction run: its column, or the overflow.

    `normalize` is dlt's naming of the run's schema (`naming.normalize_path`), which
    lowercases, replaces odd characters and shortens names to the warehouse's identifier
    length: placing keys by their final names is what lets two keys that normalize alike,
    or a key named like another key's variant column, never collide in one column.
    """

    def __init__(
        self,
        config: CustomFieldsConfig,
        known_columns: TTableSchemaColumns,
        normalize: Callable[[str], str],
        destination_type: str | None = None,
    ) -> None:
        self.config = config
        self._normalize = normalize
        self.destination_type = destination_type
        self.limit, self._hard_limit = config.budget(destination_type)
        #: every column of the table: known to the schema or created in this run
        self._columns: set[str] = set(known_columns)
        #: column -> the key it holds (its variant column too), as far as known
        self._owner: dict[str, str] = {
            name: key for name, column in known_columns.items()
            if isinstance(key := column.get(KEY_HINT), str)
        }
        self._placed: dict[str, str | None] = {}
        #: columns created in this run -> the key each holds (None: a JSON column)
        self._new_columns: dict[str, str | None] = {}
        #: keys put in the overflow for want of a column (budget or a name collision)
        self.crowded_out: set[str] = set()

    @property
    def mode(self) -> str:
        return self.config.mode

    def add_columns(self, names: Iterable[str]) -> None:
        """Count columns the table gets besides custom fields (contract and unknown fields)."""
        self._columns.update(names)

    def place(self, counts: Mapping[str, int]) -> None:
        """Place the keys not seen before; the most used first, so that when the budget
        runs out it is the rare keys that go to the overflow."""
        new = [key for key in counts if key not in self._placed]
        for key in sorted(new, key=lambda key: (-counts[key], key)):
            self._placed[key] = self._column_for(key)

    def column(self, key: str) -> str | None:
        """The key's column, or None for the overflow (`place` it first)."""
        return self._placed[key]

    def variant_column(self, key: str, column: str) -> str | None:
        """The column for the key's values that do not fit its column's type, or None
        (the overflow) when the budget has no room for it."""
        variant = self._normalize(column + VARIANT_SUFFIX)
        if self._owner.get(variant, key) != key:
            self.crowded_out.add(key)
            return None
        if variant in self._columns or self._claim(variant, key):
            self._owner[variant] = key
            return variant
        self.crowded_out.add(key)
        return None

    def overflow_column(self) -> str:
        """The overflow column's name; counted in the table from its first use."""
        if OVERFLOW_COLUMN not in self._columns:
            self._columns.add(OVERFLOW_COLUMN)
            self._new_columns[OVERFLOW_COLUMN] = None
        return OVERFLOW_COLUMN

    def json_column(self) -> str:
        """The column of the whole object (mode "json")."""
        if JSON_COLUMN not in self._columns:
            self._columns.add(JSON_COLUMN)
            self._new_columns[JSON_COLUMN] = None
        return JSON_COLUMN

    def finish(self, schema: Schema) -> None:
        """At the end of the run: write into the dlt schema which key each new column
        holds (the data dictionary), and log one WARNING if keys went to the overflow.

        The source schema is the one dlt extracts into (its documented handle inside a
        resource); by now it holds every column the run's tables created. Column hints
        given with the items instead would make dlt re-validate thousands of columns on
        every batch (the extract step of a wide first load took 2.8x as long).
        """
        columns = schema.tables.get(LEADS_TABLE, {}).get("columns", {})
        for name, key in self._new_columns.items():
            if name not in columns:
                continue  # not yet written (the run stopped early): named when it is
            column: dict[str, Any] = columns[name]  # type: ignore[assignment]
            if key is not None:
                column[KEY_HINT] = key
                column.setdefault("description", f"LeadRat custom field {key!r}")
            else:
                column.setdefault("description", _DESCRIPTIONS[name])
        self._new_columns = {}
        if not self.crowded_out:
            return
        _warn_crowded_out(len(self.crowded_out), self.limit,
                          self.destination_type if self._hard_limit else None)

    def _column_for(self, key: str) -> str | None:
        allow = self.config.allow
        if allow is not None and key not in allow:
            return None  # the user's choice: no warning
        column = self._column_name(key)
        if column is None or column == OVERFLOW_COLUMN:
            self.crowded_out.add(key)
            return None
        owner = self._owner.get(column)
        if owner is not None and owner != key:
            self.crowded_out.add(key)  # another key normalizes to this name
            return None
        if column in self._columns or self._claim(column, key):
            self._owner[column] = key
            return column
        if self.mode == COLUMNS:
            raise ConfigurationError(
                f"leads would need more than the {self.limit} columns {self.destination_type} "
                f"allows per table for its custom fields (custom_fields = {COLUMNS!r}); set "
                f"sources.leadrat.custom_fields = {COLUMNS_AND_OVERFLOW!r} (keys past the "
                f"budget go to {OVERFLOW_COLUMN}) or {JSON!r}"
            )
        self.crowded_out.add(key)
        return None

    def _column_name(self, key: str) -> str | None:
        """dlt's name for the key's column; None for a key dlt cannot name (e.g. "")."""
        if not key.strip():
            return None
        try:
            column = self._normalize(CUSTOM_FIELDS_PREFIX + key)
        except ValueError:
            return None
        # a key of separators only normalizes to the prefix itself: not a column of its own
        return column if column.startswith(CUSTOM_FIELDS_PREFIX) else None

    def _claim(self, column: str, key: str) -> bool:
        """Create the column if the budget has room for it."""
        if self.limit is not None and len(self._columns) + 1 > self.limit - RESERVED_COLUMNS:
            return False
        self._columns.add(column)
        self._new_columns[column] = key
        return True


def _warn_crowded_out(keys: int, limit: int | None, limited_by: str | None) -> None:
    """The one WARNING of a run that put keys in the overflow for want of a column."""
    log.warning(
        "leads: %d custom field key(s) are stored in the JSON column %s instead of "
        "columns of their own: the table's column budget (%s columns%s) is used up or "
        "their names collide after normalization. Choose the keys that get columns "
        "with sources.leadrat.custom_field_columns, raise sources.leadrat."
        "leads_max_columns where the warehouse allows, or store all keys as JSON with "
        "sources.leadrat.custom_fields = \"json\"",
        keys, OVERFLOW_COLUMN, limit, f", the limit of {limited_by}" if limited_by else "",
    )


def current_layout(config: CustomFieldsConfig, known_columns: TTableSchemaColumns
                   ) -> CustomFieldLayout:
    """The layout for the run being extracted: dlt's naming (identifier length of the
    warehouse) and the destination's column limit, from the current pipeline."""
    schema = dlt.current.source_schema()
    destination = dlt.current.pipeline().destination
    destination_type = destination.destination_type.rsplit(".", 1)[-1] if destination else None
    return CustomFieldLayout(config, known_columns, schema.naming.normalize_path,
                             destination_type)
