"""The receiver's promises under kills, shutdowns, a second receiver and a locked warehouse.

Each test runs `leadrat webhooks serve` as a real process and reads the DuckDB file
directly; the expected rows are the events the test sent.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from pathlib import Path

from dlt_kills import KILLING, MERGES_GO, MERGES_HELD, kill_environment
from webhook_receiver import Receiver, a_lead, lead_event, newest_states, sign
from webhook_receiver import read_duckdb as query

SECRET = "whsec_durability"
NEVER = 3_600.0  # a flush interval no test waits for: events stay in the journal


def warehouse_env(path: Path) -> dict[str, str]:
    return {"DESTINATION__DUCKDB__CREDENTIALS": str(path)}


def events(count: int, leads: int) -> list[bytes]:
    prefix = uuid.uuid4().hex[:8]
    return [lead_event(a_lead(f"lead_{prefix}_{n % leads}", f"2026-05-01T00:{n // 60 % 60:02d}:"
                              f"{n % 60:02d}Z", score=n % 100), event_id=f"evt_{prefix}_{n:05d}")
            for n in range(count)]


def assert_landed_once(path: Path, bodies: list[bytes]) -> None:
    prefix = bodies[0].split(b'"id": "evt_')[1][:8].decode()
    assert query(path, "select count(*), count(distinct id) from leadrat.lead_events "
                 f"where id like 'evt_{prefix}_%'") == [(len(bodies), len(bodies))]
    rows = query(path, "select id, _leadrat_event_id, score from leadrat.leads "
                 f"where id like 'lead_{prefix}_%'")
    assert len(rows) == len({row[0] for row in rows}), "a lead stored twice"
    assert {row[0]: (row[1], row[2]) for row in rows} == newest_states(bodies)


def deliver_all(receiver: Receiver, bodies: list[bytes]) -> None:
    for body in bodies:
        response = receiver.deliver(body, sign(SECRET, body))
        assert response.status_code == 200, response.text


def test_sigkill_between_ack_and_flush_loses_nothing_and_duplicates_nothing(
        tmp_path: Path) -> None:
    path = tmp_path / "warehouse.duckdb"
    bodies = events(300, leads=40)
    with Receiver(tmp_path / "r", SECRET, warehouse_env(path), flush_seconds=NEVER) as receiver:
        deliver_all(receiver, bodies)  # every one acknowledged ...
        assert receiver.metrics()["leadrat_webhooks_journal_depth"] == 300
        receiver.kill()  # ... and none in the warehouse yet
    assert not path.exists() or query(
        path, "select count(*) from information_schema.tables where table_name = 'lead_events'"
    ) == [(0,)]
    with Receiver(tmp_path / "r", SECRET, warehouse_env(path)) as restarted:
        restarted.wait_flushed()
        assert_landed_once(path, bodies)
        # LeadRat retries what it did not see acknowledged: ids survive the restart
        duplicates = [restarted.deliver(body, sign(SECRET, body)).json()["duplicate"]
                      for body in bodies[:50]]
        assert duplicates == [True] * 50
        restarted.wait_flushed()
    assert_landed_once(path, bodies)


def test_sigkill_during_flushes_then_restart_lands_everything_once(tmp_path: Path) -> None:
    """Kills at several instants while batches are being loaded (before the load, during
    it, between its commit and the journal clean-up)."""
    path = tmp_path / "warehouse.duckdb"
    bodies = events(400, leads=60)
    for round_number, chunk in enumerate(range(0, 400, 100)):
        with Receiver(tmp_path / "r", SECRET, warehouse_env(path),
                      flush_seconds=0.05) as receiver:
            deliver_all(receiver, bodies[chunk:chunk + 100])
            time.sleep(0.3 * round_number)  # a different point of the flush each round
            receiver.kill()
    with Receiver(tmp_path / "r", SECRET, warehouse_env(path)) as last:
        last.wait_flushed()
    assert_landed_once(path, bodies)


def test_sigterm_stops_accepting_flushes_and_exits_0(tmp_path: Path) -> None:
    path = tmp_path / "warehouse.duckdb"
    bodies = events(120, leads=30)
    with Receiver(tmp_path / "r", SECRET, warehouse_env(path), flush_seconds=NEVER) as receiver:
        deliver_all(receiver, bodies)
        assert receiver.terminate() == 0
        log = receiver.log.read_text()
    assert_landed_once(path, bodies)
    assert SECRET not in log and "v1=" not in log and '"score"' not in log


def test_two_receivers_with_their_own_journals_land_an_event_once(tmp_path: Path) -> None:
    path = tmp_path / "warehouse.duckdb"
    bodies = events(200, leads=50)
    with Receiver(tmp_path / "a", SECRET, warehouse_env(path)) as first, \
            Receiver(tmp_path / "b", SECRET, warehouse_env(path)) as second:
        assert first.url != second.url
        # the load balancer sends every event to one of them, and retries some to the other
        deliver_all(first, bodies[:150])
        deliver_all(second, bodies[100:])
        first.wait_flushed()
        second.wait_flushed()
    assert (tmp_path / "a" / "dlt" / "webhooks" / "duckdb__leadrat.sqlite").exists()
    assert (tmp_path / "b" / "dlt" / "webhooks" / "duckdb__leadrat.sqlite").exists()
    assert_landed_once(path, bodies)
    # each stages in a dataset of its own, neither in the scheduled load's: where writers
    # do not take turns (BigQuery, Snowflake), one would empty rows the other had staged
    staging = query(path, "select schema_name from information_schema.schemata"
                          " where schema_name like 'leadrat_staging%'")
    assert len(staging) == 2 and ("leadrat_staging",) not in staging, staging


def test_a_receiver_does_not_load_between_another_ones_staging_and_merge(
        tmp_path: Path) -> None:
    """dlt opens the DuckDB file once per job, so DuckDB's own lock lets a second writer in
    between the first one's staging and its merge. Were they to stage into the same
    tables, the second one's start would empty what the first one staged (30 of 60 events
    landed so). Here the first receiver's merges are held until the second one has
    flushed (or 5 s passed)."""
    path = tmp_path / "warehouse.duckdb"
    bodies = events(60, leads=20)
    held = tmp_path / "a"
    with Receiver(held, SECRET, {**warehouse_env(path), **kill_environment(MERGES_HELD)},
                  leadrat=KILLING) as first, \
            Receiver(tmp_path / "b", SECRET, warehouse_env(path)) as second:
        deliver_all(first, bodies[:30])
        deadline = time.monotonic() + 30
        while not (held / MERGES_HELD).exists():  # its rows are staged
            assert time.monotonic() < deadline, "the first receiver never reached its merges"
            time.sleep(0.05)
        deliver_all(second, bodies[30:])
        deadline = time.monotonic() + 5
        while second.metrics()["leadrat_webhooks_journal_depth"] and time.monotonic() < deadline:
            time.sleep(0.05)
        (held / MERGES_GO).touch()
        first.wait_flushed()
        second.wait_flushed()
    assert_landed_once(path, bodies)


def test_acks_go_on_while_another_process_holds_the_duckdb_file(tmp_path: Path) -> None:
    path = tmp_path / "warehouse.duckdb"
    first, locked = events(20, leads=5), events(100, leads=20)
    with Receiver(tmp_path / "r", SECRET, warehouse_env(path), flush_seconds=0.2) as receiver:
        deliver_all(receiver, first)
        receiver.wait_flushed()  # the receiver does not keep the file between flushes:
        holder = subprocess.Popen(  # another writer can open it now
            [sys.executable, "-c", (f"import duckdb, sys; c = duckdb.connect({str(path)!r}); "
             "print('locked', flush=True); sys.stdin.read()")],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        slowest = 0.0
        for body in locked:  # each acknowledged well within LeadRat's 10 s, file locked
            started = time.monotonic()
            assert receiver.deliver(body, sign(SECRET, body)).status_code == 200
            slowest = max(slowest, time.monotonic() - started)
        assert slowest < 5
        time.sleep(1.5)
        metrics = receiver.metrics()
        assert metrics["leadrat_webhooks_journal_depth"] == 100
        assert metrics["leadrat_webhooks_oldest_unflushed_age_seconds"] >= 1
        holder.communicate("")  # the other writer closes the file
        receiver.wait_flushed()
    assert_landed_once(path, first)
    assert_landed_once(path, locked)
