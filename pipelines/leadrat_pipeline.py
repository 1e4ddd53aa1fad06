"""The LeadRat source in your own dlt pipeline: plain dlt, no `leadrat` CLI.

    export SOURCES__LEADRAT__API_KEY=lr_live_...     # or [sources.leadrat] in .dlt/secrets.toml
    python pipelines/leadrat_pipeline.py                           # everything, incrementally
    python pipelines/leadrat_pipeline.py leads                     # only some resources
    python pipelines/leadrat_pipeline.py leads 2026-01-01 2026-02-01   # a backfill window

The first run loads the account's history, later runs what changed since (dlt keeps the
cursor in the pipeline state). A window (`since`/`until`) reloads a period without
moving that cursor. When the daily quota runs out, or a huge first load stops after
`max_leads_per_run`, the run loads what it read, logs a WARNING naming what is left,
and `raise_if_incomplete` fails the script (exit 1 with the reason); the next run, after
the quota's reset, completes the job.
"""

from __future__ import annotations

import sys

import dlt

from leadrat_source import leadrat_source, raise_if_incomplete


def main(argv: list[str]) -> None:
    resources = argv[0].split(",") if argv else []
    since, until = (argv[1], argv[2]) if len(argv) >= 3 else (None, None)
    pipeline = dlt.pipeline(
        pipeline_name="leadrat_example", destination="duckdb", dataset_name="leadrat"
    )
    source = leadrat_source(since=since, until=until)
    if resources:
        source = source.with_resources(*resources)
    load_info = pipeline.run(source)
    print(load_info)
    # a run that could not read everything must not look like a success
    raise_if_incomplete(pipeline)


if __name__ == "__main__":
    main(sys.argv[1:])
