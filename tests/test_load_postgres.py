"""The load into the real PostgreSQL: exact after churn, schema evolution, soft/hard deletes, SCD2."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from conftest import sqlalchemy_engine
from history import (
    assert_one_version_per_change,
    history_rereading_everything,
    load_with_churn,
)
from warehouse import assert_equal_to_sandbox, assert_tombstones_of_deleted_leads

pytestmark = pytest.mark.postgres


@pytest.fixture
def postgres_warehouse(
    make_sandbox: Callable[..., Any], make_warehouse: Callable[..., Any],
    postgres_url: str, postgres_schema: str, monkeypatch: pytest.MonkeyPatch,
) -> Callable[..., Any]:
    monkeypatch.setenv("DESTINATION__POSTGRES__CREDENTIALS", postgres_url)

    def create(**sandbox_config: Any) -> Any:
        server = make_sandbox(rate_limit=0, **sandbox_config)
        return make_warehouse(server, destination="postgres", dataset=postgres_schema)

    return create


def test_first_load_and_churn_are_exact_with_new_columns(
    postgres_warehouse: Callable[..., Any], postgres_url: str, postgres_schema: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SOURCES__LEADRAT__LEADS_PER_BATCH", "400")
    warehouse = postgres_warehouse(leads=900, seed=31)
    warehouse.load()
    assert_equal_to_sandbox(warehouse)
    columns_before = _columns(postgres_url, postgres_schema)
    warehouse.server.churn(400)  # churn adds custom field keys never seen before
    warehouse.load()
    assert_equal_to_sandbox(warehouse)
    new_columns = _columns(postgres_url, postgres_schema) - columns_before
    new_keys = {
        key for lead in warehouse.server.export_leads() for key in lead["custom_fields"]
    }
    assert new_columns, "the churn's new custom field keys gave no new column"
    assert all(column.startswith("custom_fields__") for column in new_columns)
    assert {f"custom_fields__{key}" for key in new_keys} <= _columns(postgres_url, postgres_schema)


def test_hard_deletes_in_postgres(
    postgres_warehouse: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOURCES__LEADRAT__DELETE_MODE", "hard")
    warehouse = postgres_warehouse(leads=400, seed=37)
    warehouse.load()
    warehouse.server.churn(150)
    warehouse.load()
    assert_equal_to_sandbox(warehouse, delete_mode="hard")
    deleted = {lead["id"] for lead in warehouse.server.export_leads() if lead["deleted_at"]}
    assert deleted, "the churn deleted no lead"
    stored = {row["id"] for row in warehouse.rows("leads")}
    tagged = {row["lead_id"] for row in warehouse.rows("lead_tags")}
    assert not deleted & (stored | tagged), "a deleted lead or its tags is still stored"
    assert_tombstones_of_deleted_leads(warehouse)


def test_history_mode_in_postgres_keeps_one_version_per_change(
    postgres_warehouse: Callable[..., Any], make_client: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    history_rereading_everything(monkeypatch)
    warehouse = postgres_warehouse(leads=200, seed=41)
    assert_one_version_per_change(warehouse, load_with_churn(warehouse, make_client))


def _columns(url: str, schema: str) -> set[str]:
    engine = sqlalchemy_engine(url)
    try:
        return {column["name"] for column in sa.inspect(engine).get_columns("leads", schema=schema)}
    finally:
        engine.dispose()
