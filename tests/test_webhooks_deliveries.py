"""Direct deliveries to a running `leadrat webhooks serve`, signed by hand in the test.

The oracle is the test's own events and hand-computed HMACs; the warehouse is read with
DuckDB directly.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from webhook_receiver import Receiver, a_lead, lead_event, newest_states, read_duckdb, sign

OLD, NEW = "whsec_old_secret", "whsec_new_secret"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("receiver")


@pytest.fixture(scope="module")
def receiver(workdir: Path) -> Iterator[Receiver]:
    """A running receiver (two secrets configured: a rotation in progress) whose warehouse
    already holds one event of its own, so its tables exist whichever tests run, in any
    order: a test that finds none of its events reads real tables ("nothing landed"),
    not a warehouse that no delivery has created yet (read_duckdb waits for those)."""
    env = {"DESTINATION__DUCKDB__CREDENTIALS": str(workdir / "warehouse.duckdb")}
    with Receiver(workdir, f"{OLD}, {NEW}", env) as running:
        lead = lead_id()
        body = lead_event(a_lead(lead, "2026-03-01T00:00:00Z"), event_id=f"evt_first_{lead}")
        assert running.deliver(body, sign(OLD, body)).status_code == 200
        running.wait_flushed()
        assert stored_events(running, lead) == [f"evt_first_{lead}"]
        yield running


def query(receiver: Receiver, sql: str) -> list[tuple[Any, ...]]:
    return read_duckdb(receiver.workdir / "warehouse.duckdb", sql)


def lead_id() -> str:
    return f"lead_{uuid.uuid4().hex[:12]}"


def stored_events(receiver: Receiver, lead: str) -> list[str]:
    return [row[0] for row in query(
        receiver, f"select id from leadrat.lead_events where lead_id = '{lead}' order by id")]


def stored_lead(receiver: Receiver, lead: str) -> tuple[Any, ...] | None:
    rows = query(receiver, "select score, status, updated_at, _leadrat_event_id from "
                 f"leadrat.leads where id = '{lead}'")
    assert len(rows) <= 1, "a lead stored twice"
    return rows[0] if rows else None


def tags_of(receiver: Receiver, lead: str) -> set[str]:
    return {row[0] for row in query(
        receiver, f"select tag from leadrat.lead_tags where lead_id = '{lead}'")}


def test_valid_event_lands_in_all_three_tables(receiver: Receiver) -> None:
    lead = lead_id()
    body = lead_event(a_lead(lead, "2026-03-01T10:00:00.123Z", score=42, tags=["vip", "b2b"],
                             custom_fields={"budget": 1500.5}), "lead.created", "evt_valid1")
    response = receiver.deliver(body, sign(OLD, body))
    assert response.status_code == 200
    assert response.json() == {"received": True, "duplicate": False}
    receiver.wait_flushed()
    assert stored_events(receiver, lead) == ["evt_valid1"]
    score, status, updated_at, event_id = stored_lead(receiver, lead) or ()
    assert (score, status, event_id) == (42, "new", "evt_valid1")
    assert updated_at.isoformat().startswith("2026-03-01T10:00:00.123")
    assert tags_of(receiver, lead) == {"vip", "b2b"}
    payload, event_type = query(receiver, "select payload, type from leadrat.lead_events "
                                "where id = 'evt_valid1'")[0]
    assert payload.encode() == body and event_type == "lead.created"


def test_duplicate_is_acknowledged_and_stored_once(receiver: Receiver) -> None:
    lead = lead_id()
    body = lead_event(a_lead(lead, "2026-03-01T10:00:00Z"), event_id=f"evt_dup_{lead}")
    before = receiver.metrics()
    first = receiver.deliver(body, sign(NEW, body))
    receiver.wait_flushed()
    # a retry after the flush: signed afresh (a new t), same body
    again = receiver.deliver(body, sign(NEW, body, int(time.time()) + 1))
    assert first.json()["duplicate"] is False and again.json()["duplicate"] is True
    assert again.status_code == 200
    metrics = receiver.wait_flushed()
    assert metrics["leadrat_webhooks_duplicates_total"] == before[
        "leadrat_webhooks_duplicates_total"] + 1
    assert stored_events(receiver, lead) == [f"evt_dup_{lead}"]


def test_older_event_arriving_later_never_overwrites_the_newer_state(receiver: Receiver) -> None:
    lead = lead_id()
    newer = lead_event(a_lead(lead, "2026-03-02T00:00:00Z", score=90, tags=["new-tag"]))
    older = lead_event(a_lead(lead, "2026-03-01T00:00:00Z", score=10, tags=["old-tag"]))
    assert receiver.deliver(newer, sign(OLD, newer)).status_code == 200
    receiver.wait_flushed()
    assert receiver.deliver(older, sign(OLD, older)).status_code == 200
    receiver.wait_flushed()
    assert stored_lead(receiver, lead)[:1] == (90,)  # type: ignore[index]
    assert tags_of(receiver, lead) == {"new-tag"}
    assert len(stored_events(receiver, lead)) == 2  # both kept in the event history


def test_same_updated_at_goes_to_the_larger_event_id(receiver: Receiver) -> None:
    for order in (("evt_tie_b", "evt_tie_a"), ("evt_tie_a", "evt_tie_b")):
        lead = lead_id()
        for event_id in order:
            body = lead_event(a_lead(lead, "2026-03-05T00:00:00Z", score=ord(event_id[-1]),
                                     tags=[event_id]), event_id=f"{event_id}_{lead}")
            assert receiver.deliver(body, sign(NEW, body)).status_code == 200
            receiver.wait_flushed()  # separate flushes: the warehouse decides, not the batch
        assert stored_lead(receiver, lead)[0] == ord("b")  # type: ignore[index]
        assert tags_of(receiver, lead) == {"evt_tie_b"}


@pytest.mark.parametrize(("offset", "status"), [
    # 10 s from the 300 s tolerance on each side: the signed timestamp is whole seconds
    # taken before the request, so an offset of 301 could arrive as 300.0 (seen in CI)
    (-310, 401),  # a replay of an old delivery
    (310, 401),  # future-dated
    (-290, 200), (290, 200),  # within the 300 s tolerance, both sides
])
def test_timestamp_tolerance_is_two_sided(receiver: Receiver, offset: int, status: int) -> None:
    lead = lead_id()
    body = lead_event(a_lead(lead, "2026-03-01T00:00:00Z"))
    response = receiver.deliver(body, sign(OLD, body, int(time.time()) + offset))
    assert response.status_code == status, response.text
    receiver.wait_flushed()
    assert len(stored_events(receiver, lead)) == (1 if status == 200 else 0)


def test_signatures_rotation_several_v1_entries_and_foreign_schemes(receiver: Receiver) -> None:
    cases = []
    for name in ("old", "new", "unknown", "two_v1_second_valid", "v0_only", "v0_and_v1",
                 "wrong", "missing", "garbled", "bad_hex", "no_timestamp"):
        lead = lead_id()
        body = lead_event(a_lead(lead, "2026-03-01T00:00:00Z"))
        t = int(time.time())
        valid = sign(NEW, body, t)
        mac = valid.split("v1=")[1]
        signature: str | None = {
            "old": sign(OLD, body, t),
            "new": valid,
            "unknown": sign("whsec_someone_else", body, t),
            "two_v1_second_valid": f"t={t},v1={'0' * 64},v1={mac}",
            "v0_only": f"t={t},v0={mac}",
            "v0_and_v1": f"t={t},v0=not-even-hex,v1={mac}",
            "wrong": f"t={t},v1={'ab' * 32}",
            "missing": None,
            "garbled": "this is not a signature",
            "bad_hex": f"t={t},v1=zz{mac[2:]}",
            "no_timestamp": f"v1={mac}",
        }[name]
        cases.append((name, lead, receiver.deliver(body, signature).status_code))
    statuses = {name: status for name, _, status in cases}
    assert statuses == {
        "old": 200, "new": 200, "unknown": 401, "two_v1_second_valid": 200, "v0_only": 400,
        "v0_and_v1": 200, "wrong": 401, "missing": 400, "garbled": 400, "bad_hex": 400,
        "no_timestamp": 400,
    }
    receiver.wait_flushed()
    for name, lead, status in cases:
        assert len(stored_events(receiver, lead)) == (status == 200), name


def test_signature_covers_the_raw_bytes(receiver: Receiver) -> None:
    """The same JSON re-serialized (other spacing) does not match a signature of the raw body."""
    lead = lead_id()
    body = lead_event(a_lead(lead, "2026-03-01T00:00:00Z"))
    compact = json.dumps(json.loads(body), separators=(",", ":")).encode()
    assert receiver.deliver(compact, sign(OLD, body)).status_code == 401
    assert receiver.deliver(body, sign(OLD, compact)).status_code == 401


def test_malformed_or_unknown_events_are_400_and_not_stored(receiver: Receiver) -> None:
    lead = lead_id()
    bodies = {
        "not json": b'{"id": "evt_x", "type": ',
        "unknown type": lead_event(a_lead(lead, "2026-03-01T00:00:00Z"), "lead.exploded"),
        "no lead": json.dumps({"id": "evt_nolead", "type": "lead.updated",
                               "created_at": "2026-03-01T00:00:00Z", "data": {}}).encode(),
    }
    before = receiver.metrics()
    for name, body in bodies.items():
        response = receiver.deliver(body, sign(OLD, body))
        assert response.status_code == 400, name
        assert response.json()["error"]
    metrics = receiver.wait_flushed()
    assert metrics["leadrat_webhooks_received_total"] == before["leadrat_webhooks_received_total"]
    assert stored_events(receiver, lead) == []


def test_other_methods_and_paths_are_not_deliveries(receiver: Receiver) -> None:
    """Only `POST /webhooks/leadrat` takes the deliveries' short path; the rest is
    Starlette's routing."""
    body = lead_event(a_lead(lead_id(), "2026-03-01T00:00:00Z"))
    headers = {"LeadRat-Signature": sign(OLD, body)}
    assert receiver.http.put(receiver.url, content=body, headers=headers).status_code == 405
    assert receiver.http.get(receiver.url).status_code == 405
    assert receiver.http.post(receiver.url + "x", content=body,
                              headers=headers).status_code == 404
    assert receiver.http.get(f"{receiver.base}/healthz").status_code == 200


def test_oversized_body_is_413_without_reading_it_whole(receiver: Receiver) -> None:
    lead = lead_id()
    body = lead_event(a_lead(lead, "2026-03-01T00:00:00Z",
                             custom_fields={"blob": "x" * (1024 * 1024)}))
    assert receiver.deliver(body, sign(OLD, body)).status_code == 413

    def chunks() -> Iterator[bytes]:  # no Content-Length: refused as the stream passes 1 MiB
        for start in range(0, len(body), 65536):
            yield body[start:start + 65536]

    response = receiver.http.post(receiver.url, content=chunks(),
                                  headers={"LeadRat-Signature": sign(OLD, body)})
    assert response.status_code == 413
    receiver.wait_flushed()
    assert stored_events(receiver, lead) == []


def test_thousand_concurrent_deliveries_all_land_once(receiver: Receiver) -> None:
    prefix = uuid.uuid4().hex[:8]
    bodies = [lead_event(a_lead(f"lead_{prefix}_{n % 250}", f"2026-04-01T00:00:{n % 60:02d}Z",
                                score=n % 100), event_id=f"evt_{prefix}_{n:04d}")
              for n in range(1000)]

    async def deliver_all() -> list[int]:
        limits = httpx.Limits(max_connections=1000)
        async with httpx.AsyncClient(timeout=60, limits=limits) as client:
            responses = await asyncio.gather(*(
                client.post(receiver.url, content=body, headers={
                    "LeadRat-Signature": sign(NEW, body)}) for body in bodies))
        return [response.status_code for response in responses]

    assert asyncio.run(deliver_all()) == [200] * 1000
    receiver.wait_flushed()
    assert query(receiver, "select count(*), count(distinct id) from leadrat.lead_events "
                 f"where id like 'evt_{prefix}_%'") == [(1000, 1000)]
    # each lead holds its newest event: updated_at, then the larger event id
    rows = query(receiver, "select id, _leadrat_event_id, score from leadrat.leads "
                 f"where id like 'lead_{prefix}_%'")
    assert len(rows) == 250
    assert {row[0]: (row[1], row[2]) for row in rows} == newest_states(bodies)
