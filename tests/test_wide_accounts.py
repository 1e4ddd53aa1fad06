"""Accounts with thousands of custom fields: loads never pass the warehouse's column limit,
and every value lands exactly once, in its column or in the JSON overflow column.

The oracle is the sandbox's export; a key's column name comes from dlt's naming of the
pipeline's schema (with the warehouse's identifier length), not from the loader.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import pytest
from warehouse import OVERFLOW, Warehouse, assert_equal_to_sandbox, custom_field_places

from leadrat_source.custom_fields import KEY_HINT
from leadrat_source.errors import ConfigurationError
from leadrat_source.reverse_sync import ReverseSyncRequest, run_reverse_sync
from leadrat_source.sandbox import Sandbox
from leadrat_source.sandbox.store import Store

WIDE_KEYS = 2_000
ROOMY_KEYS = 300
LEADS = 450
#: PostgreSQL's limit, which the default budget keeps on every warehouse.
POSTGRES_COLUMNS = 1_600
POSTGRES_IDENTIFIER_BYTES = 63
LOG = "leadrat_source.custom_fields"


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def destination(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "postgres":
        monkeypatch.setenv("DESTINATION__POSTGRES__CREDENTIALS",
                           request.getfixturevalue("postgres_url"))
    return str(request.param)


@pytest.fixture
def wide_warehouse(
    request: pytest.FixtureRequest, destination: str, make_sandbox: Callable[..., Sandbox],
    make_warehouse: Callable[..., Warehouse], monkeypatch: pytest.MonkeyPatch,
) -> Callable[..., Warehouse]:
    # no lookback: the second run reads exactly the leads changed since the first (plus
    # those on the cursor's millisecond), so its WARNING's count can be checked exactly
    monkeypatch.setenv("SOURCES__LEADRAT__LOOKBACK_SECONDS", "0")

    def create(**sandbox_config: Any) -> Warehouse:
        server = make_sandbox(rate_limit=0, **sandbox_config)
        if destination == "postgres":
            dataset = request.getfixturevalue("postgres_schema")
            return make_warehouse(server, destination="postgres", dataset=dataset)
        return make_warehouse(server)

    return create


def places(warehouse: Warehouse, leads: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    """lead id -> key -> "column" | "overflow" in the `leads` rows, after checking every
    value against the sandbox: present, equal with its JSON type, in exactly one place."""
    naming = warehouse.pipeline().default_schema.naming
    rows = {row["id"]: row for row in leads}
    found: dict[str, dict[str, str]] = {}
    problems = []
    for lead in warehouse.server.export_leads():
        found[lead["id"]], lead_problems = custom_field_places(
            rows[lead["id"]], lead, naming.normalize_path)
        problems += [(lead["id"], *problem) for problem in lead_problems]
    assert not problems, f"{len(problems)} problems, e.g. {problems[:5]}"
    return found


def data_dictionary(warehouse: Warehouse) -> dict[str, str]:
    """Column -> the custom field key it holds, as the dlt schema records it."""
    columns = warehouse.pipeline().default_schema.tables["leads"]["columns"]
    return {name: column[KEY_HINT] for name, column in columns.items() if KEY_HINT in column}


def assert_dictionary_names_every_column(warehouse: Warehouse,
                                         found: dict[str, dict[str, str]]) -> None:
    """Every custom field column of the table is in the data dictionary, under the key
    whose values it holds (the sandbox says which keys sit in columns)."""
    dictionary = data_dictionary(warehouse)
    naming = warehouse.pipeline().default_schema.naming
    assert {name for name in table_columns(warehouse) if name.startswith("custom_fields__")
            } - {OVERFLOW} == set(dictionary)
    for lead in found.values():
        for key, at in lead.items():
            if at == "column":
                assert dictionary[naming.normalize_path(f"custom_fields__{key}")] == key


#: Python types of the JSON values each dlt column type holds (objects and lists: text).
FITS = {"text": (str, dict, list), "bigint": (int,), "double": (int, float), "bool": (bool,)}


def assert_keys_keep_their_columns(warehouse: Warehouse, found: dict[str, dict[str, str]],
                                   with_column: set[str]) -> None:
    """A key that had a column keeps it: its values sit there, except a value of another
    JSON type than the column's when the budget has no room for a variant column."""
    naming = warehouse.pipeline().default_schema.naming
    schema = warehouse.pipeline().default_schema.tables["leads"]["columns"]
    lost = []
    for lead in warehouse.server.export_leads():
        for key, at in found[lead["id"]].items():
            if key in with_column and at == "overflow":
                column = schema[naming.normalize_path(f"custom_fields__{key}")]
                value = lead["custom_fields"][key]
                if isinstance(value, FITS[column["data_type"]]) and (
                        not isinstance(value, bool) or column["data_type"] == "bool"):
                    lost.append((lead["id"], key, value, column["data_type"]))
    assert not lost, f"keys that had a column lost it: {lost[:5]}"


def read_leads(warehouse: Warehouse) -> list[dict[str, Any]]:
    """The `leads` rows through the destination's own client (dlt's dataset reader takes
    seconds to build a query over 1,600 columns)."""
    with warehouse.pipeline().sql_client() as client:
        table = client.make_qualified_table_name("leads")
        with client.execute_query(f"select * from {table}") as cursor:
            names = [column[0] for column in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def table_columns(warehouse: Warehouse) -> set[str]:
    """The `leads` columns the warehouse itself has (its catalog, not the dlt schema)."""
    with warehouse.pipeline().sql_client() as client:
        rows = client.execute_sql(
            "select column_name from information_schema.columns "
            "where table_schema = %s and table_name = %s", warehouse.dataset, "leads")
    return {row[0] for row in rows or ()}


def overflow_keys(leads: list[dict[str, Any]], lead_ids: set[str] | None = None) -> set[str]:
    """Keys in the overflow column of the given leads' rows (all rows by default)."""
    return {key for row in leads
            if row.get(OVERFLOW) is not None and (lead_ids is None or row["id"] in lead_ids)
            for key in json.loads(row[OVERFLOW])}


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records
            if record.name == LOG and record.levelno == logging.WARNING]


#: New keys that dlt names alike, and one that dlt names like the overflow column.
ALIKE_KEYS = {"Budget Total": 10.5, "budget_total": 20.25, "BUDGET TOTAL": ""}
NAMED_LIKE_OVERFLOW = "overflow"


def add_new_keys(warehouse: Warehouse, client: Any) -> tuple[list[str], set[str]]:
    """New keys appear: new leads with keys never seen (created, returned first), existing
    leads given new keys, keys that dlt names alike; plus churn. Returns the created and
    all changed leads."""
    new_keys = {NAMED_LIKE_OVERFLOW: 1, **ALIKE_KEYS}
    created = []
    for number in range(8):
        fields: dict[str, Any] = {f"Nouvelle question {number} {i:03d}": value for i, value in
                                  enumerate((number, 0.5, "", True, {"n": [1, "x"]}, [], "a"))}
        fields.update(new_keys)
        lead = client.leads.create(name=f"Wide {number}", email=f"wide.{number}@example.com",
                                   custom_fields=fields)
        created.append(lead["id"])
    changed = set(created)
    for number, lead in enumerate(warehouse.server.export_leads()[:8]):
        if lead["deleted_at"] is None:
            client.leads.update(lead["id"], custom_fields={f"Later key {number}": number * 1.5,
                                                           "later flag": number % 2 == 0})
            changed.add(lead["id"])
    warehouse.server.churn(40)
    return created, changed


@pytest.mark.parametrize("custom_keys", [WIDE_KEYS, ROOMY_KEYS], ids=["wider", "room-left"])
def test_wide_account_first_and_incremental_loads_keep_every_value_once(
    destination: str, custom_keys: int, wide_warehouse: Callable[..., Warehouse],
    make_client: Callable[..., Any], caplog: pytest.LogCaptureFixture,
) -> None:
    """WIDE_KEYS is more than PostgreSQL's 1,600 columns (the budget on every warehouse
    by default); ROOMY_KEYS leaves room, so keys that appear later get columns."""
    wider = custom_keys > POSTGRES_COLUMNS
    if destination == "postgres" and not wider:
        pytest.skip("placement below the limit does not depend on the warehouse")
    caplog.set_level(logging.WARNING, logger=LOG)
    warehouse = wide_warehouse(leads=LEADS, seed=53, custom_keys=custom_keys)

    warehouse.load()

    leads = read_leads(warehouse)
    first = places(warehouse, leads)
    assert_equal_to_sandbox(warehouse, leads=leads)
    assert_dictionary_names_every_column(warehouse, first)
    columns = table_columns(warehouse)
    with_column = {key for lead in first.values() for key, at in lead.items() if at == "column"}
    crowded = overflow_keys(leads)
    assert len(columns) <= POSTGRES_COLUMNS
    if wider:
        assert crowded and len(warnings_of(caplog)) == 1
        assert f" {len(crowded)} custom field key(s)" in warnings_of(caplog)[0]
        assert "sources.leadrat.custom_fields" in warnings_of(caplog)[0]
    else:
        assert not crowded and not warnings_of(caplog)
    long_keys = {key for key in with_column if len(key.encode()) > POSTGRES_IDENTIFIER_BYTES}
    assert long_keys  # long keys get columns too, under dlt's shortened names
    if destination == "postgres":
        assert max(len(name.encode()) for name in columns) <= POSTGRES_IDENTIFIER_BYTES
    cursor = max(lead["updated_at"] for lead in warehouse.server.export_leads())

    client = make_client(warehouse.server)
    created, changed = add_new_keys(warehouse, client)
    caplog.clear()
    warehouse.load()

    leads = read_leads(warehouse)
    second = places(warehouse, leads)
    assert_equal_to_sandbox(warehouse, leads=leads)
    assert_dictionary_names_every_column(warehouse, second)
    assert columns <= table_columns(warehouse)
    assert len(table_columns(warehouse)) <= POSTGRES_COLUMNS
    assert_keys_keep_their_columns(warehouse, second, with_column)
    read = {lead["id"] for lead in warehouse.server.export_leads() if lead["updated_at"] >= cursor}
    assert changed <= read
    crowded = overflow_keys(leads, read)
    if wider:
        assert second[created[0]]["Nouvelle question 0 000"] == "overflow"  # no room left
    else:  # new keys get columns; of the keys dlt names alike, one does
        assert second[created[0]]["Nouvelle question 0 000"] == "column"
        assert NAMED_LIKE_OVERFLOW in crowded
        assert len(crowded - {NAMED_LIKE_OVERFLOW}) == 2 and crowded < {
            NAMED_LIKE_OVERFLOW, *ALIKE_KEYS}
    assert len(warnings_of(caplog)) == 1
    assert f" {len(crowded)} custom field key(s)" in warnings_of(caplog)[0]


def test_columns_mode_past_the_limit_is_a_clear_error_and_does_not_wedge(
    destination: str, wide_warehouse: Callable[..., Warehouse],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if destination == "duckdb":
        pytest.skip("DuckDB has no column limit: every key gets its column")
    monkeypatch.setenv("SOURCES__LEADRAT__CUSTOM_FIELDS", "columns")
    warehouse = wide_warehouse(leads=LEADS, seed=59, custom_keys=WIDE_KEYS)
    with pytest.raises(Exception) as failure:  # dlt wraps it; the cause is what matters
        warehouse.load()
    cause: BaseException | None = failure.value
    while cause is not None and not isinstance(cause, ConfigurationError):
        cause = getattr(cause, "exception", None) or cause.__cause__ or cause.__context__
    assert cause is not None and "columns+overflow" in str(cause)
    monkeypatch.setenv("SOURCES__LEADRAT__CUSTOM_FIELDS", "columns+overflow")
    warehouse.load()
    leads = read_leads(warehouse)
    places(warehouse, leads)
    assert_equal_to_sandbox(warehouse, leads=leads)


def test_json_mode_keeps_the_whole_object_in_one_column(
    destination: str, wide_warehouse: Callable[..., Warehouse],
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("SOURCES__LEADRAT__CUSTOM_FIELDS", "json")
    caplog.set_level(logging.WARNING, logger=LOG)
    warehouse = wide_warehouse(leads=LEADS, seed=61, custom_keys=WIDE_KEYS)
    warehouse.load()
    leads = read_leads(warehouse)
    rows = {row["id"]: row for row in leads}
    for lead in warehouse.server.export_leads():
        assert json.loads(rows[lead["id"]]["custom_fields"]) == lead["custom_fields"]
    assert all(at == "overflow" for lead in places(warehouse, leads).values()
               for at in lead.values())
    assert not {name for name in table_columns(warehouse) if name.startswith("custom_fields__")}
    assert not warnings_of(caplog)


def test_allow_list_flattens_only_the_keys_named(
    wide_warehouse: Callable[..., Warehouse], destination: str,
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    if destination == "postgres":
        pytest.skip("placement does not depend on the warehouse; DuckDB shows it")
    monkeypatch.setenv("SOURCES__LEADRAT__CUSTOM_FIELD_COLUMNS", '["budget", "industry"]')
    caplog.set_level(logging.WARNING, logger=LOG)
    warehouse = wide_warehouse(leads=300, seed=67)
    warehouse.load()
    found = places(warehouse, read_leads(warehouse))
    assert {key for lead in found.values() for key, at in lead.items() if at == "column"} == {
        "budget", "industry"}
    assert {name for name in table_columns(warehouse) if name.startswith("custom_fields__")} == {
        "custom_fields__budget", "custom_fields__industry", OVERFLOW}
    assert not warnings_of(caplog)  # the user's choice, not a budget running out


def test_sandbox_wide_account_is_deterministic_and_wider_than_postgres_allows() -> None:
    anchor = 1_790_000_000_000
    first = Store(LEADS, 53, 3, anchor_ms=anchor, custom_keys=WIDE_KEYS).export_leads()
    assert first == Store(LEADS, 53, 3, anchor_ms=anchor, custom_keys=WIDE_KEYS).export_leads()
    narrow = {key for lead in Store(LEADS, 53, 3, anchor_ms=anchor).export_leads()
              for key in lead["custom_fields"]}
    kinds: dict[str, set[type]] = {}
    for lead in first:
        for key, value in lead["custom_fields"].items():
            kinds.setdefault(key, set()).add(type(value))
    wide = {key: types for key, types in kinds.items() if key not in narrow}
    assert POSTGRES_COLUMNS < len(wide) <= WIDE_KEYS
    assert all(len(types) == 1 for types in wide.values())  # a key keeps its JSON type
    assert {bool, int, float, str, dict, list} == set().union(*wide.values())
    assert any(len(key.encode()) > POSTGRES_IDENTIFIER_BYTES for key in wide)
    assert any(value == "" for lead in first for value in lead["custom_fields"].values())


def test_reverse_sync_pushes_custom_fields_from_a_column_and_the_overflow(
    wide_warehouse: Callable[..., Warehouse], destination: str, make_client: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The loaded table, edited by an analyst, pushed back: `budget` from its column, the
    other keys from the overflow object (JSON text as the load wrote it)."""
    if destination == "postgres":
        pytest.skip("reading the input does not depend on the warehouse; DuckDB shows it")
    monkeypatch.setenv("SOURCES__LEADRAT__CUSTOM_FIELD_COLUMNS", '["budget"]')
    warehouse = wide_warehouse(leads=120, seed=71)
    warehouse.load()
    before = {lead["id"]: lead for lead in warehouse.server.export_leads()}
    picked = [row for row in read_leads(warehouse) if row[OVERFLOW] is not None
              and row["custom_fields__budget"] is not None and row["deleted_at"] is None][:3]
    edits = {}
    with warehouse.pipeline().sql_client() as client:
        client.execute_sql("create table lead_scores (lead_id varchar, custom_fields__budget "
                           "double, custom_fields__overflow varchar)")
        for number, row in enumerate(picked):
            fields = {**json.loads(row[OVERFLOW]), "nps": number, "note": ""}
            edits[row["id"]] = {**fields, "budget": 1000.5 + number}
            client.execute_sql("insert into lead_scores values (%s, %s, %s)", row["id"],
                               1000.5 + number, json.dumps(fields))

    summary = run_reverse_sync(ReverseSyncRequest(
        dataset=warehouse.dataset, table="lead_scores",
        pipelines_dir=str(warehouse.pipelines_dir)), client=make_client(warehouse.server))

    assert (summary.confirmed, summary.failed) == (3, 0)
    after = {lead["id"]: lead for lead in warehouse.server.export_leads()}
    for lead_id, fields in edits.items():
        assert after[lead_id]["custom_fields"] == {**before[lead_id]["custom_fields"], **fields}
