"""pipelines/leadrat_dag.py under Airflow 3 (`airflow dags test`, SQLite, its own venv)
against a sandbox in another process: the data interval is loaded exactly, then the
reverse sync pushes the warehouse's scores."""

from __future__ import annotations

import collections
import datetime as dt
import json
import os
import sqlite3
import subprocess
from pathlib import Path

import duckdb
import pytest

from leadrat_source.lead_tables import parse_timestamp
from leadrat_source.sandbox import Sandbox, SandboxConfig

PROJECT_DIR = Path(__file__).resolve().parents[1]
AIRFLOW = PROJECT_DIR / ".venv-airflow" / "bin" / "airflow"
DAGS_FOLDER = PROJECT_DIR / "pipelines"
DAG_FILE = DAGS_FOLDER / "leadrat_dag.py"
# the task group names its task after the dlt pipeline: one per profile, duckdb here
LOAD_TASK = "leadrat_load.leadrat_duckdb"


@pytest.fixture(scope="module")
def airflow() -> Path:
    """The Airflow venv that `make test` builds; missing is a failure under CI=true."""
    if not AIRFLOW.exists():
        message = f"{AIRFLOW} is missing: build it with `make airflow-venv`"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return AIRFLOW


def run_airflow(airflow: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([str(airflow), *args], env=env, capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, (
        f"airflow {' '.join(args[:2])} failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    )
    return done


def busiest_hour(server: Sandbox) -> dt.datetime:
    """The start of the hour with the most `updated_at` values (a bulk update)."""
    hours = collections.Counter(
        parse_timestamp(lead["updated_at"]).replace(minute=0, second=0, microsecond=0)
        for lead in server.export_leads()
    )
    return hours.most_common(1)[0][0]


def task_states(airflow_home: Path) -> dict[str, str]:
    with sqlite3.connect(airflow_home / "airflow.db") as connection:
        rows = connection.execute(
            "select task_id, state from task_instance where dag_id = 'leadrat'"
        ).fetchall()
    return dict(rows)


@pytest.mark.timeout(600)
def test_dag_loads_exactly_its_data_interval_then_pushes_scores(
    airflow: Path, tmp_path: Path
) -> None:
    airflow_home = tmp_path / "airflow"
    warehouse = tmp_path / "warehouse.duckdb"
    with Sandbox.spawn(SandboxConfig(leads=300, seed=11, rate_limit=0, plan="pro")) as server:
        start = busiest_hour(server)
        end = start + dt.timedelta(hours=1)
        leads = server.export_leads()
        in_interval = sorted(
            lead["id"] for lead in leads
            if start <= parse_timestamp(lead["updated_at"]) < end
        )
        assert 0 < len(in_interval) < len(leads)
        scored = [lead["id"] for lead in leads if not lead["deleted_at"]][:3]
        with duckdb.connect(str(warehouse)) as connection:
            connection.execute("create schema leadrat")
            connection.execute("create table leadrat.lead_scores (lead_id varchar, score integer)")
            connection.executemany("insert into leadrat.lead_scores values (?, 88)",
                                   [(lead_id,) for lead_id in scored])
        env = {
            "PATH": os.environ["PATH"], "HOME": str(tmp_path), "LANG": "C.UTF-8",
            "AIRFLOW_HOME": str(airflow_home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "RUNTIME__DLTHUB_TELEMETRY": "false",
            "SOURCES__LEADRAT__BASE_URL": server.base_url,
            "SOURCES__LEADRAT__API_KEY": server.read_write_key,
            "DESTINATION__DUCKDB__CREDENTIALS": str(warehouse),
        }
        run_airflow(airflow, env, "db", "migrate")
        # a manual run's data interval is the schedule's last full hour before its logical date
        run_airflow(airflow, env, "dags", "test", "leadrat", end.isoformat(),
                    "--dagfile-path", str(DAG_FILE))

        scores = {lead["id"]: lead["score"] for lead in server.export_leads()}

    assert task_states(airflow_home) == {LOAD_TASK: "success", "reverse_sync": "success"}
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        loaded = [row[0] for row in connection.sql("select id from leadrat.leads order by id")
                  .fetchall()]
        snapshot_dates = connection.sql(
            "select distinct snapshot_date from leadrat.analytics_summary").fetchall()
    assert loaded == in_interval, "the warehouse holds other leads than the interval's"
    assert snapshot_dates == [(start.date(),)]
    assert {lead_id: scores[lead_id] for lead_id in scored} == dict.fromkeys(scored, 88)


DAG_CHECKS = """
import json, os, sys
import duckdb
from airflow.sdk.exceptions import AirflowFailException
from leadrat_source.destinations import get_profile
import leadrat_dag

dag = leadrat_dag.leadrat()
profile = get_profile("duckdb")
results = {
    "tasks": sorted(dag.task_ids),
    "after_load": sorted(dag.get_task("reverse_sync").upstream_task_ids),
    "max_active_runs": dag.max_active_runs,
    "interval": [type(dag.timetable).__name__, dag.timetable.expression],
}
try:
    leadrat_dag.check_duckdb_file(profile)
except AirflowFailException as error:
    results["relative_duckdb"] = str(error)
os.environ["DESTINATION__DUCKDB__CREDENTIALS"] = sys.argv[1]
results["scores_before"] = leadrat_dag.lead_scores_exist(profile, "leadrat")
with duckdb.connect(sys.argv[1]) as connection:
    connection.execute("create schema leadrat")
    connection.execute("create table leadrat.lead_scores (lead_id varchar, score integer)")
results["scores_after"] = leadrat_dag.lead_scores_exist(profile, "leadrat")
print(json.dumps(results))
"""


def test_dag_shape_and_its_checks_for_bad_setup(airflow: Path, tmp_path: Path) -> None:
    """Runs in the Airflow venv without a DAG run: the tasks and their order, one run at a
    time, a relative DuckDB path refused, `lead_scores` detected (else the sync skips)."""
    warehouse = tmp_path / "warehouse.duckdb"
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "AIRFLOW_HOME": str(tmp_path),
           "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER), "PYTHONPATH": str(DAGS_FOLDER),
           "RUNTIME__DLTHUB_TELEMETRY": "false", "DESTINATION__DUCKDB__CREDENTIALS": "w.duckdb"}
    checks = subprocess.run([str(airflow.parent / "python"), "-c", DAG_CHECKS, str(warehouse)],
                              env=env, capture_output=True, text=True, timeout=120, check=False)
    assert checks.returncode == 0, checks.stderr[-4000:]
    results = json.loads(checks.stdout.splitlines()[-1])
    assert results["tasks"] == sorted([LOAD_TASK, "reverse_sync"])
    assert results["after_load"] == [LOAD_TASK]
    assert results["max_active_runs"] == 1
    assert results["interval"] == ["CronDataIntervalTimetable", "0 * * * *"]
    assert "DESTINATION__DUCKDB__CREDENTIALS" in results["relative_duckdb"]
    assert "'w.duckdb'" in results["relative_duckdb"]
    assert results["scores_before"] is False
    assert results["scores_after"] is True
