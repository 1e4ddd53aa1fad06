"""A destination profile's dlt pipeline: how it is made, and how it is repaired after a
run was killed.

The load, the reverse sync's ledger, the webhook receiver and `leadrat status` all work
through these, so each finds a killed run's leftovers the same way and finishes them
before it starts anything new.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import dlt
from dlt.common.storages.load_package import PackageStorage
from dlt.pipeline.pipeline import Pipeline

from leadrat_source.destinations import DestinationProfile

#: the logger these lines have always gone to, so log filters keep working
log = logging.getLogger("leadrat_source.load")


def profile_pipeline(
    profile: DestinationProfile, pipeline_name: str, dataset: str | None,
    pipelines_dir: str | None, staging_dataset_layout: str | None = None,
) -> Pipeline:
    """A dlt pipeline into a profile's warehouse; its state lives in dlt's pipelines folder
    (`pipelines_dir`, or dlt's default: `DLT_DATA_DIR`, else ~/.dlt). Merges stage their
    rows in `<dataset>_staging`, or in the dataset `staging_dataset_layout` names (a
    `%s` for the dataset)."""
    overrides = ({"staging_dataset_name_layout": staging_dataset_layout}
                 if staging_dataset_layout else {})
    return dlt.pipeline(
        pipeline_name=pipeline_name,
        pipelines_dir=pipelines_dir,  # type: ignore[arg-type]  # None: dlt's default
        destination=profile.destination(**overrides),
        dataset_name=profile.dataset(dataset),
    )


def pending_packages(pipeline: Pipeline) -> int:
    """Load packages an interrupted run left: extracted or normalized, not yet loaded."""
    return len(
        set(pipeline.list_extracted_load_packages())
        | set(pipeline.list_normalized_load_packages())
    )


def finish_interrupted(pipeline: Pipeline) -> int:
    """Normalize and load what a killed run left behind; returns how many packages.

    dlt's own `run()` would do this too, but would then skip the new extraction; doing it
    first lets one run both complete the old job and load what is new. The package's state
    reaches the destination with it, and `run()` restores the cursor from there, so the
    next extraction reads only what is new.

    Two kill instants leave a package dlt itself cannot finish, and a third one a package
    dlt would finish with rows staged twice; all are repaired first
    (`repair_killed_commits`). Should anything else fail, the local working folder is
    discarded and the state restored from the destination, which holds the state of the
    last load that completed: the next extraction starts from there, and merging makes
    the re-read rows land exactly once.
    """
    if not pipeline.has_pending_data:
        return 0
    pending = pending_packages(pipeline)
    log.warning("finishing %d load package(s) left by an interrupted run", pending)
    try:
        repair_killed_commits(pipeline)
        pipeline.normalize()
        pipeline.load()
    except Exception as error:  # noqa: BLE001 - any failure: fall back to the destination's state
        log.warning(
            "cannot finish the interrupted run (%s); restoring the state of the last "
            "completed load from the destination", type(error).__name__,
        )
        pipeline.drop()
        pipeline.sync_destination()
    return pending


def repair_killed_commits(pipeline: Pipeline) -> None:
    """Make the packages a killed run left finishable, exactly once, by dlt's normalize
    and load."""
    _finish_normalize_commits(pipeline)
    _adopt_package_schema(pipeline)
    _restart_interrupted_loads(pipeline)


def _restart_interrupted_loads(pipeline: Pipeline) -> None:
    """Load a package whose load step was interrupted from the start of that step again.

    dlt resumes such a package job by job. A job killed after its rows committed, but
    before dlt recorded that (its pending transition), runs again and stages its rows
    twice: dlt's merge deduplicates staged rows on a primary key, but an SCD2 history
    table (merged on a merge key) got every row of the job twice. From the start, dlt
    empties the staging tables (and the replaced tables) again and every job stages its
    rows once; merges that had run already run again and change nothing (a delete-insert
    replaces rows by themselves, SCD2 finds the versions current). The merge jobs dlt
    created are deleted: it creates them again once their tables are staged. dlt has no
    public call for this; it is written against the package layout of dlt 1.31 (pinned).
    """
    load_ids = pipeline.list_normalized_load_packages()
    if not load_ids:  # none, or not even dlt's load folder yet
        return
    packages = pipeline._get_load_storage().normalized_packages
    for load_id in load_ids:
        folder = Path(packages.storage.make_full_path(packages.get_package_path(load_id)))
        applied = folder / PackageStorage.APPLIED_SCHEMA_UPDATES_FILE_NAME
        if not applied.exists():  # its load step never started
            continue
        log.info("loading package %s again from the start of its load step", load_id)
        new_jobs = folder / PackageStorage.NEW_JOBS_FOLDER
        for state in (PackageStorage.NEW_JOBS_FOLDER, PackageStorage.STARTED_JOBS_FOLDER,
                      PackageStorage.COMPLETED_JOBS_FOLDER):
            for job in list((folder / state).iterdir()):
                if job.suffix == ".sql":
                    job.unlink()
                elif state != PackageStorage.NEW_JOBS_FOLDER:
                    job.rename(new_jobs / job.name)
        shutil.rmtree(folder / PackageStorage.PENDING_TRANSITIONS_FOLDER, ignore_errors=True)
        applied.rename(folder / PackageStorage.SCHEMA_UPDATES_FILE_NAME)


def _finish_normalize_commits(pipeline: Pipeline) -> None:
    """Complete a normalize step killed while committing a package.

    dlt's normalize commits by renaming the finished package into the load folder, then
    deleting its extracted copy. A kill between the two leaves the package in both
    places, and normalizing it again fails on the rename. The normalized copy is
    complete (the rename is atomic, and everything was written before it), so deleting
    the extracted copy is exactly the step the kill skipped.
    """
    twice = set(pipeline.list_extracted_load_packages()) & set(
        pipeline.list_normalized_load_packages()
    )
    extracted = pipeline._get_normalize_storage().extracted_packages
    for load_id in twice:
        log.info("completing the interrupted normalize commit of package %s", load_id)
        extracted.delete_package(load_id)


def _adopt_package_schema(pipeline: Pipeline) -> None:
    """Give the pipeline the schema of a package a killed first run committed.

    dlt's extract commits its package, then saves the schema, then the state that names
    it as the default. A first run killed in between leaves a package the pipeline has
    no default schema for: dlt's `normalize()` silently skips it, and the next run's
    `sync_destination()` then wipes it as the leftover of a never-loaded pipeline. The
    package carries its own schema; installing that one is what the killed run had left
    to do. dlt has no public call for it: `_inject_schema` saves the schema and sets it
    as the default, and dlt is pinned to the minor version it was read in (1.31).
    """
    if pipeline.default_schema_name:
        return
    extracted = pipeline.list_extracted_load_packages()
    if extracted:
        schema = pipeline.get_load_package_info(extracted[0]).schema
        log.info("adopting schema %r from the interrupted run's package", schema.name)
        pipeline._inject_schema(schema)
