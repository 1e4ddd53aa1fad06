"""Every endpoint of LeadRatClient, over real HTTP against the sandbox."""

from __future__ import annotations

import math
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta

import pytest

from leadrat_source.client import LeadRatClient, Page
from leadrat_source.errors import ConfigurationError, NotFound
from leadrat_source.transport import encode_query


def requests_made(server) -> int:
    return server.stats()["requests"]


def test_list_page_and_get(sandbox, make_client) -> None:
    client = make_client(sandbox)
    page = client.leads.list_page(per_page=5)
    assert isinstance(page, Page)
    assert len(page.items) == 5
    live = [lead for lead in sandbox.export_leads() if not lead.get("deleted_at")]
    assert page.meta["total"] == len(live)
    assert page.next_cursor is not None
    lead = client.leads.get(page.items[0]["id"])
    assert lead == page.items[0]
    status = client.rate_limit
    assert status is not None and status.limit > 0 and status.reset.tzinfo is not None


def test_cursor_scan_returns_every_lead_once(sandbox, make_client) -> None:
    client = make_client(sandbox)
    before = requests_made(sandbox)
    pages = list(client.leads.iter_pages(per_page=100))
    ids = [lead["id"] for page in pages for lead in page.items]
    live = {lead["id"] for lead in sandbox.export_leads() if not lead.get("deleted_at")}
    assert len(ids) == len(set(ids)) == len(live)
    assert set(ids) == live
    assert all(page.page is None for page in pages[1:])  # cursor mode after the first page
    assert requests_made(sandbox) - before == math.ceil(len(live) / 100)


def test_page_mode_when_the_server_has_no_cursors(make_sandbox, make_client) -> None:
    server = make_sandbox(leads=260, cursor=False)
    client = make_client(server)
    live = {lead["id"] for lead in server.export_leads() if not lead.get("deleted_at")}
    pages_needed = math.ceil(len(live) / 100)
    before = requests_made(server)
    pages = list(client.leads.iter_pages(per_page=100))
    ids = [lead["id"] for lead in client.leads.iter(per_page=100)]
    assert [page.page for page in pages] == list(range(1, pages_needed + 1))
    assert all(page.next_cursor is None for page in pages)
    assert len(ids) == len(set(ids)) and set(ids) == live
    # ceil(total / per_page) requests per scan and not one more.
    assert requests_made(server) - before == 2 * pages_needed


def test_filters_are_sent_in_the_contract_format(sandbox, make_client) -> None:
    client = make_client(sandbox)
    since = datetime(2000, 1, 1, tzinfo=UTC)
    leads = list(client.leads.iter(status="new", updated_since=since, sort="-updated_at"))
    assert leads and all(lead["status"] == "new" for lead in leads)
    stamps = [lead["updated_at"] for lead in leads]
    assert stamps == sorted(stamps, reverse=True)
    assert list(client.leads.iter(updated_since=datetime.now(UTC) + timedelta(days=1))) == []


def test_query_encoding() -> None:
    moment = datetime(2026, 4, 17, 10, 30, 0, 123456, tzinfo=UTC)
    assert encode_query(
        {"updated_since": moment, "include_deleted": True, "tag": None, "from": date(2026, 4, 1)}
    ) == {
        "updated_since": "2026-04-17T10:30:00.123Z",
        "include_deleted": "true",
        "from": "2026-04-01",
    }


def test_lead_writes(make_sandbox, make_client) -> None:
    server = make_sandbox()
    client = make_client(server)
    email = f"{uuid.uuid4().hex[:8]}@example.com"
    lead = client.leads.create(name="Test Person", email=email, score=10)
    assert lead["id"].startswith("lead_") and lead["email"] == email

    updated = client.leads.update(lead["id"], score=80, custom_fields={"tier": "gold"})
    assert updated["score"] == 80 and updated["name"] == "Test Person"
    assert updated["custom_fields"]["tier"] == "gold"

    tagged = client.leads.add_tags(lead["id"], ["vip", "hot lead"])
    assert {"vip", "hot lead"} <= set(tagged["tags"])
    untagged = client.leads.remove_tag(lead["id"], "hot lead")
    assert "hot lead" not in untagged["tags"] and "vip" in untagged["tags"]

    assert client.leads.delete(lead["id"]) is None
    with pytest.raises(NotFound):
        client.leads.get(lead["id"])
    deleted = [x for x in client.leads.iter(include_deleted=True) if x["id"] == lead["id"]]
    assert len(deleted) == 1 and deleted[0]["deleted_at"]


def test_pipelines(make_sandbox, make_client) -> None:
    server = make_sandbox()
    client = make_client(server)
    pipelines = list(client.pipelines.iter())
    assert pipelines and all(p["id"].startswith("pipe_") for p in pipelines)
    assert client.pipelines.list_page(per_page=1).items[0]["id"] == pipelines[0]["id"]
    pipeline = client.pipelines.get(pipelines[0]["id"])
    assert pipeline["stages"]
    stage = pipeline["stages"][-1]
    lead_id = client.leads.list_page(per_page=1).items[0]["id"]
    moved = client.pipelines.move_lead(pipeline["id"], lead_id, stage["id"])
    assert moved["pipeline_id"] == pipeline["id"] and moved["stage_id"] == stage["id"]


def test_analytics(sandbox, make_client) -> None:
    client = make_client(sandbox)
    live = [lead for lead in sandbox.export_leads() if not lead["deleted_at"]]
    summary = client.analytics.summary(date(2000, 1, 1), "2100-12-31")
    assert summary["from"].startswith("2000-01-01") and summary["to"].startswith("2100-12-31")
    assert summary["total_leads"] == len(live) > 0
    sources = client.analytics.sources(date_from=date(2000, 1, 1), date_to="2100-12-31")
    assert {row["source"]: row["leads"] for row in sources} == {
        source: sum(lead["source"] == source for lead in live)
        for source in {lead["source"] for lead in live}}
    pipeline = sandbox.store.pipeline(sandbox.store.pipelines[0].id)
    funnel = client.analytics.funnel("2000-01-01", "2100-12-31", pipeline_id=pipeline["id"])
    assert [(row["pipeline_id"], row["stage_id"], row["leads"]) for row in funnel] == [
        (pipeline["id"], stage["id"], sum(lead["stage_id"] == stage["id"] for lead in live))
        for stage in sorted(pipeline["stages"], key=lambda stage: stage["position"])]
    assert sum(row["leads"] for row in funnel) > 0


def test_bearer_token(sandbox, make_client) -> None:
    client = make_client(sandbox, bearer_token=sandbox.bearer_token)
    assert len(client.leads.list_page(per_page=2).items) == 2


def test_concurrent_use_from_many_threads(sandbox, make_client) -> None:
    client = make_client(sandbox)
    ids = [lead["id"] for lead in client.leads.list_page(per_page=40).items]
    with ThreadPoolExecutor(max_workers=8) as pool:
        leads = list(pool.map(client.leads.get, ids))
    assert [lead["id"] for lead in leads] == ids
    assert client.stats.snapshot().by_status == {200: 41}


@pytest.mark.parametrize(
    "base_url", ["http://api.crm.builder.leadratd.com", "http://10.0.0.5:8080", "ftp://x", "nope"]
)
def test_plain_http_and_bad_urls_are_refused(base_url: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        LeadRatClient(base_url, api_key="lr_test_x")
    if base_url.startswith("http://"):
        assert "https://" in caught.value.message


@pytest.mark.parametrize("host", ["127.0.0.1:8000", "localhost", "[::1]:9"])
def test_loopback_http_is_allowed(host: str) -> None:
    LeadRatClient(f"http://{host}", api_key="lr_test_x").close()


@pytest.mark.parametrize("credentials", [{}, {"api_key": "lr_a", "bearer_token": "tok"}])
def test_exactly_one_credential_is_required(credentials) -> None:
    with pytest.raises(ConfigurationError) as caught:
        LeadRatClient("https://api.example.com", **credentials)
    assert "SOURCES__LEADRAT__API_KEY" in caught.value.message
