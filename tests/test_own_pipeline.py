"""The source in a user's own dlt pipeline: `pipelines/leadrat_pipeline.py` run as a user
runs it (its own process, configuration from SOURCES__LEADRAT__* variables), judged
against the sandbox's own export after every run."""

from __future__ import annotations

import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import duckdb
import pytest
from dlt_kills import JOB_COMMITTED, KILLING, kill_environment
from served import LIST_ROUTE, arrivals

from leadrat_source.sandbox import Sandbox, SandboxConfig
from leadrat_source.timestamps import parse_timestamp

PROJECT_DIR = Path(__file__).resolve().parents[1]
SCRIPT = PROJECT_DIR / "pipelines" / "leadrat_pipeline.py"
#: dlt names the DuckDB file after the pipeline, in the working directory
WAREHOUSE_FILE = "leadrat_example.duckdb"


def run_script(server: Any, workdir: Path, *args: str, kill_at: str | None = None,
               **settings: str) -> subprocess.CompletedProcess[str]:
    """The example script with only what a user sets: the key, the URL and settings
    (`kill_at`: the script dies at that instant of dlt's, see dlt_kills)."""
    env = {
        "PATH": os.environ["PATH"], "HOME": str(workdir), "LANG": "C.UTF-8",
        # dlt's pipelines folder (else ~/.dlt, or /var/dlt when run as root)
        "DLT_DATA_DIR": str(workdir / "dlt"),
        "PYTHONPATH": os.environ.get("PYTHONPATH", str(PROJECT_DIR)),
        "RUNTIME__DLTHUB_TELEMETRY": "false",
        "SOURCES__LEADRAT__API_KEY": server.read_key,
        "SOURCES__LEADRAT__BASE_URL": server.base_url,
        **{f"SOURCES__LEADRAT__{name.upper()}": value for name, value in settings.items()},
    }
    command = [sys.executable, str(SCRIPT)]
    if kill_at:
        env.update(kill_environment(kill_at))
        command = [*KILLING, "--script", str(SCRIPT)]
    return subprocess.run([*command, *args], cwd=workdir, env=env,
                          capture_output=True, text=True, timeout=240, check=False)


def warehouse_leads(workdir: Path) -> list[tuple[str, Any]]:
    """(id, updated_at) of every row of `leads`, duplicates kept."""
    with duckdb.connect(str(workdir / WAREHOUSE_FILE), read_only=True) as connection:
        return connection.sql("select id, updated_at from leadrat.leads").fetchall()


def sandbox_leads(server: Any) -> dict[str, Any]:
    return {lead["id"]: parse_timestamp(lead["updated_at"]) for lead in server.export_leads()}


def assert_exact_subset(workdir: Path, expected: dict[str, Any]) -> int:
    """Every loaded lead is LeadRat's, in its current version, and loaded once."""
    rows = warehouse_leads(workdir)
    ids = [lead_id for lead_id, _ in rows]
    assert len(ids) == len(set(ids)), "a lead is in the warehouse twice"
    assert {lead_id: expected.get(lead_id) for lead_id, _ in rows} == dict(rows)
    return len(rows)


def test_plain_dlt_run_loads_every_lead_and_the_other_resources(tmp_path: Path) -> None:
    with Sandbox.spawn(SandboxConfig(leads=700, seed=5, rate_limit=0, plan="pro")) as server:
        done = run_script(server, tmp_path)
        assert done.returncode == 0, done.stderr[-3000:]
        expected = sandbox_leads(server)
        stats = server.stats()
        assert assert_exact_subset(tmp_path, expected) == len(expected)
        assert "WARNING" not in done.stderr, done.stderr[-2000:]
        with duckdb.connect(str(tmp_path / WAREHOUSE_FILE), read_only=True) as connection:
            tables = {name for (name,) in connection.sql(
                "select table_name from information_schema.tables "
                "where table_schema = 'leadrat'").fetchall()}
        assert {"leads", "lead_tags", "pipelines", "pipeline_stages", "analytics_summary",
                "analytics_sources", "analytics_funnel"} <= tables
        # a page per 100 leads, the pipelines, the three reports, and at most two spare
        assert stats["requests"] <= math.ceil(len(expected) / 100) + 4 + 2, stats
        # the key (a dlt secret in the source's signature) is in no output, trace or state
        assert server.read_key not in done.stdout + done.stderr
        for path in (tmp_path / "dlt").rglob("*"):
            if path.is_file():
                assert server.read_key.encode() not in path.read_bytes(), path



def test_a_run_killed_after_a_tag_job_committed_is_completed_exactly_by_dlts_resume(
    tmp_path: Path,
) -> None:
    """Killed after the `lead_tags` load job committed, before dlt recorded it: the user's
    next `pipeline.run` (dlt's own resume, no repair of ours) runs that job again and
    stages its rows twice; `lead_tags`' primary key makes dlt keep each tag once."""
    with Sandbox.spawn(SandboxConfig(leads=700, seed=5, rate_limit=0, plan="pro")) as server:
        killed = run_script(server, tmp_path, kill_at=JOB_COMMITTED + "lead_tags")
        assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
        for _ in range(2):  # dlt loads the pending package and stops; then the new run
            done = run_script(server, tmp_path)
            assert done.returncode == 0, done.stderr[-3000:]
        expected = {(lead["id"], tag) for lead in server.export_leads() for tag in lead["tags"]}
    with duckdb.connect(str(tmp_path / WAREHOUSE_FILE), read_only=True) as connection:
        rows = connection.sql("select lead_id, tag from leadrat.lead_tags"
                              " where _no_tags is not true").fetchall()
    assert len(rows) == len(set(rows)), "a tag is stored twice"
    assert set(rows) == expected


def test_a_429_in_a_users_pipeline_is_retried_when_retry_after_says(tmp_path: Path) -> None:
    """The source as a user builds it (no client of ours injected: the production retry
    policy, whose first backoff is 0.25-0.5 s) waits the 1 s the sandbox's 429 asks for.
    One scan worker makes the list requests sequential; the gap between the 429'd page and
    its retry is measured on the server's side."""
    with Sandbox.spawn(SandboxConfig(leads=300, seed=6, rate_limit=0, plan="pro")) as server:
        server.set_faults(fail_next=[{"status": 429, "count": 1, "path_prefix": "/leads"}])
        with arrivals(server, route=LIST_ROUTE) as pages:
            done = run_script(server, tmp_path, workers="1")
        assert done.returncode == 0, done.stderr[-3000:]
        assert server.stats()["by_status"].get("429") == 1
        assert assert_exact_subset(tmp_path, sandbox_leads(server)) == 300
    # arrivals are sampled every 5 ms: each end may be off by that much
    gap = pages.times[1] - pages.times[0]
    assert 1.0 - 0.02 <= gap <= 1.5, f"retried {gap:.2f} s after the 429"

def test_with_resources_and_a_backfill_window_load_only_that(tmp_path: Path) -> None:
    with Sandbox.spawn(SandboxConfig(leads=700, seed=5, rate_limit=0, plan="pro")) as server:
        expected = sandbox_leads(server)
        ordered = sorted(expected.values())
        since, until = ordered[100], ordered[400]
        done = run_script(server, tmp_path, "leads", since.isoformat(), until.isoformat())
        assert done.returncode == 0, done.stderr[-3000:]
    in_window = {i: u for i, u in expected.items() if since <= u < until}
    assert assert_exact_subset(tmp_path, expected) == len(in_window)
    assert {lead_id for lead_id, _ in warehouse_leads(tmp_path)} == set(in_window)
    with duckdb.connect(str(tmp_path / WAREHOUSE_FILE), read_only=True) as connection:
        tables = {name for (name,) in connection.sql(
            "select table_name from information_schema.tables "
            "where table_schema = 'leadrat' and table_name not like '\\_dlt%' escape '\\'"
        ).fetchall()}
    assert tables == {"leads", "lead_tags"}


def _resets_at(stderr: str) -> float:
    found = re.findall(r"resets at (\d{4}-\d\d-\d\dT[\d:.]+\+00:00)", stderr)
    assert found, f"no reset time named:\n{stderr[-3000:]}"
    return parse_timestamp(found[-1]).timestamp()


@pytest.mark.timeout(300)
def test_quota_cut_run_warns_fails_the_caller_and_the_next_run_completes(
    tmp_path: Path,
) -> None:
    """A daily cap of 8 requests (a day of 15 s here) against 15 lead pages plus the
    pipelines and analytics: each run reads what the day allows, warns (logging's WARNING
    reaches stderr even where the script configures no logging), fails the script; after
    the reset the next one goes on, until the warehouse equals the sandbox."""
    leads, cap, day = 1_500, 8, 15
    config = SandboxConfig(leads=leads, seed=9, rate_limit=0, plan="pro", daily_cap=cap,
                           day_seconds=day)
    with Sandbox.spawn(config) as server:
        expected = sandbox_leads(server)
        runs: list[tuple[int, int]] = []  # (exit code, leads in the warehouse after it)
        first_stderr = ""
        time.sleep(day - time.time() % day + 0.2)  # a fresh day: the first run sees one cap
        for _ in range(8):
            done = run_script(server, tmp_path, max_wait_seconds="2")
            loaded = assert_exact_subset(tmp_path, expected)  # after every run
            runs.append((done.returncode, loaded))
            first_stderr = first_stderr or done.stderr
            if done.returncode == 0:
                break
            # the script failed on the quota, and said what is left and until when
            assert "QuotaExhausted" in done.stderr, done.stderr[-3000:]
            assert re.search(r"^(leads: not loaded: leads updated from|pipelines: not loaded|"
                             r"analytics: not loaded)", done.stderr, re.MULTILINE), \
                done.stderr[-3000:]
            time.sleep(max(0.0, _resets_at(done.stderr) - time.time()) + 0.5)
        stats = server.stats()
    assert runs[0][0] != 0 and runs[0][1] < leads, f"the first run was not cut short: {runs}"
    assert "leads: not loaded: leads updated from" in first_stderr
    assert runs[-1] == (0, leads), f"the runs did not complete the load: {runs}"
    # nothing read twice beyond a handful per run: pages, pipelines, the 3 reports, retries
    assert stats["requests"] <= math.ceil(leads / 100) + 6 * len(runs), (stats, runs)


@pytest.mark.timeout(300)
def test_huge_first_load_stops_at_max_leads_per_run_warns_and_goes_on(tmp_path: Path) -> None:
    leads = 3_000
    with Sandbox.spawn(SandboxConfig(leads=leads, seed=13, rate_limit=0, plan="pro")) as server:
        expected = sandbox_leads(server)
        runs: list[tuple[int, int]] = []
        for _ in range(8):
            done = run_script(server, tmp_path, max_leads_per_run="1000")
            runs.append((done.returncode, assert_exact_subset(tmp_path, expected)))
            if done.returncode == 0:
                break
            assert "LoadIncomplete" in done.stderr, done.stderr[-3000:]
            assert re.search(r"leads: not loaded in this run: leads updated from .*"
                             r"max_leads_per_run", done.stderr), done.stderr[-3000:]
    assert len(runs) >= 2 and runs[0][1] < leads, f"the first run was not cut: {runs}"
    assert runs[-1] == (0, leads), runs


def test_cli_load_cut_by_the_quota_exits_4_and_status_names_what_is_left(
    tmp_path: Path,
) -> None:
    """`leadrat load` reads the same notes as a user's script: exit 4, the unread leads in
    its error, and `leadrat status` lists them until a run completes."""
    config = SandboxConfig(leads=1_500, seed=9, rate_limit=0, plan="pro", daily_cap=6)
    with Sandbox.spawn(config) as server:
        env = {
            "PATH": os.environ["PATH"], "HOME": str(tmp_path), "LANG": "C.UTF-8",
            "PYTHONPATH": os.environ.get("PYTHONPATH", str(PROJECT_DIR)),
            "DLT_DATA_DIR": str(tmp_path / "dlt"), "RUNTIME__DLTHUB_TELEMETRY": "false",
            "DESTINATION__DUCKDB__CREDENTIALS": str(tmp_path / "warehouse.duckdb"),
            "SOURCES__LEADRAT__API_KEY": server.read_key,
            "SOURCES__LEADRAT__BASE_URL": server.base_url,
        }

        def leadrat(command: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([sys.executable, "-m", "leadrat_source.cli", command],
                                  cwd=tmp_path, env=env, capture_output=True, text=True,
                                  timeout=120, check=False)

        load = leadrat("load")
        status = leadrat("status")
        expected = sandbox_leads(server)
    assert load.returncode == 4, load.stderr[-3000:]
    assert re.search(r"leads: not loaded: leads updated from \S+ to \S+; the LeadRat request "
                     r"quota is spent and resets at", load.stderr), load.stderr[-3000:]
    assert status.returncode == 0, status.stderr[-3000:]
    assert re.search(r"left unread by the last run: leads: not loaded: leads updated from",
                     status.stdout), status.stdout
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as connection:
        rows = connection.sql("select id, updated_at from leadrat.leads").fetchall()
    assert 0 < len(rows) < len(expected)
    assert {lead_id: expected[lead_id] for lead_id, _ in rows} == dict(rows)
