"""Injected faults, churn, signed webhooks, and the sandbox as a child process."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests

from leadrat_source.sandbox import Sandbox, SandboxConfig

RATE_HEADERS = {"X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"}


def get(box: Any, path: str = "/leads", **params: Any) -> requests.Response:
    return requests.get(f"{box.base_url}{path}", params=params, timeout=10,
                        headers={"X-API-Key": box.read_write_key})


@pytest.fixture
def box(make_sandbox: Callable[..., Sandbox]) -> Sandbox:
    return make_sandbox(rate_limit=0)


def test_error_rate_gives_500_envelope_with_headers(box: Sandbox) -> None:
    box.set_faults(error_rate=1.0)
    response = get(box)
    assert response.status_code == 500 and response.json()["error"]["code"] == "server_error"
    assert RATE_HEADERS <= set(response.headers)
    assert requests.get(f"{box.base_url}/_sandbox/stats", timeout=5).status_code == 200
    assert box.stats()["faults_injected"] == 1


def test_gateway_errors_are_html_without_rate_headers(box: Sandbox) -> None:
    box.set_faults(gateway_error_rate=1.0)
    statuses = set()
    for _ in range(12):
        response = get(box)
        statuses.add(response.status_code)
        assert response.headers["Content-Type"].startswith("text/html")
        assert not RATE_HEADERS & set(response.headers)
    assert statuses <= {502, 503, 504} and len(statuses) > 1


def test_spurious_429_has_retry_after_one(box: Sandbox) -> None:
    box.set_faults(spurious_429_rate=1.0)
    response = get(box)
    assert response.status_code == 429 and response.headers["Retry-After"] == "1"
    assert int(response.headers["X-RateLimit-Remaining"]) > 0


def test_drop_and_truncate_break_the_connection(box: Sandbox) -> None:
    box.set_faults(drop_rate=1.0)
    with pytest.raises(requests.ConnectionError):
        get(box)
    box.set_faults(drop_rate=0.0, truncate_rate=1.0)
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        get(box, per_page=100).json()
    box.set_faults(truncate_rate=0.0)
    assert get(box).status_code == 200


def test_latency_delays_answers(box: Sandbox) -> None:
    box.set_faults(latency_ms=300)
    started = time.monotonic()
    assert get(box).status_code == 200
    assert time.monotonic() - started >= 0.3


def test_repeat_cursor_gives_back_the_cursor_asked_with(box: Sandbox) -> None:
    """Pages asked for by cursor name that cursor as the next one, the last page too; the
    page itself is the honest one, and a first page (no cursor asked with) is untouched."""
    first = get(box, per_page=100).json()["meta"]["next_cursor"]
    second = get(box, cursor=first, per_page=100).json()
    last_cursor = second["meta"]["next_cursor"]
    assert get(box, cursor=last_cursor, per_page=100).json()["meta"]["next_cursor"] is None
    box.set_faults(repeat_cursor_rate=1.0)
    assert get(box, per_page=100).json()["meta"]["next_cursor"] == first
    repeated = get(box, cursor=first, per_page=100).json()
    assert repeated["meta"]["next_cursor"] == first and repeated["data"] == second["data"]
    assert get(box, cursor=last_cursor, per_page=100).json()["meta"]["next_cursor"] == last_cursor
    assert box.stats()["faults_injected"] == 2
    box.set_faults(repeat_cursor_rate=0.0)
    assert get(box, cursor=first, per_page=100).json() == second


def test_cursor_cycle_names_the_scans_first_cursor_on_its_last_page(box: Sandbox) -> None:
    """The last page of a scan asked for by cursor names the scan's first cursor instead of
    none (the scan starts over); its data and every other page are the honest ones, and
    with the fault off again the scan ends."""
    honest = [get(box, per_page=100).json()]
    while cursor := honest[-1]["meta"]["next_cursor"]:
        honest.append(get(box, cursor=cursor, per_page=100).json())
    first, second = honest[0]["meta"]["next_cursor"], honest[1]["meta"]["next_cursor"]
    assert len(honest) == 3
    box.set_faults(cursor_cycle_rate=1.0)
    assert get(box, per_page=100).json() == honest[0]
    assert get(box, cursor=first, per_page=100).json() == honest[1]
    last = get(box, cursor=second, per_page=100).json()
    assert last["meta"]["next_cursor"] == first and last["data"] == honest[2]["data"]
    assert box.stats()["faults_injected"] == 1
    box.set_faults(cursor_cycle_rate=0.0)
    assert get(box, cursor=second, per_page=100).json() == honest[2]


def test_fail_next_is_scripted_by_path(box: Sandbox) -> None:
    rules = [{"status": 503, "count": 2, "path_prefix": "/leads"},
             {"status": 429, "count": 1, "path_prefix": "/pipelines"}]
    response = requests.post(f"{box.base_url}/_sandbox/faults", json={"fail_next": rules},
                             timeout=5)
    assert response.status_code == 200
    assert get(box, "/pipelines").status_code == 429
    assert [get(box).status_code for _ in range(3)] == [503, 503, 200]
    assert get(box, "/pipelines").status_code == 200


def test_random_faults_are_reproducible(make_sandbox: Callable[..., Sandbox]) -> None:
    outcomes = []
    for _ in range(2):
        box = make_sandbox(rate_limit=0, seed=3)
        box.set_faults(error_rate=0.5)
        outcomes.append([get(box, "/pipelines").status_code for _ in range(20)])
    assert outcomes[0] == outcomes[1] and {200, 500} == set(outcomes[0])


def test_drift_updates_leads_during_a_scan(box: Sandbox) -> None:
    started = get(box).json()["data"][0]["created_at"]
    before = {lead["id"]: lead["updated_at"] for lead in box.export_leads()}
    box.set_faults(drift_rate=1.0)
    get(box, created_since=started)
    after = {lead["id"]: lead["updated_at"] for lead in box.export_leads()}
    assert 1 <= sum(before[i] != after[i] for i in before) <= 3


def test_churn_changes_are_visible_by_updated_since(box: Sandbox) -> None:
    mark = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(time.time() - 1))
    before = {lead["id"]: lead for lead in box.export_leads()}
    changes = box.churn(60)
    assert len(changes) == 60
    kinds = {change["kind"] for change in changes}
    assert {"create", "update", "delete", "move"} <= kinds
    changed = {lead["id"] for lead in box.export_leads()
               if before.get(lead["id"]) != lead}
    assert {c["lead_id"] for c in changes} <= changed
    seen: set[str] = set()
    body = get(box, updated_since=mark, include_deleted="true", per_page=100).json()
    while True:
        seen |= {lead["id"] for lead in body["data"]}
        if not body["meta"]["next_cursor"]:
            break
        body = get(box, cursor=body["meta"]["next_cursor"], per_page=100).json()
    assert seen == changed
    # an update may add a custom field no lead had (schema evolution downstream)
    added = set().union(*(lead["custom_fields"] for lead in box.export_leads()))
    assert any(key.startswith("churn_field_") for key in added)


def test_background_churn(make_sandbox: Callable[..., Sandbox]) -> None:
    """1200 changes a minute: 20 a second, made by the sandbox on its own."""
    box = make_sandbox(rate_limit=0, churn_per_minute=1200)
    before = {lead["id"]: lead["updated_at"] for lead in box.export_leads()}
    started = time.monotonic()
    changed = 0
    while changed < 10 and time.monotonic() - started < 5:
        time.sleep(0.02)
        now = box.export_leads()
        changed = sum(before.get(lead["id"]) != lead["updated_at"] for lead in now)
    elapsed = time.monotonic() - started
    assert changed >= 10, f"{changed} leads changed in {elapsed:.1f} s"
    assert elapsed >= 0.3, f"10 changes in {elapsed:.2f} s: faster than 20 a second"


class Receiver:
    """A loopback webhook endpoint that records (headers, raw body) and can fail first."""

    def __init__(self, fail_first: int = 0):
        self.events: list[tuple[dict[str, str], bytes]] = []
        self.fail_first = fail_first
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if receiver.fail_first > 0:
                    receiver.fail_first -= 1
                    self.send_response(500)
                else:
                    receiver.events.append((dict(self.headers), body))
                    self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, count: int, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while len(self.events) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(self.events) >= count


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver(fail_first=1)
    yield server
    server.server.shutdown()


def test_webhooks_are_signed_and_retried(make_sandbox: Callable[..., Sandbox],
                                         receiver: Receiver) -> None:
    secret = "whsec_test_secret"
    box = make_sandbox(rate_limit=0, webhook_url=receiver.url, webhook_secret=secret)
    headers = {"X-API-Key": box.read_write_key}
    lead = requests.post(f"{box.base_url}/leads", headers=headers, timeout=10,
                         json={"name": "José Ñúñez", "email": "jose@example.com"}).json()["data"]
    requests.put(f"{box.base_url}/leads/{lead['id']}", headers=headers, timeout=10,
                 json={"score": 12})
    pipeline = box.store.pipelines[0]
    requests.post(f"{box.base_url}/pipelines/{pipeline.id}/leads", headers=headers, timeout=10,
                  json={"lead_id": lead["id"], "stage_id": pipeline.stages[1].id})
    receiver.wait_for(3)  # the first attempt failed with 500 and was retried
    events = {}
    for sent_headers, body in receiver.events:
        stamp, v1 = sent_headers["LeadRat-Signature"].split(",")
        t = stamp.removeprefix("t=")
        expected = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(v1.removeprefix("v1="), expected)
        assert abs(int(t) - time.time()) < 60
        event = json.loads(body)
        assert event["id"].startswith("evt_")
        events[event["type"]] = event
    assert set(events) == {"lead.created", "lead.updated", "lead.stage_changed"}
    assert events["lead.created"]["data"]["previous"] is None
    assert events["lead.updated"]["data"]["previous"]["score"] is None
    assert events["lead.updated"]["data"]["lead"]["score"] == 12
    assert events["lead.stage_changed"]["data"]["lead"]["stage_id"] == pipeline.stages[1].id
    assert box.stats()["webhooks"]["failed_attempts"] >= 1


def test_spawned_process_serves_and_admin_works_over_http() -> None:
    config = SandboxConfig(leads=500, seed=9, rate_limit=0, api_key="lr_test_fixed_key")
    with Sandbox.spawn(config) as child:
        assert child.read_write_key == "lr_test_fixed_key"
        assert get(child).status_code == 200
        child.set_faults(error_rate=1.0)
        assert get(child).status_code == 500
        child.set_faults(error_rate=0.0)
        changes = child.churn(5)
        assert len(changes) == 5
        assert child.stats()["by_route"]["GET /leads"] == 2
        created = sum(change["kind"] == "create" for change in changes)
        assert len(child.export_leads()) == 500 + created
        assert child.export_leads()[:3] == Sandbox(config).export_leads()[:3]
    assert child.process is not None and child.process.poll() is not None
