"""Test helpers: `leadrat` as a user runs it, a real process with a clean environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from leadrat_source.sandbox import Sandbox


def leadrat(*args: str, env: dict[str, str], cwd: Path,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run `leadrat ARGS` to completion; no SOURCES__/DESTINATION__ settings leak in."""
    return subprocess.run(
        [sys.executable, "-m", "leadrat_source.cli", *args],
        env=clean_env(env), cwd=cwd, capture_output=True, text=True, timeout=timeout,
        check=False,
    )


def clean_env(env: dict[str, str]) -> dict[str, str]:
    """This process's environment without connector settings, plus `env`."""
    base = {key: value for key, value in os.environ.items()
            if not key.startswith(("SOURCES__", "DESTINATION__", "LEADRAT_"))}
    return {**base, **env}


def cli_env(tmp_path: Path, server: Sandbox | None = None, **extra: str) -> dict[str, str]:
    """Settings for a CLI run in `tmp_path` (its own dlt folder and DuckDB file) against
    `server` with its read-only key."""
    env = {
        "DLT_DATA_DIR": str(tmp_path / "dlt"),
        "DESTINATION__DUCKDB__CREDENTIALS": str(tmp_path / "warehouse.duckdb"),
        "SOURCES__LEADRAT__MAX_ATTEMPTS": "2",
    }
    if server is not None:
        env["SOURCES__LEADRAT__BASE_URL"] = server.base_url
        env["SOURCES__LEADRAT__API_KEY"] = server.read_key
    env.update(extra)
    return env


def expected_rows_written(server: Sandbox) -> dict[str, Any]:
    """What a first full load writes per table, from the sandbox's own data (export,
    store and analytics code), not from anything of the connector."""
    import datetime as dt

    from leadrat_source.sandbox import analytics

    leads = server.export_leads()
    untagged = sum(1 for lead in leads if not lead["tags"])
    end = dt.datetime.now(dt.UTC).date()
    start = end - dt.timedelta(days=29)
    return {
        "leads": len(leads),
        "lead_tags": sum(len(lead["tags"]) for lead in leads) + untagged,
        "lead_tags_markers": untagged,
        "pipelines": len(server.store.pipelines),
        "pipeline_stages": sum(len(pipeline.stages) for pipeline in server.store.pipelines),
        "analytics_summary": 1,
        "analytics_sources": len(analytics.sources(server.store, start, end)),
        "analytics_funnel": len(analytics.funnel(server.store, start, end, None)),
    }
