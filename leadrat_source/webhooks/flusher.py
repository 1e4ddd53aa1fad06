"""Moves journaled events into the warehouse through dlt, in micro-batches.

A batch goes when `flush_events` events wait or the oldest has waited `flush_seconds`.
Its journal entries are removed only after dlt's load committed, so a crash at any point
leaves them in the journal and the next start loads them again: merging (newest state
wins, `lead_events` insert-only) makes that second load change nothing.

A flush that fails (the embedded DuckDB is locked by a `leadrat load` or an analyst's
session, the warehouse is down) is retried with backoff: the events are safe on disk,
and acknowledgements go on meanwhile. dlt opens the warehouse only for the load step, so
between flushes the DuckDB file is free for other writers.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter

from dlt.pipeline.pipeline import Pipeline

from leadrat_source.destinations import DestinationProfile
from leadrat_source.source import LeadsHints
from leadrat_source.warehouse_lock import run_when_free
from leadrat_source.webhooks.events import LeadEvent
from leadrat_source.webhooks.journal import Journal, JournalEntry
from leadrat_source.webhooks.metrics import Metrics
from leadrat_source.webhooks.settings import ReceiverSettings
from leadrat_source.webhooks.warehouse_batch import batch_resources

log = logging.getLogger("leadrat_source.webhooks.flusher")

RETRY_FIRST_SECONDS = 0.2
RETRY_MAX_SECONDS = 5.0
#: How long a shutdown keeps retrying the last flush before leaving events in the journal.
SHUTDOWN_FLUSH_SECONDS = 60.0
#: One attempt waits this long for another process's DuckDB lock (then the outer retry,
#: which also covers every other failure, takes over).
LOCK_WAIT_SECONDS = 30.0
#: How often the ids of the dedup window are pruned.
PRUNE_SECONDS = 3_600.0


class Flusher:
    """A thread that loads the journal into the warehouse."""

    def __init__(self, journal: Journal, pipeline: Pipeline, profile: DestinationProfile,
                 settings: ReceiverSettings, metrics: Metrics):
        self._journal = journal
        self._pipeline = pipeline
        self._profile = profile
        self._settings = settings
        self._metrics = metrics
        self._hints = LeadsHints.of(settings.delete_mode, settings.history)
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="webhook-flusher", daemon=True)
        self._last_prune = 0.0

    def start(self) -> None:
        self._thread.start()

    def notify(self, arrived: int) -> None:
        """New events were journaled (called by the committer)."""
        self._wake.set()

    def stop(self) -> bool:
        """Flush what is journaled and end the thread; False if events remain (the warehouse
        kept failing), which the next start loads."""
        self._stopping.set()
        self._wake.set()
        self._thread.join()
        return self._journal.depth()[0] == 0

    def _run(self) -> None:
        deadline: float | None = None
        while True:
            if self._stopping.is_set() and deadline is None:
                deadline = time.monotonic() + SHUTDOWN_FLUSH_SECONDS
            entries = self._due_batch(stopping=deadline is not None)
            if entries:
                if not self._load(entries, deadline):
                    return
                continue
            if deadline is not None:
                return
            self._prune_ids()
            self._wake.wait(timeout=min(0.5, self._settings.flush_seconds))
            self._wake.clear()

    def _due_batch(self, stopping: bool) -> list[JournalEntry]:
        entries = self._journal.pending(self._settings.flush_events)
        if not entries or stopping or len(entries) >= self._settings.flush_events:
            return entries
        if time.time() - entries[0].received_at >= self._settings.flush_seconds:
            return entries
        return []

    def _load(self, entries: list[JournalEntry], deadline: float | None) -> bool:
        """Load `entries` until it succeeds (True) or the shutdown deadline passes (False)."""
        delay = RETRY_FIRST_SECONDS
        started = time.monotonic()
        while True:
            try:
                self._load_once(entries)
                break
            except Exception as error:  # noqa: BLE001 - retried: the events are safe on disk
                self._metrics.count("flush_failures")
                reason = str(error).strip().splitlines()[-1][:200] if str(error) else ""
                log.warning("loading %d events failed (%s: %s); retrying in %.1fs",
                            len(entries), type(error).__name__, reason, delay)
                if deadline is not None and time.monotonic() + delay > deadline:
                    log.error("stopping with %d events in the journal %s; the next start loads "
                              "them", self._journal.depth()[0], self._journal.path)
                    return False
                time.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_SECONDS)
        self._journal.remove(entries)
        self._metrics.count("flushed", len(entries))
        types = Counter(LeadEvent.parse(entry.body).type for entry in entries)
        log.info("loaded %d events (%s; %s .. %s) in %.2fs", len(entries),
                 ", ".join(f"{name}={count}" for name, count in sorted(types.items())),
                 entries[0].id, entries[-1].id, time.monotonic() - started)
        return True

    def _load_once(self, entries: list[JournalEntry]) -> None:
        pipeline = self._pipeline
        if pipeline.has_pending_data:
            # extracted by an earlier attempt (or by a run that was killed): load that first.
            # A killed run's package holds events still in the journal, which are then
            # loaded again below: merging makes the repeat change nothing.
            pipeline.normalize()
            run_when_free(pipeline, pipeline.load).raise_on_failed_jobs()
            return
        known: dict[str, str] = {}
        if pipeline.default_schema_name and "leads" in pipeline.default_schema.tables:
            columns = pipeline.default_schema.tables["leads"].get("columns", {})
            known = {name: data_type for name, column in columns.items()
                     if (data_type := column.get("data_type"))}
        resources = batch_resources(entries, self._hints, self._settings.delete_mode, known)
        run_when_free(pipeline, lambda: pipeline.run(
            resources, loader_file_format=self._profile.loader_file_format,  # type: ignore[arg-type]
        ), wait_seconds=LOCK_WAIT_SECONDS).raise_on_failed_jobs()

    def finish_interrupted(self) -> None:
        """Load a package a killed receiver left (its events are also still journaled)."""
        if self._pipeline.has_pending_data:
            log.warning("loading what an interrupted receiver left extracted")
            self._load_once([])

    def _prune_ids(self) -> None:
        now = time.time()
        if now - self._last_prune >= PRUNE_SECONDS:
            self._last_prune = now
            if forgotten := self._journal.forget_old_ids(now):
                log.info("forgot %d event ids older than the dedup window", forgotten)

