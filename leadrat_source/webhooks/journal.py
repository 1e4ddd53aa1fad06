"""The receiver's durable journal: events on local disk before they are acknowledged.

SQLite in WAL mode with `synchronous=FULL`: a committed event survives a crash of the
process or of the machine. Two tables:

- `pending`: events acknowledged but not yet in the warehouse, in arrival order; a row is
  removed only after the warehouse load that carried it committed;
- `seen`: the id of every event accepted in the last `dedup_days`, so that a re-delivery
  (LeadRat retries for up to 3 days, also after the receiver restarted) is acknowledged
  without being stored again.

One commit costs one fsync, so commits are shared: `GroupCommitter` writes all the events
that arrived while the previous commit was syncing in one transaction.
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("leadrat_source.webhooks.journal")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS pending (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL,
    received_at REAL NOT NULL,
    body BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS seen (
    id TEXT PRIMARY KEY,
    received_at REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS seen_by_age ON seen (received_at);
"""
#: Most events written by one commit (bounds one transaction's size and latency).
MAX_GROUP = 2_000


@dataclass(frozen=True)
class JournalEntry:
    seq: int
    id: str
    received_at: float
    body: bytes


def _connect(path: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False,
                                 timeout=30)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=FULL")
    return connection


class Journal:
    """The SQLite file; `append` for the committer thread, the rest for anyone."""

    def __init__(self, path: Path, dedup_days: float):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.dedup_seconds = dedup_days * 86_400
        self._writer = _connect(path)
        self._writer.executescript(_SCHEMA)
        self._reader = _connect(path)
        self._reader_lock = threading.Lock()

    def close(self) -> None:
        self._writer.close()
        self._reader.close()

    def append(self, events: list[tuple[str, bytes]], received_at: float) -> list[bool]:
        """Store the events not seen before in one transaction; True for each one stored,
        False for a duplicate."""
        stored = []
        cursor = self._writer.cursor()
        cursor.execute("BEGIN IMMEDIATE")
        try:
            for event_id, body in events:
                cursor.execute("INSERT OR IGNORE INTO seen VALUES (?, ?)", (event_id, received_at))
                is_new = cursor.rowcount == 1
                if is_new:
                    cursor.execute("INSERT INTO pending (id, received_at, body) VALUES (?, ?, ?)",
                                   (event_id, received_at, body))
                stored.append(is_new)
            cursor.execute("COMMIT")
        except BaseException:
            cursor.execute("ROLLBACK")
            raise
        return stored

    def pending(self, limit: int) -> list[JournalEntry]:
        """The oldest `limit` events not yet in the warehouse."""
        with self._reader_lock:
            rows = self._reader.execute(
                "SELECT seq, id, received_at, body FROM pending ORDER BY seq LIMIT ?", (limit,)
            ).fetchall()
        return [JournalEntry(*row) for row in rows]

    def remove(self, entries: list[JournalEntry]) -> None:
        """Forget events the warehouse holds now (their ids stay in `seen`); `entries` are
        the oldest pending ones (`pending()`), so one range delete, one commit."""
        if not entries:
            return
        with self._reader_lock:
            self._reader.execute("DELETE FROM pending WHERE seq BETWEEN ? AND ?",
                                 (entries[0].seq, entries[-1].seq))

    def waiting(self, limit: int) -> tuple[int, float]:
        """How many events wait (counted up to `limit`), and when the oldest arrived."""
        with self._reader_lock:
            (count,) = self._reader.execute(
                "SELECT count(*) FROM (SELECT 1 FROM pending LIMIT ?)", (limit,)).fetchone()
            oldest = self._reader.execute(
                "SELECT received_at FROM pending ORDER BY seq LIMIT 1").fetchone()
        return int(count), oldest[0] if oldest else 0.0

    def depth(self) -> tuple[int, float | None]:
        """Events waiting for the warehouse, and when the oldest of them arrived."""
        with self._reader_lock:
            count, oldest = self._reader.execute(
                "SELECT count(*), min(received_at) FROM pending").fetchone()
        return int(count), oldest

    def forget_old_ids(self, now: float) -> int:
        """Drop ids older than the dedup window (never those of pending events)."""
        with self._reader_lock:
            cursor = self._reader.execute(
                "DELETE FROM seen WHERE received_at < ? AND id NOT IN (SELECT id FROM pending)",
                (now - self.dedup_seconds,),
            )
        return cursor.rowcount


Done = Callable[[bool | BaseException], object]


class GroupCommitter:
    """One thread that commits queued events in groups: all that arrived during the
    previous commit share the next one (and its fsync)."""

    def __init__(self, journal: Journal):
        self._journal = journal
        self._queue: queue.SimpleQueue[tuple[str, bytes, Done] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="journal-commit", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Commit what is queued, then end the thread."""
        self._queue.put(None)
        self._thread.join()

    def submit(self, event_id: str, body: bytes, done: Done) -> None:
        """Queue an event; `done` is called from the committer thread with True (stored),
        False (a duplicate) or the error that prevented the commit."""
        self._queue.put((event_id, body, done))

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                return
            group = [first]
            while len(group) < MAX_GROUP:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                group.append(item)
            self._commit(group)

    def _commit(self, group: list[tuple[str, bytes, Done]]) -> None:
        try:
            results: list[bool | BaseException] = list(self._journal.append(
                [(event_id, body) for event_id, body, _ in group], time.time()))
        except Exception as error:  # noqa: BLE001 - every waiting request gets the error
            log.error("journal commit failed: %s", error)
            results = [error] * len(group)
        for (_, _, done), result in zip(group, results, strict=True):
            done(result)
