"""Kill a `leadrat` process at one of dlt's commit instants (or hold it at one), and read
what the kill left.

A kill from outside hits the instants between two of dlt's writes only by chance, so the
process kills itself (SIGKILL, like the kernel's OOM killer) through a hook on dlt's
commit functions. Run `leadrat` as `[*KILLING, <leadrat arguments>]` with
`kill_environment(instant)`: the hook is installed, then `leadrat`'s own `main` runs
(`[*KILLING, "--script", SCRIPT, ...]` runs a user's script instead).

The webhook receiver commits in its flusher, a process multiprocessing *spawns*: the
spawned child runs the parent's `-m` module again (as `__mp_main__`), so the hook is
installed there too, and a flusher that reaches the instant kills its server first: the
whole receiver dies at that instant, as under a `kill -9` of the service.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

TESTS = Path(__file__).resolve().parent
#: `leadrat`, killed at the instant named by KILL_AT_ENV
KILLING = [sys.executable, "-m", "dlt_kills"]
KILL_AT_ENV = "LEADRAT_TEST_KILL_AT"
#: extract-committed: package committed; no schema, no state saved yet
#: schema-saved: package and schema saved; the state not yet
#: normalize-committing: normalized package renamed; its extracted copy not yet deleted
INSTANTS = ("extract-committed", "schema-saved", "normalize-committing")
#: load-job-committed:<table>: a load job of <table> has committed its rows in the
#: warehouse; dlt has not recorded it yet (its pending transition is not saved), so the
#: next run runs that job again
JOB_COMMITTED = "load-job-committed:"
#: merges-held: not a kill. The load's merge jobs (dlt's SQL follow-up jobs, run after the
#: rows are staged) wait until the file MERGES_GO appears in the working folder; the first
#: one writes MERGES_HELD when it starts waiting
MERGES_HELD, MERGES_GO = "merges-held", "merges-go"


def kill_environment(instant: str) -> dict[str, str]:
    """The variables that make `KILLING` die at `instant` (this folder importable)."""
    path = os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))
    return {KILL_AT_ENV: instant, "PYTHONPATH": path}


def _after(function: Callable[..., Any], then: Callable[..., Any]) -> Callable[..., Any]:
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        result = function(*args, **kwargs)
        then(*args, **kwargs)
        return result

    return wrapped


def install(instant: str, kill_parent: bool) -> None:
    """Patch dlt so that this process dies right after the write that makes `instant`
    (and its parent first, if `kill_parent`)."""
    from dlt.common.destination.client import RunnableLoadJob
    from dlt.common.storages.load_storage import LoadStorage
    from dlt.extract.extract import Extract
    from dlt.pipeline.pipeline import Pipeline

    def die(*args: Any, **kwargs: Any) -> None:
        if kill_parent:
            os.kill(os.getppid(), signal.SIGKILL)
        os.kill(os.getpid(), signal.SIGKILL)

    if instant == "extract-committed":
        Extract.commit_packages = _after(Extract.commit_packages, die)
    elif instant == "schema-saved":
        Extract.commit_packages = _after(
            Extract.commit_packages, lambda *a, **k: setattr(Pipeline, "_save_state", die))
    elif instant == "normalize-committing":
        LoadStorage.commit_new_load_package = _after(LoadStorage.commit_new_load_package, die)
    elif instant == MERGES_HELD:
        _hold_merges()
    elif instant.startswith(JOB_COMMITTED):
        table, release = instant.removeprefix(JOB_COMMITTED), RunnableLoadJob._release

        def release_or_die(job: RunnableLoadJob, next_state: str) -> None:
            if next_state == "completed" and job.load_table_name == table:
                die()
            release(job, next_state)

        RunnableLoadJob._release = release_or_die  # type: ignore[method-assign]
    else:
        raise SystemExit(f"unknown instant {instant}")


def _hold_merges() -> None:
    from dlt.common.destination.client import RunnableLoadJob

    run_managed = RunnableLoadJob.run_managed

    def held(job: RunnableLoadJob, *args: Any) -> None:
        if job.file_name().endswith(".sql"):
            Path(MERGES_HELD).touch()
            while not Path(MERGES_GO).exists():
                time.sleep(0.01)
        run_managed(job, *args)

    RunnableLoadJob.run_managed = held  # type: ignore[method-assign]


@dataclass(frozen=True)
class Packages:
    """The load packages in dlt's working folder of the pipeline, by the step they wait for."""

    extracting: frozenset[str]  # being written by extract, not yet committed
    extracted: frozenset[str]  # waiting for normalize
    normalized: frozenset[str]  # waiting for (or in) load
    with_loaded_jobs: frozenset[str]  # normalized packages with at least one job loaded
    #: the pipeline has saved a schema: before that (a first run's extract step not yet
    #: finished), dlt cannot normalize a committed package and the next run re-reads
    schema_saved: bool

    @property
    def pending(self) -> frozenset[str]:
        return self.extracted | self.normalized

    @property
    def all(self) -> frozenset[str]:
        return self.extracting | self.pending


def _folders(path: Path) -> frozenset[str]:
    return frozenset(p.name for p in path.iterdir() if p.is_dir()) if path.is_dir() else frozenset()


def packages(pipeline_dir: Path) -> Packages:
    """Read from dlt's folders, not through dlt: what is on disk, whatever dlt makes of it."""
    normalized = _folders(pipeline_dir / "load" / "normalized")
    return Packages(
        extracting=_folders(pipeline_dir / "normalize" / "new")
        | _folders(pipeline_dir / "load" / "new"),
        extracted=_folders(pipeline_dir / "normalize" / "extracted"),
        normalized=normalized,
        with_loaded_jobs=frozenset(
            load_id for load_id in normalized
            if any((pipeline_dir / "load" / "normalized" / load_id / "completed_jobs").glob("*.*"))
        ),
        schema_saved=any((pipeline_dir / "schemas").glob("*.json")),
    )


def completed_loads(warehouse: Path, dataset: str = "leadrat") -> set[str]:
    """Load ids that the DuckDB warehouse itself records as completed (status 0)."""
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        rows = connection.execute(f"select load_id from {dataset}._dlt_loads where status = 0")
        return {row[0] for row in rows.fetchall()}


if __name__ in ("__main__", "__mp_main__"):
    # __mp_main__: the receiver's flusher, spawned by the server this module started
    install(os.environ[KILL_AT_ENV], kill_parent=__name__ == "__mp_main__")
if __name__ == "__main__":
    if sys.argv[1:2] == ["--script"]:  # a user's own script, as `python SCRIPT ARGS` runs it
        import runpy

        sys.argv = sys.argv[2:]
        runpy.run_path(sys.argv[0], run_name="__main__")
    else:
        from leadrat_source.cli import main

        sys.exit(main(sys.argv[1:]))
