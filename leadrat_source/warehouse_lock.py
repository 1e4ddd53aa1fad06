"""Two writers of one dataset, side by side: the scheduled load and the webhook receiver.

- The embedded DuckDB lets one process open a file at a time; the other one's run fails
  to open it, at its start (dlt's state sync) or in its load step. `run_when_free` then
  runs that again until the file is free, within `wait_seconds`. Between two load jobs
  the file is free, so two loads may interleave; each merge is one transaction, and the
  writers stage in datasets of their own (the receiver's `receiver_staging_layout`).
- PostgreSQL lets both write at once, but two concurrent delete-insert merges of the same
  lead can both insert it (each deletes the row the other has not committed yet). The load
  step therefore holds a session advisory lock named after the dataset, so merges into one
  dataset take turns.
- Other warehouses: no lock; run the load and the receiver into them one at a time or
  accept that a lead merged by both at the same instant may appear twice until its next
  change (README).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from dlt.common.pipeline import LoadInfo
from dlt.pipeline.exceptions import PipelineStepFailed
from dlt.pipeline.pipeline import Pipeline

log = logging.getLogger("leadrat_source.warehouse_lock")

#: How long a load waits for another process's DuckDB lock before it fails.
DEFAULT_WAIT_SECONDS = 300.0
_DUCKDB_LOCK_MESSAGE = "Could not set lock on file"


def is_locked_by_another_process(error: BaseException) -> bool:
    """The error (or one it wraps) is DuckDB refusing a file another process writes."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if _DUCKDB_LOCK_MESSAGE in str(current):
            return True
        current = getattr(current, "exception", None) or current.__cause__ or current.__context__
    return False


@contextmanager
def dataset_write_turn(pipeline: Pipeline) -> Iterator[None]:
    """On PostgreSQL, hold the dataset's advisory lock (on a connection of its own);
    elsewhere, nothing."""
    destination = pipeline.destination
    if not destination.destination_type.endswith(".postgres"):
        yield
        return
    import psycopg2  # dlt's PostgreSQL driver

    from leadrat_source.postgres import credentials_variable, explained_login_errors

    credentials = destination.configuration(destination.spec(), accept_partial=True).credentials
    assert credentials is not None  # the load itself resolves them first, with a clear error
    variable = credentials_variable(destination.destination_name)
    with explained_login_errors(credentials, variable):  # type: ignore[arg-type]
        connection = psycopg2.connect(credentials.to_native_representation())
    try:
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(hashtext(%s))",
                           (f"leadrat:{pipeline.dataset_name}",))
        yield  # the lock ends with the session
    finally:
        connection.close()


def run_when_free(pipeline: Pipeline, run: Callable[[], LoadInfo],
                  wait_seconds: float = DEFAULT_WAIT_SECONDS) -> LoadInfo:
    """`run()` (a dlt run of `pipeline`) in the dataset's turn, waiting out another
    process's DuckDB lock for up to `wait_seconds`: met at the run's start (dlt's state
    sync, before anything is extracted) the run starts again; met in the load step (the
    package is normalized by then) the load step runs again."""
    with dataset_write_turn(pipeline):
        deadline: float | None = None  # counted from the first lock met, not the run's start
        delay = 0.1
        attempt = run
        while True:
            try:
                return attempt()
            except PipelineStepFailed as error:
                deadline = deadline or time.monotonic() + wait_seconds
                if (error.step not in ("sync", "load") or not is_locked_by_another_process(error)
                        or time.monotonic() > deadline):
                    raise
                attempt = run if error.step == "sync" else pipeline.load
            log.info("the DuckDB file is locked by another process; trying again in %.1fs",
                     delay)
            time.sleep(delay)
            delay = min(delay * 2, 2.0)
