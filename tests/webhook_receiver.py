"""Test helpers for the webhook receiver: run `leadrat webhooks serve` as a real process,
and sign deliveries by hand (hmac + hashlib, not the receiver's code)."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import duckdb
import httpx

#: `leadrat` as the console script runs it, with this interpreter (and PYTHONPATH)
LEADRAT = [sys.executable, "-m", "leadrat_source.cli"]


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """A LeadRat-Signature value computed from CONTRACT.md's definition."""
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), str(t).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def lead_event(lead: dict[str, Any], event_type: str = "lead.updated",
               event_id: str | None = None) -> bytes:
    return json.dumps({
        "id": event_id or f"evt_{uuid.uuid4().hex[:20]}", "type": event_type,
        "created_at": lead["updated_at"], "data": {"lead": lead, "previous": None},
    }).encode()


def a_lead(lead_id: str, updated_at: str, **fields: Any) -> dict[str, Any]:
    lead: dict[str, Any] = {
        "id": lead_id, "name": f"Name {lead_id}", "email": f"{lead_id}@example.com",
        "phone": None, "company": None, "status": "new", "source": "website", "tags": [],
        "score": 10, "pipeline_id": None, "stage_id": None, "custom_fields": {},
        "created_at": "2026-01-01T00:00:00Z", "updated_at": updated_at, "deleted_at": None,
    }
    lead.update(fields)
    return lead


def read_duckdb(path: Path, sql: str) -> list[tuple[Any, ...]]:
    """Rows from a DuckDB warehouse; retried while a flush holds the file."""
    for _ in range(100):
        try:
            with duckdb.connect(str(path), read_only=True) as connection:
                return connection.sql(sql).fetchall()
        except (duckdb.IOException, duckdb.CatalogException):
            time.sleep(0.1)
    raise AssertionError(f"{path} stayed locked or without its tables")


def newest_states(bodies: list[bytes]) -> dict[str, tuple[str, float]]:
    """Each lead's (event id, score) of its newest event: latest updated_at, then the
    larger event id, as the contract's order says."""
    newest: dict[str, tuple[str, str, float]] = {}
    for body in bodies:
        event = json.loads(body)
        lead = event["data"]["lead"]
        candidate = (lead["updated_at"], event["id"], float(lead["score"]))
        newest[lead["id"]] = max(newest.get(lead["id"], candidate), candidate)
    return {lead_id: (event_id, score) for lead_id, (_, event_id, score) in newest.items()}


class Receiver:
    """`leadrat webhooks serve` in a child process (its own DLT_DATA_DIR and journal), on a
    free port unless given one; `leadrat`: the command that runs `leadrat`."""

    def __init__(self, workdir: Path, secrets: str, env: dict[str, str] | None = None,
                 args: list[str] | None = None, flush_seconds: float = 0.5, port: int = 0,
                 leadrat: list[str] = LEADRAT):
        self.workdir = workdir
        self.port = port
        self.leadrat = leadrat
        self.env = {**os.environ, "SOURCES__LEADRAT__WEBHOOK_SECRET": secrets,
                    "DLT_DATA_DIR": str(workdir / "dlt"),
                    "SOURCES__LEADRAT__WEBHOOK_FLUSH_SECONDS": str(flush_seconds),
                    **(env or {})}
        self.args = args or []
        self.process: subprocess.Popen[str] | None = None
        self.url = ""
        self.http = httpx.Client(timeout=30)
        self.log = workdir / "receiver.log"

    def start(self) -> Self:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [*self.leadrat, "webhooks", "serve", "--port", str(self.port), *self.args],
            cwd=self.workdir,
            env=self.env, stdout=subprocess.PIPE, stderr=self.log.open("a"), text=True)
        assert self.process.stdout is not None
        line = self.process.stdout.readline().strip()
        if not line.startswith("LEADRAT_WEBHOOK_URL="):
            raise RuntimeError(f"receiver did not start: {self.log.read_text()[-2000:]}")
        self.url = line.partition("=")[2]
        return self

    @property
    def base(self) -> str:
        return self.url.rsplit("/webhooks/", 1)[0]

    def deliver(self, body: bytes, signature: str | None, **headers: str) -> httpx.Response:
        if signature is not None:
            headers["LeadRat-Signature"] = signature
        return self.http.post(self.url, content=body,
                              headers={"Content-Type": "application/json", **headers})

    def metrics(self) -> dict[str, float]:
        text = self.http.get(f"{self.base}/metrics").text
        return {name: float(value) for name, value in re.findall(r"^(\S+) (\S+)$", text, re.MULTILINE)}

    def wait_flushed(self, timeout: float = 60) -> dict[str, float]:
        """Wait until the journal is empty; the metrics then."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            metrics = self.metrics()
            if metrics["leadrat_webhooks_journal_depth"] == 0:
                return metrics
            time.sleep(0.1)
        raise AssertionError(f"journal not flushed in {timeout}s: {self.metrics()}")

    def terminate(self, timeout: float = 90) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if self.process is not None and self.process.poll() is None:
            self.kill()
        self.http.close()
