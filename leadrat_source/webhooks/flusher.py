"""Moves journaled events into the warehouse through dlt, in micro-batches, from a
process of its own.

A batch goes when `flush_events` events wait or the oldest has waited `flush_seconds`.
Its journal entries are removed only after dlt's load committed, so a crash at any point
leaves them in the journal and the next start loads them again: merging (newest state
wins, `lead_events` insert-only) makes that second load change nothing.

A flush that fails (the embedded DuckDB is locked by a `leadrat load` or an analyst's
session, the warehouse is down) is retried with backoff: the events are safe on disk,
and acknowledgements go on meanwhile. dlt opens the warehouse only for the load step, so
between flushes the DuckDB file is free for other writers.

Why a process: building Arrow tables and running dlt is seconds of Python per batch; in
the server's process it would hold the GIL the acknowledgements need. The flusher and the
server share only the journal file (SQLite serializes their writes) and two counters. A
flusher whose server died (SIGKILL) exits at once; the next server's flusher loads what
is left.
"""

from __future__ import annotations

import hashlib
import logging
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Event
from pathlib import Path

from leadrat_source.destinations import DestinationProfile
from leadrat_source.gc_pause import fewer_collections
from leadrat_source.source import LeadsHints
from leadrat_source.warehouse_lock import run_when_free
from leadrat_source.warehouse_pipeline import profile_pipeline, repair_killed_commits
from leadrat_source.webhooks.events import LeadEvent
from leadrat_source.webhooks.journal import Journal, JournalEntry
from leadrat_source.webhooks.metrics import FlushCounters
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


#: Longest pause before a dead flusher process is started again.
RESTART_MAX_SECONDS = 60.0
#: How often the flusher looks for due events (and for its server being gone).
POLL_SECONDS = 0.2


@dataclass(frozen=True)
class FlusherSpec:
    """What the flusher process needs (no secrets: it never sees a signature)."""

    journal_path: Path
    profile: DestinationProfile
    dataset: str
    pipeline_name: str
    settings: ReceiverSettings
    log_level: int
    log_formatter: logging.Formatter | None


class FlusherProcess:
    """The server's handle on the flusher process; starts another one if it dies (with a
    growing pause, so a flusher that cannot start does not spin)."""

    def __init__(self, spec: FlusherSpec, counters: FlushCounters):
        self._spec = spec
        self._counters = counters
        self._context = multiprocessing.get_context("spawn")
        self._stop = self._context.Event()
        self._process = self._new_process()
        self._watchdog = threading.Thread(target=self._watch, name="flusher-watchdog",
                                          daemon=True)

    def _new_process(self) -> BaseProcess:
        return self._context.Process(
            target=_flusher_main, args=(self._spec, self._counters, self._stop, os.getpid()),
            name="leadrat-webhook-flusher")

    def start(self) -> None:
        self._process.start()
        self._watchdog.start()

    def is_alive(self) -> bool:
        return self._process.is_alive()

    def _watch(self) -> None:
        pause = 1.0
        while not self._stop.wait(pause):
            if self._process.is_alive():
                pause = 1.0
                continue
            log.error("the flusher process exited (code %s); starting another",
                      self._process.exitcode)
            self._process = self._new_process()
            self._process.start()
            pause = min(pause * 2, RESTART_MAX_SECONDS)

    def stop(self) -> bool:
        """Have the flusher load what is journaled and exit; False if events remain (the
        warehouse kept failing), which the next start loads."""
        self._stop.set()
        self._watchdog.join()
        self._process.join()
        return self._process.exitcode == 0


def _flusher_main(spec: FlusherSpec, counters: FlushCounters, stop: Event,
                  server_pid: int) -> None:
    # Ctrl-C reaches the whole process group: the server decides when to stop. A SIGTERM
    # sent to this process alone (a supervisor killing the group) stops it the same way.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    handler = logging.StreamHandler(sys.stderr)
    if spec.log_formatter is not None:
        handler.setFormatter(spec.log_formatter)
    logging.getLogger().handlers[:] = [handler]
    logging.getLogger().setLevel(spec.log_level)
    journal = Journal(spec.journal_path, spec.settings.dedup_days)
    try:
        flusher = Flusher(journal, spec, counters, stop, server_pid)
        # every batch is a dlt run: the same collector settings as `leadrat load`'s
        with fewer_collections():
            flusher.finish_interrupted()
            flushed = flusher.run()
        sys.exit(0 if flushed else 1)
    finally:
        journal.close()


def receiver_staging_layout(journal_path: Path) -> str:
    """The receiver's own staging dataset (`<dataset>_staging_webhooks_<id>`, the id from
    the host and the journal, so a restart finds it again).

    dlt's merge stages rows in the staging dataset and empties a table there before each
    load. A receiver sharing `<dataset>_staging` with `leadrat load`, or with another
    receiver, could empty the other's staged rows before it merged them, and they would
    be lost: on BigQuery and Snowflake, where writers do not take turns, and on DuckDB,
    whose lock is free between two load jobs."""
    where = f"{socket.gethostname()}\0{journal_path.resolve()}"
    return f"%s_staging_webhooks_{hashlib.sha256(where.encode()).hexdigest()[:8]}"


class Flusher:
    """The flusher process's loop: due batches → dlt → journal clean-up."""

    def __init__(self, journal: Journal, spec: FlusherSpec, counters: FlushCounters,
                 stop: Event, server_pid: int):
        self._journal = journal
        self._pipeline = profile_pipeline(
            spec.profile, spec.pipeline_name, spec.dataset, pipelines_dir=None,
            staging_dataset_layout=receiver_staging_layout(spec.journal_path))
        self._profile = spec.profile
        self._settings = spec.settings
        self._counters = counters
        self._stop = stop
        self._server_pid = server_pid
        self._hints = LeadsHints.of(spec.settings.delete_mode, spec.settings.history)
        self._last_prune = 0.0

    def run(self) -> bool:
        """Load batches until told to stop, then what is left; True if the journal is
        empty at the end."""
        deadline: float | None = None
        while True:
            if self._stop.is_set() and deadline is None:
                deadline = time.monotonic() + SHUTDOWN_FLUSH_SECONDS
            if os.getppid() != self._server_pid:
                log.warning("the server is gone; the next start loads the journal")
                return False
            entries = self._due_batch(stopping=deadline is not None)
            if entries:
                if not self._load(entries, deadline):
                    return False
                continue
            if deadline is not None:
                return True
            self._prune_ids()
            self._stop.wait(timeout=min(POLL_SECONDS, self._settings.flush_seconds))

    def _due_batch(self, stopping: bool) -> list[JournalEntry]:
        waiting, oldest = self._journal.waiting(self._settings.flush_events)
        if waiting and (stopping or waiting >= self._settings.flush_events
                        or time.time() - oldest >= self._settings.flush_seconds):
            return self._journal.pending(self._settings.flush_events)
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
                self._counters.add(self._counters.failures, 1)
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
        self._counters.add(self._counters.flushed, len(entries))
        types = Counter(LeadEvent.parse(entry.body).type for entry in entries)
        log.info("loaded %d events (%s; %s .. %s) in %.2fs", len(entries),
                 ", ".join(f"{name}={count}" for name, count in sorted(types.items())),
                 entries[0].id, entries[-1].id, time.monotonic() - started)
        return True

    def _load_once(self, entries: list[JournalEntry]) -> None:
        pipeline = self._pipeline
        if pipeline.has_pending_data:
            # extracted by an earlier attempt at these same entries (`_load` retries one
            # batch until it lands), or, at start (`entries` empty), by a killed receiver:
            # its events are still journaled and come again in a batch, and merging makes
            # the repeat change nothing.
            repair_killed_commits(pipeline)
            pipeline.normalize()
            run_when_free(pipeline, pipeline.load).raise_on_failed_jobs()
            return
        resources = batch_resources(entries, self._hints, self._settings.custom_fields)
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

