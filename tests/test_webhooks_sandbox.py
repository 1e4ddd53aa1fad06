"""The sandbox delivers real signed webhooks to a running receiver, beside `leadrat load` runs
into the same dataset; the warehouse ends equal to the sandbox's own export, also after the
receiver was killed at one of dlt's commit instants of a flush and restarted."""

from __future__ import annotations

import datetime as dt
import json
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from dlt_kills import (
    INSTANTS,
    JOB_COMMITTED,
    KILLING,
    completed_loads,
    kill_environment,
    packages,
)
from warehouse import Warehouse, assert_equal_to_sandbox
from webhook_receiver import Receiver, lead_event, sign

from leadrat_source.sandbox import Sandbox
from leadrat_source.timestamps import parse_timestamp

SECRET = "whsec_sandbox_to_receiver"
#: the receiver's own pipeline (`leadrat_webhooks_<profile>_<dataset>`)
RECEIVER_PIPELINE = "leadrat_webhooks_duckdb_leadrat"


@dataclass
class LeadsExcept:
    """The sandbox's export without some leads."""

    server: Sandbox
    excluded: frozenset[str]

    def export_leads(self) -> list[dict[str, Any]]:
        return [lead for lead in self.server.export_leads() if lead["id"] not in self.excluded]


@dataclass
class SqlWarehouse(Warehouse):
    """Reads every column (also those only the receiver's schema knows) with plain SQL."""

    excluded: frozenset[str] = frozenset()

    def rows(self, table: str) -> list[dict[str, Any]]:
        with self.pipeline().sql_client() as client, client.execute_query(
                f"SELECT * FROM {client.make_qualified_table_name(table)}") as cursor:
            names = [column[0] for column in cursor.description]
            rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
        return [row for row in rows if row.get("lead_id", row.get("id")) not in self.excluded]

    def without(self, leads: frozenset[str]) -> SqlWarehouse:
        """This warehouse, compared without `leads` (on both sides)."""
        return replace(self, server=LeadsExcept(self.server, leads), excluded=leads)


def same_millisecond_leads(server: Sandbox, warehouse: SqlWarehouse) -> frozenset[str]:
    """Leads whose last change came as several events with the same `updated_at` (the
    sandbox's tag clearing removes tags one by one within a millisecond): the contract gives
    those events no order, so the receiver picks by event id and the next poll settles it.
    The events are read from `lead_events` only to find those leads, not as the oracle."""
    final = {lead["id"]: lead["updated_at"] for lead in server.export_leads()}
    seen: dict[tuple[str, str], int] = {}
    for row in warehouse.rows("lead_events"):
        lead = json.loads(row["payload"])["data"]["lead"]
        key = (lead["id"], lead["updated_at"])
        seen[key] = seen.get(key, 0) + 1
    return frozenset(lead_id for (lead_id, updated_at), count in seen.items()
                     if count > 1 and parse_timestamp(updated_at) == parse_timestamp(
                         final[lead_id]))


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def target(request: pytest.FixtureRequest, tmp_path: Path,
           monkeypatch: pytest.MonkeyPatch) -> tuple[str, str, dict[str, str]]:
    """(destination profile, dataset, environment of the receiver) of one test."""
    if request.param == "duckdb":
        return "duckdb", "leadrat", {
            "DESTINATION__DUCKDB__CREDENTIALS": str(tmp_path / "warehouse.duckdb")}
    credentials = request.getfixturevalue("postgres_url")
    monkeypatch.setenv("DESTINATION__POSTGRES__CREDENTIALS", credentials)
    return "postgres", request.getfixturevalue("postgres_schema"), {
        "DESTINATION__POSTGRES__CREDENTIALS": credentials}


@pytest.fixture
def receiver(tmp_path: Path, target: tuple[str, str, dict[str, str]]) -> Any:
    destination, dataset, env = target
    with Receiver(tmp_path / "receiver", SECRET, env,
                  args=["--destination", destination, "--dataset", dataset]) as running:
        yield running


def start(make_sandbox: Callable[..., Sandbox], make_warehouse: Callable[..., Any],
          receiver: Receiver, target: tuple[str, str, dict[str, str]], leads: int = 300
          ) -> tuple[Sandbox, SqlWarehouse]:
    server = make_sandbox(leads=leads, rate_limit=0, webhook_url=receiver.url,
                          webhook_secret=SECRET)
    loader = make_warehouse(server, destination=target[0], dataset=target[1])
    return server, SqlWarehouse(server, loader.client, loader.pipelines_dir, target[0], target[1])


def churn(server: Sandbox, changes: int) -> None:
    """`changes` changes, each in a millisecond of its own: two changes of one lead within
    the same millisecond share an `updated_at`, and then their events' order is unknown
    (lead_order.py; a poll settles it). The test checks the unambiguous case."""
    for _ in range(changes):
        server.churn(1)
        time.sleep(0.002)


def all_delivered(server: Sandbox) -> int:
    """Until the sandbox has delivered every event it emitted; returns how many."""
    deadline = time.monotonic() + 60
    previous = -1
    while True:
        webhooks = server.stats()["webhooks"]
        if webhooks["pending"] == 0 and webhooks["delivered"] == previous:
            break  # nothing queued, nothing in flight since the last look
        previous = webhooks["delivered"]
        assert time.monotonic() < deadline, webhooks
        time.sleep(0.3)
    return previous


def wait_delivered(server: Sandbox, receiver: Receiver) -> int:
    """Until every event the sandbox emitted is delivered and loaded; returns how many."""
    delivered = all_delivered(server)
    metrics = receiver.wait_flushed()
    assert metrics["leadrat_webhooks_received_total"] == delivered
    return delivered


def test_churn_delivered_by_webhooks_beside_loads_ends_equal_to_the_sandbox(
        make_sandbox: Callable[..., Sandbox], make_warehouse: Callable[..., Any],
        receiver: Receiver, target: tuple[str, str, dict[str, str]]) -> None:
    server, warehouse = start(make_sandbox, make_warehouse, receiver, target)
    warehouse.load()
    churn(server, 120)  # creates, updates, stage moves, tag changes, deletes: an event each
    warehouse.load()  # a scheduled load while those events are being flushed
    churn(server, 120)  # only the webhooks carry these
    delivered = wait_delivered(server, receiver)
    ambiguous = same_millisecond_leads(server, warehouse)
    assert len(ambiguous) <= 12, ambiguous  # the check below covers nearly every lead
    assert_equal_to_sandbox(warehouse.without(ambiguous))
    event_rows = warehouse.rows("lead_events")
    assert len(event_rows) == len({row["id"] for row in event_rows}) == delivered >= 240
    assert server.stats()["webhooks"]["failed_attempts"] == 0
    warehouse.load()  # the next scheduled load settles the ties and changes nothing else
    assert_equal_to_sandbox(warehouse)


def test_a_poll_snapshot_never_overwrites_a_newer_webhook_state_nor_the_reverse(
        make_sandbox: Callable[..., Sandbox], make_warehouse: Callable[..., Any],
        receiver: Receiver, target: tuple[str, str, dict[str, str]]) -> None:
    server, warehouse = start(make_sandbox, make_warehouse, receiver, target, leads=50)
    warehouse.load()
    exported = {lead["id"]: lead for lead in server.export_leads()}
    newer_id, older_id = sorted(exported)[:2]
    # a state newer than anything the API serves (as if the poll's read came first)
    newer = {**exported[newer_id], "updated_at": "2099-01-01T00:00:00Z", "score": 77,
             "tags": ["from-webhook"]}
    # a state older than what the poll stored
    older = {**exported[older_id], "updated_at": "2001-01-01T00:00:00Z", "score": 3,
             "tags": ["stale"]}
    for lead in (newer, older):
        body = lead_event(lead)
        assert receiver.deliver(body, sign(SECRET, body)).status_code == 200
    receiver.wait_flushed()
    warehouse.load(since=dt.datetime(2000, 1, 1, tzinfo=dt.UTC))  # re-reads every lead's (older) snapshot
    rows = {row["id"]: row for row in warehouse.rows("leads")}
    assert rows[newer_id]["score"] == 77
    assert {(row["lead_id"], row["tag"]) for row in warehouse.rows("lead_tags")
            if row["lead_id"] == newer_id} == {(newer_id, "from-webhook")}
    assert rows[older_id]["score"] == exported[older_id]["score"]
    stored_tags = {row["tag"] for row in warehouse.rows("lead_tags")
                   if row["lead_id"] == older_id}
    assert stored_tags == set(exported[older_id]["tags"])


def free_port() -> int:
    """A port nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.mark.parametrize("instant", [*INSTANTS, JOB_COMMITTED + "lead_events"])
def test_receiver_killed_at_a_commit_instant_of_its_first_flush_is_completed_by_its_restart(
        instant: str, make_sandbox: Callable[..., Sandbox], make_warehouse: Callable[..., Any],
        tmp_path: Path) -> None:
    """The receiver (server and flusher) SIGKILLed at one of dlt's commit instants of the
    first flush of its pipeline, where the package is committed but the pipeline does not
    know it yet, or is committed twice, or where a load job's rows are in the warehouse
    but dlt has not recorded it (the restart runs that job again). Restarted on the same address (where the sandbox
    retries what it did not see acknowledged), the receiver loads that very package, and
    every event the sandbox delivered lands once."""
    warehouse_file = tmp_path / "warehouse.duckdb"
    target = ("duckdb", "leadrat", {"DESTINATION__DUCKDB__CREDENTIALS": str(warehouse_file)})
    workdir, port = tmp_path / "receiver", free_port()
    with Receiver(workdir, SECRET, {**target[2], **kill_environment(instant)},
                  flush_seconds=1.0, port=port, leadrat=KILLING) as killed:
        server, warehouse = start(make_sandbox, make_warehouse, killed, target)
        warehouse.load()
        churn(server, 60)
        assert killed.process is not None
        try:
            code = killed.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pytest.fail(f"no flush reached {instant}; nothing was tested")
        assert code == -signal.SIGKILL, killed.log.read_text()[-3000:]
    left = packages(workdir / "dlt" / "pipelines" / RECEIVER_PIPELINE).pending
    assert len(left) == 1, f"the kill left {sorted(left)}"

    with Receiver(workdir, SECRET, target[2], port=port) as restarted:
        delivered = all_delivered(server)
        restarted.wait_flushed(timeout=30)
    assert left <= completed_loads(warehouse_file), (
        "the restarted receiver did not load the package the killed flush left")
    ambiguous = same_millisecond_leads(server, warehouse)
    assert len(ambiguous) <= 6, ambiguous
    assert_equal_to_sandbox(warehouse.without(ambiguous))
    event_rows = warehouse.rows("lead_events")
    assert len(event_rows) == len({row["id"] for row in event_rows}) == delivered >= 60


def landed_body(warehouse: SqlWarehouse, lead_id: str, updated_at: str) -> bytes:
    """The exact body the sandbox delivered for `lead_id`'s change at `updated_at`, as the
    receiver stored it in `lead_events` (read only to send the same event again)."""
    bodies = [row["payload"].encode() for row in warehouse.rows("lead_events")
              if row["lead_id"] == lead_id]
    return next(body for body in bodies if json.loads(body)["data"]["lead"]["updated_at"]
                == updated_at)


def test_a_late_event_never_brings_back_a_hard_deleted_lead(
        make_sandbox: Callable[..., Sandbox], make_warehouse: Callable[..., Any],
        make_client: Callable[..., Any], target: tuple[str, str, dict[str, str]],
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """delete_mode = hard: a lead's update is delivered and landed, then the lead is deleted
    and a poll removes its row; a late delivery of the older update (here to a second
    receiver behind the same load balancer, with a journal of its own, so it is new there)
    must not put the lead back, neither before nor after the next poll."""
    monkeypatch.setenv("SOURCES__LEADRAT__DELETE_MODE", "hard")
    destination, dataset, env = target
    hard = {**env, "SOURCES__LEADRAT__DELETE_MODE": "hard"}
    args = ["--destination", destination, "--dataset", dataset]
    with Receiver(tmp_path / "first", SECRET, hard, args=args) as first, \
            Receiver(tmp_path / "second", SECRET, hard, args=args) as second:
        server, warehouse = start(make_sandbox, make_warehouse, first, target, leads=50)
        warehouse.load()
        client = make_client(server)
        lead_id = next(lead["id"] for lead in server.export_leads() if not lead["deleted_at"])
        updated = client.leads.update(lead_id, score=42, company="Late Retry Ltd")
        wait_delivered(server, first)
        assert {row["id"]: row["score"] for row in warehouse.rows("leads")}[lead_id] == 42
        client.leads.delete(lead_id)
        wait_delivered(server, first)
        warehouse.load()  # the poll reads the deletion and removes the row too
        assert_equal_to_sandbox(warehouse, delete_mode="hard")

        body = landed_body(warehouse, lead_id, updated["updated_at"])
        answer = second.deliver(body, sign(SECRET, body))
        assert answer.status_code == 200 and not answer.json().get("duplicate"), answer.text
        assert second.wait_flushed()["leadrat_webhooks_flushed_total"] == 1
        assert_equal_to_sandbox(warehouse, delete_mode="hard")
        warehouse.load()  # the next poll does not read the lead again (it is older)
        assert_equal_to_sandbox(warehouse, delete_mode="hard")
