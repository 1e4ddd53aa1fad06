"""`make demo` (`pipelines/demo.py`) as a newcomer runs it: the warehouse it leaves holds
exactly the demo sandbox's leads."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import duckdb
from leadrat_process import clean_env

from leadrat_source.sandbox import Sandbox, SandboxConfig

REPO = Path(__file__).resolve().parents[1]


def test_make_demo_loads_the_sandbox_and_its_changes(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "pipelines" / "demo.py")], env=clean_env({}), cwd=tmp_path,
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "incremental load:" in result.stdout
    with duckdb.connect(str(tmp_path / "leadrat_warehouse.duckdb"), read_only=True) as warehouse:
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
