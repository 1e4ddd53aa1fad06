"""The public API's endpoints: matching a method and path to a handler over the store."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import unquote

import orjson

from leadrat_source.sandbox import analytics, validation
from leadrat_source.sandbox.cursor import Cursor, decode
from leadrat_source.sandbox.errors import ApiError
from leadrat_source.sandbox.messages import Request, Response, json_response
from leadrat_source.sandbox.store import LeadFilters, Page, Record, Store

Handler = Callable[..., Response]
STRING_FILTERS = ("source", "tag", "pipeline_id", "stage_id")
TIME_FILTERS = ("created_since", "updated_since", "updated_before")


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    template: str  # e.g. "GET /leads/{id}", the key of per-route stats
    handler: Handler


def _body(request: Request) -> Any:
    try:
        return orjson.loads(request.body or b"null")
    except orjson.JSONDecodeError:
        raise ApiError("invalid_request", "The request body is not valid JSON.") from None


Match = tuple[Route, list[str]]


class Api:
    """Endpoint handlers; `before_list` runs before each lead page (the drift fault hooks in)."""

    def __init__(self, store: Store, cursors: bool,
                 before_list: Callable[[], None] | None = None):
        self.store = store
        self.cursors = cursors
        self.before_list = before_list
        self.routes = [
            self._route("GET", "/leads", self.list_leads),
            self._route("POST", "/leads", self.create_lead),
            self._route("GET", "/leads/{id}", self.get_lead),
            self._route("PUT", "/leads/{id}", self.update_lead),
            self._route("DELETE", "/leads/{id}", self.delete_lead),
            self._route("POST", "/leads/{id}/tags", self.add_tags),
            self._route("DELETE", "/leads/{id}/tags/{tag}", self.remove_tag),
            self._route("GET", "/pipelines", self.list_pipelines),
            self._route("GET", "/pipelines/{id}", self.get_pipeline),
            self._route("POST", "/pipelines/{id}/leads", self.move_lead),
            self._route("GET", "/analytics/summary", self.summary),
            self._route("GET", "/analytics/sources", self.sources),
            self._route("GET", "/analytics/funnel", self.funnel),
        ]

    @staticmethod
    def _route(method: str, template: str, handler: Handler) -> Route:
        pattern = re.sub(r"\{\w+\}", "([^/]+)", template)
        return Route(method, re.compile(f"^{pattern}$"), f"{method} {template}", handler)

    def match(self, method: str, path: str) -> Match | None:
        for route in self.routes:
            found = route.pattern.match(path)
            if found and route.method == method:
                return route, [unquote(part) for part in found.groups()]
        return None

    # -- leads ---------------------------------------------------------------------------

    def list_leads(self, request: Request) -> Response:
        query = request.query
        size = validation.per_page(query)
        requested_sort = validation.sort(query)
        requested = self._filter_values(query)
        page: int | None = None
        after = None
        if "cursor" in query:
            scan = self._resume(query, "leads")
            if requested_sort is not None and requested_sort != scan.sort:
                raise self._mismatch("sort")
            filters = LeadFilters(**scan.filters)
            for name, value in requested.items():
                if getattr(filters, name) != value:
                    raise self._mismatch(name)
            sort, after = scan.sort, scan.key
        else:
            page = validation.positive_int(query, "page", 1)
            sort, filters = requested_sort or "created_at", LeadFilters(**requested)
        if self.before_list is not None:
            self.before_list()
        result = self.store.list_leads(filters, sort, size, page, after)
        scope = {k: v for k, v in asdict(filters).items() if v not in (None, False)}
        return self._list(result, size, page, "leads", sort, scope)

    def _filter_values(self, query: dict[str, str]) -> dict[str, Any]:
        values: dict[str, Any] = {name: query[name] for name in STRING_FILTERS if name in query}
        if "status" in query:
            values["status"] = validation.status_filter(query)
        for name in TIME_FILTERS:
            if name in query:
                values[name] = validation.timestamp(query, name)
        if "include_deleted" in query:
            values["include_deleted"] = validation.boolean(query, "include_deleted")
        return values

    def _resume(self, query: dict[str, str], scope: str) -> Cursor:
        if not self.cursors:
            raise ApiError("invalid_request", "This deployment supports page mode only.",
                           [{"field": "cursor", "issue": "unsupported"}])
        if "page" in query:
            raise ApiError("invalid_request", "Send either 'cursor' or 'page', not both.",
                           [{"field": "page", "issue": "conflicts_with_cursor"}])
        return decode(query["cursor"], scope)

    @staticmethod
    def _mismatch(field: str) -> ApiError:
        return ApiError("invalid_request",
                        f"'{field}' differs from the scan the cursor belongs to.",
                        [{"field": field, "issue": "cursor_mismatch"}])

    def _list(self, result: Page, size: int, page: int | None, scope: str, sort: str,
              filters: dict[str, Any]) -> Response:
        meta: dict[str, Any] = {"total": result.total, "page": page, "per_page": size}
        if self.cursors:
            meta["next_cursor"] = (Cursor(scope, sort, filters, result.last_key).encode()
                                   if result.last_key else None)
        rows = ([self.store.api_lead(row) for row in result.rows] if scope == "leads"
                else result.rows)
        return json_response(200, {"data": rows, "meta": meta})

    def _lead(self, record: Record, status: int = 200) -> Response:
        """One lead as the API sends it."""
        return json_response(status, {"data": self.store.api_lead(record)})

    def create_lead(self, request: Request) -> Response:
        fields = validation.lead_create(_body(request))
        return self._lead(self.store.create_lead(fields), 201)

    def get_lead(self, request: Request, lead_id: str) -> Response:
        return self._lead(self.store.live_lead(lead_id))

    def update_lead(self, request: Request, lead_id: str) -> Response:
        body = validation.json_object(_body(request))
        self.store.live_lead(lead_id)
        fields = validation.lead_update(body)
        return self._lead(self.store.update_lead(lead_id, fields))

    def delete_lead(self, request: Request, lead_id: str) -> Response:
        self.store.delete_lead(lead_id)
        return Response(204, content_type=None)

    def add_tags(self, request: Request, lead_id: str) -> Response:
        body = validation.json_object(_body(request))
        self.store.live_lead(lead_id)
        tags = validation.tags(body.get("tags"))
        return self._lead(self.store.add_tags(lead_id, tags))

    def remove_tag(self, request: Request, lead_id: str, tag: str) -> Response:
        return self._lead(self.store.remove_tag(lead_id, tag))

    # -- pipelines -----------------------------------------------------------------------

    def list_pipelines(self, request: Request) -> Response:
        query = request.query
        size = validation.per_page(query)
        page: int | None = None
        after = None
        if "cursor" in query:
            after = self._resume(query, "pipelines").key
        else:
            page = validation.positive_int(query, "page", 1)
        result = self.store.list_pipelines(size, page, after)
        return self._list(result, size, page, "pipelines", "created_at", {})

    def get_pipeline(self, request: Request, pipeline_id: str) -> Response:
        return json_response(200, {"data": self.store.pipeline(pipeline_id)})

    def move_lead(self, request: Request, pipeline_id: str) -> Response:
        body = validation.json_object(_body(request))
        lead_id = validation.required_text(body, "lead_id")
        stage_id = validation.required_text(body, "stage_id")
        moved = self.store.move_lead(pipeline_id, lead_id, stage_id)
        return self._lead(moved)

    # -- analytics -----------------------------------------------------------------------

    def summary(self, request: Request) -> Response:
        start, end = analytics.date_range(request.query)
        return json_response(200, {"data": analytics.summary(self.store, start, end)})

    def sources(self, request: Request) -> Response:
        start, end = analytics.date_range(request.query)
        return json_response(200, {"data": analytics.sources(self.store, start, end)})

    def funnel(self, request: Request) -> Response:
        start, end = analytics.date_range(request.query)
        report = analytics.funnel(self.store, start, end, request.query.get("pipeline_id"))
        return json_response(200, {"data": report})
