"""Background changes to the data, as a live CRM sees them: creates, edits, moves, deletes."""

from __future__ import annotations

import itertools
import random
import threading
from typing import Any

from leadrat_source.sandbox import data
from leadrat_source.sandbox.errors import ApiError
from leadrat_source.sandbox.store import Store

KINDS = ("create", "update", "move", "tag_add", "tag_remove", "tags_clear", "delete")
WEIGHTS = (15, 38, 14, 12, 8, 5, 8)


class Churn:
    """Applies random changes through the store (so each one also emits its webhook event).

    Every change really changes its lead (a move goes to another stage, a tag added is
    new), so each one moves `updated_at`.
    """

    def __init__(self, store: Store, seed: int):
        self.store = store
        self._rng = random.Random(seed * 104_729 + 3)
        self._lock = threading.Lock()
        self._new_keys = itertools.count(1)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def apply(self, changes: int) -> list[dict[str, Any]]:
        """Apply `changes` changes now; describe each as {"kind", "lead_id", ...}."""
        done = []
        with self._lock:
            for _ in range(changes):
                kind = self._rng.choices(KINDS, WEIGHTS)[0]
                try:
                    done.append(self._change(kind))
                except (ApiError, IndexError):  # e.g. no tag to remove, or none left to add
                    done.append(self._change("update"))
        return done

    def drift(self) -> list[dict[str, Any]]:
        """Touch a few leads (the drift fault: records updated while a scan is running)."""
        with self._lock:
            return [self._update(lead_id)
                    for lead_id in self.store.random_lead_ids(self._rng, self._rng.randint(1, 3))]

    def start(self, per_minute: float) -> None:
        if per_minute <= 0:
            return
        interval = 60.0 / per_minute
        self._thread = threading.Thread(target=self._run, args=(interval,), name="sandbox-churn",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)

    def _run(self, interval: float) -> None:
        while not self._stop.wait(interval):
            self.apply(1)

    def _pick(self) -> str:
        ids = self.store.random_lead_ids(self._rng, 1)
        if not ids:
            raise ApiError("not_found", "no live lead to change")
        return ids[0]

    def _change(self, kind: str) -> dict[str, Any]:
        rng = self._rng
        if kind == "create":
            first, last = rng.choice(data.FIRST_NAMES), rng.choice(data.LAST_NAMES)
            lead = self.store.create_lead({
                "name": f"{first} {last}",
                "email": f"churn.{next(self._new_keys)}.{rng.randrange(10**9)}@example.com",
                "status": "new", "source": rng.choice(data.SOURCES),
                "score": rng.randint(0, 100), "tags": rng.sample(data.TAGS, rng.randint(0, 2)),
            })
            return {"kind": kind, "lead_id": lead["id"]}
        lead_id = self._pick()
        if kind == "update":
            return self._update(lead_id)
        if kind == "move":
            pipeline = rng.choice(self.store.pipelines)
            current = self.store.live_lead(lead_id)["stage_id"]
            stage = rng.choice([s for s in pipeline.stages if s.id != current])
            self.store.move_lead(pipeline.id, lead_id, stage.id)
            return {"kind": kind, "lead_id": lead_id, "pipeline_id": pipeline.id,
                    "stage_id": stage.id}
        if kind == "tag_add":
            tags = self.store.live_lead(lead_id)["tags"]
            tag = rng.choice([t for t in data.TAGS if t not in tags])
            self.store.add_tags(lead_id, [tag])
            return {"kind": kind, "lead_id": lead_id, "tag": tag}
        if kind == "tag_remove":
            tags = self.store.live_lead(lead_id)["tags"]
            tag = rng.choice(tags) if tags else "absent"
            self.store.remove_tag(lead_id, tag)
            return {"kind": kind, "lead_id": lead_id, "tag": tag}
        if kind == "tags_clear":
            tags = self.store.live_lead(lead_id)["tags"]
            if not tags:
                raise ApiError("not_found", "no tags")
            for tag in tags:
                self.store.remove_tag(lead_id, tag)
            return {"kind": kind, "lead_id": lead_id, "tags": tags}
        self.store.delete_lead(lead_id)
        return {"kind": "delete", "lead_id": lead_id}

    def _update(self, lead_id: str) -> dict[str, Any]:
        rng = self._rng
        what = rng.choice(("score", "status", "custom_fields", "new_field"))
        fields: dict[str, Any]
        if what == "score":
            fields = {"score": rng.randint(0, 100)}
        elif what == "status":
            fields = {"status": rng.choice(data.STATUSES)}
        elif what == "custom_fields":
            fields = {"custom_fields": {"budget": round(rng.uniform(20_000, 2_000_000), 2),
                                        "newsletter": rng.random() < 0.5}}
        else:
            # A key no lead had before: schema evolution downstream.
            fields = {"custom_fields": {f"churn_field_{next(self._new_keys)}": "set by churn"}}
        before = self.store.live_lead(lead_id)["updated_at"]
        after = self.store.update_lead(lead_id, fields)
        if after["updated_at"] == before:  # the random value happened to be the current one
            after = self.store.update_lead(lead_id, {"score": (after["score"] or 0) % 100 + 1})
        return {"kind": "update", "lead_id": lead_id, "fields": sorted(fields)}
