"""Leads edited while a run reads them (the sandbox's drift fault) are in the warehouse when
the run ends: judged right after the drifting run, against the sandbox's own export."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pyarrow.parquet
import pytest
from warehouse import Warehouse, assert_equal_to_sandbox

from leadrat_source.timestamps import parse_timestamp

#: Before every list request the sandbox touches 1-3 random leads: dozens per run, many of
#: them in slices not read yet.
DRIFT_RATE = 1.0
LEADS = 2_500


def _stored_at(warehouse: Warehouse) -> dict[str, dt.datetime]:
    """`updated_at` of every lead in the warehouse."""
    stored = {}
    for row in warehouse.rows("leads"):
        instant = row["updated_at"]
        stored[row["id"]] = instant if instant.tzinfo else instant.replace(tzinfo=dt.UTC)
    return stored


def _ids_in_last_load(warehouse: Warehouse) -> list[str]:
    """The lead ids in the files of the last load package, as dlt loaded them."""
    pipeline = warehouse.pipeline()
    load_id = max(row["load_id"] for row in warehouse.rows("_dlt_loads"))
    jobs = pipeline.get_load_package_info(load_id).jobs["completed_jobs"]
    files = [job.file_path for job in jobs
             if job.job_file_info.table_name == "leads" and job.file_path.endswith(".parquet")]
    assert files, "no leads file in the last load package"
    return [lead_id for path in files
            for lead_id in pyarrow.parquet.read_table(path, columns=["id"]).column("id").to_pylist()]


def _load_while_drifting(warehouse: Warehouse) -> tuple[dict[str, Any], dict[str, Any]]:
    """One load with drift on; the sandbox's leads just before and just after it."""
    server = warehouse.server
    before = {lead["id"]: lead for lead in server.export_leads()}
    server.set_faults(drift_rate=DRIFT_RATE)
    try:
        summary = warehouse.load()
    finally:
        server.set_faults(reset=True)
    after = {lead["id"]: lead for lead in server.export_leads()}
    assert summary.rows.get("leads", 0) > 0
    return before, after


def _assert_every_lead_of_the_run_start_is_stored(
    warehouse: Warehouse, before: dict[str, Any], after: dict[str, Any]
) -> str:
    """Every lead that existed when the run started is stored at that version or a later
    one, and the run's load holds one row per lead. Says how many leads moved during the
    run, and how many of them the run could only get at a version newer than its start:
    those that moved before their slice read them."""
    moved = {lead_id for lead_id, lead in before.items()
             if after[lead_id]["updated_at"] != lead["updated_at"]}
    assert moved, "the drift moved no lead; the test proves nothing"
    stored = _stored_at(warehouse)
    missing = sorted(before.keys() - stored.keys())
    assert not missing, f"{len(missing)} leads of the run's start are missing, e.g. {missing[:5]}"
    stale = [lead_id for lead_id, lead in before.items()
             if stored[lead_id] < parse_timestamp(lead["updated_at"])]
    assert not stale, f"{len(stale)} leads are older than at the run's start, e.g. {stale[:5]}"
    caught_up = [lead_id for lead_id in moved
                 if stored[lead_id] > parse_timestamp(before[lead_id]["updated_at"])]
    loaded = _ids_in_last_load(warehouse)
    assert len(loaded) == len(set(loaded)), "the load holds two versions of a lead"
    assert caught_up, "no lead moved before its slice read it; the test proves nothing"
    return (f"{len(moved)} leads moved during the run, {len(caught_up)} before their slice "
            f"read them; {len(stored)} stored of {len(before)}")


@pytest.mark.parametrize("cursor", [True, False], ids=["cursor", "page-only"])
def test_leads_edited_during_a_run_are_stored_when_it_ends(
    make_sandbox: Callable[..., Any], make_warehouse: Callable[..., Any], cursor: bool
) -> None:
    server = make_sandbox(leads=LEADS, seed=61, rate_limit=0, cursor=cursor)
    warehouse = make_warehouse(server)

    # a first load: the whole account, with leads moving ahead of the slices
    before, after = _load_while_drifting(warehouse)
    first = _assert_every_lead_of_the_run_start_is_stored(warehouse, before, after)

    # an incremental load of many changes, with leads of its window moving ahead of it
    server.churn(LEADS)
    before, after = _load_while_drifting(warehouse)
    second = _assert_every_lead_of_the_run_start_is_stored(warehouse, before, after)

    # the cursor left no gap: a quiet run makes the warehouse exact
    warehouse.load()
    assert_equal_to_sandbox(warehouse)
    print(f"\n{'cursor' if cursor else 'page-only'}, drift rate {DRIFT_RATE}: first load: "
          f"{first}; incremental load: {second}")
