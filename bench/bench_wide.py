"""Load speed and memory of a wide account (2,000 custom field keys) against a narrow one
(20 keys) with the same number of leads.

    python bench/bench_wide.py [--leads 10000] [--wide-keys 2000] [--narrow-keys 20]
                               [--destination duckdb|postgres] [--no-json]

Each account is a sandbox in a child process (`--custom-keys`); each load runs in a forked
child of this process (so its peak RSS growth is its own) with `run_load` into a fresh
dataset: a first load, then an incremental run after `churn(1000)`. The wide account is
loaded twice: with the default `custom_fields = "columns+overflow"` and with `"json"`.
PostgreSQL is read from LEADRAT_TEST_POSTGRES_URL (a password is not needed).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import dlt
from bench_load import Result, in_child, measured, step_seconds

from leadrat_source.client import LeadRatClient
from leadrat_source.custom_fields import OVERFLOW_COLUMN
from leadrat_source.load import LoadRequest, run_load
from leadrat_source.sandbox import Sandbox, SandboxConfig

#: Custom field keys every sandbox lead may have besides the `--custom-keys` ones.
STANDARD_KEYS = 6
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"


def load_twice(base_url: str, api_key: str, workdir: Path, destination: str, name: str,
               mode: str, churn: Any) -> Result:
    """A first load and an incremental run after churn, into a fresh dataset."""
    os.environ["SOURCES__LEADRAT__CUSTOM_FIELDS"] = mode
    os.environ["DESTINATION__DUCKDB__CREDENTIALS"] = str(workdir / f"{name}.duckdb")
    request = LoadRequest(destination=destination, dataset=f"bench_wide_{name}",
                          pipeline_name=f"bench_wide_{name}",
                          pipelines_dir=str(workdir / "pipelines"), resources=["leads"])
    result: Result = {}
    with LeadRatClient(base_url, api_key=api_key, timeout=60.0) as client:
        with measured(result):
            summary = run_load(request, client=client)
        result["leads"] = summary.rows.get("leads", 0)
        pipeline = dlt.attach(request.pipeline_name, pipelines_dir=request.pipelines_dir)
        result["steps"] = step_seconds(pipeline)
        columns = pipeline.default_schema.tables["leads"]["columns"]
        result["columns"] = len(columns)
        churn(1_000)
        incremental: Result = {}
        with measured(incremental):
            again = run_load(request, client=client)
        incremental["leads"] = again.rows.get("leads", 0)
        result["incremental"] = incremental
        result["overflow"] = OVERFLOW_COLUMN in columns
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--leads", type=int, default=10_000)
    parser.add_argument("--wide-keys", type=int, default=2_000)
    parser.add_argument("--narrow-keys", type=int, default=20)
    parser.add_argument("--destination", default="duckdb", choices=("duckdb", "postgres"))
    parser.add_argument("--no-json", action="store_true", help="skip the json-mode load")
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="leadrat-bench-wide-"))
    os.environ.setdefault("RUNTIME__LOG_LEVEL", "WARNING")
    os.environ.setdefault("DESTINATION__POSTGRES__CREDENTIALS",
                          os.environ.get("LEADRAT_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL))
    runs = [("narrow", args.narrow_keys, "columns+overflow"),
            ("wide", args.wide_keys, "columns+overflow")]
    if not args.no_json:
        runs.append(("wide", args.wide_keys, "json"))
    results: list[tuple[str, int, str, Result]] = []
    values_per_lead: dict[str, float] = {}
    for label, keys, mode in runs:
        config = SandboxConfig(leads=args.leads, seed=7, rate_limit=0, daily_cap=None,
                               custom_keys=max(keys - STANDARD_KEYS, 0))
        print(f"{label}: {keys} keys, {mode} ...", flush=True)
        with Sandbox.spawn(config) as server:
            leads = server.export_leads()
            values_per_lead[label] = sum(len(lead["custom_fields"]) for lead in leads) / len(leads)
            name = f"{label}_{mode.replace('+', '_')}_{uuid.uuid4().hex[:6]}"
            results.append((label, keys, mode, in_child(
                load_twice, server.base_url, server.read_key, workdir, args.destination,
                name, mode, server.churn)))
    print()
    print(f"{args.leads} leads into {args.destination}, python {sys.version.split()[0]}, "
          f"dlt {dlt.__version__}, {os.cpu_count()} cpus, {time.strftime('%Y-%m-%d')}")
    print(f"{'account':<8} {'keys':>5} {'mode':<17} {'columns':>7} {'seconds':>8} "
          f"{'leads/s':>8} {'RSS+ MB':>8} {'incr. s':>8} {'incr. MB':>8}  dlt steps (first load)")
    for label, keys, mode, result in results:
        incremental = result["incremental"]
        steps = ", ".join(f"{step} {seconds:.1f}s" for step, seconds in result["steps"].items())
        print(f"{label:<8} {keys:>5} {mode:<17} {result['columns']:>7} "
              f"{result['seconds']:8.2f} {result['leads'] / result['seconds']:8.0f} "
              f"{result['rss_growth_mb']:8.0f} {incremental['seconds']:8.2f} "
              f"{incremental['rss_growth_mb']:8.0f}  {steps}")
    print("custom field values per lead: " + ", ".join(
        f"{label} {count:.1f}" for label, count in values_per_lead.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
