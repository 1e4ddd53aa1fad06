"""Stream the input rows from the warehouse in Arrow chunks, so memory stays flat.

The input is usually a table some other tool wrote (dbt, a notebook), which dlt's schema
does not know; so it is read as a raw query through the dataset's own SQL client: a
table name is quoted by that client, and a user's `--query` runs as given, never pasted
into other SQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import dlt
from dlt.common.destination.exceptions import DestinationUndefinedEntity

from leadrat_source.errors import ConfigurationError

DEFAULT_TABLE = "lead_scores"
CHUNK_ROWS = 1_000


@dataclass(frozen=True)
class InputSpec:
    """Where the rows come from: a table of the dataset, or a SELECT of the user's."""

    table: str | None = None
    query: str | None = None
    max_rows: int | None = None

    def describe(self) -> str:
        return "query" if self.query else f"table {self.table or DEFAULT_TABLE!r}"


def relation_for(dataset: dlt.Dataset, spec: InputSpec) -> dlt.Relation:
    """The relation to read; the user's SQL and table names are never spliced unquoted."""
    if spec.query:
        sql = spec.query.strip().rstrip(";")
    else:
        quoted = dataset.sql_client.make_qualified_table_name(spec.table or DEFAULT_TABLE)
        sql = f"SELECT * FROM {quoted}"
    return dataset.query(sql, _execute_raw_query=True)


def iter_chunks(
    dataset: dlt.Dataset, spec: InputSpec, chunk_rows: int = CHUNK_ROWS
) -> Iterator[tuple[list[str], list[dict[str, Any]]]]:
    """(column names, rows) per chunk, at most `spec.max_rows` rows in all.

    The row cap is applied while streaming, which works for any query; closing the
    generator early closes the cursor.
    """
    remaining = spec.max_rows
    try:
        for table in relation_for(dataset, spec).iter_arrow(chunk_size=chunk_rows):
            if remaining is not None:
                if remaining <= 0:
                    return
                table = table.slice(0, remaining)
                remaining -= table.num_rows
            yield table.column_names, table.to_pylist()
    except DestinationUndefinedEntity as error:
        raise ConfigurationError(
            f"the input {spec.describe()} does not exist in dataset {dataset.dataset_name!r}: "
            "create it, or pass --dataset / --table / --query"
        ) from error
