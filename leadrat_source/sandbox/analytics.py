"""Reports of /analytics/*, computed from the leads in the store.

"In range" means: a lead not deleted whose `created_at` falls on a day in [from, to]
(UTC, both ends inclusive). Rates are converted / leads, rounded to 4 places, 0 when
there are no leads. The funnel counts the in-range leads currently in each stage;
its `conversion_rate` is the share of the pipeline's in-range leads that are at that
stage or a later one (how far the funnel reaches).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from leadrat_source.sandbox.clock import DAY_MS, date_start_ms, now_ms, parse_date, to_iso
from leadrat_source.sandbox.errors import invalid_field
from leadrat_source.sandbox.store import Store

DEFAULT_DAYS = 30
_IN_RANGE = "deleted_at_ms IS NULL AND created_at_ms >= ? AND created_at_ms < ?"


def date_range(query: dict[str, str]) -> tuple[date, date]:
    """The `from`/`to` of a request; defaults to the last 30 days ending today (UTC)."""
    today = datetime.now(UTC).date()
    bounds: dict[str, date | None] = {}
    for name, default in (("to", today), ("from", None)):
        raw = query.get(name)
        if raw is None:
            bounds[name] = default
            continue
        try:
            bounds[name] = parse_date(raw)
        except ValueError:
            raise invalid_field(name, "invalid_date", f"'{name}' must be YYYY-MM-DD.") from None
    end = bounds["to"] or today
    start = bounds["from"] or end - timedelta(days=DEFAULT_DAYS - 1)
    if start > end:
        raise invalid_field("from", "after_to", "'from' must not be after 'to'.")
    return start, end


def _bounds(start: date, end: date) -> tuple[int, int]:
    return date_start_ms(start), date_start_ms(end) + DAY_MS


def _rate(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0


def summary(store: Store, start: date, end: date) -> dict[str, Any]:
    total, new, converted, lost = store.query(
        "SELECT count(*), coalesce(sum(status = 'new'), 0), "
        "coalesce(sum(status = 'converted'), 0), coalesce(sum(status = 'lost'), 0) "
        f"FROM leads WHERE {_IN_RANGE}", _bounds(start, end))[0]
    return {"total_leads": total, "new_leads": new, "converted_leads": converted,
            "lost_leads": lost, "conversion_rate": _rate(converted, total),
            "from": start.isoformat(), "to": end.isoformat(), "generated_at": to_iso(now_ms())}


def sources(store: Store, start: date, end: date) -> list[dict[str, Any]]:
    rows = store.query(
        "SELECT source, count(*), coalesce(sum(status = 'converted'), 0) FROM leads "
        f"WHERE {_IN_RANGE} GROUP BY source ORDER BY count(*) DESC, source",
        _bounds(start, end))
    return [{"source": source, "leads": leads, "converted": converted,
             "conversion_rate": _rate(converted, leads)} for source, leads, converted in rows]


def funnel(store: Store, start: date, end: date,
           pipeline_id: str | None) -> list[dict[str, Any]]:
    pipelines = [store.pipeline(pipeline_id)] if pipeline_id else [
        store.pipeline(p.id) for p in store.pipelines]
    counts = dict(store.query(
        f"SELECT stage_id, count(*) FROM leads WHERE {_IN_RANGE} AND stage_id IS NOT NULL "
        "GROUP BY stage_id", _bounds(start, end)))
    report = []
    for pipeline in pipelines:
        stages = sorted(pipeline["stages"], key=lambda s: s["position"])
        in_pipeline = sum(counts.get(s["id"], 0) for s in stages)
        reach = in_pipeline
        for stage in stages:
            leads = counts.get(stage["id"], 0)
            report.append({"pipeline_id": pipeline["id"], "stage_id": stage["id"],
                           "stage_name": stage["name"], "position": stage["position"],
                           "leads": leads, "conversion_rate": _rate(reach, in_pipeline)})
            reach -= leads
    return report
