"""Reverse sync against the sandbox over real HTTP, with a real DuckDB warehouse."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import pytest

from leadrat_source.cli import main
from leadrat_source.errors import ConfigurationError, PermissionDenied
from leadrat_source.reverse_sync import ReverseSyncRequest, ReverseSyncSummary, run_reverse_sync
from leadrat_source.sandbox import Sandbox

DATASET = "leadrat"


class DuckWarehouse:
    """The test's DuckDB file: the analysts' input table and a way to read the ledger."""

    def __init__(self, path: Path, pipelines_dir: Path) -> None:
        self.path = path
        self.pipelines_dir = pipelines_dir

    def sql(self, statement: str, *params: Any) -> list[tuple[Any, ...]]:
        with duckdb.connect(str(self.path)) as con:
            con.execute(f"create schema if not exists {DATASET}")
            con.execute(f"set search_path = '{DATASET}'")
            result = con.execute(statement, list(params))
            return result.fetchall() if result.description else []

    def scores(self, rows: list[tuple[str, Any]], table: str = "lead_scores") -> None:
        self.sql(f"create or replace table {table} (lead_id varchar, score double)")
        for lead_id, score in rows:
            self.sql(f"insert into {table} values (?, ?)", lead_id, score)

    def table(self, name: str) -> list[dict[str, Any]]:
        with duckdb.connect(str(self.path)) as con:
            result = con.execute(f"select * from {DATASET}.{name}")
            names = [d[0] for d in result.description]
            return [dict(zip(names, row, strict=True)) for row in result.fetchall()]

    def sync(self, client: Any, **options: Any) -> ReverseSyncSummary:
        request = ReverseSyncRequest(dataset=DATASET, pipelines_dir=str(self.pipelines_dir),
                                     **options)
        return run_reverse_sync(request, client=client)


@pytest.fixture
def warehouse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> DuckWarehouse:
    path = tmp_path / "warehouse.duckdb"
    monkeypatch.setenv("DESTINATION__DUCKDB__CREDENTIALS", str(path))
    return DuckWarehouse(path, tmp_path / "pipelines")


def live_leads(server: Sandbox, count: int) -> list[dict[str, Any]]:
    return [lead for lead in server.export_leads() if lead["deleted_at"] is None][:count]


def by_id(server: Sandbox) -> dict[str, dict[str, Any]]:
    return {lead["id"]: lead for lead in server.export_leads()}


def test_push_then_unchanged_then_partial_change(
    make_sandbox: Callable[..., Sandbox], make_client: Callable[..., Any],
    warehouse: DuckWarehouse,
) -> None:
    server = make_sandbox(leads=120, rate_limit=0)
    client = make_client(server)
    leads = live_leads(server, 50)
    wanted = {lead["id"]: (i * 7) % 101 for i, lead in enumerate(leads)}
    warehouse.scores(list(wanted.items()))

    first = warehouse.sync(client)
    assert (first.rows_read, first.sent, first.confirmed, first.failed) == (50, 50, 50, 0)
    assert first.requests == 50
    stored = by_id(server)
    assert {lead_id: stored[lead_id]["score"] for lead_id in wanted} == wanted
    other = next(lead for lead in leads if lead["id"] == leads[0]["id"])
    assert stored[other["id"]]["name"] == other["name"]  # the partial PUT left the rest alone
    state = {row["lead_id"]: row for row in warehouse.table("reverse_sync_state")}
    assert state.keys() == wanted.keys()

    server.reset_stats()
    second = warehouse.sync(client)
    assert (second.sent, second.skipped_unchanged, second.requests) == (0, 50, 0)
    assert server.stats()["requests"] == 0

    changed = [leads[3]["id"], leads[10]["id"], leads[20]["id"]]
    warehouse.sql("update lead_scores set score = 1 where lead_id in (?, ?, ?)", *changed)
    third = warehouse.sync(client)
    assert (third.sent, third.confirmed, third.skipped_unchanged) == (3, 3, 47)
    assert server.stats()["by_route"] and server.stats()["requests"] == 3
    assert all(by_id(server)[lead_id]["score"] == 1 for lead_id in changed)
    runs = warehouse.table("reverse_sync_runs")
    assert sorted((r["rows_read"], r["sent"], r["skipped_unchanged"]) for r in runs) == [
        (50, 0, 50), (50, 3, 47), (50, 50, 0)]
    assert json.dumps  # keep import used
