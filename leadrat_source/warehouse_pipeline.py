"""A destination profile's dlt pipeline: how it is made, and how it is repaired after a
run was killed.

The load, the reverse sync's ledger, the webhook receiver and `leadrat status` all work
through these, so each finds a killed run's leftovers the same way and finishes them
before it starts anything new.
"""

from __future__ import annotations

import logging

import dlt
from dlt.pipeline.pipeline import Pipeline

from leadrat_source import settings
from leadrat_source.destinations import DestinationProfile

#: the logger these lines have always gone to, so log filters keep working
log = logging.getLogger("leadrat_source.load")


def profile_pipeline(
    profile: DestinationProfile, pipeline_name: str, dataset: str | None,
    pipelines_dir: str | None,
) -> Pipeline:
    """A dlt pipeline into a profile's warehouse; its state lives in dlt's pipelines folder
    (`pipelines_dir`, or dlt's default: `DLT_DATA_DIR`, else ~/.dlt)."""
    return dlt.pipeline(
        pipeline_name=pipeline_name,
        pipelines_dir=pipelines_dir,  # type: ignore[arg-type]  # None: dlt's default
        destination=profile.destination(),
        dataset_name=dataset or profile.dataset_name or settings.DATASET_NAME,
    )


def pending_packages(pipeline: Pipeline) -> int:
    """Load packages an interrupted run left: extracted or normalized, not yet loaded."""
    return len(pipeline.list_extracted_load_packages()) + len(
        pipeline.list_normalized_load_packages()
    )


def finish_interrupted(pipeline: Pipeline) -> int:
    """Normalize and load what a killed run left behind; returns how many packages.

    dlt's own `run()` would do this too, but would then skip the new extraction; doing it
    first lets one run both complete the old job and load what is new.

    A kill at an unlucky instant can leave a package dlt cannot finish (a half-renamed
    folder). Then the local working folder is discarded and the state restored from the
    destination, which holds the state of the last load that completed: the next
    extraction starts from there, and merging makes the re-read rows land exactly once.
    """
    if not pipeline.has_pending_data:
        return 0
    pending = pending_packages(pipeline)
    log.warning("finishing %d load package(s) left by an interrupted run", pending)
    try:
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
