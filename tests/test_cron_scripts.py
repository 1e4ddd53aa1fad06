"""The cron scripts and pipelines/crontab.example, run the way cron runs them: a bare
environment, another working directory, secrets from a private env file."""

from __future__ import annotations

import fcntl
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb

from leadrat_source.destinations import DEFAULT_DUCKDB_FILE

PROJECT_DIR = Path(__file__).resolve().parents[1]
LOAD_SCRIPT = PROJECT_DIR / "pipelines" / "load_leadrat.py"
CRONTAB = PROJECT_DIR / "pipelines" / "crontab.example"
TIMEOUT = 120


def cron_env(home: Path, **variables: str) -> dict[str, str]:
    """What cron gives a job (no DLT_PROJECT_DIR, no virtualenv), plus `variables`.

    DLT_DATA_DIR keeps the test's pipeline state apart: as root, dlt's default pipelines
    folder is /var/dlt, shared by every run on the machine."""
    home.mkdir(parents=True, exist_ok=True)
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8",
            "DLT_DATA_DIR": str(home / ".dlt"), "RUNTIME__DLTHUB_TELEMETRY": "false",
            **variables}


def run(command: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run like cron would; the exit code is the test's to judge."""
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=TIMEOUT, check=False)


def lead_ids(warehouse: Path) -> list[str]:
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        rows = connection.sql("select id from leadrat.leads order by id").fetchall()
    return [row[0] for row in rows]


def json_lines(text: str) -> list[dict[str, Any]]:
    """The log's entries. dlt writes its own warnings through its "dlt" logger with its
    own text formatter (`...|[WARNING]|pid|thread|dlt|...`); any other line must be JSON."""
    lines = [line for line in text.splitlines() if line.strip()]
    foreign = [line for line in lines if not line.startswith("{") and "|dlt|" not in line]
    assert not foreign, f"lines that are not JSON: {foreign[:3]}"
    return [json.loads(line) for line in lines if line.startswith("{")]


def test_load_script_runs_from_any_directory_with_env_vars_only(
    make_sandbox: Callable[..., Any], tmp_path: Path
) -> None:
    server = make_sandbox(leads=300, rate_limit=0, plan="pro")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    warehouse = tmp_path / "warehouse.duckdb"
    env = cron_env(tmp_path / "home", SOURCES__LEADRAT__API_KEY=server.read_key,
                   SOURCES__LEADRAT__BASE_URL=server.base_url,
                   DESTINATION__DUCKDB__CREDENTIALS=str(warehouse))

    done = run([sys.executable, str(LOAD_SCRIPT), "--log-format", "json"], elsewhere, env)

    assert done.returncode == 0, done.stderr
    assert lead_ids(warehouse) == sorted(lead["id"] for lead in server.export_leads())
    assert "rows written" in done.stdout and "leads=300" in done.stdout
    assert all(entry["level"] != "error" for entry in json_lines(done.stderr))
    assert list(elsewhere.iterdir()) == [], "the script wrote into the working directory"


def test_load_script_without_api_key_exits_2_naming_the_variable(tmp_path: Path) -> None:
    env = cron_env(tmp_path / "home", DESTINATION__DUCKDB__CREDENTIALS=str(tmp_path / "w.duckdb"))

    done = run([sys.executable, str(LOAD_SCRIPT), "--log-format", "json"], tmp_path, env)

    assert done.returncode == 2, done.stderr
    errors = [entry["message"] for entry in json_lines(done.stderr) if entry["level"] == "error"]
    assert errors and "SOURCES__LEADRAT__API_KEY" in errors[0]


def crontab_job(python: str) -> str:
    """The command of the crontab's job line, pointed at this checkout and interpreter."""
    jobs = [line for line in CRONTAB.read_text().splitlines()
            if re.match(r"^[*\d]", line)]
    assert len(jobs) == 1, jobs
    command = re.sub(r"^(\S+\s+){5}", "", jobs[0])
    return (command.replace("/opt/leadrat/.venv/bin/python", python)
            .replace("/opt/leadrat", str(PROJECT_DIR)))


def test_crontab_job_loads_then_syncs_scores_and_skips_while_a_run_holds_the_lock(
    make_sandbox: Callable[..., Any], tmp_path: Path
) -> None:
    server = make_sandbox(leads=300, rate_limit=0, plan="pro")
    home = tmp_path / "home"
    state = home / ".local" / "state" / "leadrat"
    state.mkdir(parents=True)
    warehouse = tmp_path / "warehouse.duckdb"
    secrets = home / ".config" / "leadrat" / "leadrat.env"
    secrets.parent.mkdir(parents=True)
    secrets.touch(mode=0o600)
    secrets.write_text(f"SOURCES__LEADRAT__API_KEY={server.read_write_key}\n"
                       f"SOURCES__LEADRAT__BASE_URL={server.base_url}\n"
                       f"DESTINATION__DUCKDB__CREDENTIALS={warehouse}\n")
    job = crontab_job(sys.executable)
    env = cron_env(home)  # secrets only from the env file, as under cron

    # a fresh warehouse: the first job creates the dataset; no scores to push yet
    fresh = run(["sh", "-c", job], home, env)
    assert len(lead_ids(warehouse)) == 300, (state / "load.log").read_text()
    assert "leads=300" in (state / "load.out").read_text()
    # ... and the reverse sync says what is missing (exit 2), nothing else
    assert fresh.returncode == 2
    [error, _finished] = [entry for entry in json_lines((state / "reverse-sync.log").read_text())
                          if entry["level"] == "error"]
    assert "'lead_scores' does not exist" in error["message"]

    scored = sorted(lead["id"] for lead in server.export_leads() if not lead["deleted_at"])[:3]
    with duckdb.connect(str(warehouse)) as connection:
        connection.execute("create table leadrat.lead_scores (lead_id varchar, score integer)")
        connection.executemany("insert into leadrat.lead_scores values (?, 77)",
                               [(lead_id,) for lead_id in scored])
    for name in ("load.log", "load.out", "reverse-sync.log", "reverse-sync.out"):
        (state / name).unlink(missing_ok=True)

    done = run(["sh", "-c", job], home, env)

    logs = {name: (state / name).read_text() for name in
            ("load.log", "load.out", "reverse-sync.log", "reverse-sync.out")}
    assert done.returncode == 0, logs
    assert len(lead_ids(warehouse)) == 300
    for name in ("load.log", "reverse-sync.log"):
        entries = json_lines(logs[name])  # every line is one JSON object
        assert all(entry["level"] != "error" for entry in entries), entries
    assert {lead["id"]: lead["score"] for lead in server.export_leads()
            if lead["id"] in scored} == dict.fromkeys(scored, 77)
    assert secrets.stat().st_mode & 0o077 == 0
    assert server.read_write_key not in "".join(logs.values())

    with open(state / "load.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a load still running
        overlapping = run(["sh", "-c", job], home, env)
    assert overlapping.returncode == 75  # flock -E 75: skipped, not failed
    assert (state / "load.log").read_text() == logs["load.log"], "the second load ran"
    assert (state / "reverse-sync.log").read_text() == logs["reverse-sync.log"]


def test_env_file_unset_fails_the_job_loudly(tmp_path: Path) -> None:
    home = tmp_path / "home"
    state = home / ".local" / "state" / "leadrat"
    state.mkdir(parents=True)
    done = run(["sh", "-c", crontab_job(sys.executable)], home, cron_env(home))
    assert done.returncode != 0
    assert "leadrat.env" in (state / "load.log").read_text()
    assert not (state / "reverse-sync.log").exists()


def test_scripts_keep_a_configured_project_dir(tmp_path: Path) -> None:
    """An explicit DLT_PROJECT_DIR wins over the checkout (settings in another folder)."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "destinations.toml").write_text('[only_here]\ndestination_type = "duckdb"\n')
    env = cron_env(tmp_path / "home", DLT_PROJECT_DIR=str(project),
                   SOURCES__LEADRAT__API_KEY="lr_test_unused")
    done = run([sys.executable, str(LOAD_SCRIPT), "--destination", "nowhere"], tmp_path, env)
    assert done.returncode == 2
    assert "only_here" in done.stderr and "known profiles" in done.stderr


def test_default_duckdb_file_lands_in_the_checkout_not_in_crons_directory(
    make_sandbox: Callable[..., Any], tmp_path: Path
) -> None:
    """With no DESTINATION__DUCKDB__CREDENTIALS the relative default file is written beside
    the scripts' checkout (a copy of pipelines/ stands in for it), never in $HOME."""
    server = make_sandbox(leads=20, rate_limit=0, plan="pro")
    checkout = tmp_path / "checkout"
    shutil.copytree(PROJECT_DIR / "pipelines", checkout / "pipelines",
                    ignore=shutil.ignore_patterns("__pycache__"))
    home = tmp_path / "home"
    env = cron_env(home, SOURCES__LEADRAT__API_KEY=server.read_key,
                   SOURCES__LEADRAT__BASE_URL=server.base_url)

    done = run([sys.executable, str(checkout / "pipelines" / LOAD_SCRIPT.name)], home, env)

    assert done.returncode == 0, done.stderr
    assert len(lead_ids(checkout / DEFAULT_DUCKDB_FILE)) == 20
    assert not list(home.glob("*.duckdb"))
