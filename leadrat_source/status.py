"""`leadrat status`: what the last runs did and where the incremental cursor stands.

Reads the pipeline's local state (dlt's pipelines folder) and the destination's own
bookkeeping (`_dlt_loads`), so it works from any machine that has the pipeline folder
or can restore it from the destination.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import dlt
from dlt.pipeline.exceptions import CannotRestorePipelineException

from leadrat_source.destinations import get_profile
from leadrat_source.errors import ConfigurationError
from leadrat_source.load import (
    LoadRequest,
    make_pipeline,
    pending_packages,
    pipeline_name_for,
)

RECENT_LOADS = 5


@dataclass
class StatusReport:
    pipeline_name: str
    destination: str
    dataset: str
    cursor: Any = None
    pending_packages: int = 0
    rows: dict[str, int] = field(default_factory=dict)
    recent_loads: list[tuple[str, int, Any]] = field(default_factory=list)
    last_error: str | None = None

    def lines(self) -> list[str]:
        lines = [
            f"pipeline {self.pipeline_name!r} → {self.destination} dataset {self.dataset!r}",
            f"leads cursor (updated_at): {self.cursor or 'none yet: the next run is a full load'}",
        ]
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
        return lines


def _cursor(state: dict[str, Any]) -> Any:
    resources = state.get("sources", {}).get("leadrat", {}).get("resources", {})
    incremental = resources.get("leads", {}).get("incremental", {}).get("updated_at", {})
    return incremental.get("last_value")


def run_status(request: LoadRequest) -> StatusReport:
    profile = get_profile(request.destination)
    name = pipeline_name_for(request, profile)
    try:
        dlt.attach(name, pipelines_dir=request.pipelines_dir)  # type: ignore[arg-type]
    except CannotRestorePipelineException:
        raise ConfigurationError(
            f"no pipeline {name!r} has run on this machine yet "
            "(run `leadrat load` first, or pass the --pipeline-name you load with)"
        ) from None
    pipeline = make_pipeline(request, profile)
    report = StatusReport(pipeline.pipeline_name, profile.name, pipeline.dataset_name)
    report.cursor = _cursor(pipeline.state)  # type: ignore[arg-type]
    report.pending_packages = pending_packages(pipeline)
    trace = pipeline.last_trace
    if trace is not None:
        failed = [step for step in trace.steps if step.step_exception]
        report.last_error = failed[-1].step_exception if failed else None
    if not pipeline.default_schema_name:
        return report
    dataset = pipeline.dataset()
    report.rows = {name: count for name, count in dataset.row_counts().fetchall()}
    loads = dataset["_dlt_loads"]
    report.recent_loads = [
        (row[0], row[1], row[2])
        for row in loads.select("load_id", "status", "inserted_at")
        .order_by("inserted_at", "desc")
        .limit(RECENT_LOADS)
        .fetchall()
    ]
    return report
