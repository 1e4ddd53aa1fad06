"""Test helper for history mode: load, churn (with new custom keys), load again, and judge
the SCD2 versions against the states the sandbox held at each load."""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Callable
from typing import Any

import pytest
from warehouse import Warehouse, assert_equal_to_sandbox

from leadrat_source.timestamps import parse_timestamp


def history_rereading_everything(monkeypatch: pytest.MonkeyPatch) -> None:
    """History mode, with a lookback longer than the data's history: every load re-reads
    every lead, so unchanged leads meet leads with new custom keys in their batches."""
    monkeypatch.setenv("SOURCES__LEADRAT__HISTORY", "true")
    monkeypatch.setenv("SOURCES__LEADRAT__LOOKBACK_SECONDS", str(3 * 365 * 86_400))


def lead_state(lead: dict[str, Any]) -> dict[str, Any]:
    """A lead as LeadRat holds it; tags are a set."""
    return {**lead, "tags": sorted(lead["tags"])}


def load_with_churn(warehouse: Warehouse, make_client: Callable[..., Any], loads: int = 3,
                    changes: int = 40) -> list[dict[str, dict[str, Any]]]:
    """`loads` loads with churn between (each adding a custom key no lead had); returns the
    sandbox's leads as they were at each load."""
    server = warehouse.server
    writer = make_client(server)
    states = []
    for number in range(loads):
        if number:
            server.churn(changes)
            lead = next(lead for lead in server.export_leads() if lead["deleted_at"] is None)
            writer.leads.update(lead["id"], custom_fields={f"added_before_load_{number}": "x"})
        states.append({lead["id"]: lead_state(lead) for lead in server.export_leads()})
        warehouse.load()
        assert_equal_to_sandbox(warehouse)  # the current versions, after every load
    return states


def assert_one_version_per_change(warehouse: Warehouse,
                                  states: list[dict[str, dict[str, Any]]]) -> None:
    """Each lead has one version per state change the loads saw (an unchanged lead re-read
    by the lookback gets none), in order, with contiguous, non-overlapping validity."""
    versions: dict[str, list[dict[str, Any]]] = {}
    for row in warehouse.rows("leads"):
        versions.setdefault(row["id"], []).append(row)
    problems = []
    for lead_id in states[-1]:
        seen = [state[lead_id] for state in states if lead_id in state]
        distinct = [state for i, state in enumerate(seen) if i == 0 or state != seen[i - 1]]
        rows = sorted(versions.get(lead_id, []), key=lambda row: _utc(row["_dlt_valid_from"]))
        if [_utc(row["updated_at"]) for row in rows] != [
            parse_timestamp(state["updated_at"]) for state in distinct
        ]:
            problems.append((lead_id, len(rows), len(distinct)))
            continue
        for older, newer in itertools.pairwise(rows):
            if older["_dlt_valid_to"] is None or _utc(older["_dlt_valid_to"]) != _utc(
                newer["_dlt_valid_from"]
            ):
                problems.append((lead_id, "gap or overlap", older["_dlt_valid_to"]))
        if rows and rows[-1]["_dlt_valid_to"] is not None:
            problems.append((lead_id, "no current version", rows[-1]["_dlt_valid_to"]))
    extra = versions.keys() - states[-1].keys()
    assert not extra, f"versions of leads LeadRat never had: {sorted(extra)[:5]}"
    assert not problems, (
        f"{len(problems)} leads with wrong versions, e.g. (id, versions, states) {problems[:5]}"
    )


def _utc(value: Any) -> dt.datetime:
    if isinstance(value, str):
        return parse_timestamp(value)
    assert isinstance(value, dt.datetime)
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
