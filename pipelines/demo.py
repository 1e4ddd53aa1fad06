"""`make demo`: the main job end to end, offline.

Starts the sandbox (a local LeadRat API with synthetic data) in its own process, loads it
into the embedded DuckDB default (`leadrat_warehouse.duckdb` in the working directory), lets the
sandbox change some leads, runs the incremental load, and prints the summaries plus a
look at the tables an analyst would query.
"""

from __future__ import annotations

import os
import sys
import tempfile

import duckdb

from leadrat_source.load import LoadRequest, run_load
from leadrat_source.sandbox import Sandbox, SandboxConfig

DEMO_LEADS = 20_000


def main() -> int:
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

    with duckdb.connect("leadrat_warehouse.duckdb", read_only=True) as warehouse:
        print("\nleads by status in leadrat_warehouse.duckdb (dataset leadrat):")
        for status, count, deleted in warehouse.sql(
            "select status, count(*), count(deleted_at) from leadrat.leads "
            "group by status order by 2 desc"
        ).fetchall():
            print(f"  {status:<10} {count:>6} ({deleted} deleted)")
    print("\nquery it yourself: duckdb leadrat_warehouse.duckdb \"select * from leadrat.leads limit 5\"")
    return 0


if __name__ == "__main__":
    sys.exit(main())
