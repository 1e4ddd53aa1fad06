"""`leadrat status`: what the last loads did and where the incremental cursor stands.

Reads the pipeline's local state (dlt's pipelines folder) and the destination's own
bookkeeping (`_dlt_loads`). Where the folder is gone (Airflow's `wipe_local_data`, a new
machine) the state is restored from the destination first, as the next load would. The
report names the warehouse it read (profile, file or host, dataset; never a secret), and
its recent loads are the loader's own: the reverse sync writes its ledger into the same
dataset with a schema of its own, whose loads are left out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import dlt
from dlt.common.configuration.exceptions import ConfigurationException
from dlt.pipeline.exceptions import CannotRestorePipelineException
from dlt.pipeline.pipeline import Pipeline

from leadrat_source.destinations import DestinationProfile, get_profile
from leadrat_source.errors import ConfigurationError
from leadrat_source.load import LoadRequest, make_pipeline, pipeline_name_for
from leadrat_source.run_report import leads_cursor, unread_parts
from leadrat_source.warehouse_pipeline import pending_packages

RECENT_LOADS = 5


@dataclass
class StatusReport:
    pipeline_name: str
    destination: str
    dataset: str
    #: where the data is: DuckDB's file, PostgreSQL's host:port/database, ...
    location: str = "unknown"
    #: the state came from the destination: this machine had no pipeline folder
    restored: bool = False
    cursor: Any = None
    pending_packages: int = 0
    rows: dict[str, int] = field(default_factory=dict)
    recent_loads: list[tuple[str, int, Any]] = field(default_factory=list)
    last_error: str | None = None
    #: what the last run left unread (see run_report): the next run loads it
    unread: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        lines = [
            (f"pipeline {self.pipeline_name!r} → profile {self.destination!r}: "
             f"{self.location}, dataset {self.dataset!r}"),
            f"leads cursor (updated_at): {self.cursor or 'none yet: the next run is a full load'}",
        ]
        if self.restored:
            lines.append("state restored from the warehouse (no pipeline folder on this machine)")
        if self.pending_packages:
            lines.append(
                f"interrupted: {self.pending_packages} package(s) will be finished by the next run"
            )
        lines.append("rows in the tables: " + (", ".join(f"{t}={n}" for t, n in sorted(self.rows.items()))
                                 or "none"))
        for load_id, load_status, inserted_at in self.recent_loads:
            state = "loaded" if load_status == 0 else f"status {load_status}"
            lines.append(f"load {load_id}: {state} at {inserted_at}")
        lines.append(f"last error: {self.last_error or 'none'}")
        lines += [f"left unread by the last run: {part}" for part in self.unread]
        return lines


def warehouse_location(pipeline: Pipeline) -> str:
    """Where the pipeline's data is, without secrets (dlt's `data_location`: DuckDB's file,
    PostgreSQL's host:port/database, Snowflake's account host; BigQuery's project too)."""
    config = pipeline.destination_client().config
    try:
        location = config.data_location() or "unknown"
    except ConfigurationException:
        location = "unknown"
    project = getattr(config.credentials, "project_id", None)
    return f"project {project}, location {location}" if project else location


def open_pipeline(request: LoadRequest, profile: DestinationProfile) -> tuple[Pipeline, bool]:
    """The load's pipeline, its state restored from the destination when this machine has
    no pipeline folder (True then). Never syncs over a local folder: that could drop the
    load packages an interrupted run left for the next run to finish."""
    name = pipeline_name_for(request, profile)
    try:
        dlt.attach(name, pipelines_dir=request.pipelines_dir)  # type: ignore[arg-type]
        return make_pipeline(request, profile), False
    except CannotRestorePipelineException:
        pipeline = make_pipeline(request, profile)
        pipeline.sync_destination()
        if not pipeline.default_schema_name:
            location = warehouse_location(pipeline)
            pipeline.drop()  # leave no empty pipeline folder behind
            raise ConfigurationError(
                f"no load of pipeline {name!r} has reached profile {profile.name!r} "
                f"({location}, dataset {pipeline.dataset_name!r}) yet: run `leadrat load` "
                "first, or pass the --dataset / --pipeline-name you load with"
            ) from None
        return pipeline, True


def run_status(request: LoadRequest) -> StatusReport:
    profile = get_profile(request.destination)
    pipeline, restored = open_pipeline(request, profile)
    report = StatusReport(pipeline.pipeline_name, profile.name, pipeline.dataset_name,
                          location=warehouse_location(pipeline), restored=restored)
    report.cursor = leads_cursor(pipeline.state)
    report.unread = [part.describe() for part in unread_parts(pipeline)]
    report.pending_packages = pending_packages(pipeline)
    trace = pipeline.last_trace
    if trace is not None:
        failed = [step for step in trace.steps if step.step_exception]
        report.last_error = failed[-1].step_exception if failed else None
    if not pipeline.default_schema_name:
        return report
    dataset = pipeline.dataset()
    report.rows = {name: count for name, count in dataset.row_counts().fetchall()}
    # the loader's loads only, not the reverse sync's ledger writes into the same dataset
    loads = dataset["_dlt_loads"].where("schema_name", "eq", pipeline.default_schema_name)
    report.recent_loads = [
        (row[0], row[1], row[2])
        for row in loads.select("load_id", "status", "inserted_at")
        .order_by("inserted_at", "desc")
        .limit(RECENT_LOADS)
        .fetchall()
    ]
    return report
