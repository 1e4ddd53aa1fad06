"""Reading an HTTP answer: its decoded JSON, or the one `LeadRatError` it stands for.

The single place where the API's answers become the package's errors: `errors.py` holds
the classes and the advice; this module decides which class an answer is (by the
contract's `error.code`, else by status) and fills it in from the status, the error body
and the headers, including how long a 429 or 503 asked us to wait. It only sees a
response already read, so no `requests` exception (whose prepared request holds the
auth headers) can be chained onto the errors it makes.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import orjson
import requests

from leadrat_source.contract import RETRY_AFTER_HEADER
from leadrat_source.errors import (
    LeadRatError,
    QuotaExhausted,
    RateLimitExceeded,
    ServerError,
    TransportError,
    advice_for,
    error_class_for,
)
from leadrat_source.pacing import RateLimitStatus, quota_spent

REQUEST_ID_HEADER = "X-Request-Id"


def read_response(
    response: requests.Response,
    content: bytes,
    *,
    request_line: str,
    gave_up: str,
    max_wait_seconds: float,
) -> Any:
    """Decode a 2xx body (None when empty), or raise the error the response stands for.

    A 2xx whose body is cut short or not JSON is a retryable `TransportError`; an error
    status stands on its own even when its body is unreadable. `request_line` ("GET
    /leads") opens the messages; `gave_up` is appended to those of retryable errors on
    the last attempt (empty before).
    """
    status = response.status_code
    decoded: Any = None
    malformed = False
    if content:
        try:
            decoded = orjson.loads(content)
        except orjson.JSONDecodeError:
            malformed = True
    elif 200 <= status < 300 and status != 204 and _declared_length(response) != 0:
        malformed = True  # the body was promised but never arrived
    if 200 <= status < 300:
        if malformed:
            raise TransportError(
                f"{request_line}: the {status} response body is cut short or not JSON{gave_up}.",
                code="malformed_response",
                status=status,
            )
        return decoded
    raise error_for_response(
        response,
        decoded,
        request_line=request_line,
        gave_up=gave_up,
        max_wait_seconds=max_wait_seconds,
    )


def error_for_response(
    response: requests.Response,
    decoded: Any,
    *,
    request_line: str,
    gave_up: str,
    max_wait_seconds: float,
) -> LeadRatError:
    """The error an error status stands for, with the API's code, message, details and
    request id, and what to do about it.

    A 429 whose wait is longer than `max_wait_seconds` is the spent daily quota
    (`QuotaExhausted`), not a blip to retry; 429s and 5xx carry the wait they asked for,
    which the retry policy honours.
    """
    status = response.status_code
    error = decoded.get("error") if isinstance(decoded, dict) else None
    error = error if isinstance(error, dict) else {}
    code = error.get("code") if isinstance(error.get("code"), str) else None
    api_message = error.get("message") or response.reason or "no message"
    details = error.get("details") if isinstance(error.get("details"), list) else []
    klass = error_class_for(code, status)
    common: dict[str, Any] = {
        "code": code or (None if klass is LeadRatError else _default_code(status)),
        "status": status,
        "details": details,
        "request_id": response.headers.get(REQUEST_ID_HEADER),
    }
    message = f"{request_line} -> {status}: {api_message}."
    if klass is RateLimitExceeded:
        wait = _requested_wait(response.headers)
        if wait is not None and quota_spent(wait, max_wait_seconds):
            return QuotaExhausted.until(_resets_at(response.headers, wait), status=status)
        return RateLimitExceeded(
            f"{message}{gave_up} {advice_for(klass)}", retry_after=wait, **common
        )
    if klass is ServerError:
        return ServerError(
            f"{message}{gave_up} {advice_for(klass)}",
            retry_after=_retry_after(response.headers),
            **common,
        )
    return klass(f"{message} {advice_for(klass)}".strip(), **common)


def _default_code(status: int) -> str | None:
    """The contract code for a status, for answers (like gateway 503s) without a body."""
    return "server_error" if status >= 500 else None


def _retry_after(headers: Mapping[str, str]) -> float | None:
    """The Retry-After header in seconds; both of HTTP's forms (seconds, HTTP-date)."""
    value = headers.get(RETRY_AFTER_HEADER)
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        return max(parsedate_to_datetime(value).timestamp() - time.time(), 0.0)
    except (TypeError, ValueError):
        return None


def _requested_wait(headers: Mapping[str, str]) -> float | None:
    """A 429's wait: Retry-After, and when the budget is spent, the time until the reset.

    A 429 that still reports budget left (a blip) does not wait for the window's end.
    """
    waits = [w for w in (_retry_after(headers),) if w is not None]
    status = RateLimitStatus.from_headers(headers)
    if status is not None and status.remaining == 0:
        waits.append(status.reset.timestamp() - time.time())
    return max(max(waits), 0.0) if waits else None


def _resets_at(headers: Mapping[str, str], wait: float) -> datetime:
    """When the spent budget comes back: the reported reset, else `wait` from now."""
    status = RateLimitStatus.from_headers(headers)
    return status.reset if status else datetime.fromtimestamp(time.time() + wait, UTC)


def _declared_length(response: requests.Response) -> int | None:
    try:
        return int(response.headers["Content-Length"])
    except (KeyError, ValueError):
        return None
