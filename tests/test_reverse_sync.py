"""Reverse sync against the sandbox over real HTTP, with a real DuckDB warehouse."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

from leadrat_source.cli import main
from leadrat_source.errors import ConfigurationError
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

    def everything(self) -> dict[tuple[str, str], list[str]]:
        """Every row of every table in the file, by (schema, table)."""
        with duckdb.connect(str(self.path)) as con:
            tables = con.execute("select table_schema, table_name from information_schema.tables"
                                 ).fetchall()
            return {(schema, name): sorted(map(repr, con.execute(
                f'select * from "{schema}"."{name}"').fetchall())) for schema, name in tables}

    def sync(self, client: Any, **options: Any) -> ReverseSyncSummary:
        request = ReverseSyncRequest(dataset=DATASET, pipelines_dir=str(self.pipelines_dir),
                                     **options)
        return run_reverse_sync(request, client=client)


@pytest.fixture(autouse=True)
def keep_logging() -> Iterator[None]:
    """`main()` points the root logger at this test's stderr; put it back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def warehouse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> DuckWarehouse:
    path = tmp_path / "warehouse.duckdb"
    monkeypatch.setenv("DESTINATION__DUCKDB__CREDENTIALS", str(path))
    return DuckWarehouse(path, tmp_path / "pipelines")


def live_leads(server: Sandbox, count: int) -> list[dict[str, Any]]:
    return [lead for lead in server.export_leads() if lead["deleted_at"] is None][:count]


def by_id(server: Sandbox) -> dict[str, dict[str, Any]]:
    return {lead["id"]: lead for lead in server.export_leads()}


def cli_reverse_sync(server: Sandbox, key: str, warehouse: DuckWarehouse,
                     monkeypatch: pytest.MonkeyPatch) -> int:
    """`leadrat reverse-sync --workers 2` with `key`, configured by environment; its exit code."""
    monkeypatch.setenv("SOURCES__LEADRAT__API_KEY", key)
    monkeypatch.setenv("SOURCES__LEADRAT__BASE_URL", server.base_url)
    monkeypatch.setenv("DLT_DATA_DIR", str(warehouse.pipelines_dir))
    return main(["reverse-sync", "--workers", "2"])


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
    assert server.stats()["by_route"] == {"PUT /leads/{id}": 3}
    assert all(by_id(server)[lead_id]["score"] == 1 for lead_id in changed)
    runs = warehouse.table("reverse_sync_runs")
    assert sorted((r["rows_read"], r["sent"], r["skipped_unchanged"]) for r in runs) == [
        (50, 0, 50), (50, 3, 47), (50, 50, 0)]


def test_permanent_errors_are_recorded_and_retried_only_on_change_or_request(
    make_sandbox: Callable[..., Sandbox], make_client: Callable[..., Any],
    warehouse: DuckWarehouse,
) -> None:
    server = make_sandbox(leads=60, rate_limit=0)
    client = make_client(server)
    leads = live_leads(server, 12)
    deleted, invalid = leads[0]["id"], leads[1]["id"]
    client.leads.delete(deleted)
    rows = [(lead["id"], 40.0) for lead in leads[2:]]
    rows += [(deleted, 50.0), (invalid, 150.0), ("lead_doesnotexist", 60.0)]
    warehouse.scores(rows)

    first = warehouse.sync(client)
    assert (first.sent, first.confirmed, first.failed) == (13, 10, 3)
    assert all(by_id(server)[lead["id"]]["score"] == 40 for lead in leads[2:])
    errors = {row["lead_id"]: row for row in warehouse.table("reverse_sync_errors")}
    assert {k: (v["code"], v["status"], v["permanent"]) for k, v in errors.items()} == {
        deleted: ("not_found", 404, True),
        invalid: ("validation_error", 422, True),
        "lead_doesnotexist": ("not_found", 404, True),
    }
    assert json.loads(errors[invalid]["details"])[0]["field"] == "score"
    assert len(warehouse.table("reverse_sync_state")) == 10

    warehouse.sql("update lead_scores set score = 99 where lead_id = ?", invalid)
    server.reset_stats()
    second = warehouse.sync(client)
    assert (second.sent, second.confirmed, second.skipped_failed, second.requests) == (
        1, 1, 2, 1)
    assert by_id(server)[invalid]["score"] == 99
    remaining = {row["lead_id"] for row in warehouse.table("reverse_sync_errors")}
    assert remaining == {deleted, "lead_doesnotexist"}  # the fixed row's error is gone

    server.reset_stats()
    third = warehouse.sync(client, retry_failed=True)
    assert (third.sent, third.failed, third.skipped_unchanged) == (2, 2, 11)
    assert server.stats()["requests"] == 2


def test_read_only_key_stops_with_exit_code_3_and_marks_nothing(
    make_sandbox: Callable[..., Sandbox], warehouse: DuckWarehouse,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    server = make_sandbox(leads=40, rate_limit=0)
    leads = live_leads(server, 30)
    warehouse.scores([(lead["id"], 77.0) for lead in leads])
    code = cli_reverse_sync(server, server.read_key, warehouse, monkeypatch)

    assert code == 3
    assert "read-only key" in capsys.readouterr().err
    assert server.stats()["by_status"].get("403", 0) >= 1
    assert server.stats()["requests"] <= 2 * 4 + 2  # stopped at once, not 30 attempts
    assert all(by_id(server)[lead["id"]]["score"] != 77 for lead in leads)
    assert "reverse_sync_state" not in {
        row[0] for row in warehouse.sql(
            "select table_name from information_schema.tables where table_schema = ?",
            DATASET)}
    assert [run["status"] for run in warehouse.table("reverse_sync_runs")] == [
        "PermissionDenied"]


def test_null_custom_fields_status_tags_and_stage_moves(
    make_sandbox: Callable[..., Sandbox], make_client: Callable[..., Any],
    warehouse: DuckWarehouse,
) -> None:
    server = make_sandbox(leads=40, rate_limit=0)
    client = make_client(server)
    a, b, c = (lead["id"] for lead in live_leads(server, 3))
    pipeline = next(iter(client.pipelines.iter()))
    stage = pipeline["stages"][-1]["id"]
    client.leads.update(a, score=10, custom_fields={"churn_risk": "high", "keep": 1})
    warehouse.sql(
        "create or replace table lead_scores (lead_id varchar, score double, status varchar, "
        "custom_fields__churn_risk varchar, tags_add varchar[], pipeline_id varchar, "
        "stage_id varchar)")
    warehouse.sql("insert into lead_scores values (?, null, 'qualified', null, null, null, null)",
                  a)
    warehouse.sql("insert into lead_scores values (?, 88, null, 'low', ['hot', 'ml'], ?, ?)",
                  b, pipeline["id"], stage)
    warehouse.sql("insert into lead_scores values (?, null, null, null, null, null, null)", c)

    first = warehouse.sync(client)
    assert (first.sent, first.confirmed, first.skipped_empty) == (2, 2, 1)
    leads = by_id(server)
    assert leads[a]["score"] == 10 and leads[a]["status"] == "qualified"  # NULL left alone
    assert leads[a]["custom_fields"]["churn_risk"] == "high"
    assert leads[b]["score"] == 88 and leads[b]["custom_fields"]["churn_risk"] == "low"
    assert {"hot", "ml"} <= set(leads[b]["tags"])
    assert (leads[b]["pipeline_id"], leads[b]["stage_id"]) == (pipeline["id"], stage)

    second = warehouse.sync(client, null_clears=True)
    assert (second.confirmed, second.failed) == (2, 0)  # the NULLs now mean "clear"
    leads = by_id(server)
    assert leads[a]["score"] is None and leads[a]["status"] == "qualified"
    assert "churn_risk" not in leads[a]["custom_fields"] and leads[a]["custom_fields"]["keep"] == 1
    assert leads[c]["score"] is None


def test_dry_run_sends_nothing_and_writes_nothing(
    make_sandbox: Callable[..., Sandbox], make_client: Callable[..., Any],
    warehouse: DuckWarehouse,
) -> None:
    server = make_sandbox(leads=40, rate_limit=0)
    leads = live_leads(server, 20)
    warehouse.scores([(lead["id"], 33.0) for lead in leads[:4]])
    warehouse.sync(make_client(server))  # a ledger to diff against, as in real use
    warehouse.scores([(lead["id"], 34.0 if i < 2 else 33.0) for i, lead in enumerate(leads)])
    before = warehouse.everything()
    server.reset_stats()

    summary = warehouse.sync(make_client(server), dry_run=True, max_rows=12)

    assert (summary.rows_read, summary.sent, summary.requests) == (12, 10, 0)
    assert summary.skipped_unchanged == 2
    assert server.stats()["requests"] == 0
    assert len(summary.sample) == 5 and summary.sample[0]["put"] == {"score": 34}
    assert any("would send: 10" in line for line in summary.lines())
    assert warehouse.everything() == before  # no table, row or schema written


def test_cli_query_input(
    make_sandbox: Callable[..., Sandbox], warehouse: DuckWarehouse,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    server = make_sandbox(leads=40, rate_limit=0)
    leads = live_leads(server, 10)
    warehouse.sql("create or replace table model_output (id varchar, p double)")
    for i, lead in enumerate(leads):
        warehouse.sql("insert into model_output values (?, ?)", lead["id"], i / 10)
    monkeypatch.setenv("SOURCES__LEADRAT__API_KEY", server.read_write_key)
    monkeypatch.setenv("SOURCES__LEADRAT__BASE_URL", server.base_url)
    monkeypatch.setenv("DLT_DATA_DIR", str(warehouse.pipelines_dir))

    code = main(["reverse-sync", "--query",
                 "select id as lead_id, round(p * 100) as score from model_output where p >= 0.5"])

    assert code == 0, capsys.readouterr().err
    assert "confirmed: 5" in capsys.readouterr().out
    stored = by_id(server)
    assert [stored[lead["id"]]["score"] for lead in leads[5:]] == [50, 60, 70, 80, 90]
    assert all(stored[lead["id"]]["score"] != i * 10 or i >= 5 or stored[lead["id"]]["score"]
               == lead["score"] for i, lead in enumerate(leads[:5]))


def test_unknown_column_is_a_clear_error_before_any_request(
    make_sandbox: Callable[..., Sandbox], make_client: Callable[..., Any],
    warehouse: DuckWarehouse,
) -> None:
    server = make_sandbox(leads=20, rate_limit=0)
    lead_id = live_leads(server, 1)[0]["id"]
    warehouse.sql("create or replace table lead_scores (lead_id varchar, scroe double)")
    warehouse.sql("insert into lead_scores values (?, 5)", lead_id)
    server.reset_stats()

    with pytest.raises(ConfigurationError, match="unknown input column.*'scroe'"):
        warehouse.sync(make_client(server))
    with pytest.raises(ConfigurationError, match="does not exist"):
        warehouse.sync(make_client(server), table="no_such_table")
    assert server.stats()["requests"] == 0


def test_conflict_and_bad_request_are_recorded_and_429s_are_counted(
    make_sandbox: Callable[..., Sandbox], make_client: Callable[..., Any],
    warehouse: DuckWarehouse,
) -> None:
    """409 (an email another lead has) and 400 are permanent and recorded; two 429s are
    retried, and the run's `429s` column says how many the sandbox itself sent."""
    server = make_sandbox(leads=40, rate_limit=0)
    client = make_client(server)
    clash, bad, throttled, fine = live_leads(server, 5)[:4]
    taken = live_leads(server, 5)[4]["email"]
    warehouse.sql("create or replace table lead_scores (lead_id varchar, email varchar)")
    for lead, email in ((clash, taken), (bad, "bad@example.com"),
                        (throttled, "throttled@example.com"), (fine, "fine@example.com")):
        warehouse.sql("insert into lead_scores values (?, ?)", lead["id"], email)
    server.set_faults(fail_next=[{"status": 400, "count": 1, "path_prefix": f"/leads/{bad['id']}"},
                                 {"status": 429, "count": 2,
                                  "path_prefix": f"/leads/{throttled['id']}"}])

    summary = warehouse.sync(client)

    assert (summary.sent, summary.confirmed, summary.failed) == (4, 2, 2)
    errors = {row["lead_id"]: (row["status"], row["code"], row["permanent"])
              for row in warehouse.table("reverse_sync_errors")}
    assert errors == {clash["id"]: (409, "conflict", True),
                      bad["id"]: (400, "invalid_request", True)}
    leads = by_id(server)
    assert leads[throttled["id"]]["email"] == "throttled@example.com"
    assert leads[clash["id"]]["email"] == clash["email"]
    assert server.stats()["by_status"]["429"] == 2
    [run] = warehouse.table("reverse_sync_runs")
    assert run["rate_limited"] == 2 and summary.rate_limited == 2


def test_spent_quota_stops_with_exit_code_4_after_saving_what_was_confirmed(
    make_sandbox: Callable[..., Sandbox], warehouse: DuckWarehouse,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    server = make_sandbox(leads=60, rate_limit=0, daily_cap=10)
    leads = live_leads(server, 30)
    warehouse.scores([(lead["id"], 33.0) for lead in leads])
    code = cli_reverse_sync(server, server.read_write_key, warehouse, monkeypatch)

    assert code == 4, capsys.readouterr().err
    pushed = {lead_id for lead_id, lead in by_id(server).items() if lead["score"] == 33}
    assert 0 < len(pushed) <= 10
    confirmed = {row["lead_id"] for row in warehouse.table("reverse_sync_state")}
    assert confirmed == pushed, "the ledger does not hold exactly what LeadRat accepted"
