"""Which load file format the `postgres` profile should use: speed, and whether "" survives.

    python bench/bench_postgres_formats.py [--leads 50000] [--formats parquet,insert_values,csv]
        [--postgres postgresql://postgres@127.0.0.1:5432/test]

One sandbox (child process, no rate limit) serves a first load of all its leads into a
fresh schema of the local PostgreSQL once per format, through the `postgres` profile and
`run_load`, as `leadrat load --destination postgres` would. For each format it prints the
seconds of the whole run and of dlt's load step, and the empty strings: how many the
sandbox's export holds in `leads` (company and custom fields) and how many the warehouse
holds in the same columns (a format that loses them shows fewer).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg2

from leadrat_source.client_config import make_client
from leadrat_source.load import LoadRequest, run_load
from leadrat_source.sandbox import Sandbox, SandboxConfig


def expected_empty_strings(leads: list[dict[str, Any]]) -> int:
    """Empty strings in the fields that land in `leads` as text columns of their own."""
    count = 0
    for lead in leads:
        count += sum(1 for name in ("name", "email", "phone", "company") if lead.get(name) == "")
        count += sum(1 for value in (lead.get("custom_fields") or {}).values() if value == "")
    return count


def stored_empty_strings(url: str, schema: str) -> int:
    with psycopg2.connect(url) as connection, connection.cursor() as cursor:
        cursor.execute(
            "select column_name from information_schema.columns where table_schema = %s "
            "and table_name = 'leads' and data_type = 'character varying'", (schema,))
        columns = [row[0] for row in cursor.fetchall() if not row[0].startswith("_dlt")]
        total = " + ".join(f'count(*) filter (where "{name}" = \'\')' for name in columns)
        cursor.execute(f'select {total} from "{schema}".leads')
        return int(cursor.fetchone()[0])


def drop_schema(url: str, schema: str) -> None:
    with psycopg2.connect(url) as connection, connection.cursor() as cursor:
        for name in (schema, f"{schema}_staging"):
            cursor.execute(f'drop schema if exists "{name}" cascade')


def run_format(server: Sandbox, url: str, file_format: str, workdir: Path) -> dict[str, Any]:
    profiles = workdir / f"{file_format}.toml"
    profiles.write_text(
        f'[postgres]\ndestination_type = "postgres"\nloader_file_format = "{file_format}"\n'
    )
    os.environ["LEADRAT_DESTINATIONS_FILE"] = str(profiles)
    schema = f"bench_{file_format}_{uuid.uuid4().hex[:6]}"
    started = time.perf_counter()
    try:
        summary = run_load(LoadRequest(
            destination="postgres", dataset=schema, pipeline_name=f"bench_{file_format}",
            pipelines_dir=str(workdir / "pipelines"), resources=["leads"],
        ), client=make_client(base_url=server.base_url, api_key=server.read_key))
        seconds = time.perf_counter() - started
        return {"format": file_format, "seconds": seconds, "leads": summary.rows.get("leads"),
                "empty_strings": stored_empty_strings(url, schema)}
    finally:
        drop_schema(url, schema)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=50_000)
    parser.add_argument("--formats", default="parquet,insert_values,csv")
    parser.add_argument("--postgres", default=os.environ.get(
        "LEADRAT_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"))
    args = parser.parse_args()
    os.environ["DESTINATION__POSTGRES__CREDENTIALS"] = args.postgres
    with Sandbox.spawn(SandboxConfig(leads=args.leads, seed=7, plan="pro", rate_limit=0)) \
            as server, tempfile.TemporaryDirectory() as workdir:
        expected = expected_empty_strings(server.export_leads())
        print(f"{args.leads} leads; empty strings in the sandbox's export: {expected}")
        for file_format in args.formats.split(","):
            result = run_format(server, args.postgres, file_format, Path(workdir))
            print(f"{result['format']:>14}: {result['seconds']:6.1f}s for {result['leads']} "
                  f"leads ({result['leads'] / result['seconds']:,.0f} leads/s), empty strings "
                  f"kept {result['empty_strings']} of {expected}")


if __name__ == "__main__":
    main()
