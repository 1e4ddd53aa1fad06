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


class Admin:
    def __init__(self, store: Store, stats: Stats, faults: Faults, churn: Churn,
                 limiter: RateLimiter, extra_stats: Callable[[], dict[str, Any]]):
        self.store = store
        self.limiter = limiter
        self.stats = stats
        self.faults = faults
        self.churn = churn
        self.extra_stats = extra_stats
        self._openapi: bytes | None = None

    def __call__(self, request: Request) -> Response:
        key = f"{request.method} {request.path}"
        try:
            body = orjson.loads(request.body) if request.body else {}
        except orjson.JSONDecodeError:
            return _error(400, "The request body is not valid JSON.")
        if not isinstance(body, dict):
            return _error(400, "The request body must be a JSON object.")
        if key == "GET /openapi.json":
            self._openapi = self._openapi or openapi_document()
            return Response(200, self._openapi)
        if key == "GET /_sandbox/stats":
            return json_response(200, {**self.stats.snapshot(), **self.extra_stats()})
        if key == "POST /_sandbox/stats/reset":
            self.stats.reset()
            return json_response(200, self.stats.snapshot())
        if key == "GET /_sandbox/faults":
            return json_response(200, self.faults.snapshot())
        if key == "POST /_sandbox/faults":
            try:
                self.faults.set(**body)
            except (ValueError, TypeError, KeyError) as error:
                return _error(400, str(error))
            return json_response(200, self.faults.snapshot())
        if key == "POST /_sandbox/churn":
            changes = body.get("changes", 1)
            if not isinstance(changes, int) or changes < 0:
                return _error(400, "'changes' must be a non-negative integer.")
            return json_response(200, {"changes": self.churn.apply(changes)})
        if key == "POST /_sandbox/next_day":
            return json_response(200, {"days_played": self.limiter.next_day()})
        if key == "POST /_sandbox/lead_fields":
            fields = body.get("fields")
            if not isinstance(fields, dict) or not fields:
                return _error(400, "'fields' must be a non-empty JSON object.")
            try:
                self.store.add_lead_fields(fields)
            except ValueError as error:
                return _error(400, str(error))
            return json_response(200, {"fields": self.store.added_fields})
        if key == "POST /_sandbox/remove_pipeline":
            pipeline_id = body.get("pipeline_id")
            if not isinstance(pipeline_id, str):
                return _error(400, "'pipeline_id' must be a string.")
            try:
                self.store.remove_pipeline(pipeline_id)
            except ApiError as error:
                return _error(404, error.message)
            return json_response(200, {"pipelines": [p.id for p in self.store.pipelines]})
        if key == "GET /_sandbox/export":
            return json_response(200, self.store.export_leads())
        return _error(404, f"No admin route {key}.")
