"""`leadrat webhooks serve` as a user starts it: configuration errors, a dying flusher."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import psutil
from webhook_receiver import LEADRAT, Receiver, a_lead, lead_event, read_duckdb, sign

SECRET = "whsec_cli_secret"


def serve(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {name: value for name, value in os.environ.items()
             if "WEBHOOK_SECRET" not in name}
    return subprocess.run([*LEADRAT, "webhooks", "serve", "--port", "0", *args], check=False,
                          cwd=tmp_path,
                          env={**clean, "DLT_DATA_DIR": str(tmp_path / "dlt"), **env},
                          capture_output=True, text=True, timeout=120)


def test_no_secret_is_a_usage_error_naming_where_to_set_it(tmp_path: Path) -> None:
    result = serve(tmp_path)
    assert result.returncode == 2
    assert "SOURCES__LEADRAT__WEBHOOK_SECRET" in result.stderr
    assert "LEADRAT_WEBHOOK_URL" not in result.stdout


def test_history_tables_are_refused_with_a_reason(tmp_path: Path) -> None:
    result = serve(tmp_path, LEADRAT_WEBHOOK_SECRET=SECRET, SOURCES__LEADRAT__HISTORY="true")
    assert result.returncode == 2
    assert "history" in result.stderr and "lead_events" in result.stderr
    assert SECRET not in result.stderr


def test_a_dead_flusher_is_reported_and_replaced_while_acks_go_on(tmp_path: Path) -> None:
    path = tmp_path / "warehouse.duckdb"
    env = {"DESTINATION__DUCKDB__CREDENTIALS": str(path)}
    body = lead_event(a_lead("lead_cli_1", "2026-02-01T00:00:00Z"), event_id="evt_cli_1")
    with Receiver(tmp_path / "r", SECRET, env) as receiver:
        assert receiver.http.get(f"{receiver.base}/healthz").status_code == 200
        assert receiver.process is not None
        deadline = time.monotonic() + 60
        while not (flushers := [child for child in psutil.Process(receiver.process.pid)
                                .children() if "spawn_main" in " ".join(child.cmdline())]):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        flushers[0].kill()
        while (health := receiver.http.get(f"{receiver.base}/healthz")).status_code == 200:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert health.status_code == 503 and health.json()["status"] == "flusher stopped"
        assert receiver.metrics()["leadrat_webhooks_flusher_up"] == 0
        assert receiver.deliver(body, sign(SECRET, body)).status_code == 200
        receiver.wait_flushed()  # loaded by the flusher started in its place
        assert receiver.http.get(f"{receiver.base}/healthz").status_code == 200
        assert receiver.terminate() == 0
    assert "starting another" in receiver.log.read_text()
    assert read_duckdb(path, "select id from leadrat.lead_events") == [("evt_cli_1",)]


def test_a_second_receiver_on_the_same_dlt_data_folder_is_refused(tmp_path: Path) -> None:
    """Even with a journal of its own, it would share the first one's dlt working folder:
    each flusher could load the other's package and drop its own batch as loaded."""
    path = tmp_path / "warehouse.duckdb"
    env = {"DESTINATION__DUCKDB__CREDENTIALS": str(path)}
    body = lead_event(a_lead("lead_cli_2", "2026-02-01T00:00:00Z"), event_id="evt_cli_2")
    with Receiver(tmp_path, SECRET, env) as first:  # DLT_DATA_DIR: tmp_path / "dlt"
        second = serve(tmp_path, "--journal", str(tmp_path / "second.sqlite"),
                       SOURCES__LEADRAT__WEBHOOK_SECRET=SECRET, **env)
        assert second.returncode == 2, second.stderr[-2000:]
        assert "DLT_DATA_DIR" in second.stderr and "LEADRAT_WEBHOOK_URL" not in second.stdout
        assert SECRET not in second.stderr
        assert first.deliver(body, sign(SECRET, body)).status_code == 200
        first.wait_flushed()
    assert read_duckdb(path, "select id from leadrat.lead_events") == [("evt_cli_2",)]
