"""Routes for tests and benchmarks (/_sandbox/*) and the contract document (/openapi.json).

No auth, no rate limit, no faults: they observe and steer the sandbox and are not part
of LeadRat's API.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import resources
from typing import Any

import orjson

from leadrat_source.sandbox.churn import Churn
from leadrat_source.sandbox.errors import ApiError
from leadrat_source.sandbox.faults import Faults
from leadrat_source.sandbox.messages import Request, Response, json_response
from leadrat_source.sandbox.ratelimit import RateLimiter
from leadrat_source.sandbox.stats import Stats
from leadrat_source.sandbox.store import Store


def openapi_document() -> bytes:
    return resources.files("leadrat_source").joinpath("openapi.json").read_bytes()


def _error(status: int, message: str) -> Response:
    return json_response(status, {"error": {"code": "invalid_request" if status == 400
                                            else "not_found", "message": message,
                                            "details": []}})


Body = dict[str, Any]


class Admin:
    """The admin routes as a table of "METHOD /path" to handler; each handler gets the
    request's body, already parsed and checked to be a JSON object."""

    def __init__(self, store: Store, stats: Stats, faults: Faults, churn: Churn,
                 limiter: RateLimiter, extra_stats: Callable[[], dict[str, Any]]):
        self.store = store
        self.limiter = limiter
        self.stats = stats
        self.faults = faults
        self.churn = churn
        self.extra_stats = extra_stats
        self._openapi: bytes | None = None
        self._routes: dict[str, Callable[[Body], Response]] = {
            "GET /openapi.json": self._openapi_document,
            "GET /_sandbox/stats": self._stats,
            "POST /_sandbox/stats/reset": self._reset_stats,
            "GET /_sandbox/faults": self._faults,
            "POST /_sandbox/faults": self._set_faults,
            "POST /_sandbox/churn": self._churn,
            "POST /_sandbox/next_day": self._next_day,
            "POST /_sandbox/lead_fields": self._add_lead_fields,
            "POST /_sandbox/remove_pipeline": self._remove_pipeline,
            "GET /_sandbox/export": self._export,
        }

    def __call__(self, request: Request) -> Response:
        key = f"{request.method} {request.path}"
        try:
            body = orjson.loads(request.body) if request.body else {}
        except orjson.JSONDecodeError:
            return _error(400, "The request body is not valid JSON.")
        if not isinstance(body, dict):
            return _error(400, "The request body must be a JSON object.")
        route = self._routes.get(key)
        if route is None:
            return _error(404, f"No admin route {key}.")
        return route(body)

    def _openapi_document(self, body: Body) -> Response:
        self._openapi = self._openapi or openapi_document()
        return Response(200, self._openapi)

    def _stats(self, body: Body) -> Response:
        return json_response(200, {**self.stats.snapshot(), **self.extra_stats()})

    def _reset_stats(self, body: Body) -> Response:
        self.stats.reset()
        return json_response(200, self.stats.snapshot())

    def _faults(self, body: Body) -> Response:
        return json_response(200, self.faults.snapshot())

    def _set_faults(self, body: Body) -> Response:
        try:
            self.faults.set(**body)
        except (ValueError, TypeError, KeyError) as error:
            return _error(400, str(error))
        return json_response(200, self.faults.snapshot())

    def _churn(self, body: Body) -> Response:
        changes = body.get("changes", 1)
        if not isinstance(changes, int) or changes < 0:
            return _error(400, "'changes' must be a non-negative integer.")
        return json_response(200, {"changes": self.churn.apply(changes)})

    def _next_day(self, body: Body) -> Response:
        return json_response(200, {"days_played": self.limiter.next_day()})

    def _add_lead_fields(self, body: Body) -> Response:
        fields = body.get("fields")
        if not isinstance(fields, dict) or not fields:
            return _error(400, "'fields' must be a non-empty JSON object.")
        try:
            self.store.add_lead_fields(fields)
        except ValueError as error:
            return _error(400, str(error))
        return json_response(200, {"fields": self.store.added_fields})

    def _remove_pipeline(self, body: Body) -> Response:
        pipeline_id = body.get("pipeline_id")
        if not isinstance(pipeline_id, str):
            return _error(400, "'pipeline_id' must be a string.")
        try:
            self.store.remove_pipeline(pipeline_id)
        except ApiError as error:
            return _error(404, error.message)
        return json_response(200, {"pipelines": [p.id for p in self.store.pipelines]})

    def _export(self, body: Body) -> Response:
        return json_response(200, self.store.export_leads())
