"""Turn pages of lead objects into Arrow tables for the `leads`, `lead_tags` and
`lead_tombstones` tables.

Yielding Arrow tables lets dlt skip row-by-row normalization (the slow part of a generic
REST source). The price is that flattening and typing happen here:

- contract scalars get fixed types (timestamps are real UTC timestamps);
- `custom_fields.<key>` becomes the column `custom_fields__<key>` (named by dlt's naming)
  while the table's column budget lasts, and the other keys go to one JSON column
  (`custom_fields` decides: see `custom_fields.py`); a top-level field the contract does
  not know becomes a column of its own, so nothing is dropped;
- a column's type is fixed by the first value seen (or by the pipeline schema when the
  column already exists); a later value that does not fit goes, as JSON text, to a
  variant column `<column>__v_text`, the way dlt itself stores variants;
- objects and lists (other than `tags`) are stored as JSON text.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
from dlt.common.normalizers.naming.snake_case import NamingConvention
from dlt.common.schema.typing import TTableSchemaColumns

from leadrat_source.contract import LEAD_SCALAR_FIELDS
from leadrat_source.custom_fields import (
    JSON,
    VARIANT_SUFFIX,
    CustomFieldLayout,
    CustomFieldsConfig,
)

TIMESTAMP = pa.timestamp("us", tz="UTC")

#: Arrow types of the contract's scalar lead fields that are not text.
_NOT_TEXT: dict[str, pa.DataType] = {
    "score": pa.float64(),
    "created_at": TIMESTAMP,
    "updated_at": TIMESTAMP,
    "deleted_at": TIMESTAMP,
}
#: Fixed Arrow types of the contract's scalar lead fields, in the contract's order.
LEAD_FIELD_TYPES: dict[str, pa.DataType] = {
    name: _NOT_TEXT.get(name, pa.string()) for name in LEAD_SCALAR_FIELDS
}
#: Marks the one `lead_tags` row sent for a lead without tags; dlt's hard-delete hint
#: makes the merge delete that lead's old tags and insert nothing for it.
NO_TAGS_MARKER = "_no_tags"
#: Marks the one `lead_tombstones` row sent with every batch of leads, deleted ones or
#: not: it makes dlt create the table the merge conditions read (an empty table cannot
#: do it: dlt's ADBC load into PostgreSQL fails on an empty Parquet file), and dlt's
#: hard-delete hint keeps it out of the table (its `lead_id` is "", which no lead has).
PLACEHOLDER_MARKER = "_placeholder"

#: dlt data types of the columns this module may create, to seed the type registry from
#: an existing pipeline schema.
_DLT_TO_ARROW: dict[str, pa.DataType] = {
    "text": pa.string(),
    "bigint": pa.int64(),
    "double": pa.float64(),
    "decimal": pa.float64(),
    "bool": pa.bool_(),
    "timestamp": TIMESTAMP,
    "json": pa.string(),
}

#: dlt's default naming, for a builder used outside a pipeline (no identifier length limit).
_DEFAULT_NAMING = NamingConvention()

LEAD_TAGS_SCHEMA = pa.schema(
    [
        pa.field("lead_id", pa.string(), nullable=False),
        pa.field("tag", pa.string(), nullable=False),
        pa.field(NO_TAGS_MARKER, pa.bool_(), nullable=False),
        # the lead's updated_at: when these tags were current; also lets the rows travel
        # through the leads resource's incremental step with the leads
        pa.field("updated_at", TIMESTAMP),
    ]
)

#: One row per deleted lead (delete_mode = hard): the deletion, which `lead_order` refuses
#: to let an older state undo.
LEAD_TOMBSTONES_SCHEMA = pa.schema(
    [
        pa.field("lead_id", pa.string(), nullable=False),
        pa.field("deleted_at", TIMESTAMP),
        # the lead's updated_at at its deletion (the contract moves it to deleted_at); also
        # lets the rows travel through the leads resource's incremental step
        pa.field("updated_at", TIMESTAMP),
        pa.field(PLACEHOLDER_MARKER, pa.bool_(), nullable=False),
    ]
)


_NOT_EXTRA_KEYS = frozenset(LEAD_FIELD_TYPES) | {"tags", "custom_fields"}
_GET_LEAD_FIELDS = operator.itemgetter(*LEAD_FIELD_TYPES)
_NONE = type(None)
#: Python types a column of each Arrow type takes as they are (`pa.array` converts them
#: without surprises: bools are kept out of number columns, where Arrow would take them).
_FAST_TYPES: dict[pa.DataType, set[type]] = {
    pa.string(): {str, _NONE},
    pa.int64(): {int, _NONE},
    pa.float64(): {int, float, _NONE},
    pa.bool_(): {bool, _NONE},
    TIMESTAMP: {str, _NONE},
}


#: column types whose values arrive as text: tried as text first (`_text_array`)
_TEXT_TYPES = frozenset({pa.string(), TIMESTAMP})
_JSON_TEXT_TYPES = {str, dict, list, _NONE}
#: a text column without these holds its values as they are (no per-value conversion)
_CONTAINER_TYPES = {dict, list}


def _arrow_type_of(value: Any) -> pa.DataType:
    """The column type a first non-null value establishes."""
    if isinstance(value, bool):
        return pa.bool_()
    if isinstance(value, int):
        return pa.int64()
    if isinstance(value, float):
        return pa.float64()
    return pa.string()


def _to_json_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return orjson.dumps(value).decode()
    except TypeError:  # orjson stops at 64-bit integers; the standard library does not
        return json.dumps(value, ensure_ascii=False)


def _fits(value: Any, arrow_type: pa.DataType) -> Any:
    """Return the value converted for the column, or raise TypeError if it does not fit."""
    if pa.types.is_boolean(arrow_type):
        if isinstance(value, bool):
            return value
    elif pa.types.is_int64(arrow_type):
        if isinstance(value, int) and not isinstance(value, bool) and -(2**63) <= value < 2**63:
            return value
    elif pa.types.is_float64(arrow_type):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif pa.types.is_string(arrow_type):
        if isinstance(value, (dict, list, str)):
            return _to_json_text(value)
    elif pa.types.is_timestamp(arrow_type) and isinstance(value, str):
        return value
    raise TypeError(f"{value!r} does not fit {arrow_type}")


def _variant_array(misfits: Mapping[int, Any], rows: int) -> pa.Array:
    """The variant column: values that did not fit their column, as JSON text."""
    variants: list[str | None] = [None] * rows
    for row, value in misfits.items():
        variants[row] = _to_json_text(value)
    return pa.array(variants, pa.string())


def _add_to_overflow(
    overflow: list[dict[str, Any] | None], key: str, values: Iterable[tuple[int, Any]]
) -> None:
    for row, value in values:
        fields = overflow[row]
        if fields is None:
            fields = overflow[row] = {}
        fields[key] = value


def _custom_values(
    leads: Sequence[Mapping[str, Any]], columns: dict[str, list[Any]]
) -> dict[str, tuple[list[int], list[Any]]]:
    """Each custom field key's (rows, values), nulls left out: sparse, because a wide
    account has thousands of keys and each lead only a few of them."""
    custom: dict[str, tuple[list[int], list[Any]]] = {}
    for row, lead in enumerate(leads):
        fields = lead.get("custom_fields")
        if not isinstance(fields, Mapping):
            if fields:  # not the contract's object: keep it rather than drop it
                columns.setdefault("custom_fields", [None] * len(leads))[row] = fields
            continue
        for key, value in fields.items():
            if value is None:
                continue
            entry = custom.get(key)
            if entry is None:
                entry = custom[key] = ([], [])
            entry[0].append(row)
            entry[1].append(value)
    return custom


def _field_columns(leads: Sequence[Mapping[str, Any]]) -> dict[str, list[Any]]:
    """The contract's lead fields as columns.

    One C-level lookup of all fields per lead (`itemgetter`) and one transposition
    (`zip`), 2.5x faster than a `.get` per field and lead, which walks every lead again for
    each field. The contract puts every field on every lead; a batch where one lacks a
    field takes the `.get` path (the field is NULL there).
    """
    try:
        rows = list(map(_GET_LEAD_FIELDS, leads))
    except KeyError:
        rows = []
    if not rows:
        return {name: [lead.get(name) for lead in leads] for name in LEAD_FIELD_TYPES}
    return dict(zip(LEAD_FIELD_TYPES, map(list, zip(*rows, strict=True)), strict=True))


def _text_array(values: list[Any]) -> pa.Array | None:
    """The values as a text array if they are all text (or null), else None.

    Most columns are text, and Arrow checks each value's type in C while it copies it,
    so this skips a Python pass over the values. Parsed JSON holds no other Python type
    that Arrow takes as text (bytes), so where Arrow refuses a value the careful path
    of `_typed` (objects as JSON text, misfits) decides, as it would have anyway.
    """
    try:
        return pa.array(values, pa.string())
    except (pa.ArrowTypeError, pa.ArrowInvalid):
        return None


def _typed_array(
    name: str, values: list[Any] | pa.Array, column_type: pa.DataType
) -> pa.Array:
    """The values as an array of the column's type; timestamps are parsed from the
    contract's ISO 8601 text."""
    if pa.types.is_timestamp(column_type):
        try:
            text = values if isinstance(values, pa.Array) else pa.array(values, pa.string())
            return text.cast(column_type)
        except pa.ArrowInvalid as error:
            raise ValueError(
                f"lead field {name!r} holds a value that is not an ISO 8601 timestamp "
                f"({error}); the LeadRat contract requires one"
            ) from None
    if isinstance(values, pa.Array):
        return values
    return pa.array(values, column_type)


class LeadTableBuilder:
    """Builds `leads` and `lead_tags` Arrow tables, keeping column types stable across batches.

    One builder lives for one extraction run; its type registry makes batch N+1 use the
    types batch N (or the stored schema) established, so dlt never sees a column change type.
    Its `layout` decides which custom field keys get columns (see `custom_fields`).
    """

    def __init__(
        self,
        known_columns: TTableSchemaColumns | None = None,
        layout: CustomFieldLayout | None = None,
    ) -> None:
        known = known_columns or {}
        self._column_types: dict[str, pa.DataType] = dict(LEAD_FIELD_TYPES)
        for name, column in known.items():
            dlt_type = column.get("data_type")
            if name not in self._column_types and dlt_type in _DLT_TO_ARROW:
                self._column_types[name] = _DLT_TO_ARROW[dlt_type]
        self.layout = layout or CustomFieldLayout(
            CustomFieldsConfig(), known, _DEFAULT_NAMING.normalize_path
        )
        self.layout.add_columns(LEAD_FIELD_TYPES)

    def leads_table(self, leads: Sequence[Mapping[str, Any]]) -> pa.Table:
        """One row per lead: contract scalars, custom fields as the layout places them,
        unknown fields.

        Built column by column (one `pa.array` per column) because per-value work is what
        limits extraction speed; only a column holding an odd value takes the slow path.
        """
        columns = _field_columns(leads)
        extra_keys = set().union(*leads) - _NOT_EXTRA_KEYS
        for key in sorted(extra_keys):
            columns[key] = [lead.get(key) for lead in leads]
        custom: dict[str, tuple[list[int], list[Any]]] = {}
        if self.layout.mode == JSON:
            columns[self.layout.json_column()] = [lead.get("custom_fields") for lead in leads]
        else:
            custom = _custom_values(leads, columns)
        names: list[str] = []
        arrays: list[pa.Array] = []
        for name, values in columns.items():
            array, misfits = self._typed(name, values)
            if array is None:
                continue  # no value yet: the column appears with its first value
            names.append(name)
            arrays.append(array)
            if misfits:
                names.append(name + VARIANT_SUFFIX)
                arrays.append(_variant_array(misfits, len(leads)))
        self.layout.add_columns(names)
        if custom:
            self._add_custom_columns(custom, len(leads), names, arrays)
        # `id` is the primary key: declared non-null as dlt's hints have it, so dlt does
        # not warn on every batch that the Arrow schema and its hints differ
        schema = pa.schema(
            pa.field(name, array.type, nullable=name != "id")
            for name, array in zip(names, arrays, strict=True)
        )
        return pa.Table.from_arrays(arrays, schema=schema)

    def _add_custom_columns(
        self, custom: dict[str, tuple[list[int], list[Any]]], rows: int,
        names: list[str], arrays: list[pa.Array],
    ) -> None:
        """A column per key the layout gives one; the other values, per lead, into the
        overflow column's JSON object (so each value sits in exactly one place)."""
        layout = self.layout
        layout.place({key: len(entry[0]) for key, entry in custom.items()})
        overflow: list[dict[str, Any] | None] = [None] * rows
        row_numbers = pa.array(range(rows), pa.int64())
        for key, (key_rows, key_values) in custom.items():
            column = layout.column(key)
            if column is None:
                _add_to_overflow(overflow, key, zip(key_rows, key_values, strict=True))
                continue
            values, misfits = self._typed(column, key_values)
            assert values is not None  # nulls were left out: every key has a value
            names.append(column)
            # spread the key's values over the batch's rows in C: `index_in` gives each
            # row its value's position, or null where the lead lacks the key
            arrays.append(values.take(pc.index_in(row_numbers, pa.array(key_rows, pa.int64()))))
            if not misfits:
                continue
            misfits = {key_rows[at]: value for at, value in misfits.items()}
            variant = layout.variant_column(key, column)
            if variant is None:
                _add_to_overflow(overflow, key, misfits.items())
            else:
                names.append(variant)
                arrays.append(_variant_array(misfits, rows))
        if any(fields is not None for fields in overflow):
            names.append(layout.overflow_column())
            arrays.append(pa.array(
                [None if fields is None else _to_json_text(fields) for fields in overflow],
                pa.string(),
            ))

    def _typed(self, name: str, values: list[Any]) -> tuple[pa.Array | None, dict[int, Any]]:
        """The column's array, and the values (by row) that do not fit its type; None
        while the column has no value and no type yet."""
        column_type = self._column_types.get(name)
        if column_type is None:
            first = next((value for value in values if value is not None), None)
            if first is None:
                return None, {}
            column_type = self._column_types[name] = _arrow_type_of(first)
        if column_type in _TEXT_TYPES:
            text = _text_array(values)
            if text is not None:
                return _typed_array(name, text, column_type), {}
        value_types = set(map(type, values))
        if (pa.types.is_string(column_type) and value_types <= _JSON_TEXT_TYPES
                and value_types & _CONTAINER_TYPES):
            # objects and lists (custom fields often hold them) stored as JSON text
            values = [value if value is None else _to_json_text(value) for value in values]
            value_types = {str}
        if value_types <= _FAST_TYPES[column_type]:
            try:
                return _typed_array(name, values, column_type), {}
            except (pa.ArrowInvalid, OverflowError):
                pass  # e.g. an integer beyond int64: sort it out value by value
        fitting: list[Any] = [None] * len(values)
        misfits: dict[int, Any] = {}
        for row, value in enumerate(values):
            if value is None:
                continue
            try:
                fitting[row] = _fits(value, column_type)
            except TypeError:
                if name in LEAD_FIELD_TYPES and name != "score":
                    raise ValueError(
                        f"lead field {name!r} has the value {value!r}, which the LeadRat "
                        "contract does not allow for it; report this to LeadRat support"
                    ) from None
                misfits[row] = value
        return _typed_array(name, fitting, column_type), misfits

def lead_tags_table(leads: Iterable[Mapping[str, Any]]) -> pa.Table:
    """Rows `(lead_id, tag)` for each lead's current tags, plus a no-tags marker row.

    `lead_tags` is merged with `lead_id` as merge key, so every lead in the batch has its
    old tag rows replaced. A lead whose tags are all gone would otherwise yield no row and
    keep its stale tags; the marker row (hard-delete hint) makes the merge delete them.
    """
    leads = list(leads)
    # "" stands for "no tags" (`tag` is not null); the marker row is never inserted
    tag_lists = pa.array(
        [sorted(set(tags)) if (tags := lead.get("tags")) else [""] for lead in leads],
        pa.list_(pa.string()),
    )
    # one row per tag: each lead's id and updated_at repeated by its tag count
    owner = pc.list_parent_indices(tag_lists)
    tags = pc.list_flatten(tag_lists)
    return pa.Table.from_arrays(
        [
            pa.array([lead["id"] for lead in leads], pa.string()).take(owner),
            tags,
            pc.equal(tags, ""),
            pa.array([lead["updated_at"] for lead in leads], pa.string())
            .cast(TIMESTAMP)
            .take(owner),
        ],
        schema=LEAD_TAGS_SCHEMA,
    )


def lead_tombstones_table(leads: Sequence[Mapping[str, Any]]) -> pa.Table:
    """A row `(lead_id, deleted_at, updated_at)` for each deleted lead among `leads`, and
    the placeholder row (`PLACEHOLDER_MARKER`; the first lead's `updated_at`, which is
    inside the window the leads were read from)."""
    deleted = [lead for lead in leads if lead.get("deleted_at")]
    placeholder = {"id": "", "deleted_at": None,
                   "updated_at": leads[0]["updated_at"] if leads else None}
    rows = [*deleted, placeholder]
    return pa.Table.from_arrays(
        [
            pa.array([lead["id"] for lead in rows], pa.string()),
            pa.array([lead["deleted_at"] for lead in rows], pa.string()).cast(TIMESTAMP),
            pa.array([lead["updated_at"] for lead in rows], pa.string()).cast(TIMESTAMP),
            pa.array([lead is placeholder for lead in rows], pa.bool_()),
        ],
        schema=LEAD_TOMBSTONES_SCHEMA,
    )
