"""Two writers of one dataset, side by side: the scheduled load and the webhook receiver.

- The embedded DuckDB lets one process open a file at a time, but dlt opens it once per
  load job: between two jobs of one load another process gets in. Two of our loads would
  then interleave, and both stage into the same `<dataset>_staging` tables: each one's
  start truncates what the other staged and has not merged yet, and acknowledged webhook
  events were lost so. So our writers take turns for a whole dlt run under a file lock
  next to the DuckDB file (`<file>.leadrat-lock`). Anyone else holding the file (an
  analyst's read-write session) makes the load step fail to open it: `run_when_free`
  then retries dlt's load step (the package is already normalized) until the file is
  free, within `wait_seconds`.
- PostgreSQL lets both write at once, but two concurrent delete-insert merges of the same
  lead can both insert it (each deletes the row the other has not committed yet). The load
  step therefore holds a session advisory lock named after the dataset, so merges into one
  dataset take turns.
- Other warehouses: no lock; run the load and the receiver into them one at a time or
  accept that a lead merged by both at the same instant may appear twice until its next
  change (README).
"""

from __future__ import annotations

import fcntl
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from dlt.common.pipeline import LoadInfo
from dlt.pipeline.exceptions import PipelineStepFailed
from dlt.pipeline.pipeline import Pipeline

from leadrat_source.errors import LeadRatError

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


class WarehouseBusy(LeadRatError):
    """Another leadrat process kept the DuckDB file for longer than a run may wait."""


@contextmanager
def dataset_write_turn(pipeline: Pipeline, wait_seconds: float) -> Iterator[None]:
    """Our writers of one dataset take turns: on DuckDB under a file lock, on PostgreSQL
    under an advisory lock; elsewhere there is no turn."""
    destination_type = pipeline.destination.destination_type
    if destination_type.endswith(".duckdb"):
        with _duckdb_file_turn(pipeline, wait_seconds):
            yield
    elif destination_type.endswith(".postgres"):
        with _postgres_turn(pipeline):
            yield
    else:
        yield


@contextmanager
def _duckdb_file_turn(pipeline: Pipeline, wait_seconds: float) -> Iterator[None]:
    """Hold `<file>.leadrat-lock` (an exclusive `flock`; the kernel releases it when the
    process dies, so a killed run leaves no stale lock). A separate file, because closing
    any handle of the DuckDB file would drop the lock DuckDB holds on it."""
    credentials = pipeline.destination_client().config.credentials
    database = getattr(credentials, "database", None)
    if not database or database == ":memory:":  # no file, no other process
        yield
        return
    with Path(f"{database}.leadrat-lock").open("a") as lock_file:
        deadline = time.monotonic() + wait_seconds
        delay = 0.05
        while True:
            try:
                fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise WarehouseBusy(
                        f"another leadrat process (a load or the webhook receiver) has been "
                        f"writing {database} for more than {wait_seconds:.0f} s; run again "
                        "when it is done") from None
                log.info("another leadrat process is writing %s; waiting %.2fs", database,
                         delay)
                time.sleep(delay)
                delay = min(delay * 2, 1.0)
        yield  # closing the file ends the lock


@contextmanager
def _postgres_turn(pipeline: Pipeline) -> Iterator[None]:
    """Hold the dataset's advisory lock (on a connection of its own)."""
    import psycopg2  # dlt's PostgreSQL driver

    from leadrat_source.postgres import credentials_variable, explained_login_errors

    destination = pipeline.destination
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
    """`run()` (a dlt run of `pipeline`) in the dataset's turn; a load step that meets
    another process's DuckDB lock is retried until the file is free."""
    with dataset_write_turn(pipeline, wait_seconds):
        try:
            return run()
        except PipelineStepFailed as error:
            if error.step != "load" or not is_locked_by_another_process(error):
                raise
        deadline = time.monotonic() + wait_seconds
        delay = 0.1
        while True:
            log.info("the DuckDB file is locked by another process; loading again in %.1fs",
                     delay)
            time.sleep(delay)
            delay = min(delay * 2, 2.0)
            try:
                return pipeline.load()
            except PipelineStepFailed as error:
                if not is_locked_by_another_process(error) or time.monotonic() > deadline:
                    raise
