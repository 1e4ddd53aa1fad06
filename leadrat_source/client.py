"""`LeadRatClient`: the LeadRat API as Python methods — `client.leads.update(id, score=80)`.

This module maps endpoints to methods; sending, pacing, retrying and error translation
live in `transport`, `pacing`, `retrying` and `response_errors` (the classes in `errors`).
It knows nothing of dlt.

Which calls are safe to retry (the client retries transient failures itself):
GET, PUT (idempotent by contract), DELETE and tag changes are safe. `leads.create`
(POST /leads) is not idempotent: if an attempt fails without a clear answer (timeout,
dropped connection, 5xx) the retry may get `DuplicateLead` for the lead that attempt
created — the error's message says so. `pipelines.move_lead` is safe (moving twice to
the same stage ends in the same place).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

from leadrat_source import settings
from leadrat_source.contract import DEFAULT_BASE_URL, MAX_PER_PAGE
from leadrat_source.pacing import RateLimitPacer, RateLimitStatus
from leadrat_source.pagination import Page, iter_pages
from leadrat_source.retrying import RetryPolicy
from leadrat_source.stats import RequestStats
from leadrat_source.transport import CredentialsAuth, Transport

__all__ = ["LeadRatClient", "Page", "RateLimitStatus", "RequestStats"]

DateLike = date | str | None


def _segment(value: str) -> str:
    """An ID or tag as one URL path segment (a tag may contain `/` or spaces)."""
    return quote(str(value), safe="")


class _ListResource:
    """List, iterate and fetch one kind of object under `path` (e.g. /leads)."""

    path: str

    def __init__(self, transport: Transport) -> None:
        self._transport = transport

    def list_page(
        self,
        *,
        per_page: int = MAX_PER_PAGE,
        page: int | None = None,
        cursor: str | None = None,
        **filters: Any,
    ) -> Page:
        """One page, by number or by cursor; filters use the contract's names."""
        params = {**filters, "per_page": per_page, "page": page, "cursor": cursor}
        return Page.from_body(self._transport.request("GET", self.path, params=params))

    def iter_pages(self, *, per_page: int = MAX_PER_PAGE, **filters: Any) -> Iterator[Page]:
        """Every page of a scan: by cursor if the server sends `meta.next_cursor`, else by
        page number up to the last page (`pagination.is_last_page`)."""

        def fetch(*, page: int | None, cursor: str | None) -> Page:
            return self.list_page(per_page=per_page, page=page, cursor=cursor, **filters)

        return iter_pages(fetch, per_page)

    def iter(self, *, per_page: int = MAX_PER_PAGE, **filters: Any) -> Iterator[dict[str, Any]]:
        """Every object of a scan, one by one."""
        for page in self.iter_pages(per_page=per_page, **filters):
            yield from page.items

    def get(self, object_id: str) -> dict[str, Any]:
        """One object by ID; `NotFound` if unknown (or, for leads, deleted)."""
        return self._data(self._transport.request("GET", f"{self.path}/{_segment(object_id)}"))

    @staticmethod
    def _data(body: Any) -> Any:
        """The `data` of a `{"data": ...}` envelope."""
        return body.get("data") if isinstance(body, dict) else body


class Leads(_ListResource):
    """`/leads`. Filters: status, source, tag, pipeline_id, stage_id, created_since,
    updated_since, updated_before, sort, include_deleted."""

    path = "/leads"

    def create(self, **fields: Any) -> dict[str, Any]:
        """Create a lead (`name` and `email` required). Not idempotent: see the module doc;
        raises `DuplicateLead` when the email exists, `ValidationFailed` on bad fields."""
        return self._data(self._transport.request("POST", self.path, body=fields))

    def update(self, lead_id: str, **fields: Any) -> dict[str, Any]:
        """PUT exactly the given fields (a partial update; `custom_fields` merge key by key,
        a key set to None is removed). Idempotent, so safe to retry."""
        path = f"{self.path}/{_segment(lead_id)}"
        return self._data(self._transport.request("PUT", path, body=fields))

    def delete(self, lead_id: str) -> None:
        """Soft-delete a lead. Safe to retry: a 404 after an attempt that failed
        ambiguously means that attempt deleted it, and counts as success."""
        path = f"{self.path}/{_segment(lead_id)}"
        self._transport.request("DELETE", path, missing_ok_after_retry=True)

    def add_tags(self, lead_id: str, tags: list[str]) -> dict[str, Any]:
        """Add tags (idempotent); returns the lead."""
        path = f"{self.path}/{_segment(lead_id)}/tags"
        return self._data(self._transport.request("POST", path, body={"tags": list(tags)}))

    def remove_tag(self, lead_id: str, tag: str) -> dict[str, Any]:
        """Remove one tag; returns the lead. `NotFound` if the lead lacks the tag — which,
        after a retried ambiguous failure, may mean the earlier attempt removed it."""
        path = f"{self.path}/{_segment(lead_id)}/tags/{_segment(tag)}"
        return self._data(self._transport.request("DELETE", path))


class Pipelines(_ListResource):
    """`/pipelines` and moving leads between stages."""

    path = "/pipelines"

    def move_lead(self, pipeline_id: str, lead_id: str, stage_id: str) -> dict[str, Any]:
        """Move a lead into a stage of this pipeline; returns the lead. `ValidationFailed`
        if the stage is not in the pipeline. Safe to retry."""
        path = f"{self.path}/{_segment(pipeline_id)}/leads"
        body = {"lead_id": lead_id, "stage_id": stage_id}
        return self._data(self._transport.request("POST", path, body=body))


class Analytics:
    """`/analytics/*` reports; dates are inclusive `YYYY-MM-DD` (default: last 30 days)."""

    def __init__(self, transport: Transport) -> None:
        self._transport = transport

    def summary(self, date_from: DateLike = None, date_to: DateLike = None) -> dict[str, Any]:
        return self._get("/analytics/summary", {"from": date_from, "to": date_to})

    def sources(self, date_from: DateLike = None, date_to: DateLike = None) -> list[dict[str, Any]]:
        return self._get("/analytics/sources", {"from": date_from, "to": date_to})

    def funnel(
        self,
        date_from: DateLike = None,
        date_to: DateLike = None,
        pipeline_id: str | None = None,
    ) -> list[dict[str, Any]]:
        params = {"from": date_from, "to": date_to, "pipeline_id": pipeline_id}
        return self._get("/analytics/funnel", params)

    def _get(self, path: str, params: dict[str, Any]) -> Any:
        # The reports take whole days: a datetime is cut to its date.
        days = {k: v.date() if isinstance(v, datetime) else v for k, v in params.items()}
        body = self._transport.request("GET", path, params=days)
        return body.get("data") if isinstance(body, dict) else body


class LeadRatClient:
    """Client of the LeadRat API. Thread-safe; use as a context manager or call `close()`.

    Give exactly one of `api_key` or `bearer_token`. `max_attempts` bounds the tries
    per request; a wait longer than `max_wait_seconds` (the daily cap) raises
    `QuotaExhausted` instead of sleeping. `pacer` may be shared by clients of one key;
    by default each client has its own. `backoff_base`/`backoff_cap` tune the
    exponential backoff (small values make tests fast).
    """

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        *,
        api_key: str | None = None,
        bearer_token: str | None = None,
        timeout: float = settings.REQUEST_TIMEOUT_SECONDS,
        max_attempts: int = settings.MAX_ATTEMPTS,
        max_wait_seconds: float = settings.MAX_WAIT_SECONDS,
        pacer: RateLimitPacer | None = None,
        pool_size: int = 16,
        backoff_base: float = settings.BACKOFF_BASE_SECONDS,
        backoff_cap: float = settings.BACKOFF_CAP_SECONDS,
    ) -> None:
        self.stats = RequestStats()
        self.pacer = pacer if pacer is not None else RateLimitPacer()
        policy = RetryPolicy(
            max_attempts=max_attempts,
            backoff_base=backoff_base,
            backoff_cap=backoff_cap,
            max_wait_seconds=max_wait_seconds,
        )
        self._transport = Transport(
            base_url,
            auth=CredentialsAuth(api_key=api_key, bearer_token=bearer_token),
            timeout=timeout,
            policy=policy,
            pacer=self.pacer,
            pool_size=pool_size,
            stats=self.stats,
        )
        self.leads = Leads(self._transport)
        self.pipelines = Pipelines(self._transport)
        self.analytics = Analytics(self._transport)

    @property
    def base_url(self) -> str:
        return self._transport.base_url

    @property
    def rate_limit(self) -> RateLimitStatus | None:
        """The budget the API last reported (limit, remaining, reset), or None."""
        return self.pacer.status

    @property
    def rate_limit_wait_seconds(self) -> float:
        """How long the rate limit has held this client back so far: wall-clock time with
        a request waiting for budget, plus the sleeps before retrying a 429."""
        return self.pacer.stats.held_seconds + self.stats.snapshot().rate_limit_retry_seconds

    def close(self) -> None:
        self._transport.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"LeadRatClient(base_url={self.base_url!r}, auth=<redacted>)"
