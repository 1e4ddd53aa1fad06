"""pipelines/leadrat_dag.py under Airflow 3 (`airflow dags test`, SQLite, its own venv)
against a sandbox in another process whose leads span two years, into a fresh DuckDB
file (nothing created beforehand): the first run loads the history, the next hour goes on
from there, a past interval reloads exactly that interval, and a daily cap too small for
the work reschedules the task until the quota is back."""

from __future__ import annotations

import collections
import datetime as dt
import json
import os
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import duckdb
import pytest
from emulators import missing

from leadrat_source.sandbox import Sandbox, SandboxConfig
from leadrat_source.timestamps import parse_timestamp

PROJECT_DIR = Path(__file__).resolve().parents[1]
AIRFLOW = PROJECT_DIR / ".venv-airflow" / "bin" / "airflow"
DAGS_FOLDER = PROJECT_DIR / "pipelines"
DAG_FILE = DAGS_FOLDER / "leadrat_dag.py"
LOAD_TASK = "load"


@pytest.fixture(scope="module")
def airflow() -> Path:
    """The Airflow venv that `make test` builds; missing is a failure under CI=true."""
    if not AIRFLOW.exists():
        missing(f"{AIRFLOW} is missing: build it with `make airflow-venv`")
    return AIRFLOW


def airflow_env(tmp_path: Path, server: Any, **extra: str) -> dict[str, str]:
    """What a deployment sets: Airflow's home and DAGs folder, the key, the URL, the
    warehouse file; PYTHONPATH only carries a checkout's code under test."""
    env = {
        "PATH": os.environ["PATH"], "HOME": str(tmp_path), "LANG": "C.UTF-8",
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "RUNTIME__DLTHUB_TELEMETRY": "false",
        "SOURCES__LEADRAT__BASE_URL": server.base_url,
        "SOURCES__LEADRAT__API_KEY": server.read_write_key,
        "DESTINATION__DUCKDB__CREDENTIALS": str(tmp_path / "warehouse.duckdb"),
        # rows carry the load that wrote them (dlt adds it to Arrow tables on request)
        "NORMALIZE__PARQUET_NORMALIZER__ADD_DLT_LOAD_ID": "true",
        **extra,
    }
    if "PYTHONPATH" in os.environ:
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    return env


def run_airflow(airflow: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([str(airflow), *args], env=env, capture_output=True, text=True,
                          timeout=500, check=False)
    assert done.returncode == 0, (
        f"airflow {' '.join(args[:2])} failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    )
    return done


def dags_test(airflow: Path, env: dict[str, str], interval_end: dt.datetime) -> None:
    """A run whose data interval is the hour before `interval_end` (a manual run's
    interval is the schedule's last full hour before its logical date)."""
    run_airflow(airflow, env, "dags", "test", "leadrat", interval_end.isoformat(),
                "--dagfile-path", str(DAG_FILE))


def airflow_db(env: dict[str, str], query: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(Path(env["AIRFLOW_HOME"]) / "airflow.db") as connection:
        return connection.execute(query).fetchall()


def task_states(env: dict[str, str]) -> dict[str, str]:
    """The tasks' states in the newest run."""
    return dict(airflow_db(env, """
        select task_id, state from task_instance where dag_id = 'leadrat' and run_id = (
            select run_id from dag_run where dag_id = 'leadrat' order by id desc limit 1)"""))


#: The DAG's start_date: Airflow runs no interval before it.
DAG_START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def busiest_hour(leads: list[dict[str, Any]], before: dt.datetime) -> dt.datetime:
    """The start of the hour since the DAG's start with the most `updated_at` values (a
    bulk update), ending before `before`."""
    hours = collections.Counter(
        parse_timestamp(lead["updated_at"]).replace(minute=0, second=0, microsecond=0)
        for lead in leads
    )
    hours = collections.Counter({hour: n for hour, n in hours.items()
                                 if DAG_START <= hour and hour + dt.timedelta(hours=1) < before})
    return hours.most_common(1)[0][0]


def warehouse_leads(env: dict[str, str]) -> list[tuple[str, dt.datetime, str]]:
    """(id, updated_at, _dlt_load_id) of every row of `leads`, duplicates kept."""
    path = env["DESTINATION__DUCKDB__CREDENTIALS"]
    with duckdb.connect(path, read_only=True) as connection:
        return connection.sql("select id, updated_at, _dlt_load_id from leadrat.leads").fetchall()


def assert_warehouse_equals(env: dict[str, str], leads: list[dict[str, Any]]) -> None:
    """Every lead of the sandbox once, in its current version (the sandbox's export)."""
    rows = warehouse_leads(env)
    assert len(rows) == len({row[0] for row in rows}), "a lead is in the warehouse twice"
    assert {row[0]: row[1] for row in rows} == {
        lead["id"]: parse_timestamp(lead["updated_at"]) for lead in leads}


def next_hour(instant: dt.datetime) -> dt.datetime:
    return instant.replace(minute=0, second=0, microsecond=0) + dt.timedelta(hours=1)


@pytest.mark.timeout(900)
def test_first_run_loads_the_history_then_the_hours_go_on_and_a_past_interval_reloads(
    airflow: Path, tmp_path: Path
) -> None:
    with Sandbox.spawn(SandboxConfig(leads=2_000, seed=11, rate_limit=0, plan="pro")) as server:
        env = airflow_env(tmp_path, server)
        run_airflow(airflow, env, "db", "migrate")
        history = server.export_leads()
        span = [parse_timestamp(lead["updated_at"]) for lead in history]
        assert max(span) - min(span) > dt.timedelta(days=365)

        # 1. deployed on an empty warehouse: the first run (this hour) loads every lead
        this_hour_end = next_hour(dt.datetime.now(dt.UTC))
        dags_test(airflow, env, this_hour_end)
        assert task_states(env) == {LOAD_TASK: "success", "reverse_sync": "skipped"}
        assert_warehouse_equals(env, history)

        # 2. the next hour goes on from there: what changed meanwhile arrives
        changed = {change["lead_id"] for change in server.churn(25)}
        dags_test(airflow, env, this_hour_end + dt.timedelta(hours=1))
        assert task_states(env)[LOAD_TASK] == "success"
        now_leads = server.export_leads()
        assert_warehouse_equals(env, now_leads)
        newest_load = max(row[2] for row in warehouse_leads(env))
        assert {row[0] for row in warehouse_leads(env) if row[2] == newest_load} >= changed

        # the scoring model writes its table beside the loaded ones; the next run pushes it
        scored = [lead["id"] for lead in now_leads if not lead["deleted_at"]][:3]
        with duckdb.connect(env["DESTINATION__DUCKDB__CREDENTIALS"]) as db:
            db.execute("create table leadrat.lead_scores (lead_id varchar, score integer)")
            db.executemany("insert into leadrat.lead_scores values (?, 88)",
                           [(lead_id,) for lead_id in scored])

        # 3. a past interval, re-run: exactly its leads are loaded again, then scores pushed
        start = busiest_hour(history, before=this_hour_end - dt.timedelta(days=1))
        in_interval = {lead["id"] for lead in now_leads
                       if start <= parse_timestamp(lead["updated_at"]) < start +
                       dt.timedelta(hours=1)}
        dags_test(airflow, env, start + dt.timedelta(hours=1))
        assert task_states(env) == {LOAD_TASK: "success", "reverse_sync": "success"}
        rows = warehouse_leads(env)
        newest_load = max(row[2] for row in rows)
        assert {row[0] for row in rows if row[2] == newest_load} == in_interval
        assert_warehouse_equals(env, now_leads)  # as loaded, before the scores were pushed
        scores = {lead["id"]: lead["score"] for lead in server.export_leads()}
        assert {lead_id: scores[lead_id] for lead_id in scored} == dict.fromkeys(scored, 88)
        with duckdb.connect(env["DESTINATION__DUCKDB__CREDENTIALS"], read_only=True) as db:
            snapshot_dates = {row[0] for row in db.sql(
                "select distinct snapshot_date from leadrat.analytics_summary").fetchall()}
        assert start.date() in snapshot_dates


@pytest.mark.timeout(900)
def test_spent_daily_quota_reschedules_the_task_until_the_interval_is_complete(
    airflow: Path, tmp_path: Path
) -> None:
    """A daily cap of 8 requests (days of 20 s here) for 15 lead pages plus the other
    resources: each try loads what the day allows and goes to up_for_reschedule until
    the reset LeadRat announced; no try fails, and the last one completes the load."""
    leads, day = 1_500, 20
    # windows shorter than the day, as with LeadRat's per-minute windows and UTC days
    config = SandboxConfig(leads=leads, seed=17, rate_limit=0, plan="pro", daily_cap=8,
                           day_seconds=day, window_seconds=2)
    with Sandbox.spawn(config) as server:
        # waits beyond 2 s are left to Airflow (a reschedule) instead of a busy worker
        env = airflow_env(tmp_path, server, SOURCES__LEADRAT__MAX_WAIT_SECONDS="2")
        run_airflow(airflow, env, "db", "migrate")
        dags_test(airflow, env, next_hour(dt.datetime.now(dt.UTC)))
        stats = server.stats()
        assert task_states(env) == {LOAD_TASK: "success", "reverse_sync": "skipped"}
        assert_warehouse_equals(env, server.export_leads())
    reschedules = airflow_db(env, """
        select r.start_date, r.reschedule_date from task_reschedule r
        join task_instance t on t.id = r.ti_id where t.task_id = 'load'""")
    tries = airflow_db(env, "select try_number from task_instance where task_id = 'load'")
    assert reschedules, "the quota never ran out: the test proves nothing"
    assert tries == [(1,)], "a retry was spent: the task failed instead of rescheduling"
    for started, reschedule in reschedules:
        wait = (dt.datetime.fromisoformat(reschedule) - dt.datetime.fromisoformat(started))
        # come back after the announced reset (the end of the sandbox's day), not before
        assert dt.timedelta(seconds=1) < wait <= dt.timedelta(seconds=day + 10), reschedules
    # not a burst of refused requests: at most a few 429s per try
    assert stats["rate_limited"] <= 3 * (len(reschedules) + 1), stats


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
           "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
           "PYTHONPATH": os.pathsep.join([str(DAGS_FOLDER), *filter(None, [
               os.environ.get("PYTHONPATH")])]),
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
