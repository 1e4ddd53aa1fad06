"""The commands' own settings, set the dlt way (`[leadrat]` and `[leadrat.reverse_sync]` in
a project's `.dlt/config.toml`, or LEADRAT__<NAME> variables), reach `leadrat` as a user
runs it, the same settings the cron scripts and the Airflow DAG read; judged by the
warehouse file the run wrote and by the sandbox's own export."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import duckdb
import pytest
from leadrat_process import cli_env, leadrat

from leadrat_source import settings
from leadrat_source.reverse_sync import ReverseSyncRequest
from leadrat_source.sandbox import Sandbox


def test_destination_dataset_and_reverse_sync_input_come_from_dlt_config(
    make_sandbox: Callable[..., Sandbox], tmp_path: Path
) -> None:
    server = make_sandbox(leads=200, rate_limit=0)
    (tmp_path / "destinations.toml").write_text('[archive]\ndestination_type = "duckdb"\n')
    (tmp_path / ".dlt").mkdir()
    (tmp_path / ".dlt" / "config.toml").write_text(
        '[leadrat]\ndataset = "crm"\n\n[leadrat.reverse_sync]\ntable = "model_scores"\n')
    archive = tmp_path / "archive.duckdb"
    env = cli_env(tmp_path, server, LEADRAT__DESTINATION="archive",
                  DESTINATION__ARCHIVE__CREDENTIALS=str(archive))

    loaded = leadrat("load", env=env, cwd=tmp_path)
    assert loaded.returncode == 0, loaded.stderr
    assert not (tmp_path / "warehouse.duckdb").exists(), "loaded into the default profile"
    with duckdb.connect(str(archive), read_only=True) as db:
        stored = {row[0] for row in db.sql("select id from crm.leads").fetchall()}
    assert stored == {lead["id"] for lead in server.export_leads()}
    status = leadrat("status", env=env, cwd=tmp_path)
    assert status.returncode == 0 and "leads=200" in status.stdout, status.stderr

    live = [lead for lead in server.export_leads()
            if lead["deleted_at"] is None and lead["score"] is not None][:10]
    wanted = {lead["id"]: float(i * 9) for i, lead in enumerate(live[:9])}
    wanted[live[9]["id"]] = None  # cleared only because null_clears is configured
    with duckdb.connect(str(archive)) as db:
        db.execute("create table crm.model_scores (lead_id varchar, score double)")
        db.executemany("insert into crm.model_scores values (?, ?)", list(wanted.items()))
    pushed = leadrat("reverse-sync", env={
        **env, "SOURCES__LEADRAT__API_KEY": server.read_write_key,
        "LEADRAT__REVERSE_SYNC__NULL_CLEARS": "true"}, cwd=tmp_path)
    assert pushed.returncode == 0, pushed.stderr
    after = {lead["id"]: lead["score"] for lead in server.export_leads()}
    assert {lead_id: after[lead_id] for lead_id in wanted} == wanted
    with duckdb.connect(str(archive), read_only=True) as db:
        [(ledger_rows,)] = db.sql("select count(*) from crm.reverse_sync_state").fetchall()
    assert ledger_rows == len(wanted)


def test_a_reverse_sync_argument_wins_over_dlt_config_and_the_sources_workers_stay_apart(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SOURCES__LEADRAT__WORKERS", "1")  # the scan's slices, not these
    assert ReverseSyncRequest().workers == settings.DELIVERY_WORKERS
    monkeypatch.setenv("LEADRAT__REVERSE_SYNC__WORKERS", "3")
    monkeypatch.setenv("LEADRAT__REVERSE_SYNC__BATCH_SECONDS", "0.5")
    configured = ReverseSyncRequest()
    assert (configured.workers, configured.batch_seconds) == (3, 0.5)
    assert ReverseSyncRequest(workers=5).workers == 5
