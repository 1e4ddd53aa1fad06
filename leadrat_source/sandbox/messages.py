"""Plain request and response values passed between the HTTP server and the application."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import orjson


class WireMode(Enum):
    """How the server puts a response on the wire; the last two are injected faults."""

    SEND = "send"
    DROP = "drop"  # close the connection without answering
    TRUNCATE = "truncate"  # full Content-Length, part of the body, then close


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: bytes


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str | None = "application/json"
    wire: WireMode = WireMode.SEND


def json_response(status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(status, orjson.dumps(payload), dict(headers or {}))
