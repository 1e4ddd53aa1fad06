"""Reverse sync killed mid-run (SIGKILL of the CLI) resumes without losing or repeating
more than one ledger batch; and one run against PostgreSQL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import pytest
import sqlalchemy as sa
from conftest import sqlalchemy_engine

from leadrat_source.reverse_sync import ReverseSyncRequest, run_reverse_sync
from leadrat_source.sandbox import Sandbox, SandboxConfig

ROWS = 120
BATCH = 20


def _put_count(server: Any) -> int:
    return int(server.stats()["by_route"].get("PUT /leads/{id}", 0))


def _settled_put_count(server: Any) -> int:
    """PUTs counted once requests the killed process had already written have arrived
    (the count holds still for 0.2 s)."""
    count, stable_since = _put_count(server), time.monotonic()
    while time.monotonic() - stable_since < 0.2:
        time.sleep(0.02)
        if (now := _put_count(server)) != count:
            count, stable_since = now, time.monotonic()
    return count


def test_killed_run_resumes_and_every_row_lands_once_in_effect(
    tmp_path: Path, make_client: Callable[..., Any], monkeypatch: pytest.MonkeyPatch,
) -> None:
    database = tmp_path / "warehouse.duckdb"
    monkeypatch.setenv("DESTINATION__DUCKDB__CREDENTIALS", str(database))
    with Sandbox.spawn(SandboxConfig(leads=200, seed=5, rate_limit=0)) as server:
        leads = [lead for lead in server.export_leads() if lead["deleted_at"] is None][:ROWS]
        wanted = {lead["id"]: (i % 90) + 5 for i, lead in enumerate(leads)}
        with duckdb.connect(str(database)) as con:
            con.execute("create schema leadrat")
            con.execute("create table leadrat.lead_scores (lead_id varchar, score integer)")
            con.executemany("insert into leadrat.lead_scores values (?, ?)",
                            list(wanted.items()))
        server.set_faults(latency_ms=40)
        env = {**os.environ, "SOURCES__LEADRAT__API_KEY": server.read_write_key,
               "SOURCES__LEADRAT__BASE_URL": server.base_url,
               "DESTINATION__DUCKDB__CREDENTIALS": str(database),
               "DLT_DATA_DIR": str(tmp_path / "dlt")}
        child = subprocess.Popen(
            [sys.executable, "-m", "leadrat_source.cli", "reverse-sync", "--workers", "4",
             "--batch-rows", str(BATCH)],
            env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
        assert child.stderr is not None
        seen = []
        for line in child.stderr:  # kill right after the second ledger write
            seen.append(line)
            if sum("ledger saved" in entry for entry in seen) == 2:
                child.send_signal(signal.SIGKILL)
                break
        child.wait(timeout=30)
        assert child.returncode == -signal.SIGKILL, "".join(seen)
        sent_before_kill = _settled_put_count(server)
        with duckdb.connect(str(database)) as con:
            confirmed = con.execute("select count(*) from leadrat.reverse_sync_state").fetchone()
        assert confirmed is not None and BATCH <= confirmed[0] < ROWS
        assert sent_before_kill < ROWS, "the run finished before it was killed"

        server.set_faults(latency_ms=0)
        summary = run_reverse_sync(
            ReverseSyncRequest(pipelines_dir=str(tmp_path / "dlt" / "pipelines")),
            client=make_client(server))

        resent = _put_count(server) - ROWS
        assert summary.skipped_unchanged + summary.sent == ROWS
        # exactly the rows whose confirmation was saved are skipped; the others are sent
        assert summary.skipped_unchanged == confirmed[0]
        # resent: what the killed run sent without saving its confirmation, at most one
        # unsaved batch plus what was in flight
        assert resent == sent_before_kill - confirmed[0]
        assert resent <= BATCH + 4 * 4
        stored = {lead["id"]: lead["score"] for lead in server.export_leads()}
        assert {lead_id: stored[lead_id] for lead_id in wanted} == wanted
        with duckdb.connect(str(database)) as con:
            state = con.execute(
                "select count(*), count(distinct lead_id) from leadrat.reverse_sync_state"
            ).fetchone()
        assert state == (ROWS, ROWS)


def test_postgres_push_and_unchanged_rerun(
    make_sandbox: Callable[..., Sandbox], make_client: Callable[..., Any],
    postgres_url: str, postgres_schema: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DESTINATION__POSTGRES__CREDENTIALS", postgres_url)
    server = make_sandbox(leads=60, rate_limit=0)
    client = make_client(server)
    leads = [lead for lead in server.export_leads() if lead["deleted_at"] is None][:25]
    create_lead_scores(
        postgres_url, postgres_schema, "(lead_id text, score numeric, tags_add text)",
        [{"lead_id": lead["id"], "score": 61, "tags_add": "pg, scored"} for lead in leads],
    )
    request = ReverseSyncRequest(destination="postgres", dataset=postgres_schema,
                                 pipelines_dir=str(tmp_path / "pipelines"))

    first = run_reverse_sync(request, client=client)
    server.reset_stats()
    second = run_reverse_sync(request, client=client)

    assert (first.confirmed, first.failed, first.requests) == (25, 0, 50)
    stored = {lead["id"]: lead for lead in server.export_leads()}
    assert all(stored[lead["id"]]["score"] == 61 for lead in leads)
    assert all({"pg", "scored"} <= set(stored[lead["id"]]["tags"]) for lead in leads)
    assert (second.sent, second.skipped_unchanged) == (0, 25)
    assert server.stats()["requests"] == 0


def test_postgres_input_is_read_in_chunks_and_a_missing_table_is_clear(
    postgres_url: str, postgres_schema: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from leadrat_source.destinations import get_profile
    from leadrat_source.errors import ConfigurationError
    from leadrat_source.reverse_sync.reader import InputSpec, iter_chunks
    from leadrat_source.warehouse_pipeline import profile_pipeline

    monkeypatch.setenv("DESTINATION__POSTGRES__CREDENTIALS", postgres_url)
    create_lead_scores(
        postgres_url, postgres_schema,
        "as select 'lead_' || n as lead_id, n % 100 as score from generate_series(1, 2500) as n",
    )
    pipeline = profile_pipeline(
        get_profile("postgres"), "reader_check", postgres_schema, str(tmp_path)
    )

    chunks = list(iter_chunks(pipeline.dataset(), InputSpec(), chunk_rows=1000))
    assert [len(rows) for _, rows in chunks] == [1000, 1000, 500]
    assert chunks[0][0] == ["lead_id", "score"]
    assert len({row["lead_id"] for _, rows in chunks for row in rows}) == 2500
    capped = list(iter_chunks(pipeline.dataset(), InputSpec(max_rows=1500), chunk_rows=1000))
    assert sum(len(rows) for _, rows in capped) == 1500
    with pytest.raises(ConfigurationError, match="does not exist"):
        list(iter_chunks(pipeline.dataset(), InputSpec(table="no_such_table")))


def create_lead_scores(
    url: str, schema: str, definition: str, rows: list[dict[str, Any]] | None = None
) -> None:
    """Create `schema` and its `lead_scores` table (`definition`: columns or `as select`)."""
    engine = sqlalchemy_engine(url)
    with engine.begin() as connection:
        connection.execute(sa.text(f'create schema "{schema}"'))
        connection.execute(sa.text(f'create table "{schema}".lead_scores {definition}'))
        if rows:
            columns = ", ".join(rows[0])
            values = ", ".join(f":{column}" for column in rows[0])
            connection.execute(
                sa.text(f'insert into "{schema}".lead_scores ({columns}) values ({values})'), rows
            )
    engine.dispose()
