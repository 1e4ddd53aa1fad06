"""The documented warehouse: descriptions and references in the dlt schema, a mermaid
diagram from dlt's own CLI, a docs page that is never stale, and example queries that
answer what the sandbox holds, on DuckDB and PostgreSQL.

Oracles: the contract's field list and the sandbox's own data, pipelines and reports.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from conftest import sqlalchemy_engine
from leadrat_process import clean_env

from leadrat_source.contract import LEAD_SCALAR_FIELDS
from leadrat_source.sandbox import Sandbox, analytics
from leadrat_source.table_docs import EXAMPLE_QUERIES, TABLES

REPO = Path(__file__).resolve().parents[1]


def run_example(warehouse: Any, name: str) -> list[tuple[Any, ...]]:
    """An example query as printed in docs/tables.md, on the warehouse's dataset."""
    sql = EXAMPLE_QUERIES[name].sql.replace("leadrat.", f"{warehouse.dataset}.")
    with warehouse.pipeline().sql_client() as client:
        return [tuple(row) for row in client.execute_sql(sql)]


def api_fields(server: Sandbox) -> dict[str, set[str]]:
    """The fields the API serves for each table, from the sandbox's own records."""
    today = dt.datetime.now(dt.UTC).date()
    start = today - dt.timedelta(days=29)
    pipeline = server.store.pipeline(server.store.pipelines[0].id)
    return {
        "leads": set(LEAD_SCALAR_FIELDS),
        "lead_tags": {"lead_id", "tag"},
        "pipelines": set(pipeline) - {"stages"},
        "pipeline_stages": set(pipeline["stages"][0]) | {"pipeline_id"},
        "analytics_summary": set(analytics.summary(server.store, start, today)),
        "analytics_sources": set(analytics.sources(server.store, start, today)[0]),
        "analytics_funnel": set(analytics.funnel(server.store, start, today, None)[0]),
    }


def test_every_table_and_api_field_is_described_and_related(
    make_sandbox: Callable[..., Sandbox], make_warehouse: Callable[..., Any]
) -> None:
    server = make_sandbox(leads=600, seed=13, rate_limit=0)
    warehouse = make_warehouse(server)
    warehouse.load()
    schema = warehouse.pipeline().default_schema
    undescribed = [
        f"{table}.{field}"
        for table, fields in api_fields(server).items()
        for field in fields | {None}
        if not (schema.tables[table]["columns"][field].get("description") if field
                else schema.tables[table].get("description"))
    ]
    assert not undescribed
    references = {(ref["table"], ref["referenced_table"], tuple(ref["columns"]))
                  for ref in schema.references}
    assert {
        ("leads", "pipelines", ("pipeline_id",)),
        ("leads", "pipeline_stages", ("pipeline_id", "stage_id")),
        ("lead_tags", "leads", ("lead_id",)),
        ("pipeline_stages", "pipelines", ("pipeline_id",)),
    } <= references

    # dlt's own CLI draws them, from the pipeline as a user would name it
    mermaid = subprocess.run(
        [str(Path(sys.executable).with_name("dlt")), "pipeline", "--pipelines-dir",
         str(warehouse.pipelines_dir), warehouse.pipeline_name, "schema", "--format",
         "mermaid"],
        env=clean_env({}), capture_output=True, text=True, timeout=120, check=False,
    )
    assert mermaid.returncode == 0, mermaid.stderr
    for line in ('leads }|--|| pipelines : "pipeline_id"',
                 'leads }|--|| pipeline_stages : "pipeline_id, stage_id"',
                 'lead_tags }|--|| leads : "lead_id"',
                 'pipeline_stages }|--|| pipelines : "pipeline_id"'):
        assert line in mermaid.stdout
    assert '"the lead\'s LeadRat id' in mermaid.stdout  # descriptions too


def test_docs_page_is_fresh(tmp_path: Path) -> None:
    rendered = tmp_path / "tables.md"
    subprocess.run([sys.executable, "-m", "leadrat_source.tables_page", str(rendered)],
                   env=clean_env({}), cwd=tmp_path, check=True, timeout=300,
                   capture_output=True)
    checked_in = (REPO / "docs" / "tables.md").read_text()
    assert rendered.read_text() == checked_in, (
        "docs/tables.md is stale: run `python -m leadrat_source.tables_page`"
    )
    for table in TABLES:
        assert f"## `{table}`" in checked_in
    for example in EXAMPLE_QUERIES.values():
        assert example.sql in checked_in


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def datasets(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
             ) -> Iterator[tuple[str, str, str]]:
    """(destination, dataset for a normal load, dataset for a history-mode load)."""
    if request.param == "duckdb":
        yield "duckdb", "leadrat", "leadrat_history"
        return
    monkeypatch.setenv("DESTINATION__POSTGRES__CREDENTIALS",
                       request.getfixturevalue("postgres_url"))
    schema = request.getfixturevalue("postgres_schema")
    history = f"{schema}_history"
    yield "postgres", schema, history
    engine = sqlalchemy_engine(request.getfixturevalue("postgres_url"))
    with engine.begin() as connection:
        for name in (history, f"{history}_staging"):
            connection.execute(sa.text(f'drop schema if exists "{name}" cascade'))
    engine.dispose()


def test_example_queries_answer_what_the_sandbox_holds(
    datasets: tuple[str, str, str], make_sandbox: Callable[..., Sandbox],
    make_warehouse: Callable[..., Any], make_client: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    destination, current_dataset, history_dataset = datasets
    server = make_sandbox(leads=300, seed=23, rate_limit=0)
    current = make_warehouse(server, destination=destination, dataset=current_dataset)
    current.load()
    leads = server.export_leads()
    live = {lead["id"]: lead for lead in leads if lead["deleted_at"] is None}

    rows = run_example(current, "current_leads")
    assert {row[0]: row[3] for row in rows} == {id_: lead["status"] for id_, lead in live.items()}

    by_stage = Counter((lead["pipeline_id"], lead["stage_id"]) for lead in live.values())
    expected_stages = [
        (pipeline.name, stage.position, stage.name, by_stage[(pipeline.id, stage.id)])
        for pipeline in sorted(server.store.pipelines, key=lambda p: p.name)
        for stage in sorted(pipeline.stages, key=lambda s: s.position)
    ]
    assert run_example(current, "leads_by_stage") == expected_stages

    today = dt.datetime.now(dt.UTC).date()
    report = analytics.sources(server.store, today - dt.timedelta(days=29), today)
    assert sorted((row[1], row[2], row[3], row[4]) for row in
                  run_example(current, "conversion_by_source")) == sorted(
        (row["source"], row["leads"], row["converted"], row["conversion_rate"])
        for row in report)

    monkeypatch.setenv("SOURCES__LEADRAT__HISTORY", "true")
    history = make_warehouse(server, destination=destination, dataset=history_dataset)
    history.pipeline_name = "leadrat_test_history"
    history.load()
    lead = next(lead for lead in live.values() if lead["pipeline_id"] and lead["stage_id"])
    pipeline = next(p for p in server.store.pipelines if p.id == lead["pipeline_id"])
    new_stage = next(stage.id for stage in pipeline.stages if stage.id != lead["stage_id"])
    make_client(server).pipelines.move_lead(pipeline.id, lead["id"], new_stage)
    history.load()
    versions = [row for row in run_example(history, "stage_history") if row[0] == lead["id"]]
    assert [row[2] for row in versions] == [lead["stage_id"], new_stage]
    assert versions[0][5] is not None and versions[1][5] is None  # valid_to: closed, current
    all_versions = run_example(history, "stage_history")
    current_versions = [row[0] for row in all_versions if row[5] is None]
    assert sorted(current_versions) == sorted(lead["id"] for lead in leads)
    assert len(all_versions) == len(leads) + 1  # a new version for the one real change only
