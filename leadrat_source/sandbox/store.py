"""The sandbox's data: leads and pipelines in in-memory SQLite, with the queries the API needs.

One connection shared by all request threads behind a lock: SQLite in memory answers a
keyset page from an index in well under a millisecond, so serialising is cheaper than
coordinating several connections. Every write bumps `version`, which keys the cache of
`meta.total` counts, and reports the change to `on_change` (webhooks).
"""

from __future__ import annotations

import random
import sqlite3
import threading
from collections.abc import Callable, Iterable
from dataclasses import astuple, dataclass
from typing import Any

import orjson

from leadrat_source.contract import ID_PREFIX_LEAD, LEAD_SCALAR_FIELDS
from leadrat_source.sandbox import data
from leadrat_source.sandbox.clock import DAY_MS, now_ms, to_iso, utc_midnight_ms
from leadrat_source.sandbox.errors import ApiError, invalid_field, not_found

Record = dict[str, Any]
ChangeListener = Callable[[str, Record, Record | None], None]

RETENTION_MS = 30 * DAY_MS
TIMESTAMP_FIELDS = ("created_at", "updated_at", "deleted_at")
LEAD_COLUMNS = (
    "seq", "id", "name", "email", "phone", "company", "status", "source", "score",
    "pipeline_id", "stage_id", "custom_fields", "tags", "created_at_ms", "updated_at_ms",
    "deleted_at_ms",
)
_SELECT = ("SELECT id, name, email, phone, company, status, source, tags, score, pipeline_id,"
           " stage_id, custom_fields, created_at_ms, updated_at_ms, deleted_at_ms FROM leads")
_SCHEMA = """
CREATE TABLE leads (
    seq INTEGER NOT NULL, id TEXT PRIMARY KEY, name TEXT NOT NULL, email TEXT NOT NULL,
    phone TEXT, company TEXT, status TEXT NOT NULL, source TEXT NOT NULL, score NUMERIC,
    pipeline_id TEXT, stage_id TEXT, custom_fields TEXT NOT NULL, tags TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL, updated_at_ms INTEGER NOT NULL, deleted_at_ms INTEGER
) WITHOUT ROWID;
CREATE TABLE lead_tags (tag TEXT NOT NULL, lead_id TEXT NOT NULL, PRIMARY KEY (tag, lead_id))
    WITHOUT ROWID;
CREATE TABLE pipelines (id TEXT PRIMARY KEY, body TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL, updated_at_ms INTEGER NOT NULL);
"""
# Built after the bulk load: inserting into indexed tables is several times slower.
_INDEXES = """
-- deleted_at_ms rides along so the default `deleted_at_ms IS NULL` is answered from the index.
CREATE INDEX leads_created ON leads (created_at_ms, id, deleted_at_ms);
CREATE INDEX leads_created_desc ON leads (created_at_ms DESC, id, deleted_at_ms);
CREATE INDEX leads_updated ON leads (updated_at_ms, id, deleted_at_ms);
CREATE INDEX leads_updated_desc ON leads (updated_at_ms DESC, id, deleted_at_ms);
CREATE INDEX leads_email ON leads (email COLLATE NOCASE) WHERE deleted_at_ms IS NULL;
CREATE INDEX leads_stage ON leads (stage_id);
CREATE INDEX leads_deleted ON leads (deleted_at_ms) WHERE deleted_at_ms IS NOT NULL;
-- random_lead_ids seeks by seq (the churn's picks): without it each pick scanned the table
-- (0.25 s per change at 1M leads, so churn(1000) took minutes).
CREATE INDEX leads_seq ON leads (seq, deleted_at_ms);
"""
_COLUMN_OF = {"created_at": "created_at_ms", "updated_at": "updated_at_ms",
              "deleted_at": "deleted_at_ms"}


@dataclass(frozen=True)
class LeadFilters:
    """The filters of GET /leads, normalised (timestamps in ms) so equal scans compare equal."""

    status: str | None = None
    source: str | None = None
    tag: str | None = None
    pipeline_id: str | None = None
    stage_id: str | None = None
    created_since: int | None = None
    updated_since: int | None = None
    updated_before: int | None = None
    include_deleted: bool = False

    def where(self, implied: str | None = None,
              counting: bool = False) -> tuple[list[str], list[object]]:
        """SQL conditions and their parameters; the time bound named `implied` is left out
        (the keyset condition of a cursor page already enforces it). `counting` shapes
        the tag condition for a count, which has no order to keep."""
        clauses: list[str] = []
        params: list[object] = []
        for name in ("status", "source", "pipeline_id", "stage_id"):
            value = getattr(self, name)
            if value is not None:
                clauses.append(f"{name} = ?")
                params.append(value)
        if self.tag is not None and counting:
            clauses.append("id IN (SELECT lead_id FROM lead_tags WHERE tag = ?)")
            params.append(self.tag)
        elif self.tag is not None:
            # Correlated probe of lead_tags' primary key, so the ORDER BY index still drives
            # the scan; `id IN (subquery)` made SQLite sort every tagged lead per page.
            clauses.append("EXISTS (SELECT 1 FROM lead_tags WHERE tag = ? AND lead_id = leads.id)")
            params.append(self.tag)
        for name, op, column in (("created_since", ">=", "created_at_ms"),
                                 ("updated_since", ">=", "updated_at_ms"),
                                 ("updated_before", "<", "updated_at_ms")):
            value = getattr(self, name)
            if value is not None and name != implied:
                clauses.append(f"{column} {op} ?")
                params.append(value)
        if not self.include_deleted:
            clauses.append("deleted_at_ms IS NULL")
        return clauses, params


@dataclass(frozen=True)
class Page:
    """One slice of a list: `last_key` is the keyset position of its last row when more follow."""

    rows: list[Record]
    total: int
    last_key: tuple[int, str] | None


def to_api(record: Record) -> Record:
    """The API shape of a record: timestamps become ISO strings, everything else is as stored."""
    shaped = dict(record)
    for name in TIMESTAMP_FIELDS:
        if name in shaped:
            shaped[name] = to_iso(shaped[name])
    return shaped


def _implied_bound(filters: LeadFilters, column: str, descending: bool,
                   after: tuple[int, str]) -> str | None:
    """The window bound on the sort column that the keyset position already enforces.

    SQLite seeks the index with one lower and one upper bound; left in, a window bound
    such as `updated_since` can win over the keyset one, and every page then walks the
    index from the start of the window (pages got slower the deeper the scan went).
    """
    if column == "updated_at_ms":
        bound = "updated_before" if descending else "updated_since"
    elif column == "created_at_ms" and not descending:
        bound = "created_since"
    else:
        return None
    value = getattr(filters, bound)
    if value is None:
        return None
    return bound if (after[0] < value if descending else after[0] >= value) else None


def _record(row: tuple[Any, ...]) -> Record:
    return {
        "id": row[0], "name": row[1], "email": row[2], "phone": row[3], "company": row[4],
        "status": row[5], "source": row[6], "tags": orjson.loads(row[7]), "score": row[8],
        "pipeline_id": row[9], "stage_id": row[10], "custom_fields": orjson.loads(row[11]),
        "created_at": row[12], "updated_at": row[13], "deleted_at": row[14],
    }


class Store:
    """Leads and pipelines, with every read and write the API and the churn need."""

    def __init__(self, leads: int, seed: int, pipelines: int, anchor_ms: int | None = None,
                 custom_keys: int = 0):
        self.lock = threading.RLock()
        self.version = 0
        self.on_change: ChangeListener | None = None
        self._counts: dict[tuple[object, ...], int] = {}
        self._next_purge_ms = 0
        self._db = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
        # Nothing to recover in memory: no rollback journal, no syncs. Large pages: rows
        # of a WITHOUT ROWID table live in the B-tree itself, and with 4 KiB pages the bulk
        # load spent most of its time splitting pages.
        self._db.executescript("PRAGMA page_size = 65536; PRAGMA journal_mode = OFF;"
                               " PRAGMA synchronous = OFF;" + _SCHEMA)
        anchor = utc_midnight_ms(now_ms()) if anchor_ms is None else anchor_ms
        self.pipelines = data.make_pipelines(pipelines, random.Random(seed * 7919 + 1), anchor)
        self._stages = {stage.id: p.id for p in self.pipelines for stage in p.stages}
        self._load(data.lead_rows(leads, seed, self.pipelines, anchor, custom_keys))
        self._next_seq = leads + 1
        #: top-level fields the API sends with every lead beyond the contract's (a newer
        #: LeadRat deployment): the connector must load them, not drop them
        self.added_fields: Record = {}

    # -- loading -------------------------------------------------------------------------

    def _load(self, rows: Iterable[tuple[object, ...]]) -> None:
        tag_pairs: list[tuple[str, str]] = []

        def collect() -> Iterable[tuple[object, ...]]:
            for row in rows:
                for tag in orjson.loads(row[12]):  # type: ignore[arg-type]
                    tag_pairs.append((tag, row[1]))  # type: ignore[arg-type]
                yield row

        marks = ",".join("?" * len(LEAD_COLUMNS))
        db = self._db
        db.execute("BEGIN")
        db.executemany(f"INSERT INTO leads ({','.join(LEAD_COLUMNS)}) VALUES ({marks})",
                       collect())
        tag_pairs.sort()  # in primary-key order: appends instead of B-tree inserts
        db.executemany("INSERT INTO lead_tags VALUES (?, ?)", tag_pairs)
        db.executemany("INSERT INTO pipelines VALUES (?, ?, ?, ?)", [
            (p.id, orjson.dumps({"name": p.name, "stages": [astuple(s) for s in p.stages]}),
             p.created_at_ms, p.updated_at_ms) for p in self.pipelines])
        db.execute("COMMIT")
        db.executescript(_INDEXES)
        # Statistics from a sample of each index are as good for plan choice, and fast at 1M.
        db.execute("PRAGMA analysis_limit = 2000")
        db.execute("ANALYZE")

    # -- reads ---------------------------------------------------------------------------

    def query(self, sql: str, params: Iterable[object] = ()) -> list[tuple[Any, ...]]:
        """Raw read for modules that compute reports (analytics)."""
        with self.lock:
            return self._db.execute(sql, tuple(params)).fetchall()

    def lead(self, lead_id: str, include_deleted: bool = False) -> Record | None:
        with self.lock:
            row = self._db.execute(f"{_SELECT} WHERE id = ?", (lead_id,)).fetchone()
        if row is None or (row[14] is not None and not include_deleted):
            return None
        return _record(row)

    def live_lead(self, lead_id: str) -> Record:
        """The lead, or 404 when unknown or deleted."""
        record = self.lead(lead_id)
        if record is None:
            raise not_found(f"Lead '{lead_id}'")
        return record

    def list_leads(self, filters: LeadFilters, sort: str, per_page: int, page: int | None,
                   after: tuple[int, str] | None) -> Page:
        """A page by offset (`page`) or by keyset (`after`); ties always by id ascending."""
        column = _COLUMN_OF[sort.lstrip("-")]
        descending = sort.startswith("-")
        with self.lock:
            self._purge_expired()
            total = self._count(filters)
            clauses, params = filters.where(
                _implied_bound(filters, column, descending, after) if after else None)
            if after is not None:
                if descending:
                    # Mixed directions (column DESC, id ASC) have no row-value form; the
                    # bare range on `column` lets SQLite seek in the index.
                    clauses += [f"{column} <= ?", f"({column} < ? OR id > ?)"]
                    params += [after[0], after[0], after[1]]
                else:
                    clauses.append(f"({column}, id) > (?, ?)")
                    params += [after[0], after[1]]
            where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
            order = f" ORDER BY {column} {'DESC' if descending else 'ASC'}, id ASC"
            offset = (page - 1) * per_page if page else 0
            if offset:
                rows = self._rows_at(where, order, params, per_page + 1, offset)
            else:
                rows = self._db.execute(f"{_SELECT}{where}{order} LIMIT ?",
                                        (*params, per_page + 1)).fetchall()
        records = [_record(row) for row in rows[:per_page]]
        last_key = None
        if len(rows) > per_page:
            last = records[-1]
            last_key = (last[sort.lstrip("-")], last["id"])
        return Page(records, total, last_key)

    def _rows_at(self, where: str, order: str, params: list[object], limit: int,
                 offset: int) -> list[tuple[Any, ...]]:
        """A page deep in page mode: the skipped rows are walked in the index alone (ids),
        then only the page's rows are read; OFFSET over full rows read every skipped row."""
        ids = [row[0] for row in self._db.execute(
            f"SELECT id FROM leads{where}{order} LIMIT ? OFFSET ?", (*params, limit, offset))]
        if not ids:
            return []
        marks = ",".join("?" * len(ids))
        found = {row[0]: row for row in self._db.execute(f"{_SELECT} WHERE id IN ({marks})", ids)}
        return [found[lead_id] for lead_id in ids]

    def _count(self, filters: LeadFilters) -> int:
        """`meta.total`, cached per filter set and data version (never per page)."""
        key = (*astuple(filters), self.version)
        if key not in self._counts:
            if len(self._counts) > 1000:
                self._counts.clear()
            clauses, params = filters.where(counting=True)
            where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
            self._counts[key] = self._db.execute(f"SELECT count(*) FROM leads{where}",
                                                 params).fetchone()[0]
        return self._counts[key]

    def _purge_expired(self) -> None:
        """Deleted leads are kept 30 days; checked at most once a minute."""
        now = now_ms()
        if now < self._next_purge_ms:
            return
        self._next_purge_ms = now + 60_000
        cursor = self._db.execute("DELETE FROM leads WHERE deleted_at_ms < ?",
                                  (now - RETENTION_MS,))
        if cursor.rowcount:
            self._db.execute("DELETE FROM lead_tags WHERE lead_id NOT IN (SELECT id FROM leads)")
            self.version += 1

    def api_lead(self, record: Record) -> Record:
        """A lead as the API sends it: `to_api`, plus the fields a newer deployment adds."""
        return {**to_api(record), **self.added_fields}

    def export_leads(self) -> list[Record]:
        with self.lock:
            rows = self._db.execute(f"{_SELECT} ORDER BY id").fetchall()
        return [self.api_lead(_record(row)) for row in rows]

    def random_lead_ids(self, rng: random.Random, count: int) -> list[str]:
        """Ids of live leads picked by `rng` (deterministic for a given data state)."""
        with self.lock:
            top = self._next_seq - 1
            ids: list[str] = []
            for _ in range(count * 4):
                if len(ids) == count or top < 1:
                    break
                row = self._db.execute(
                    "SELECT id FROM leads WHERE seq >= ? AND deleted_at_ms IS NULL "
                    "ORDER BY seq LIMIT 1", (rng.randint(1, top),)).fetchone()
                if row and row[0] not in ids:
                    ids.append(row[0])
            return ids

    def pipeline_of_stage(self, stage_id: str) -> str | None:
        return self._stages.get(stage_id)

    def pipeline(self, pipeline_id: str) -> Record:
        for pipeline in self.pipelines:
            if pipeline.id == pipeline_id:
                return {"id": pipeline.id, "name": pipeline.name,
                        "stages": [{"id": s.id, "name": s.name, "position": s.position,
                                    "probability": s.probability} for s in pipeline.stages],
                        "created_at": to_iso(pipeline.created_at_ms),
                        "updated_at": to_iso(pipeline.updated_at_ms)}
        raise not_found(f"Pipeline '{pipeline_id}'")

    def list_pipelines(self, per_page: int, page: int | None,
                       after: tuple[int, str] | None) -> Page:
        ordered = sorted(self.pipelines, key=lambda p: (p.created_at_ms, p.id))
        if after is not None:
            ordered = [p for p in ordered if (p.created_at_ms, p.id) > after]
        start = (page - 1) * per_page if page else 0
        chunk = ordered[start:start + per_page + 1]
        rows = [self.pipeline(p.id) for p in chunk[:per_page]]
        last = chunk[per_page - 1] if len(chunk) > per_page else None
        return Page(rows, len(self.pipelines), (last.created_at_ms, last.id) if last else None)

    # -- writes --------------------------------------------------------------------------

    def add_lead_fields(self, fields: Record) -> None:
        """From now on every lead carries `fields` at its top level (names the contract
        does not use), as when LeadRat starts sending a new field."""
        taken = sorted(set(fields) & {*LEAD_SCALAR_FIELDS, "tags", "custom_fields"})
        if taken:
            raise ValueError(f"{taken} are lead fields of the contract")
        with self.lock:
            self.added_fields = {**self.added_fields, **fields}
            self.version += 1

    def remove_pipeline(self, pipeline_id: str) -> None:
        """Remove a pipeline, as when someone deletes it in LeadRat: it leaves the list;
        its leads keep their (now dangling) pipeline and stage ids until they are moved."""
        with self.lock:
            self.pipeline(pipeline_id)  # 404 when unknown
            self.pipelines = [p for p in self.pipelines if p.id != pipeline_id]
            self._stages = {stage: owner for stage, owner in self._stages.items()
                            if owner != pipeline_id}
            self._db.execute("DELETE FROM pipelines WHERE id = ?", (pipeline_id,))
            self.version += 1

    def create_lead(self, fields: Record) -> Record:
        with self.lock:
            self._check_email_free(fields["email"], None)
            self._check_placement(fields.get("pipeline_id"), fields.get("stage_id"))
            now = now_ms()
            seq = self._next_seq
            self._next_seq += 1
            record: Record = {
                "id": data.encode_id(ID_PREFIX_LEAD, seq), "name": fields["name"],
                "email": fields["email"], "phone": fields.get("phone"),
                "company": fields.get("company"), "status": fields.get("status", "new"),
                "source": fields.get("source", "api"), "tags": list(fields.get("tags", [])),
                "score": fields.get("score"), "pipeline_id": fields.get("pipeline_id"),
                "stage_id": fields.get("stage_id"),
                "custom_fields": {k: v for k, v in fields.get("custom_fields", {}).items()
                                  if v is not None},
                "created_at": now, "updated_at": now, "deleted_at": None,
            }
            self._db.execute(
                f"INSERT INTO leads ({','.join(LEAD_COLUMNS)}) VALUES "
                f"({','.join('?' * len(LEAD_COLUMNS))})",
                (seq, record["id"], record["name"], record["email"], record["phone"],
                 record["company"], record["status"], record["source"], record["score"],
                 record["pipeline_id"], record["stage_id"],
                 orjson.dumps(record["custom_fields"]).decode(),
                 orjson.dumps(record["tags"]).decode(), now, now, None))
            self._db.executemany("INSERT INTO lead_tags VALUES (?, ?)",
                                 [(tag, record["id"]) for tag in record["tags"]])
            self.version += 1
            self._emit("lead.created", record, None)
            return record

    def update_lead(self, lead_id: str, fields: Record) -> Record:
        """Apply the fields present (custom_fields merged key by key, null removes a key)."""
        with self.lock:
            current = self.live_lead(lead_id)
            changes = dict(fields)
            if "custom_fields" in changes:
                merged = dict(current["custom_fields"])
                for key, value in changes["custom_fields"].items():
                    if value is None:
                        merged.pop(key, None)
                    else:
                        merged[key] = value
                changes["custom_fields"] = merged
            if "email" in changes and changes["email"].lower() != current["email"].lower():
                self._check_email_free(changes["email"], lead_id)
            return self._apply(current, changes, "lead.updated")

    def delete_lead(self, lead_id: str) -> None:
        with self.lock:
            current = self.live_lead(lead_id)
            now = now_ms()
            self._apply(current, {"deleted_at": now}, "lead.updated", now)

    def add_tags(self, lead_id: str, tags: list[str]) -> Record:
        with self.lock:
            current = self.live_lead(lead_id)
            merged = list(current["tags"])
            merged += [tag for tag in dict.fromkeys(tags) if tag not in merged]
            return self._apply(current, {"tags": merged}, "lead.updated")

    def remove_tag(self, lead_id: str, tag: str) -> Record:
        with self.lock:
            current = self.live_lead(lead_id)
            if tag not in current["tags"]:
                raise not_found(f"Tag '{tag}' on lead '{lead_id}'")
            remaining = [t for t in current["tags"] if t != tag]
            return self._apply(current, {"tags": remaining}, "lead.updated")

    def move_lead(self, pipeline_id: str, lead_id: str, stage_id: str) -> Record:
        with self.lock:
            self.pipeline(pipeline_id)
            current = self.live_lead(lead_id)
            if self._stages.get(stage_id) != pipeline_id:
                raise invalid_field("stage_id", "not_in_pipeline",
                                    f"Stage '{stage_id}' is not a stage of '{pipeline_id}'.")
            return self._apply(current, {"pipeline_id": pipeline_id, "stage_id": stage_id},
                               "lead.stage_changed")

    def _apply(self, current: Record, changes: Record, event: str,
               at_ms: int | None = None) -> Record:
        """Write the fields that differ; `updated_at` moves only if something did."""
        changed = {k: v for k, v in changes.items() if current[k] != v}
        if not changed:
            return current
        now = at_ms if at_ms is not None else now_ms()
        previous = {k: current[k] for k in changed}
        previous["updated_at"] = current["updated_at"]
        changed["updated_at"] = now
        updated = {**current, **changed}
        assignments, params = [], []
        for name, value in changed.items():
            if name in ("tags", "custom_fields"):
                value = orjson.dumps(value).decode()
            assignments.append(f"{_COLUMN_OF.get(name, name)} = ?")
            params.append(value)
        self._db.execute(f"UPDATE leads SET {', '.join(assignments)} WHERE id = ?",
                         (*params, current["id"]))
        if "tags" in changed:
            self._db.execute("DELETE FROM lead_tags WHERE lead_id = ?", (current["id"],))
            self._db.executemany("INSERT INTO lead_tags VALUES (?, ?)",
                                 [(tag, current["id"]) for tag in updated["tags"]])
        self.version += 1
        self._emit(event, updated, previous)
        return updated

    def _check_email_free(self, email: str, own_id: str | None) -> None:
        row = self._db.execute(
            "SELECT id FROM leads WHERE email = ? COLLATE NOCASE AND deleted_at_ms IS NULL "
            "AND id IS NOT ?", (email, own_id)).fetchone()
        if row is not None:
            raise ApiError("conflict", f"A lead with email '{email}' already exists.",
                           [{"field": "email", "issue": "duplicate"}])

    def _check_placement(self, pipeline_id: str | None, stage_id: str | None) -> None:
        if stage_id is None and pipeline_id is None:
            return
        if pipeline_id is None or stage_id is None:
            field = "stage_id" if stage_id is None else "pipeline_id"
            raise invalid_field(field, "required", "pipeline_id and stage_id go together.")
        if not any(p.id == pipeline_id for p in self.pipelines):
            raise invalid_field("pipeline_id", "unknown")
        if self._stages.get(stage_id) != pipeline_id:
            raise invalid_field("stage_id", "not_in_pipeline")

    def _emit(self, event: str, record: Record, previous: Record | None) -> None:
        if self.on_change is not None:
            self.on_change(event, self.api_lead(record), to_api(previous) if previous else None)
