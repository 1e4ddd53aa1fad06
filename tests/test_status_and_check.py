"""`leadrat status` and `leadrat check` say what is true and touch only what they should:
status from a machine without the pipeline folder, naming the warehouse it read and the
loader's loads only; check sending reads only unless --probe-write."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import duckdb
import pytest
import sqlalchemy as sa
from conftest import sqlalchemy_engine

from leadrat_source.sandbox import Sandbox
from leadrat_source.timestamps import parse_timestamp


def leadrat(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    base = {key: value for key, value in os.environ.items()
            if not key.startswith(("SOURCES__", "DESTINATION__"))}
    return subprocess.run(
        [sys.executable, "-m", "leadrat_source.cli", *args],
        env={**base, **env}, cwd=cwd, capture_output=True, text=True, timeout=180, check=False,
    )


def user_env(server: Sandbox, data_dir: Path, **extra: str) -> dict[str, str]:
    return {"DLT_DATA_DIR": str(data_dir), "SOURCES__LEADRAT__BASE_URL": server.base_url,
            "SOURCES__LEADRAT__API_KEY": server.read_key, **extra}


def run_ok(*args: str, env: dict[str, str], cwd: Path) -> str:
    result = leadrat(*args, env=env, cwd=cwd)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def status_fields(output: str) -> tuple[str, list[str]]:
    """The cursor and the listed load ids of `leadrat status`."""
    cursor = re.search(r"leads cursor \(updated_at\): (.+)", output)
    assert cursor, output
    return cursor.group(1), re.findall(r"^load (\S+): loaded", output, re.MULTILINE)


def test_status_without_the_pipeline_folder_reads_the_warehouse_and_lists_only_loads(
    make_sandbox: Callable[..., Sandbox], tmp_path: Path,
) -> None:
    server = make_sandbox(leads=200, seed=53, rate_limit=0)
    warehouse = tmp_path / "warehouse.duckdb"
    env = user_env(server, tmp_path / "dlt", DESTINATION__DUCKDB__CREDENTIALS=str(warehouse))
    run_ok("load", env=env, cwd=tmp_path)
    server.churn(30)
    run_ok("load", env=env, cwd=tmp_path)
    leads = server.export_leads()
    # the reverse sync then writes its ledger into the same dataset, after the loads
    with duckdb.connect(str(warehouse)) as con:
        con.execute("create table leadrat.lead_scores as select id as lead_id, 7.0 as score "
                    "from leadrat.leads where deleted_at is null limit 3")
    run_ok("reverse-sync", env={**env, "SOURCES__LEADRAT__API_KEY": server.read_write_key},
           cwd=tmp_path)

    # a machine that never ran the pipeline (Airflow wipes the folder after each task)
    fresh = {**env, "DLT_DATA_DIR": str(tmp_path / "fresh-dlt")}
    output = run_ok("status", env=fresh, cwd=tmp_path)

    with duckdb.connect(str(warehouse)) as con:
        # each load moved the cursor, so each stored the loader pipeline's state
        loader_loads = {row[0] for row in con.execute(
            "select _dlt_load_id from leadrat._dlt_pipeline_state "
            "where pipeline_name = 'leadrat_duckdb'").fetchall()}
        ledger_loads = {row[0] for row in con.execute(
            "select _dlt_load_id from leadrat.reverse_sync_runs union "
            "select _dlt_load_id from leadrat.reverse_sync_state").fetchall()}
    cursor, listed = status_fields(output)
    assert len(loader_loads) == 2 and ledger_loads
    assert set(listed) == loader_loads, output  # the loader's, not the ledger's
    assert parse_timestamp(cursor.replace(" ", "T")) == max(
        parse_timestamp(lead["updated_at"]) for lead in leads)
    assert f"leads={len(leads)}" in output
    assert f"profile 'duckdb': {warehouse}, dataset 'leadrat'" in output
    assert "state restored from the warehouse" in output


@pytest.mark.postgres
def test_status_names_the_postgres_host_and_never_the_password(
    make_sandbox: Callable[..., Sandbox], postgres_url: str, postgres_schema: str,
    tmp_path: Path,
) -> None:
    server = make_sandbox(leads=50, seed=59, rate_limit=0)
    # the test server trusts loopback, so any password gets in: one that must not be shown
    url = sa.make_url(postgres_url).set(password="s3cret-pw-do-not-print")
    env = user_env(server, tmp_path / "dlt",
                   DESTINATION__POSTGRES__CREDENTIALS=url.render_as_string(hide_password=False))
    target = ("--destination", "postgres", "--dataset", postgres_schema)
    run_ok("load", *target, env=env, cwd=tmp_path)
    result = leadrat("status", *target, env={**env, "DLT_DATA_DIR": str(tmp_path / "fresh")},
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"{url.host}:{url.port}/{url.database}, dataset '{postgres_schema}'" in result.stdout
    assert "s3cret-pw" not in result.stdout + result.stderr
    engine = sqlalchemy_engine(postgres_url)
    with engine.connect() as connection:
        count = connection.execute(sa.text(f'select count(*) from "{postgres_schema}".leads'))
        assert f"leads={count.scalar()}" in result.stdout
    engine.dispose()


def test_status_before_any_load_says_so(make_sandbox: Callable[..., Sandbox],
                                        tmp_path: Path) -> None:
    server = make_sandbox(leads=10, rate_limit=0)
    warehouse = tmp_path / "empty.duckdb"
    env = user_env(server, tmp_path / "dlt", DESTINATION__DUCKDB__CREDENTIALS=str(warehouse))
    result = leadrat("status", env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert "no load of pipeline 'leadrat_duckdb'" in result.stderr and str(warehouse) in result.stderr
    assert "Traceback" not in result.stderr


def test_check_sends_only_reads_unless_asked_to_probe_write(
    make_sandbox: Callable[..., Sandbox], tmp_path: Path,
) -> None:
    server = make_sandbox(leads=20, rate_limit=0)
    env = user_env(server, tmp_path / "dlt",
                   DESTINATION__DUCKDB__CREDENTIALS=str(tmp_path / "warehouse.duckdb"))
    server.reset_stats()
    output = run_ok("check", env=env, cwd=tmp_path)
    routes = server.stats()["by_route"]
    assert routes and all(route.startswith("GET ") for route in routes), routes
    assert "key scope not checked" in output

    server.reset_stats()
    output = run_ok("check", "--probe-write", env=env, cwd=tmp_path)
    assert server.stats()["by_route"].get("PUT /leads/{id}") == 1
    assert "key scope read;" in output

