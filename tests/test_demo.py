"""`make demo` (`pipelines/demo.py`) as a newcomer runs it: the warehouse it leaves holds
exactly the demo sandbox's leads, in a file of its own, and its closing hint runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import duckdb
from leadrat_process import clean_env

from leadrat_source.sandbox import Sandbox, SandboxConfig

REPO = Path(__file__).resolve().parents[1]
HINT_TITLE = "query it yourself (docs/tables.md describes every table):"


def test_make_demo_loads_the_sandbox_and_its_changes_into_its_own_file(tmp_path: Path) -> None:
    real_warehouse = tmp_path / "leadrat_warehouse.duckdb"
    real_warehouse.write_bytes(b"a real load's warehouse")
    env = clean_env({"DLT_DATA_DIR": str(tmp_path / "dlt")})
    result = subprocess.run(
        [sys.executable, str(REPO / "pipelines" / "demo.py")], env=env, cwd=tmp_path,
        capture_output=True, text=True, timeout=600, check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "incremental load:" in result.stdout
    assert real_warehouse.read_bytes() == b"a real load's warehouse"
    with duckdb.connect(str(tmp_path / "leadrat_demo.duckdb"), read_only=True) as warehouse:
        stored = set(warehouse.sql(
            "select id, status, score, stage_id, email, deleted_at is not null "
            "from leadrat.leads").fetchall())
        tags = set(warehouse.sql("select lead_id, tag from leadrat.lead_tags").fetchall())
    # the oracle: the same seeded sandbox with the same changes, built here
    with Sandbox(SandboxConfig(leads=20_000, seed=7, plan="pro", rate_limit=0)) as sandbox:
        sandbox.churn(500)
        expected = {(lead["id"], lead["status"], lead["score"], lead["stage_id"], lead["email"],
                     lead["deleted_at"] is not None) for lead in sandbox.export_leads()}
        expected_tags = {(lead["id"], tag) for lead in sandbox.export_leads() for tag in lead["tags"]}
    assert stored == expected
    assert tags == expected_tags

    lines = result.stdout.splitlines()
    hint = lines[lines.index(HINT_TITLE) + 1]
    # pasted into a shell, from another directory, whose PATH has no duckdb CLI
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    pasted = subprocess.run(["sh", "-c", hint.strip()], cwd=elsewhere,
                            env={**env, "PATH": "/usr/bin:/bin"}, capture_output=True,
                            text=True, timeout=120, check=False)
    assert pasted.returncode == 0, pasted.stderr
    assert pasted.stdout.count("lead_") >= 5  # five leads' ids in DuckDB's table
