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
from collections.abc import Callable

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from leadrat_source.contract import SIGNATURE_HEADER
from leadrat_source.webhooks.events import InvalidEvent, LeadEvent
from leadrat_source.webhooks.journal import GroupCommitter, Journal
from leadrat_source.webhooks.metrics import Metrics
from leadrat_source.webhooks.signature import SignatureRejected, SignatureVerifier

log = logging.getLogger("leadrat_source.webhooks.app")

WEBHOOK_PATH = "/webhooks/leadrat"


class BodyTooLarge(Exception):
    pass


async def _read_body(request: Request, limit: int) -> bytes:
    """The raw body, refused as soon as it passes `limit` bytes (never read whole)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(verifier: SignatureVerifier, committer: GroupCommitter, journal: Journal,
               metrics: Metrics, max_body_bytes: int,
               flusher_alive: Callable[[], bool]) -> Starlette:
    def reject(status: int, reason: str, event_id: str | None = None) -> Response:
        metrics.reject(reason)
        log.info("rejected %s: %s (%d)", event_id or "a delivery", reason, status)
        return JSONResponse({"error": reason}, status_code=status)

    async def receive(request: Request) -> Response:
        try:
            body = await _read_body(request, max_body_bytes)
        except BodyTooLarge:
            return reject(413, "body over 1 MiB")
        try:
            verifier.verify(request.headers.get(SIGNATURE_HEADER), body, time.time())
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
        return JSONResponse({"received": True, "duplicate": not stored})

    async def healthz(request: Request) -> Response:
        """503 once the flusher process is gone: events would only pile up in the journal,
        so a supervisor should restart the receiver (the next start loads them)."""
        pending, _ = journal.depth()
        if not flusher_alive():
            return JSONResponse({"status": "flusher stopped", "journal_depth": pending},
                                status_code=503)
        return JSONResponse({"status": "ok", "journal_depth": pending})

    async def metrics_text(request: Request) -> Response:
        return PlainTextResponse(metrics.render(journal.depth, flusher_alive()),
                                 media_type="text/plain; version=0.0.4")

    return Starlette(routes=[
        Route(WEBHOOK_PATH, receive, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/metrics", metrics_text, methods=["GET"]),
    ])
