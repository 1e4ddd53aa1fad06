"""Push lead changes to LeadRat concurrently and classify what came back.

The client already paces every thread from the rate-limit headers and retries 429, 5xx
and network faults; this module only fans out and sorts the answers: confirmed; failed
for this row (a permanent 404/409/422/400, or a transient error whose retries ran out);
or fatal for the whole run (bad key, read-only key, quota spent).
"""

from __future__ import annotations

import concurrent.futures as cf
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from leadrat_source import settings
from leadrat_source.client import LeadRatClient
from leadrat_source.errors import (
    AuthenticationFailed,
    ConfigurationError,
    Conflict,
    InvalidRequest,
    LeadRatError,
    NotFound,
    PermissionDenied,
    QuotaExhausted,
    ValidationFailed,
)
from leadrat_source.reverse_sync.columns import LeadChange

#: A row's error that will not go away by resending the same row.
PERMANENT_ERRORS = (NotFound, Conflict, ValidationFailed, InvalidRequest)
#: Errors that no other row can escape either: stop the run.
FATAL_ERRORS = (AuthenticationFailed, PermissionDenied, QuotaExhausted, ConfigurationError)


@dataclass(frozen=True)
class Outcome:
    """The result of one row: `error` is None when LeadRat confirmed every request."""

    change: LeadChange
    digest: str
    error: LeadRatError | None = None

    @property
    def permanent(self) -> bool:
        return isinstance(self.error, PERMANENT_ERRORS)

    def error_row(self) -> dict[str, Any]:
        """The error as columns of `reverse_sync_errors` (details as JSON text, which every
        destination's loader takes)."""
        assert self.error is not None
        return {
            "code": self.error.code or type(self.error).__name__,
            "status": self.error.status,
            "message": self.error.message,
            "details": json.dumps(self.error.details),
            "permanent": self.permanent,
        }


def push(client: LeadRatClient, change: LeadChange) -> None:
    """Apply one row: the partial PUT first, then tags, then the stage move. Every step is
    idempotent, so resending a row that half-succeeded before is safe."""
    if change.update:
        client.leads.update(change.lead_id, **change.update)
    if change.tags:
        client.leads.add_tags(change.lead_id, change.tags)
    if change.stage:
        pipeline_id, stage_id = change.stage
        client.pipelines.move_lead(pipeline_id, change.lead_id, stage_id)


def _attempt(client: LeadRatClient, change: LeadChange, digest: str) -> Outcome:
    try:
        push(client, change)
    except FATAL_ERRORS:
        raise
    except LeadRatError as error:
        return Outcome(change, digest, error)
    return Outcome(change, digest)


class Delivery:
    """A thread pool with a bounded number of rows in flight (memory stays flat however
    large the input). `submit` yields the outcomes that finished meanwhile."""

    def __init__(self, client: LeadRatClient, workers: int = settings.DELIVERY_WORKERS) -> None:
        self._client = client
        self._pool = cf.ThreadPoolExecutor(max_workers=workers,
                                           thread_name_prefix="reverse-sync")
        self._limit = workers * 4
        self._in_flight: set[cf.Future[Outcome]] = set()

    def submit(self, change: LeadChange, digest: str) -> Iterator[Outcome]:
        while len(self._in_flight) >= self._limit:
            yield from self._collect(cf.FIRST_COMPLETED)
        self._in_flight.add(self._pool.submit(_attempt, self._client, change, digest))

    def drain(self) -> Iterator[Outcome]:
        """Every outcome still in flight."""
        while self._in_flight:
            yield from self._collect(cf.FIRST_COMPLETED)

    def _collect(self, when: str) -> Iterator[Outcome]:
        done, self._in_flight = cf.wait(self._in_flight, return_when=when)
        fatal: BaseException | None = None
        for future in done:
            error = future.exception()
            if error is None:
                yield future.result()
            elif fatal is None:
                fatal = error
        if fatal is not None:
            raise fatal

    def stop(self, on_outcome: Callable[[Outcome], None]) -> None:
        """After a fatal error: send nothing new, but record what was already confirmed."""
        for future in self._in_flight:
            future.cancel()
        done, _ = cf.wait(self._in_flight)
        self._in_flight = set()
        for future in done:
            if not future.cancelled() and future.exception() is None:
                on_outcome(future.result())
        self._pool.shutdown(wait=True)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
