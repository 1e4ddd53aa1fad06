"""Lead writes, pipelines, analytics, auth and the error envelope, over real HTTP."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import requests

from leadrat_source.contract import ERROR_STATUS
from leadrat_source.sandbox import Sandbox

RATE_HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")


class Api:
    """requests with the sandbox's base URL and a key (tests must not use the project client)."""

    def __init__(self, box: Sandbox, key: str | None = None, bearer: bool = False):
        self.box = box
        self.session = requests.Session()
        if bearer:
            self.session.headers["Authorization"] = f"Bearer {box.bearer_token}"
        else:
            self.session.headers["X-API-Key"] = key or box.read_write_key

    def __call__(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return self.session.request(method, f"{self.box.base_url}{path}", timeout=10, **kwargs)


@pytest.fixture
def box(make_sandbox: Callable[..., Sandbox]) -> Sandbox:
    return make_sandbox(rate_limit=0)


def error_code(response: requests.Response, status: int) -> str:
    assert response.status_code == status, response.text
    assert all(name in response.headers for name in RATE_HEADERS)
    error = response.json()["error"]
    assert ERROR_STATUS[error["code"]] == status and error["message"]
    return str(error["code"])


def test_create_get_update_delete_cycle(box: Sandbox) -> None:
    api = Api(box)
    created = api("POST", "/leads", json={"name": "Zoë Ølsen", "email": "zoe@example.com",
                                          "custom_fields": {"budget": 10.5, "floor": 3}})
    assert created.status_code == 201
    lead = created.json()["data"]
    assert lead["id"].startswith("lead_") and lead["status"] == "new"
    assert lead["created_at"] == lead["updated_at"] and lead["deleted_at"] is None
    assert api("GET", f"/leads/{lead['id']}").json()["data"] == lead

    updated = api("PUT", f"/leads/{lead['id']}",
                  json={"score": 80, "custom_fields": {"floor": None, "vip": True}}).json()["data"]
    assert updated["score"] == 80 and updated["custom_fields"] == {"budget": 10.5, "vip": True}
    assert updated["updated_at"] > lead["updated_at"]
    again = api("PUT", f"/leads/{lead['id']}", json={"score": 80}).json()["data"]
    assert again == updated  # idempotent: nothing changed, updated_at stays

    assert api("DELETE", f"/leads/{lead['id']}").status_code == 204
    error_code(api("GET", f"/leads/{lead['id']}"), 404)
    exported = {x["id"]: x for x in box.export_leads()}[lead["id"]]
    assert exported["deleted_at"] == exported["updated_at"] and exported["deleted_at"]
    seen = api("GET", "/leads", params={"include_deleted": "true",
                                        "updated_since": exported["updated_at"]}).json()["data"]
    assert lead["id"] in {x["id"] for x in seen}
    # The email is free again once its lead is deleted.
    assert api("POST", "/leads", json={"name": "Z", "email": "zoe@example.com"}).status_code == 201


def test_create_errors(box: Sandbox) -> None:
    api = Api(box)
    existing = box.export_leads()[0]["email"]
    assert error_code(api("POST", "/leads", json={"name": "A", "email": existing}), 409)
    missing = api("POST", "/leads", json={"name": "A"})
    assert error_code(missing, 422) and missing.json()["error"]["details"] == [
        {"field": "email", "issue": "required"}]
    for body in ({"name": "A", "email": "not-an-email"}, {"name": "", "email": "a@b.co"},
                 {"name": "A", "email": "a@b.co", "score": 101},
                 {"name": "A", "email": "a@b.co", "status": "won"},
                 {"name": "A", "email": "a@b.co", "id": "lead_x"}):
        assert error_code(api("POST", "/leads", json=body), 422) == "validation_error"
    bad_json = api("POST", "/leads", data=b"{nope", headers={"Content-Type": "application/json"})
    assert error_code(bad_json, 400) == "invalid_request"
    assert error_code(api("POST", "/leads", json=[1]), 400) == "invalid_request"


def test_update_errors(box: Sandbox) -> None:
    api = Api(box)
    first, second = [x for x in box.export_leads() if not x["deleted_at"]][:2]
    path = f"/leads/{first['id']}"
    for body in ({"tags": ["x"]}, {"id": "lead_1"}, {"score": -1}, {"status": "won"},
                 {"score": "high"}):
        response = api("PUT", path, json=body)
        assert error_code(response, 422) and response.json()["error"]["details"][0]["field"]
    assert error_code(api("PUT", path, json={"email": second["email"]}), 409)
    assert error_code(api("PUT", "/leads/lead_missing", json={"score": 1}), 404)
    assert error_code(api("DELETE", "/leads/lead_missing"), 404)


def test_tags_add_and_remove(box: Sandbox) -> None:
    api = Api(box)
    lead = api("POST", "/leads", json={"name": "李娜", "email": "li@example.com"}).json()["data"]
    path = f"/leads/{lead['id']}/tags"
    tagged = api("POST", path, json={"tags": ["vip", "hot", "vip"]}).json()["data"]
    assert tagged["tags"] == ["vip", "hot"]
    same = api("POST", path, json={"tags": ["hot"]}).json()["data"]
    assert same["updated_at"] == tagged["updated_at"]
    ids = {x["id"] for x in api("GET", "/leads", params={"tag": "vip", "per_page": 100,
                                                          "created_since": lead["created_at"]})
           .json()["data"]}
    assert lead["id"] in ids
    removed = api("DELETE", f"{path}/vip").json()["data"]
    assert removed["tags"] == ["hot"]
    assert error_code(api("DELETE", f"{path}/vip"), 404)
    assert error_code(api("POST", path, json={"tags": []}), 422)
    assert error_code(api("POST", path, json={"tags": "vip"}), 422)


def test_pipeline_moves(box: Sandbox) -> None:
    api = Api(box)
    pipelines = api("GET", "/pipelines").json()["data"]
    target, other = pipelines[0], pipelines[1]
    stage = target["stages"][-1]["id"]
    lead = next(x for x in box.export_leads() if not x["deleted_at"] and x["stage_id"] != stage)
    assert api("GET", f"/pipelines/{target['id']}").json()["data"] == target
    moved = api("POST", f"/pipelines/{target['id']}/leads",
                json={"lead_id": lead["id"], "stage_id": stage}).json()["data"]
    assert (moved["pipeline_id"], moved["stage_id"]) == (target["id"], stage)
    assert moved["updated_at"] > lead["updated_at"]
    wrong_stage = other["stages"][0]["id"]
    assert error_code(api("POST", f"/pipelines/{target['id']}/leads",
                          json={"lead_id": lead["id"], "stage_id": wrong_stage}), 422)
    assert error_code(api("POST", "/pipelines/pipe_nope/leads",
                          json={"lead_id": lead["id"], "stage_id": stage}), 404)
    assert error_code(api("POST", f"/pipelines/{target['id']}/leads",
                          json={"lead_id": "lead_nope", "stage_id": stage}), 404)
    assert error_code(api("GET", "/pipelines/pipe_nope"), 404)


def test_analytics_are_computed_from_leads(box: Sandbox) -> None:
    api = Api(box)
    params = {"from": "2000-01-01", "to": "2100-01-01"}
    summary = api("GET", "/analytics/summary", params=params).json()["data"]
    live = [x for x in box.export_leads() if not x["deleted_at"]]
    converted = sum(x["status"] == "converted" for x in live)
    assert summary["total_leads"] == len(live) and summary["converted_leads"] == converted
    assert summary["conversion_rate"] == round(converted / len(live), 4)
    assert (summary["from"], summary["to"]) == ("2000-01-01", "2100-01-01")
    sources = api("GET", "/analytics/sources", params=params).json()["data"]
    assert sum(row["leads"] for row in sources) == len(live)
    pipeline = api("GET", "/pipelines").json()["data"][0]
    funnel = api("GET", "/analytics/funnel", params={**params, "pipeline_id": pipeline["id"]})
    rows = funnel.json()["data"]
    assert [r["stage_id"] for r in rows] == [s["id"] for s in pipeline["stages"]]
    assert sum(r["leads"] for r in rows) == sum(x["pipeline_id"] == pipeline["id"] for x in live)
    assert rows[0]["conversion_rate"] in (0, 1)
    default = api("GET", "/analytics/summary").json()["data"]
    assert default["total_leads"] <= summary["total_leads"]
    assert error_code(api("GET", "/analytics/summary", params={"from": "2026-13-01"}), 422)
    assert error_code(api("GET", "/analytics/summary",
                          params={"from": "2026-02-01", "to": "2026-01-01"}), 422)
    assert error_code(api("GET", "/analytics/funnel", params={"pipeline_id": "pipe_x"}), 404)


def test_auth_keys_and_roles(box: Sandbox) -> None:
    assert box.read_write_key.startswith("lr_test_") and box.read_key.startswith("lr_test_")
    anonymous = requests.get(f"{box.base_url}/leads", timeout=10)
    assert error_code(anonymous, 401) == "unauthorized"
    assert error_code(Api(box, key="lr_test_wrong")("GET", "/leads"), 401)
    assert Api(box, bearer=True)("GET", "/leads").status_code == 200
    reader = Api(box, key=box.read_key)
    assert reader("GET", "/leads").status_code == 200
    lead = box.export_leads()[0]["id"]
    for method, path, body in (("POST", "/leads", {"name": "A", "email": "r@x.io"}),
                               ("PUT", f"/leads/{lead}", {"score": 1}),
                               ("DELETE", f"/leads/{lead}", None)):
        assert error_code(reader(method, path, json=body), 403) == "forbidden"


def test_unknown_route_is_not_found_envelope(box: Sandbox) -> None:
    assert error_code(Api(box)("GET", "/nothing/here"), 404) == "not_found"
    assert error_code(Api(box)("PATCH", "/leads"), 404) == "not_found"
