"""The receiver's ASGI app (Starlette): `POST /webhooks/leadrat`, `GET /healthz`, `GET /metrics`.

A delivery is answered 2xx only once its event is committed to the journal; everything
that is rejected is rejected before anything is stored:

| answer | when |
|---|---|
| 200 `{"received": true, "duplicate": false}` | stored in the journal |
| 200 `{"received": true, "duplicate": true}` | an event id already received: not stored again |
| 400 | signature header missing or garbled; body not JSON, or not a lead event of a known type |
| 401 | no `v1=` entry matches a configured secret; timestamp outside the tolerance |
| 413 | body over 1 MiB (refused from `Content-Length`, or as soon as the stream passes it) |
| 503 | the journal cannot be written (disk full, ...): LeadRat retries later |

Logs name event ids and types and the reasons of rejections, never secrets, signatures or
payloads.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from leadrat_source.contract import SIGNATURE_HEADER
from leadrat_source.webhooks.events import InvalidEvent, LeadEvent
from leadrat_source.webhooks.journal import GroupCommitter, Journal
from leadrat_source.webhooks.metrics import Metrics
from leadrat_source.webhooks.signature import SignatureRejected, SignatureVerifier

log = logging.getLogger("leadrat_source.webhooks.app")

WEBHOOK_PATH = "/webhooks/leadrat"


class BodyTooLarge(Exception):
    pass


class ClientGone(Exception):
    """The sender disconnected before its body was complete (nothing is stored)."""


ACCEPTED = b'{"received":true,"duplicate":false}'
DUPLICATE = b'{"received":true,"duplicate":true}'


async def _read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """The raw body, refused as soon as it passes `limit` bytes (never read whole)."""
    for name, value in scope["headers"]:
        if name == b"content-length" and value.isdigit() and int(value) > limit:
            raise BodyTooLarge
    chunks = []
    size = 0
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
        more = message.get("more_body", False)
    return b"".join(chunks)


def _header(scope: Scope, name: bytes) -> str | None:
    """The first value of the header `name` (lower case)."""
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


async def _answer(send: Send, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


class AsgiEndpoint:
    """The hot path as a plain ASGI endpoint of its Starlette route (an object, not a
    function, so Starlette does not wrap it): no Request and Response objects per delivery.
    `handler` returns the status and the JSON body."""

    def __init__(self, handler: Callable[[Scope, Receive], Awaitable[tuple[int, bytes]]]):
        self._handler = handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await _answer(send, *await self._handler(scope, receive))


class DeliveriesFirst:
    """`POST /webhooks/leadrat` straight to its endpoint; every other request through
    Starlette (its middleware and router, which also answer 404 and 405). Starlette's two
    middleware layers, its routing and its two wrappers around each `send` cost about a
    tenth of the server's CPU per acknowledgement; an exception in the endpoint is still
    answered 500 and logged, by uvicorn."""

    def __init__(self, deliveries: ASGIApp, other: ASGIApp):
        self._deliveries = deliveries
        self._other = other

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] == "http" and scope["path"] == WEBHOOK_PATH
                and scope["method"] == "POST"):
            await self._deliveries(scope, receive, send)
        else:
            await self._other(scope, receive, send)


def create_app(verifier: SignatureVerifier, committer: GroupCommitter, journal: Journal,
               metrics: Metrics, max_body_bytes: int,
               flusher_alive: Callable[[], bool]) -> ASGIApp:
    signature_header = SIGNATURE_HEADER.lower().encode()

    def reject(status: int, reason: str, event_id: str | None = None) -> tuple[int, bytes]:
        metrics.reject(reason)
        log.info("rejected %s: %s (%d)", event_id or "a delivery", reason, status)
        return status, orjson.dumps({"error": reason})

    async def accept(scope: Scope, receive: Receive) -> tuple[int, bytes]:
        try:
            body = await _read_body(scope, receive, max_body_bytes)
        except BodyTooLarge:
            return reject(413, "body over 1 MiB")
        except ClientGone:
            return 400, b'{"error":"incomplete body"}'  # nobody is there to read it
        try:
            verifier.verify(_header(scope, signature_header), body, time.time())
        except SignatureRejected as rejection:
            return reject(rejection.status, rejection.reason)
        try:
            event = LeadEvent.parse(body)
        except InvalidEvent as invalid:
            return reject(400, str(invalid))
        loop = asyncio.get_running_loop()
        stored_future: asyncio.Future[bool | BaseException] = loop.create_future()
        committer.submit(event.id, body, lambda result: loop.call_soon_threadsafe(
            stored_future.set_result, result))
        stored = await stored_future
        if isinstance(stored, BaseException):
            return reject(503, "journal unavailable", event.id)
        metrics.count("received" if stored else "duplicates")
        log.debug("%s %s %s", "accepted" if stored else "duplicate", event.id, event.type)
        return 200, ACCEPTED if stored else DUPLICATE

    async def healthz(request: Request) -> Response:
        """503 while no flusher process runs (it died; another one is being started):
        events only pile up in the journal meanwhile."""
        pending, _ = journal.depth()
        if not flusher_alive():
            return JSONResponse({"status": "flusher stopped", "journal_depth": pending},
                                status_code=503)
        return JSONResponse({"status": "ok", "journal_depth": pending})

    async def metrics_text(request: Request) -> Response:
        return PlainTextResponse(metrics.render(journal.depth, flusher_alive()),
                                 media_type="text/plain; version=0.0.4")

    deliveries = AsgiEndpoint(accept)
    return DeliveriesFirst(deliveries, Starlette(routes=[
        Route(WEBHOOK_PATH, deliveries, methods=["POST"]),  # reached by other methods: 405
        Route("/healthz", healthz, methods=["GET"]),
        Route("/metrics", metrics_text, methods=["GET"]),
    ]))
