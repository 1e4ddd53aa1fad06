"""`make demo`: the main job end to end, offline.

Starts the sandbox (a local LeadRat API with synthetic data) in its own process, loads it
into a DuckDB file of its own (`leadrat_demo.duckdb` in the working directory: the file a
real `leadrat load` writes, `leadrat_warehouse.duckdb`, is left alone), lets the sandbox
change some leads, runs the incremental load, and prints the summaries, a look at the
tables an analyst would query, and a command to query them that works from this
environment (DuckDB's Python package; no `duckdb` CLI needed).
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import tempfile
from pathlib import Path

import duckdb

from leadrat_source.load import LoadRequest, run_load
from leadrat_source.sandbox import Sandbox, SandboxConfig

DEMO_LEADS = 20_000
DEMO_FILE = "leadrat_demo.duckdb"


def main() -> int:
    warehouse_file = Path(DEMO_FILE).resolve()
    os.environ["DESTINATION__DUCKDB__CREDENTIALS"] = str(warehouse_file)
    config = SandboxConfig(leads=DEMO_LEADS, seed=7, plan="pro", rate_limit=0)
    print(f"starting the sandbox with {DEMO_LEADS:,} synthetic leads ...", flush=True)
    with Sandbox.spawn(config) as server:
        os.environ["SOURCES__LEADRAT__BASE_URL"] = server.base_url
        os.environ["SOURCES__LEADRAT__API_KEY"] = server.read_key
        # keep the demo's pipeline state apart from any real pipeline's
        pipelines_dir = tempfile.mkdtemp(prefix="leadrat-demo-")
        request = LoadRequest(pipeline_name="leadrat_demo", pipelines_dir=pipelines_dir,
                              full_refresh=True)
        print("\nfirst load:")
        print("\n".join(run_load(request).lines()))

        server.churn(500)
        print("\nthe sandbox changed 500 leads; incremental load:")
        incremental = LoadRequest(pipeline_name="leadrat_demo", pipelines_dir=pipelines_dir)
        print("\n".join(run_load(incremental).lines()))

    with duckdb.connect(str(warehouse_file), read_only=True) as warehouse:
        print(f"\nleads by status in {DEMO_FILE} (dataset leadrat):")
        for status, count, deleted in warehouse.sql(
            "select status, count(*), count(deleted_at) from leadrat.leads "
            "group by status order by 2 desc"
        ).fetchall():
            print(f"  {status:<10} {count:>6} ({deleted} deleted)")
    print("\nquery it yourself (docs/tables.md describes every table):")
    print("  " + query_command(warehouse_file, "select * from leadrat.leads limit 5"))
    return 0


def query_command(warehouse_file: Path, sql: str) -> str:
    """A shell command that runs `sql` on the file with this environment's Python."""
    # double-quoted literals, so that the shell's single quotes around the code stay simple
    code = (f"import duckdb; duckdb.connect({json.dumps(str(warehouse_file))}, read_only=True)"
            f".sql({json.dumps(sql)}).show()")
    return shlex.join([sys.executable, "-c", code])


if __name__ == "__main__":
    sys.exit(main())
