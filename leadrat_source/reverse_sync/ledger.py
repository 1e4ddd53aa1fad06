"""The reverse sync's memory, kept in the warehouse beside the input and written by dlt.

- `reverse_sync_state`: per lead, the hash of the last change LeadRat confirmed (merge on
  `lead_id`). A row whose hash matches is not sent again.
- `reverse_sync_errors`: the leads whose last attempt failed (merge on `lead_id`), with
  the API's code, message and details and the hash that failed. A permanent failure
  (404/409/422) is retried only when the row changes or with `--retry-failed`; a later
  success deletes the error row (dlt's `hard_delete` hint).
- `reverse_sync_runs`: one row per run with its counts (a dry run writes nothing).

Writes go through dlt in batches (`flush`), so every destination works, and a run that
is killed loses at most the confirmations of the batch not yet written: those rows are
sent again, which PUT's idempotency makes harmless.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import dlt
from dlt.common.destination import TLoaderFileFormat
from dlt.pipeline.pipeline import Pipeline

from leadrat_source.warehouse_pipeline import finish_interrupted

log = logging.getLogger("leadrat_source.reverse_sync")

STATE_TABLE = "reverse_sync_state"
ERRORS_TABLE = "reverse_sync_errors"
RUNS_TABLE = "reverse_sync_runs"


@dataclass(frozen=True)
class LeadMemory:
    """What the ledger remembers of one lead."""

    confirmed_hash: str | None = None
    failed_hash: str | None = None
    failed_permanently: bool = False


#: dlt hints of each ledger table; `hard_delete` on `resolved` lets a success remove an error.
_HINTS: dict[str, dict[str, Any]] = {
    STATE_TABLE: {
        "primary_key": "lead_id",
        "columns": {"confirmed_at": {"data_type": "timestamp"}},
    },
    ERRORS_TABLE: {
        "primary_key": "lead_id",
        "columns": {
            "attempted_at": {"data_type": "timestamp"},
            "status": {"data_type": "bigint"},
            "permanent": {"data_type": "bool"},
            "resolved": {"data_type": "bool", "hard_delete": True},
        },
    },
    RUNS_TABLE: {
        "primary_key": "run_id",
        "columns": {
            "started_at": {"data_type": "timestamp"},
            "finished_at": {"data_type": "timestamp"},
        },
    },
}


def _resource(table: str, rows: list[dict[str, Any]]) -> Any:
    return dlt.resource(rows, name=table, write_disposition="merge", **_HINTS[table])


class Ledger:
    """Reads what was confirmed and buffers what comes back, writing it with one dlt load
    per batch. Used from one thread (the run's coordinator)."""

    def __init__(self, pipeline: Pipeline, loader_file_format: str | None = None) -> None:
        self._pipeline = pipeline
        self._file_format = loader_file_format
        self._confirmed: list[dict[str, Any]] = []
        self._errors: list[dict[str, Any]] = []
        self._tables: set[str] = set()

    def open(self) -> int:
        """Restore state from the warehouse if this machine has none, and finish a load a
        killed run left behind; returns how many packages were finished."""
        self._pipeline.sync_destination()
        finished = finish_interrupted(self._pipeline)
        self._refresh_tables()
        return finished

    def open_to_read(self) -> None:
        """Restore state from the warehouse if this machine has none, writing nothing (a
        dry run): a load a killed run left behind stays for the next real run."""
        self._pipeline.sync_destination()
        self._refresh_tables()

    def _refresh_tables(self) -> None:
        self._tables = set(self._pipeline.dataset().tables)

    def recall(self, lead_ids: Sequence[str]) -> dict[str, LeadMemory]:
        """The memory of these leads (one query per table, so per chunk, not per lead)."""
        if not lead_ids:
            return {}
        dataset = self._pipeline.dataset()
        confirmed: dict[str, str] = {}
        failed: dict[str, tuple[str, bool]] = {}
        if STATE_TABLE in self._tables:
            rows = dataset.table(STATE_TABLE).where("lead_id", "in", list(lead_ids)).select(
                "lead_id", "hash").fetchall()
            confirmed = {lead_id: digest for lead_id, digest in rows}
        if ERRORS_TABLE in self._tables:
            rows = dataset.table(ERRORS_TABLE).where("lead_id", "in", list(lead_ids)).select(
                "lead_id", "hash", "permanent").fetchall()
            failed = {lead_id: (digest, bool(permanent)) for lead_id, digest, permanent in rows}
        return {
            lead_id: LeadMemory(
                confirmed.get(lead_id),
                failed.get(lead_id, (None, False))[0],
                failed.get(lead_id, (None, False))[1],
            )
            for lead_id in lead_ids
            if lead_id in confirmed or lead_id in failed
        }

    @property
    def pending(self) -> int:
        return len(self._confirmed) + len(self._errors)

    def confirm(self, lead_id: str, digest: str, run_id: str, had_error: bool) -> None:
        now = dt.datetime.now(dt.UTC)
        self._confirmed.append(
            {"lead_id": lead_id, "hash": digest, "confirmed_at": now, "run_id": run_id})
        if had_error:
            self._errors.append({"lead_id": lead_id, "resolved": True})

    def fail(self, lead_id: str, digest: str, run_id: str, error: dict[str, Any]) -> None:
        self._errors.append({
            "lead_id": lead_id, "hash": digest, "run_id": run_id,
            "attempted_at": dt.datetime.now(dt.UTC), "resolved": False, **error,
        })

    def flush(self, run: dict[str, Any] | None = None) -> None:
        """Write the buffered rows (and the run's row, if given) in one dlt load."""
        batches = {STATE_TABLE: self._confirmed, ERRORS_TABLE: self._errors,
                   RUNS_TABLE: [run] if run is not None else []}
        resources = [_resource(table, rows) for table, rows in batches.items() if rows]
        if not resources:
            return
        info = self._pipeline.run(
            resources, loader_file_format=cast(TLoaderFileFormat, self._file_format))
        info.raise_on_failed_jobs()
        self._confirmed, self._errors = [], []
        self._refresh_tables()
