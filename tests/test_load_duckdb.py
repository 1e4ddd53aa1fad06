"""`leadrat load` into DuckDB against the sandbox over real HTTP: exact, incremental, cheap."""

from __future__ import annotations

import datetime as dt
import gc
import math
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import dlt
import pytest
from served import arrivals, served, served_during
from warehouse import assert_equal_to_sandbox, assert_tombstones_of_deleted_leads, expected_leads

from leadrat_source.gc_pause import RUN_GEN0_THRESHOLD, fewer_collections
from leadrat_source.lead_tables import NO_TAGS_MARKER, lead_tags_table
from leadrat_source.run_report import SOURCE_NAME
from leadrat_source.timestamps import parse_timestamp

HANDFUL = 8  # requests beyond the list pages: pipelines, three analytics, slice edges
#: list pages a completed run adds: one catch-up pass over what moved during the run
CATCH_UP = 1
#: young collections a 5k-lead load may start: ~18 with the load's threshold (gc_pause.py),
#: ~160 with Python's defaults
YOUNG_PASSES_PER_5K_LOAD = 40


def test_first_load_then_churn_is_exact_and_costs_only_changed_pages(
    make_sandbox: Callable[..., Any], make_warehouse: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # several Arrow batches per run, as in a large load
    monkeypatch.setenv("SOURCES__LEADRAT__LEADS_PER_BATCH", "700")
    server = make_sandbox(leads=2_500, seed=3, rate_limit=0)
    warehouse = make_warehouse(server)

    first = served_during(server, warehouse.load)
    assert_equal_to_sandbox(warehouse)
    assert first["requests"] <= math.ceil(2_500 / 100) + HANDFUL, first

    changes = server.churn(300)
    kinds = {change["kind"] for change in changes}
    assert {"create", "update", "delete", "tags_clear"} <= kinds, kinds
    changed = len({change.get("lead_id") for change in changes})
    second = served_during(server, warehouse.load)
    assert_equal_to_sandbox(warehouse)
    assert second["requests"] <= math.ceil(changed / 100) + HANDFUL, second

    # nothing new: only the lookback (60 s, which holds all of the churn) is re-read, and
    # the closing catch-up pass asks once what moved during the run
    third = served_during(server, warehouse.load)
    assert third["pages"] <= math.ceil(changed / 100) + CATCH_UP, f"a run with nothing new: {third}"
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
    assert_tombstones_of_deleted_leads(warehouse)


def test_page_only_deployment_with_drift_loses_nothing(
    make_sandbox: Callable[..., Any], make_warehouse: Callable[..., Any]
) -> None:
    server = make_sandbox(leads=1_500, seed=9, rate_limit=0, cursor=False)
    warehouse = make_warehouse(server)
    server.set_faults(drift_rate=0.3)
    started = dt.datetime.now(dt.UTC)
    drifted = served_during(server, warehouse.load)["faults"]
    assert drifted > 0, "no lead drifted; nothing was tested"
    # judged right after the drifted run: every lead not touched during it is exact; a
    # drifted one left the run's window (it is newer than the run's start)
    assert_equal_to_sandbox(warehouse, changed_since=started)
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
    """Judged right after each faulted run (a later clean run's lookback would re-read
    what a faulted one lost): the first load, then an incremental one after churn."""
    server = make_sandbox(leads=1_200, seed=13, rate_limit=0)
    warehouse = make_warehouse(server)
    server.set_faults(**faults)
    hit = 0
    for _ in range(2):
        started = dt.datetime.now(dt.UTC)
        hit += served_during(server, warehouse.load)["faults"]
        if "drift_rate" in faults:
            assert_equal_to_sandbox(warehouse, changed_since=started)
        else:
            assert_equal_to_sandbox(warehouse)
        server.churn(300)
    assert hit > 0, "no fault was injected; nothing was tested"


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
    server = make_sandbox(leads=800, seed=19, rate_limit=0)
    leads = server.export_leads()
    stamps = sorted(lead["updated_at"] for lead in leads)
    since, until = stamps[200], stamps[400]
    window = {"since": dt.datetime.fromisoformat(since), "until": dt.datetime.fromisoformat(until),
              "resources": ["leads"]}
    warehouse = make_warehouse(server)
    backfill = served_during(server, lambda: warehouse.load(**window))
    loaded = {row["id"] for row in warehouse.rows("leads")}
    assert loaded == {lead["id"] for lead in leads if since <= lead["updated_at"] < until}
    assert backfill["pages"] <= math.ceil(200 / 100) + 1, backfill
    # the cursor did not move forward: the regular run starts from the beginning
    warehouse.load()
    assert_equal_to_sandbox(warehouse)
    # nor backward: after another backfill, a regular run reads only what changed since
    warehouse.load(**window)
    changed = len({change.get("lead_id") for change in server.churn(50)})
    regular = served_during(server, warehouse.load)
    assert regular["pages"] <= math.ceil(changed / 100) + 1, regular
    assert_equal_to_sandbox(warehouse)


def expected_analytics(server: Any, day: dt.date) -> dict[str, Any]:
    """The three reports for the 30 days up to `day`, computed here from the sandbox's
    export and pipelines (the contract: a lead counts if not deleted and created on a day
    of the range; the funnel counts the leads at each stage, its rate the share of the
    pipeline's leads at that stage or a later one)."""
    first = day - dt.timedelta(days=29)
    leads = [lead for lead in server.export_leads() if not lead["deleted_at"]
             and first <= dt.date.fromisoformat(lead["created_at"][:10]) <= day]

    def rate(part: int, whole: int) -> float:
        return round(part / whole, 4) if whole else 0.0

    def count(status: str, among: list[dict[str, Any]]) -> int:
        return sum(lead["status"] == status for lead in among)

    summary = {"from": first.isoformat(), "to": day.isoformat(), "total_leads": len(leads),
               "new_leads": count("new", leads), "converted_leads": count("converted", leads),
               "lost_leads": count("lost", leads),
               "conversion_rate": rate(count("converted", leads), len(leads))}
    sources = {}
    for source in {lead["source"] for lead in leads}:
        of_source = [lead for lead in leads if lead["source"] == source]
        converted = count("converted", of_source)
        sources[source] = (len(of_source), converted, rate(converted, len(of_source)))
    funnel = {}
    for pipeline in (server.store.pipeline(p.id) for p in server.store.pipelines):
        stages = sorted(pipeline["stages"], key=lambda stage: stage["position"])
        at = {s["id"]: sum(lead["stage_id"] == s["id"] for lead in leads) for s in stages}
        reach = total = sum(at.values())
        for stage in stages:
            funnel[(pipeline["id"], stage["id"])] = (at[stage["id"]], rate(reach, total))
            reach -= at[stage["id"]]
    return {"summary": summary, "sources": sources, "funnel": funnel}


def test_analytics_of_the_last_30_days_match_the_sandbox_and_a_rerun_replaces_the_day(
    make_sandbox: Callable[..., Any], make_warehouse: Callable[..., Any]
) -> None:
    server = make_sandbox(leads=1_000, seed=23, rate_limit=0)
    warehouse = make_warehouse(server)
    warehouse.load(resources=["analytics"])
    server.churn(80)  # new leads today, others deleted or converted: the numbers move
    warehouse.load(resources=["analytics"])
    today = dt.datetime.now(dt.UTC).date()
    expected = expected_analytics(server, today)
    assert expected["summary"]["total_leads"] > 20, "too few leads in the window to judge"

    [summary] = warehouse.rows("analytics_summary")
    assert summary["snapshot_date"] == today
    assert {name: summary[name] for name in expected["summary"]} == expected["summary"]
    sources = warehouse.rows("analytics_sources")
    assert {row["source"]: (row["leads"], row["converted"], row["conversion_rate"])
            for row in sources} == expected["sources"]
    funnel = warehouse.rows("analytics_funnel")
    assert {(row["pipeline_id"], row["stage_id"]): (row["leads"], row["conversion_rate"])
            for row in funnel} == expected["funnel"]
    assert all(row["snapshot_date"] == today for row in sources + funnel)
    assert len(sources) == len(expected["sources"]) and len(funnel) == len(expected["funnel"])


def test_pipelines_and_stages_match_the_sandbox(
    sandbox: Any, make_warehouse: Callable[..., Any]
) -> None:
    warehouse = make_warehouse(sandbox)
    warehouse.load(resources=["pipelines"])
    pipelines = [sandbox.store.pipeline(p.id) for p in sandbox.store.pipelines]
    assert {(row["id"], row["name"]) for row in warehouse.rows("pipelines")} == {
        (p["id"], p["name"]) for p in pipelines}
    stages = {(row["pipeline_id"], row["id"], row["name"], row["position"], row["probability"])
              for row in warehouse.rows("pipeline_stages")}
    assert stages == {(p["id"], s["id"], s["name"], s["position"], s["probability"])
                      for p in pipelines for s in p["stages"]}


def test_a_load_at_the_plan_limit_uses_the_budget_without_429s(
    make_sandbox: Callable[..., Any], make_warehouse: Callable[..., Any]
) -> None:
    # 20 requests per 2 s window; the load needs ~30 list pages plus a few more
    limit, window = 20, 2.0
    server = make_sandbox(leads=3_000, seed=29, rate_limit=limit, window_seconds=window)
    warehouse = make_warehouse(server)
    with arrivals(server) as run:
        warehouse.load()
    assert_equal_to_sandbox(warehouse)
    assert served(server)["429s"] == 0, "the sandbox refused requests (429)"
    # the budget allows `limit` per window: close to that pace means it was used fully;
    # timed from the first request to the last (dlt's own work around them not counted)
    requests, ideal = len(run.times), len(run.times) / limit * window
    assert run.span <= 1.25 * ideal, f"{requests} requests over {run.span:.1f} s, ideal {ideal:.1f} s"


def test_a_spent_daily_quota_keeps_what_was_read_and_the_next_run_resumes(
    make_sandbox: Callable[..., Any], make_warehouse: Callable[..., Any],
    make_client: Callable[..., Any], monkeypatch: pytest.MonkeyPatch,
) -> None:
    from leadrat_source.errors import QuotaExhausted

    monkeypatch.setenv("SOURCES__LEADRAT__LEADS_PER_BATCH", "300")
    # one slice: the resume point is exactly where the scan stopped, so any page read
    # twice is the resume's fault (concurrent slices' holes are another test's subject)
    monkeypatch.setenv("SOURCES__LEADRAT__WORKERS", "1")
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
    # each resumed run may re-read the one page at its resume point, and the run that
    # completes asks once what moved meanwhile (the catch-up pass); nothing more
    pages = served(server)["pages"]
    assert pages <= math.ceil(2_500 / 100) + runs - 1 + CATCH_UP, f"{pages} pages: a re-read"


def test_a_huge_first_load_runs_as_several_bounded_loads(
    make_sandbox: Callable[..., Any], make_warehouse: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    leads, max_leads = 10_000, 1_000
    monkeypatch.setenv("SOURCES__LEADRAT__MAX_LEADS_PER_RUN", str(max_leads))
    server = make_sandbox(leads=leads, seed=53, rate_limit=0)
    warehouse = make_warehouse(server)
    first = served_during(server, warehouse.load)  # counted by the sandbox
    assert_equal_to_sandbox(warehouse)
    loads = warehouse.rows("_dlt_loads")
    assert len(loads) >= 3, "the first load was not split"
    # the sandbox's leads crowd into recent months, as a CRM's do: parts cut by an even
    # spread in time held 0.6-0.8x max_leads (13 loads here); counted cuts fill them
    assert len(loads) <= math.ceil(leads / max_leads) + 1, f"{len(loads)} loads"
    assert first["requests"] <= math.ceil(leads / 100) + len(loads) * HANDFUL, first
    server.churn(100)
    warehouse.load()
    assert_equal_to_sandbox(warehouse)


def test_a_late_commit_within_the_lookback_is_picked_up_by_the_next_run(
    make_sandbox: Callable[..., Any], make_warehouse: Callable[..., Any],
    make_client: Callable[..., Any], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`lookback_seconds`: an update that becomes visible late, with an `updated_at` before
    the newest one the last run saw (a slow transaction, a skewed server clock), is read by
    the next run if it is within the lookback, and only then."""
    from leadrat_source.sandbox import store

    monkeypatch.setenv("SOURCES__LEADRAT__LOOKBACK_SECONDS", "30")
    server = make_sandbox(leads=300, seed=31, rate_limit=0)
    warehouse = make_warehouse(server)
    writer = make_client(server)
    newest, late, too_late = [lead for lead in server.export_leads() if not lead["deleted_at"]][:3]
    writer.leads.update(newest["id"], score=(newest["score"] or 0) % 100 + 1)
    warehouse.load()
    cursor_ms = max(int(parse_timestamp(lead["updated_at"]).timestamp() * 1000)
                    for lead in server.export_leads())

    def commit_at(lead: dict[str, Any], seconds_before_cursor: float) -> int:
        score = (lead["score"] or 0) % 100 + 1
        clock = store.now_ms
        store.now_ms = lambda: cursor_ms - int(seconds_before_cursor * 1000)
        try:
            writer.leads.update(lead["id"], score=score)
        finally:
            store.now_ms = clock
        return score

    late_score = commit_at(late, 20)
    commit_at(too_late, 40)
    warehouse.load()
    stored = {row["id"]: row["score"] for row in warehouse.rows("leads")}
    assert stored[late["id"]] == late_score, "a late commit 20 s back was missed (lookback 30 s)"
    assert stored[too_late["id"]] == too_late["score"], (
        "a commit 40 s back was read: the lookback is not the configured 30 s")


def test_initial_updated_at_is_where_the_first_run_starts(
    make_sandbox: Callable[..., Any], make_warehouse: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = make_sandbox(leads=600, seed=37, rate_limit=0)
    start = sorted(lead["updated_at"] for lead in server.export_leads())[450]
    monkeypatch.setenv("SOURCES__LEADRAT__INITIAL_UPDATED_AT", start)
    warehouse = make_warehouse(server)
    first = served_during(server, lambda: warehouse.load(resources=["leads"]))
    stored = {row["id"]: row["updated_at"] for row in warehouse.rows("leads")}
    assert set(stored) == {
        lead["id"] for lead in server.export_leads() if lead["updated_at"] >= start}
    # 150 leads and the catch-up pass: the older ones were never asked for
    assert first["pages"] <= 2 + CATCH_UP, first


def test_workers_read_time_slices_concurrently(
    make_sandbox: Callable[..., Any], make_warehouse: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`workers`: with every list page taking 40 ms in the sandbox, 60 pages read by one
    worker take at least 2.4 s; by four, clearly less (the window is cut into six time
    slices of unequal density, so not a quarter)."""
    server = make_sandbox(leads=6_000, seed=41, rate_limit=0)
    server.set_faults(latency_ms=40)
    spans = {}
    for workers in (1, 4):
        monkeypatch.setenv("SOURCES__LEADRAT__WORKERS", str(workers))
        warehouse = make_warehouse(server, dataset=f"workers_{workers}")
        warehouse.pipeline_name = f"leadrat_workers_{workers}"
        with arrivals(server) as run:
            warehouse.load(resources=["leads"])
        spans[workers] = run.span
        assert len(warehouse.rows("leads")) == 6_000
    assert spans[1] >= 60 * 0.04 - 0.1, spans
    assert spans[4] <= 0.75 * spans[1], spans


def test_a_load_collects_garbage_rarely_and_gives_the_collector_back(
    make_sandbox: Callable[..., Any], make_warehouse: Callable[..., Any]
) -> None:
    """The load holds back the cyclic collector's young passes (gc_pause.py), and the
    caller's collector is as it was afterwards; counted by Python's own `gc.callbacks`."""
    server = make_sandbox(leads=5_000, seed=4, rate_limit=0)
    warehouse = make_warehouse(server)
    before = gc.get_threshold(), gc.get_freeze_count()
    young_passes: list[int] = []

    def count(phase: str, info: dict[str, int]) -> None:
        if phase == "start" and info["generation"] == 0:
            young_passes.append(1)

    gc.callbacks.append(count)
    try:
        warehouse.load()
    finally:
        gc.callbacks.remove(count)
    assert_equal_to_sandbox(warehouse)
    assert (gc.get_threshold(), gc.get_freeze_count()) == before
    assert len(young_passes) <= YOUNG_PASSES_PER_5K_LOAD, len(young_passes)


def test_overlapping_loads_give_the_collector_back_when_the_last_one_ends() -> None:
    """Two loads in threads whose runs overlap without nesting (first ends first)."""
    before = gc.get_threshold(), gc.get_freeze_count()
    first, second = fewer_collections(), fewer_collections()
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)
    assert gc.get_threshold()[0] >= RUN_GEN0_THRESHOLD, "the second run is still going"
    second.__exit__(None, None, None)
    assert (gc.get_threshold(), gc.get_freeze_count()) == before


def test_lead_tags_an_earlier_version_wrote_with_a_merge_key_load_on_exactly(
    make_sandbox: Callable[..., Any], make_warehouse: Callable[..., Any],
) -> None:
    """Versions up to 2026-11 stored `lead_tags` with the merge key `lead_id` next to its
    primary key. dlt keeps a stored hint; `destination_scope` now does the merge key's
    job, and the two must not fight: the next loads leave the dataset equal to LeadRat."""
    server = make_sandbox(leads=300, seed=23, rate_limit=0)
    warehouse = make_warehouse(server)
    earlier_tags = dlt.mark.with_hints(
        lead_tags_table(server.export_leads()[:20]),
        dlt.mark.make_hints(table_name="lead_tags", merge_key="lead_id",
                            write_disposition={"disposition": "merge", "strategy": "delete-insert"},
                            primary_key=["lead_id", "tag"],
                            columns={NO_TAGS_MARKER: {"hard_delete": True}}))

    @dlt.source(name=SOURCE_NAME)
    def earlier_version() -> Any:
        return dlt.resource([earlier_tags], name="leads")

    earlier = dlt.pipeline(warehouse.pipeline_name, pipelines_dir=str(warehouse.pipelines_dir),
                           destination="duckdb", dataset_name=warehouse.dataset)
    earlier.run(earlier_version(), loader_file_format="parquet")
    warehouse.load()
    server.churn(100)
    warehouse.load()
    assert_equal_to_sandbox(warehouse)


def test_a_run_longer_than_the_lock_wait_still_waits_for_a_lock_met_at_its_end(
    tmp_path: Any,
) -> None:
    """`run_when_free`'s wait counts from the lock met, not from the run's start: a run that
    extracted for longer than `wait_seconds` and then meets another process's DuckDB lock
    in its load step waits for the file, then loads."""
    from leadrat_source.warehouse_lock import run_when_free

    path = tmp_path / "warehouse.duckdb"
    pipeline = dlt.pipeline("lock_wait", pipelines_dir=str(tmp_path / "dlt"),
                            destination=dlt.destinations.duckdb(str(path)), dataset_name="data")
    pipeline.run([{"id": 0}], table_name="rows")
    holder = subprocess.Popen(
        [sys.executable, "-c", ("import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); "
                                "time.sleep(float(sys.argv[2]))"), str(path), "2.5"])
    time.sleep(1.0)  # the holder has the file

    def slow_extract_then_load() -> Any:
        time.sleep(1.2)  # longer than the wait below: the extract of a big run
        return pipeline.run([{"id": 1}], table_name="rows")

    run_when_free(pipeline, slow_extract_then_load, wait_seconds=1.0)
    holder.wait()
    assert sorted(pipeline.dataset()["rows"].arrow()["id"].to_pylist()) == [0, 1]
