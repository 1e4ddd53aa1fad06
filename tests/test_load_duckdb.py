"""`leadrat load` into DuckDB against the sandbox over real HTTP: exact, incremental, cheap."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
from warehouse import assert_equal_to_sandbox, expected_leads

HANDFUL = 8  # requests beyond the list pages: pipelines, three analytics, slice edges


def test_first_load_then_churn_is_exact_and_costs_only_changed_pages(
    make_sandbox: Callable[..., Any], make_warehouse: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # several Arrow batches per run, as in a large load
    monkeypatch.setenv("SOURCES__LEADRAT__LEADS_PER_BATCH", "700")
    server = make_sandbox(leads=2_500, seed=3, rate_limit=0)
    warehouse = make_warehouse(server)

    first = warehouse.load()
    assert_equal_to_sandbox(warehouse)
    assert first.rows["leads"] == 2_500
    assert first.requests <= math.ceil(2_500 / 100) + HANDFUL

    changes = server.churn(300)
    kinds = {change["kind"] for change in changes}
    assert {"create", "update", "delete"} <= kinds, kinds
    changed = len({change.get("lead_id") for change in changes})
    second = warehouse.load()
    assert_equal_to_sandbox(warehouse)
    assert second.requests <= math.ceil(changed / 100) + HANDFUL

    third = warehouse.load()
    assert third.requests <= 1 + HANDFUL, "a run with nothing new re-read leads"
    assert_equal_to_sandbox(warehouse)


def test_hard_delete_mode_removes_deleted_leads_and_their_tags(
    make_sandbox: Callable[..., Any], make_warehouse: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SOURCES__LEADRAT__DELETE_MODE", "hard")
    server = make_sandbox(leads=600, seed=5, rate_limit=0)
    warehouse = make_warehouse(server)
    warehouse.load()
    assert_equal_to_sandbox(warehouse, delete_mode="hard")
    server.churn(120)
    warehouse.load()
    assert_equal_to_sandbox(warehouse, delete_mode="hard")
    assert len(expected_leads(server, "hard")) < len(server.export_leads())


def test_page_only_deployment_with_drift_loses_nothing(
    make_sandbox: Callable[..., Any], make_warehouse: Callable[..., Any]
) -> None:
    server = make_sandbox(leads=1_500, seed=9, rate_limit=0, cursor=False)
    warehouse = make_warehouse(server)
    server.set_faults(drift_rate=0.3)
    warehouse.load()
    server.set_faults(drift_rate=0.0)
    warehouse.load()  # picks up the leads the drift moved past the first run's window
    assert_equal_to_sandbox(warehouse)


@pytest.mark.parametrize(
    "faults",
    [
        {"error_rate": 0.15},
        {"gateway_error_rate": 0.15},
        {"spurious_429_rate": 0.15},
        {"drop_rate": 0.1},
        {"truncate_rate": 0.1},
        {"drift_rate": 0.3},
    ],
    ids=lambda faults: next(iter(faults)),
)
def test_faults_during_a_load_lose_or_duplicate_nothing(
    faults: dict[str, float], make_sandbox: Callable[..., Any],
    make_warehouse: Callable[..., Any],
) -> None:
    server = make_sandbox(leads=1_200, seed=13, rate_limit=0)
    warehouse = make_warehouse(server)
    server.set_faults(**faults)
    warehouse.load()
    server.churn(100)
    summary = warehouse.load()
    server.set_faults(**{name: 0.0 for name in faults})
    warehouse.load()
    assert_equal_to_sandbox(warehouse)
    if "drift_rate" not in faults:
        assert server.stats()["faults_injected"] > 0 and summary.requests > 0


def test_history_mode_keeps_every_version_of_a_lead(
    make_sandbox: Callable[..., Any], make_warehouse: Callable[..., Any],
    make_client: Callable[..., Any], monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SOURCES__LEADRAT__HISTORY", "true")
    server = make_sandbox(leads=300, seed=17, rate_limit=0)
    warehouse = make_warehouse(server)
    writer = make_client(server)
    lead = next(lead for lead in server.export_leads() if lead["status"] != "lost")
    warehouse.load()
    writer.leads.update(lead["id"], status="lost")
    warehouse.load()
    writer.leads.update(lead["id"], score=77)
    warehouse.load()
    warehouse.load()  # unchanged: the lookback re-reads the lead, no new version

    versions = sorted(
        (row for row in warehouse.rows("leads") if row["id"] == lead["id"]),
        key=lambda row: row["_dlt_valid_from"],
    )
    assert [row["status"] for row in versions] == [lead["status"], "lost", "lost"]
    assert [row["_dlt_valid_to"] is None for row in versions] == [False, False, True]
    assert versions[-1]["score"] == 77
    active = [row for row in warehouse.rows("leads") if row["_dlt_valid_to"] is None]
    assert len(active) == len(server.export_leads())


def test_backfill_window_loads_only_that_window_and_keeps_the_cursor(
    make_sandbox: Callable[..., Any], make_warehouse: Callable[..., Any]
) -> None:
    import datetime as dt

    server = make_sandbox(leads=800, seed=19, rate_limit=0)
    leads = server.export_leads()
    stamps = sorted(lead["updated_at"] for lead in leads)
    since, until = stamps[200], stamps[400]
    warehouse = make_warehouse(server)
    warehouse.load(
        since=dt.datetime.fromisoformat(since),
        until=dt.datetime.fromisoformat(until),
        resources=["leads"],
    )
    loaded = {row["id"] for row in warehouse.rows("leads")}
    assert loaded == {lead["id"] for lead in leads if since <= lead["updated_at"] < until}
    warehouse.load()  # the regular incremental run still starts from the beginning
    assert_equal_to_sandbox(warehouse)


def test_analytics_snapshot_of_a_day_is_replaced_by_a_rerun(
    make_sandbox: Callable[..., Any], make_warehouse: Callable[..., Any]
) -> None:
    server = make_sandbox(leads=400, seed=23, rate_limit=0)
    warehouse = make_warehouse(server)
    warehouse.load(resources=["analytics"])
    server.churn(80)
    warehouse.load(resources=["analytics"])
    summary = warehouse.rows("analytics_summary")
    assert len(summary) == 1
    with warehouse.client as client:
        live = client.analytics.summary(summary[0]["from"], summary[0]["to"])
    assert summary[0]["total_leads"] == live["total_leads"]
    sources = warehouse.rows("analytics_sources")
    assert len({row["source"] for row in sources}) == len(sources)


def test_pipelines_and_stages_match_the_api(
    sandbox: Any, make_warehouse: Callable[..., Any]
) -> None:
    warehouse = make_warehouse(sandbox)
    warehouse.load(resources=["pipelines"])
    with warehouse.client as client:
        pipelines = list(client.pipelines.iter())
    assert {row["id"] for row in warehouse.rows("pipelines")} == {p["id"] for p in pipelines}
    stages = {(row["pipeline_id"], row["id"], row["position"]) for row in warehouse.rows("pipeline_stages")}
    assert stages == {(p["id"], s["id"], s["position"]) for p in pipelines for s in p["stages"]}


def test_a_load_at_the_plan_limit_uses_the_budget_without_429s(
    make_sandbox: Callable[..., Any], make_warehouse: Callable[..., Any]
) -> None:
    import time

    # 20 requests per 2 s window; the load needs ~30 list pages plus a few more
    server = make_sandbox(leads=3_000, seed=29, rate_limit=20, window_seconds=2.0)
    warehouse = make_warehouse(server)
    started = time.monotonic()
    summary = warehouse.load()
    elapsed = time.monotonic() - started
    assert_equal_to_sandbox(warehouse)
    assert summary.rate_limited <= 1, summary
    # the budget allows 20 requests per 2 s: finishing close to that pace uses it fully
    # fixed windows: the requests reach into window ceil(n/20), at least 2 windows fewer
    # after the start (the first one may be almost over); spread out, about one fewer
    assert (math.ceil(summary.requests / 20) - 2) * 2.0 <= elapsed, (summary.requests, elapsed)
    assert elapsed <= (summary.requests / 20 - 1) * 2.0 * 1.6 + 6, (summary.requests, elapsed)


def test_a_spent_daily_quota_keeps_what_was_read_and_the_next_run_resumes(
    make_sandbox: Callable[..., Any], make_warehouse: Callable[..., Any],
    make_client: Callable[..., Any], monkeypatch: pytest.MonkeyPatch,
) -> None:
    from leadrat_source.errors import QuotaExhausted

    monkeypatch.setenv("SOURCES__LEADRAT__LEADS_PER_BATCH", "300")
    server = make_sandbox(leads=2_500, seed=47, rate_limit=0, daily_cap=16)
    warehouse = make_warehouse(server)
    # each credential has its own daily budget: switching plays "the next day"
    credentials = [{"api_key": server.read_key}, {"api_key": server.read_write_key},
                   {"bearer_token": server.bearer_token}]
    loaded_before, runs = 0, 0
    for credential in credentials:
        warehouse.client = make_client(server, **credential)
        runs += 1
        try:
            warehouse.load()
            break
        except QuotaExhausted as error:
            assert error.resets_at is not None
            loaded = len(warehouse.rows("leads"))
            assert loaded > loaded_before, "a run stopped by the quota saved nothing"
            loaded_before = loaded
    else:
        pytest.fail("three days of quota did not finish a load of 25 pages")
    assert runs >= 2, "the quota never ran out; the test proves nothing"
    assert_equal_to_sandbox(warehouse)
    requests = server.stats()["requests"]
    assert requests <= math.ceil(2_500 / 100) + runs * HANDFUL, "a resumed run re-read leads"


def test_a_huge_first_load_runs_as_several_bounded_loads(
    make_sandbox: Callable[..., Any], make_warehouse: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SOURCES__LEADRAT__MAX_LEADS_PER_RUN", "700")
    server = make_sandbox(leads=3_000, seed=53, rate_limit=0)
    warehouse = make_warehouse(server)
    summary = warehouse.load()
    assert_equal_to_sandbox(warehouse)
    loads = warehouse.rows("_dlt_loads")
    assert len(loads) >= 3, "the first load was not split"
    assert summary.requests <= math.ceil(3_000 / 100) + len(loads) * HANDFUL
    server.churn(100)
    warehouse.load()
    assert_equal_to_sandbox(warehouse)
