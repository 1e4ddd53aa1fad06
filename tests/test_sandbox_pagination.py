"""Lists: page and cursor modes, every filter and sort, include_deleted, determinism by seed."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from leadrat_source.sandbox import Sandbox, SandboxConfig


@pytest.fixture(scope="module")
def http(sandbox: Sandbox) -> Iterator[requests.Session]:
    with requests.Session() as session:
        session.headers["X-API-Key"] = sandbox.read_write_key
        yield session


def get(http: requests.Session, box: Sandbox, path: str, **params: Any) -> requests.Response:
    return http.get(f"{box.base_url}{path}", params=params, timeout=30)


def scan_cursor(http: requests.Session, box: Sandbox, **params: Any) -> list[dict[str, Any]]:
    body = get(http, box, "/leads", per_page=100, **params).json()
    rows = list(body["data"])
    while body["meta"]["next_cursor"]:
        assert body["meta"]["page"] in (None, 1)
        body = get(http, box, "/leads", per_page=100, cursor=body["meta"]["next_cursor"]).json()
        assert body["meta"]["page"] is None
        rows += body["data"]
    return rows


def scan_pages(http: requests.Session, box: Sandbox, **params: Any) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    page = 1
    while True:
        body = get(http, box, "/leads", per_page=100, page=page, **params).json()
        rows += body["data"]
        if not body["data"] or page * 100 >= body["meta"]["total"]:
            return rows
        page += 1


def live(box: Sandbox) -> list[dict[str, Any]]:
    return [lead for lead in box.export_leads() if lead["deleted_at"] is None]


def sort_key(sort: str) -> Callable[[dict[str, Any]], Any]:
    field = sort.lstrip("-")
    if sort.startswith("-"):
        # Descending by time, ties by id ascending.
        return lambda lead: (-_ms(lead[field]), lead["id"])
    return lambda lead: (lead[field], lead["id"])


def _ms(timestamp: str) -> int:
    from datetime import datetime

    return int(datetime.fromisoformat(timestamp).timestamp() * 1000)


@pytest.mark.parametrize("sort", ["created_at", "-created_at", "updated_at", "-updated_at"])
def test_cursor_scan_returns_every_lead_once_in_sort_order(
        http: requests.Session, sandbox: Sandbox, sort: str) -> None:
    rows = scan_cursor(http, sandbox, sort=sort)
    expected = sorted(live(sandbox), key=sort_key(sort))
    assert [r["id"] for r in rows] == [e["id"] for e in expected]


def test_page_scan_returns_every_lead_once(http: requests.Session, sandbox: Sandbox) -> None:
    rows = scan_pages(http, sandbox, sort="-updated_at")
    assert [r["id"] for r in rows] == [e["id"] for e in
                                       sorted(live(sandbox), key=sort_key("-updated_at"))]


def test_synthetic_data_shares_updated_at_milliseconds(sandbox: Sandbox) -> None:
    stamps = [lead["updated_at"] for lead in sandbox.export_leads()]
    assert all(stamp.endswith("Z") and len(stamp) == 24 for stamp in stamps)
    assert len(stamps) - len(set(stamps)) > 50


def test_ties_on_updated_at_are_broken_by_id_across_pages(
        http: requests.Session, sandbox: Sandbox) -> None:
    rows = scan_cursor(http, sandbox, sort="updated_at")
    pairs = [(r["updated_at"], r["id"]) for r in rows]
    assert pairs == sorted(pairs)
    # descending too, ties still broken by id ascending (the contract)
    rows = scan_cursor(http, sandbox, sort="-updated_at")
    pairs = [(r["updated_at"], r["id"]) for r in rows]
    by_id = sorted(pairs, key=lambda pair: pair[1])
    assert pairs == sorted(by_id, key=lambda pair: pair[0], reverse=True)
    assert len(pairs) - len({stamp for stamp, _ in pairs}) > 50, "no ties were tested"


def test_meta_shape_in_page_and_cursor_mode(http: requests.Session, sandbox: Sandbox) -> None:
    first = get(http, sandbox, "/leads").json()
    assert first["meta"]["page"] == 1 and first["meta"]["per_page"] == 20
    assert len(first["data"]) == 20 and first["meta"]["total"] == len(live(sandbox))
    second = get(http, sandbox, "/leads", cursor=first["meta"]["next_cursor"]).json()
    assert second["meta"]["page"] is None and second["meta"]["per_page"] == 20
    assert second["data"][0]["id"] == get(http, sandbox, "/leads", page=2).json()["data"][0]["id"]
    last = get(http, sandbox, "/leads", page=10, per_page=100).json()
    assert last["meta"]["next_cursor"] is None


def test_page_only_deployment_has_no_next_cursor_key(make_sandbox: Callable[..., Sandbox]) -> None:
    box = make_sandbox(cursor=False, rate_limit=0)
    headers = {"X-API-Key": box.read_write_key}
    body = requests.get(f"{box.base_url}/leads", headers=headers, timeout=10).json()
    assert "next_cursor" not in body["meta"]
    assert "next_cursor" not in requests.get(f"{box.base_url}/pipelines", headers=headers,
                                             timeout=10).json()["meta"]
    refused = requests.get(f"{box.base_url}/leads", params={"cursor": "abc"}, headers=headers,
                           timeout=10)
    assert refused.status_code == 400


def test_cursor_carries_its_scan(http: requests.Session, sandbox: Sandbox) -> None:
    first = get(http, sandbox, "/leads", status="qualified", sort="-created_at").json()
    cursor = first["meta"]["next_cursor"]
    same = get(http, sandbox, "/leads", cursor=cursor, status="qualified", sort="-created_at")
    omitted = get(http, sandbox, "/leads", cursor=cursor)
    assert same.status_code == omitted.status_code == 200
    assert same.json()["data"] == omitted.json()["data"]
    assert all(r["status"] == "qualified" for r in omitted.json()["data"])
    for different in ({"status": "new"}, {"sort": "created_at"}, {"tag": "vip"},
                      {"include_deleted": "true"}):
        response = get(http, sandbox, "/leads", cursor=cursor, **different)
        assert response.status_code == 400, different
        assert response.json()["error"]["code"] == "invalid_request"
    for bad in ("garbage", "eyJ4IjoxfQ"):
        assert get(http, sandbox, "/leads", cursor=bad).status_code == 400
    assert get(http, sandbox, "/leads", cursor=cursor, page=2).status_code == 400


@pytest.mark.parametrize("value", ["101", "0", "-1", "ten"])
def test_bad_per_page_is_422_with_details(http: requests.Session, sandbox: Sandbox,
                                          value: str) -> None:
    response = get(http, sandbox, "/leads", per_page=value)
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["field"] == "per_page"


@pytest.mark.parametrize(("params", "field"), [
    ({"page": "0"}, "page"), ({"sort": "name"}, "sort"), ({"status": "won"}, "status"),
    ({"updated_since": "yesterday"}, "updated_since"), ({"include_deleted": "maybe"},
                                                        "include_deleted")])
def test_bad_query_values_are_422(http: requests.Session, sandbox: Sandbox,
                                  params: dict[str, str], field: str) -> None:
    response = get(http, sandbox, "/leads", **params)
    assert response.status_code == 422
    [detail] = response.json()["error"]["details"]
    assert detail["field"] == field
    assert set(detail) == {"field", "issue"} and detail["issue"] and detail["issue"] != field


@pytest.mark.parametrize("field", ["status", "source", "tag", "pipeline_id", "stage_id"])
def test_equality_filters(http: requests.Session, sandbox: Sandbox, field: str) -> None:
    leads = live(sandbox)
    column = "tags" if field == "tag" else field
    value = next(lead[column] for lead in leads if lead[column])
    value = value[0] if isinstance(value, list) else value
    rows = scan_cursor(http, sandbox, **{field: value})

    def matches(lead: dict[str, Any]) -> bool:
        return value in lead[column] if field == "tag" else lead[column] == value

    expected = {lead["id"] for lead in leads if matches(lead)}
    assert expected and {r["id"] for r in rows} == expected


def test_time_filters_bounds(http: requests.Session, sandbox: Sandbox) -> None:
    leads = sorted(live(sandbox), key=lambda lead: lead["updated_at"])
    pivot = leads[len(leads) // 2]["updated_at"]
    since = {r["id"] for r in scan_cursor(http, sandbox, updated_since=pivot)}
    before = {r["id"] for r in scan_cursor(http, sandbox, updated_before=pivot)}
    assert since == {lead["id"] for lead in leads if lead["updated_at"] >= pivot}
    assert before == {lead["id"] for lead in leads if lead["updated_at"] < pivot}
    assert not since & before and len(since | before) == len(leads)
    created = leads[10]["created_at"]
    rows = scan_cursor(http, sandbox, created_since=created)
    assert {r["id"] for r in rows} == {lead["id"] for lead in leads if lead["created_at"] >= created}


def test_include_deleted_returns_soft_deleted(http: requests.Session, sandbox: Sandbox) -> None:
    everything = scan_cursor(http, sandbox, include_deleted="true")
    deleted = [r for r in everything if r["deleted_at"]]
    assert len(everything) == len(sandbox.export_leads())
    assert deleted and all(r["updated_at"] == r["deleted_at"] for r in deleted)
    visible = {r["id"] for r in scan_cursor(http, sandbox)}
    assert not visible & {r["id"] for r in deleted}


def test_pipelines_page_and_cursor(make_sandbox: Callable[..., Sandbox]) -> None:
    box = make_sandbox(pipelines=5, rate_limit=0)
    headers = {"X-API-Key": box.read_write_key}
    first = requests.get(f"{box.base_url}/pipelines", params={"per_page": 2}, headers=headers,
                         timeout=10).json()
    ids = [p["id"] for p in first["data"]]
    cursor = first["meta"]["next_cursor"]
    while cursor:
        body = requests.get(f"{box.base_url}/pipelines", params={"per_page": 2, "cursor": cursor},
                            headers=headers, timeout=10).json()
        ids += [p["id"] for p in body["data"]]
        cursor = body["meta"]["next_cursor"]
    assert len(ids) == len(set(ids)) == first["meta"]["total"] == 5
    stages = first["data"][0]["stages"]
    assert 3 <= len(stages) <= 6 and [s["position"] for s in stages] == list(
        range(1, len(stages) + 1))


def test_same_seed_same_data_other_seed_different() -> None:
    config = SandboxConfig(leads=200, seed=5)
    first, second = Sandbox(config).export_leads(), Sandbox(config).export_leads()
    assert first == second
    assert Sandbox(SandboxConfig(leads=200, seed=6)).export_leads() != first


def test_synthetic_data_variety(sandbox: Sandbox) -> None:
    leads = sandbox.export_leads()
    assert {lead["status"] for lead in leads} == {"new", "contacted", "qualified", "converted",
                                                  "lost"}
    assert "other" in {lead["source"] for lead in leads}
    assert any(not lead["name"].isascii() for lead in leads)
    assert any(lead["phone"] is None for lead in leads)
    assert any(lead["score"] is None for lead in leads)
    assert any(lead["pipeline_id"] is None for lead in leads)
    assert any(not lead["tags"] for lead in leads) and max(len(x["tags"]) for x in leads) == 4
    types: dict[str, set[type]] = {}
    for lead in leads:
        for key, value in lead["custom_fields"].items():
            types.setdefault(key, set()).add(type(value))
    mixed = {key for key, kinds in types.items() if len(kinds) > 1}
    assert mixed == {"external_ref", "opted_in"}  # one key, several JSON types
    assert types["external_ref"] == {dict, list, bool, int, float, str}
    assert types["opted_in"] == {bool, int}
    assert {dict, list, bool, int, float, str} <= {next(iter(k)) for k in types.values()
                                                   if len(k) == 1}
    # values real CRMs hold: blanks, unicode edge cases, very long text
    texts = [value for lead in leads for value in lead["custom_fields"].values()
             if isinstance(value, str)] + [lead["company"] for lead in leads if lead["company"]]
    assert "" in texts and " " in texts and "" in {lead["company"] for lead in leads}
    assert any("\u202e" in text for text in texts) and any("\x07" in text for text in texts)
    assert any("\u0301" in text for text in texts) and any("👍🏽" in text for text in texts)
    assert max(map(len, texts)) >= 60_000
