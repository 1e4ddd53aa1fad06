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


def input_sql(dataset: dlt.Dataset, spec: InputSpec) -> str:
    """The SQL to read; the user's SQL and table names are never spliced unquoted."""
    if spec.query:
        return spec.query.strip().rstrip(";")
    quoted = dataset.sql_client.make_qualified_table_name(spec.table or DEFAULT_TABLE)
    return f"SELECT * FROM {quoted}"


def _arrow_chunks(
    dataset: dlt.Dataset, sql: str, chunk_rows: int
) -> Iterator[tuple[list[str], list[dict[str, Any]]]]:
    relation = dataset.query(sql, _execute_raw_query=True)
    for table in relation.iter_arrow(chunk_size=chunk_rows):
        yield table.column_names, table.to_pylist()


def _postgres_chunks(
    dataset: dlt.Dataset, sql: str, chunk_rows: int
) -> Iterator[tuple[list[str], list[dict[str, Any]]]]:
    """Rows through a server-side cursor: dlt's PostgreSQL client would fetch the whole
    result into memory before handing out the first chunk."""
    from psycopg2 import errors  # only here: the PostgreSQL destination brings it

    with dataset.sql_client as client:
        connection = client.native_connection
        # withhold: the cursor outlives the transaction dlt's client may commit meanwhile
        cursor = connection.cursor(name="leadrat_reverse_sync_input", withhold=True)
        try:
            cursor.execute(sql)
        except errors.UndefinedTable as error:
            connection.rollback()  # no cursor was declared, so none to close
            raise DestinationUndefinedEntity(error) from error
        try:
            while rows := cursor.fetchmany(chunk_rows):
                columns = [column.name for column in cursor.description]
                yield columns, [dict(zip(columns, row, strict=True)) for row in rows]
        finally:
            cursor.close()


def iter_chunks(
    dataset: dlt.Dataset, spec: InputSpec, chunk_rows: int = CHUNK_ROWS
) -> Iterator[tuple[list[str], list[dict[str, Any]]]]:
    """(column names, rows) per chunk, at most `spec.max_rows` rows in all.

    The row cap is applied while streaming, which works for any query; closing the
    generator early closes the cursor.
    """
    remaining = spec.max_rows
    sql = input_sql(dataset, spec)
    is_postgres = dataset.sql_client.capabilities.sqlglot_dialect == "postgres"
    chunks = (_postgres_chunks if is_postgres else _arrow_chunks)(dataset, sql, chunk_rows)
    try:
        for columns, rows in chunks:
            if remaining is not None:
                if remaining <= 0:
                    return
                rows = rows[:remaining]
                remaining -= len(rows)
            yield columns, rows
    except DestinationUndefinedEntity as error:
        raise ConfigurationError(
            f"the input {spec.describe()} does not exist in dataset {dataset.dataset_name!r}: "
            "create it, or pass --dataset / --table / --query"
        ) from error
