"""One request's way through the sandbox: admin or API; faults, auth, rate limit, endpoint.

Order for API routes: latency, then faults that happen before the API is reached
(scripted `fail_next`, gateway errors, dropped connections), then credentials (401),
then the budget (429), then faults of the API itself (500, spurious 429), then the
endpoint; faults of the finished response come last: a cursor page that names a cursor
seen before as the next one, its own or the scan's first (server bugs a client must
refuse, not follow forever), then a truncated body.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import orjson

from leadrat_source.contract import RETRY_AFTER_HEADER
from leadrat_source.sandbox.auth import READ, Keys
from leadrat_source.sandbox.errors import ApiError
from leadrat_source.sandbox.faults import GATEWAY_STATUSES, Faults
from leadrat_source.sandbox.messages import Request, Response, WireMode, json_response
from leadrat_source.sandbox.ratelimit import RateLimiter
from leadrat_source.sandbox.routes import Api, Match
from leadrat_source.sandbox.stats import Stats

ANONYMOUS = "anonymous"
CODE_OF_STATUS = {400: "invalid_request", 401: "unauthorized", 403: "forbidden",
                  404: "not_found", 409: "conflict", 422: "validation_error",
                  429: "rate_limit_exceeded"}
GATEWAY_BODY = ("<html><head><title>{status}</title></head><body><center><h1>{status} "
                "Gateway Error</h1></center><hr><center>leadrat-edge</center></body></html>")


def error_response(error: ApiError, headers: dict[str, str]) -> Response:
    return json_response(error.status, error.envelope(), headers)


def gateway_response(status: int) -> Response:
    """What the gateway in front of the API sends: HTML, no rate-limit headers."""
    return Response(status, GATEWAY_BODY.format(status=status).encode(),
                    content_type="text/html; charset=utf-8")


def with_next_cursor(page: dict[str, Any], cursor: str) -> bytes:
    """The body of the list `page` with `cursor` as its `meta.next_cursor`, even on the last
    page: a client following a cursor it has asked with before asks for the same pages
    forever."""
    page["meta"]["next_cursor"] = cursor
    return orjson.dumps(page)


class Application:
    def __init__(self, api: Api, keys: Keys, limiter: RateLimiter, faults: Faults,
                 stats: Stats, admin: Callable[[Request], Response]):
        self.api = api
        self.keys = keys
        self.limiter = limiter
        self.faults = faults
        self.stats = stats
        self.admin = admin

    def handle(self, request: Request) -> Response:
        if request.path.startswith("/_sandbox/") or request.path == "/openapi.json":
            return self.admin(request)
        matched = self.api.match(request.method, request.path)
        self.stats.request(matched[0].template if matched else f"{request.method} <unmatched>")
        response = self._serve(request, matched)
        if response.wire is not WireMode.DROP:
            self.stats.response(response.status, rate_limited=response.status == 429)
        return response

    def _serve(self, request: Request, matched: Match | None) -> Response:
        faults = self.faults
        if faults.latency_ms > 0:
            time.sleep(faults.latency_ms / 1000)
        scripted = faults.take_fail_next(request.path)
        if scripted in GATEWAY_STATUSES or (scripted is None and faults.roll("gateway_error_rate")):
            self.stats.fault()
            return gateway_response(scripted or faults.gateway_status())
        if faults.roll("drop_rate"):
            self.stats.fault()
            return Response(0, wire=WireMode.DROP)
        identity = self.keys.identify(request.headers)
        if scripted is not None:
            self.stats.fault()
            bucket = identity[1] if identity else ANONYMOUS
            return self._scripted(scripted, self.limiter.peek(bucket).headers)
        if identity is None:
            headers = self.limiter.peek(ANONYMOUS).headers
            return error_response(ApiError("unauthorized", "Invalid or missing API key."), headers)
        role, bucket = identity
        verdict = self.limiter.consume(bucket)
        if not verdict.allowed:
            message = ("The daily request cap is spent." if verdict.daily_cap_spent
                       else "Too many requests in this window.")
            return error_response(ApiError("rate_limit_exceeded", message), verdict.headers)
        headers = verdict.headers
        if faults.roll("error_rate"):
            self.stats.fault()
            return self._scripted(500, headers)
        if faults.roll("spurious_429_rate"):
            self.stats.fault()
            return self._scripted(429, headers)
        return self._damage(request, self._endpoint(request, matched, role, headers))

    def _damage(self, request: Request, response: Response) -> Response:
        """The faults of a finished answer: its next cursor one seen before, its body cut short."""
        cursor = request.query.get("cursor")
        if cursor and response.status == 200:
            self._misdirect(cursor, response)
        if self.faults.roll("truncate_rate") and response.body:
            self.stats.fault()
            response.wire = WireMode.TRUNCATE
        return response

    def _misdirect(self, cursor: str, response: Response) -> None:
        """Make the list page asked for by `cursor` name a cursor seen before as the next:
        that same one (`repeat_cursor_rate`, A -> A) or, instead of ending the scan on its
        last page, the scan's first cursor (`cursor_cycle_rate`: the scan starts over,
        A -> B -> ... -> A; a scan whose only cursor page is `cursor` is left alone)."""
        if self.faults.roll("repeat_cursor_rate"):
            self.stats.fault()
            response.body = with_next_cursor(orjson.loads(response.body), cursor)
            return
        if self.faults.rates["cursor_cycle_rate"] <= 0:
            return  # off: no parsing, no memory
        page = orjson.loads(response.body)
        if not isinstance(page.get("meta"), dict):
            return  # not a list page
        given = page["meta"].get("next_cursor")
        start = self.faults.scan_start(cursor, given)
        if given is None and start != cursor and self.faults.roll("cursor_cycle_rate"):
            self.stats.fault()
            response.body = with_next_cursor(page, start)

    def _endpoint(self, request: Request, matched: Match | None,
                  role: str, headers: dict[str, str]) -> Response:
        try:
            if matched is None:
                raise ApiError("not_found", f"No route {request.method} {request.path}.")
            route, params = matched
            if role == READ and request.method != "GET":
                raise ApiError("forbidden", "This key is read-only.")
            response: Response = route.handler(request, *params)
        except ApiError as error:
            return error_response(error, headers)
        response.headers.update(headers)
        return response

    @staticmethod
    def _scripted(status: int, headers: dict[str, str]) -> Response:
        """An injected API error: JSON envelope with the rate-limit headers."""
        code = CODE_OF_STATUS.get(status, "server_error")
        headers = dict(headers)
        if status == 429:
            headers[RETRY_AFTER_HEADER] = "1"
        error = ApiError(code, "Injected fault.")
        return json_response(status, error.envelope(), headers)
