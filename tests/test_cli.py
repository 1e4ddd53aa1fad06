"""`leadrat` as a user runs it: a real process, real HTTP to the sandbox, exit codes and messages."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import pytest
from leadrat_process import clean_env, cli_env, leadrat

from leadrat_source.sandbox import Sandbox


@pytest.fixture
def env_for(tmp_path: Path) -> Callable[..., dict[str, str]]:
    def make(server: Sandbox | None = None, **extra: str) -> dict[str, str]:
        return cli_env(tmp_path, server, **extra)

    return make


def test_load_prints_a_summary_and_exits_0(sandbox: Sandbox, env_for: Any, tmp_path: Path) -> None:
    result = leadrat("load", env=env_for(sandbox), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "leads=1000" in result.stdout and "requests:" in result.stdout
    status = leadrat("status", env=env_for(sandbox), cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    assert "leads=1000" in status.stdout
    newest = max(dt.datetime.fromisoformat(lead["updated_at"]) for lead in sandbox.export_leads())
    [cursor] = [line.partition(": ")[2] for line in status.stdout.splitlines()
                if line.startswith("leads cursor (updated_at)")]
    assert dt.datetime.fromisoformat(cursor) == newest


def test_missing_key_is_a_configuration_error(env_for: Any, tmp_path: Path) -> None:
    result = leadrat("load", env=env_for(SOURCES__LEADRAT__BASE_URL="http://127.0.0.1:9"),
                     cwd=tmp_path)
    assert result.returncode == 2
    assert "SOURCES__LEADRAT__API_KEY" in result.stderr
    assert "Traceback" not in result.stderr


def test_wrong_key_is_an_authentication_error_that_hides_the_key(
    sandbox: Sandbox, env_for: Any, tmp_path: Path
) -> None:
    wrong = "lr_test_not_a_real_key_0123456789"
    result = leadrat("load", env=env_for(sandbox, SOURCES__LEADRAT__API_KEY=wrong), cwd=tmp_path)
    assert result.returncode == 3
    assert "api_key" in result.stderr.lower()
    assert wrong not in result.stderr + result.stdout


def test_unreachable_host_fails_clearly(env_for: Any, tmp_path: Path) -> None:
    result = leadrat(
        "load",
        env=env_for(SOURCES__LEADRAT__BASE_URL="http://127.0.0.1:9",
                    SOURCES__LEADRAT__API_KEY="lr_test_x"),
        cwd=tmp_path,
    )
    assert result.returncode == 1
    assert "127.0.0.1:9" in result.stderr
    assert "Traceback" not in result.stderr


def test_plain_http_to_a_remote_host_is_refused(env_for: Any, tmp_path: Path) -> None:
    result = leadrat(
        "check",
        env=env_for(SOURCES__LEADRAT__BASE_URL="http://api.crm.builder.leadratd.com",
                    SOURCES__LEADRAT__API_KEY="lr_test_x"),
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert "https://" in result.stderr


def test_unknown_resource_and_unknown_destination_name_the_valid_ones(
    sandbox: Sandbox, env_for: Any, tmp_path: Path
) -> None:
    resource = leadrat("load", "--resources", "leads,deals", env=env_for(sandbox), cwd=tmp_path)
    assert resource.returncode == 2
    assert "deals" in resource.stderr and "pipelines" in resource.stderr
    destination = leadrat("load", "--destination", "redshift", env=env_for(sandbox), cwd=tmp_path)
    assert destination.returncode == 2
    assert "redshift" in destination.stderr and "postgres" in destination.stderr


def test_missing_destination_credentials_name_the_setting(
    sandbox: Sandbox, env_for: Any, tmp_path: Path
) -> None:
    result = leadrat("check", "--destination", "postgres", env=env_for(sandbox), cwd=tmp_path)
    assert result.returncode == 2
    assert "DESTINATION__POSTGRES__CREDENTIALS" in result.stderr


def duckdb_rows(path: Path, sql: str) -> list[tuple[Any, ...]]:
    """Rows of a query on the test's DuckDB file, read with DuckDB itself."""
    import duckdb

    with duckdb.connect(str(path), read_only=True) as connection:
        return connection.execute(sql).fetchall()


def list_pages(server: Sandbox) -> int:
    return int(server.stats()["by_route"].get("GET /leads", 0))


def status_lines(env: dict[str, str], cwd: Path, *args: str) -> list[str]:
    status = leadrat("status", *args, env=env, cwd=cwd)
    assert status.returncode == 0, status.stderr
    return status.stdout.splitlines()


def test_spent_daily_quota_exits_4_and_the_next_run_resumes(
    make_sandbox: Callable[..., Sandbox], env_for: Any, tmp_path: Path
) -> None:
    # 12 requests a day per credential, each credential playing the next day; one slice,
    # so the resume point is exactly where the scan stopped
    server = make_sandbox(leads=1_500, daily_cap=12, rate_limit=0)
    env = env_for(server, SOURCES__LEADRAT__WORKERS="1")
    days = [{"SOURCES__LEADRAT__API_KEY": server.read_key},
            {"SOURCES__LEADRAT__API_KEY": server.read_write_key},
            {"SOURCES__LEADRAT__API_KEY": "", "SOURCES__LEADRAT__BEARER_TOKEN": server.bearer_token}]
    stored_before, runs = 0, 0
    for day in days:
        runs += 1
        result = leadrat("load", env={**env, **day}, cwd=tmp_path)
        stored = duckdb_rows(tmp_path / "warehouse.duckdb", "select count(*) from leadrat.leads")
        if result.returncode == 0:
            break
        assert result.returncode == 4, result.stderr
        assert "quota" in result.stderr.lower() and "reset" in result.stderr.lower()
        assert stored[0][0] > stored_before, "a run stopped by the quota saved nothing"
        stored_before = stored[0][0]
    else:
        pytest.fail("three days of quota did not finish the load")
    assert runs >= 2, "the quota never ran out; nothing was tested"
    assert duckdb_rows(tmp_path / "warehouse.duckdb",
                       "select count(*), count(distinct id) from leadrat.leads") == [(1_500, 1_500)]
    # each resumed run read on from where the last one stopped: at most its resume page twice;
    # the run that finished asked once more what moved meanwhile (its catch-up pass)
    assert list_pages(server) <= 1_500 // 100 + runs - 1 + 1, list_pages(server)
    lines = status_lines(env, tmp_path)
    loads = duckdb_rows(tmp_path / "warehouse.duckdb",
                        "select load_id from leadrat._dlt_loads where status = 0")
    assert len(loads) >= runs and all(f"load {load_id}: loaded at" in "\n".join(lines)
                                      for (load_id,) in loads[-5:])
    assert "last error: none" in lines


def test_status_names_the_last_error(
    sandbox: Sandbox, env_for: Any, tmp_path: Path
) -> None:
    assert leadrat("load", "--resources", "pipelines", env=env_for(sandbox),
                   cwd=tmp_path).returncode == 0
    broken = env_for(sandbox, SOURCES__LEADRAT__API_KEY="lr_test_not_a_real_key_0123456789")
    assert leadrat("load", env=broken, cwd=tmp_path).returncode == 3
    [last_error] = [line for line in status_lines(broken, tmp_path)
                    if line.startswith("last error:")]
    assert last_error != "last error: none" and "lr_test_not_a_real_key" not in last_error


def test_since_until_and_dataset_load_a_window_into_another_dataset(
    sandbox: Sandbox, env_for: Any, tmp_path: Path
) -> None:
    leads = sandbox.export_leads()
    stamps = sorted(lead["updated_at"] for lead in leads)
    since, until = stamps[100], stamps[300]
    result = leadrat("load", "--dataset", "backfill", "--since", since, "--until", until,
                     "--resources", "leads", env=env_for(sandbox), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    stored = {row[0] for row in duckdb_rows(tmp_path / "warehouse.duckdb",
                                            "select id from backfill.leads")}
    assert stored == {lead["id"] for lead in leads if since <= lead["updated_at"] < until}
    schemas = {row[0] for row in duckdb_rows(tmp_path / "warehouse.duckdb",
                                             "select schema_name from information_schema.schemata")}
    assert "leadrat" not in schemas, "--dataset was ignored"
    assert "leads cursor (updated_at): none yet" in "\n".join(
        status_lines(env_for(sandbox), tmp_path, "--dataset", "backfill")), "a backfill moved the cursor"


def test_full_refresh_reloads_everything_and_drops_what_is_not_in_leadrat(
    make_sandbox: Callable[..., Sandbox], env_for: Any, tmp_path: Path
) -> None:
    import duckdb

    server = make_sandbox(leads=500, rate_limit=0)
    env = env_for(server)
    assert leadrat("load", env=env, cwd=tmp_path).returncode == 0
    with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as connection:
        connection.execute("update leadrat.leads set name = 'edited by hand'")
    pages_before = list_pages(server)
    refreshed = leadrat("load", "--full-refresh", env=env, cwd=tmp_path)
    assert refreshed.returncode == 0, refreshed.stderr
    assert list_pages(server) - pages_before >= 500 // 100, "--full-refresh kept the cursor"
    names = {row for row in duckdb_rows(tmp_path / "warehouse.duckdb",
                                        "select id, name from leadrat.leads")}
    assert names == {(lead["id"], lead["name"]) for lead in server.export_leads()}


def test_two_destination_profiles_never_share_a_cursor(
    make_sandbox: Callable[..., Sandbox], env_for: Any, tmp_path: Path
) -> None:
    """duckdb loads, LeadRat changes, the archive loads, then duckdb again: duckdb must
    start from its own cursor, not from the archive's later one, or it misses the changes."""
    profiles = tmp_path / "destinations.toml"
    profiles.write_text('[duckdb]\ndestination_type = "duckdb"\n\n'
                        '[archive]\ndestination_type = "duckdb"\n')
    server = make_sandbox(leads=400, rate_limit=0)
    env = env_for(server, LEADRAT_DESTINATIONS_FILE=str(profiles),
                  DESTINATION__ARCHIVE__CREDENTIALS=str(tmp_path / "archive.duckdb"))
    assert leadrat("load", env=env, cwd=tmp_path).returncode == 0
    server.churn(50)
    for destination in ("archive", "duckdb"):
        result = leadrat("load", "--destination", destination, env=env, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
    expected = {(lead["id"], dt.datetime.fromisoformat(lead["updated_at"]))
                for lead in server.export_leads()}
    for database in ("warehouse.duckdb", "archive.duckdb"):
        stored = set(duckdb_rows(tmp_path / database, "select id, updated_at from leadrat.leads"))
        assert stored == expected, f"{database}: {len(expected - stored)} leads missing or stale"


def test_check_reports_scope_plan_and_budget(
    make_sandbox: Callable[..., Sandbox], env_for: Any, tmp_path: Path
) -> None:
    server = make_sandbox(leads=50, plan="growth")
    read = leadrat("check", "--probe-write", env=env_for(server), cwd=tmp_path)
    assert read.returncode == 0, read.stderr
    assert "scope read;" in read.stdout and "plan growth" in read.stdout
    # the budget line: what the sandbox itself says is left (check's own request spent)
    limit = 200  # growth: 200 a minute
    assert f"{limit - server.stats()['requests']} of {limit} requests left" in read.stdout
    assert "destination: ok (profile 'duckdb', dataset 'leadrat')" in read.stdout
    write = leadrat("check", "--probe-write", "--dataset", "crm",
                    env=env_for(server, SOURCES__LEADRAT__API_KEY=server.read_write_key),
                    cwd=tmp_path)
    assert "scope read_write" in write.stdout
    assert "destination: ok (profile 'duckdb', dataset 'crm')" in write.stdout
    assert server.read_write_key not in write.stdout + write.stderr


def test_json_logs_are_one_object_per_line(env_for: Any, tmp_path: Path) -> None:
    result = leadrat("--log-format", "json", "load",
                     env=env_for(SOURCES__LEADRAT__BASE_URL="http://127.0.0.1:9"), cwd=tmp_path)
    entries = [json.loads(line) for line in result.stderr.splitlines() if line.strip()]
    assert entries and all({"ts", "level", "message"} <= entry.keys() for entry in entries)
    assert entries[-1]["level"] == "error"


def test_a_load_started_while_another_process_holds_the_duckdb_file_waits_for_it(
    make_sandbox: Callable[..., Sandbox], env_for: Any, tmp_path: Path,
) -> None:
    """An analyst's read-write session (or the webhook receiver mid-flush) holds the file
    when a scheduled load starts: the load waits and then loads, rather than failing at
    dlt's state sync, its first touch of the warehouse."""
    server = make_sandbox(leads=500, seed=67, rate_limit=0)
    env = env_for(server)
    assert leadrat("load", env=env, cwd=tmp_path).returncode == 0
    server.churn(50)
    path = env["DESTINATION__DUCKDB__CREDENTIALS"]
    holder = subprocess.Popen(
        [sys.executable, "-c", ("import duckdb, sys; c = duckdb.connect(sys.argv[1]); "
                                "print('locked', flush=True); sys.stdin.read()"), path],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
    load = subprocess.Popen([sys.executable, "-m", "leadrat_source.cli", "load"],
                            env=clean_env(env), cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    time.sleep(3)
    if load.poll() is not None:
        pytest.fail(f"the load gave up while the file was held: {load.communicate()[1][-2000:]}")
    holder.communicate("")
    _, stderr = load.communicate(timeout=120)
    assert load.returncode == 0, stderr[-2000:]
    expected = {(lead["id"], dt.datetime.fromisoformat(lead["updated_at"]))
                for lead in server.export_leads()}
    with duckdb.connect(path, read_only=True) as warehouse:
        stored = set(warehouse.execute("select id, updated_at from leadrat.leads").fetchall())
    assert stored == expected
