"""The one exception hierarchy of the LeadRat client.

Every failure a caller can see is a `LeadRatError`: the API's own error codes map to one
subclass each, and transport trouble (timeouts, dropped connections, garbled bodies) is a
`TransportError`. Errors are raised once, where the HTTP response is read, and their
messages say what to do. They never carry the API key or bearer token, nor the
`requests` objects (whose prepared request holds the auth headers).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from leadrat_source.contract import ERROR_STATUS


class LeadRatError(Exception):
    """Base of all client errors; carries the API's `code`, `message`, `details` and `status`.

    `details` is the contract's list of `{"field": ..., "issue": ...}` (empty when the API
    sent none); `status` is the HTTP status (None when no response arrived).
    """

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        details: list[dict[str, Any]] | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status
        self.details = list(details or [])
        self.request_id = request_id

    def __str__(self) -> str:
        parts = [self.message]
        if self.details:
            fields = ", ".join(f"{d.get('field')}: {d.get('issue')}" for d in self.details)
            parts.append(f"[{fields}]")
        if self.request_id:
            parts.append(f"(request id {self.request_id})")
        return " ".join(parts)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(code={self.code!r}, status={self.status!r}, "
            f"message={self.message!r}, details={self.details!r})"
        )


class ConfigurationError(LeadRatError):
    """The client was set up wrongly (base URL, credentials); nothing was sent."""


class InvalidRequest(LeadRatError):
    """400 invalid_request: the request was malformed (e.g. a cursor reused with other filters)."""


class AuthenticationFailed(LeadRatError):
    """401 unauthorized: the key or token is missing, wrong or revoked."""


class PermissionDenied(LeadRatError):
    """403 forbidden: the credentials are valid but may not do this (e.g. a read-only key)."""


class NotFound(LeadRatError):
    """404 not_found: the lead, pipeline or tag does not exist (or the lead was deleted)."""


class Conflict(LeadRatError):
    """409 conflict: the request clashes with existing data."""


class DuplicateLead(Conflict):
    """409 on a lead write: another lead already has this email."""


class ValidationFailed(LeadRatError):
    """422 validation_error: field-level problems, listed in `details`."""


class RateLimitExceeded(LeadRatError):
    """429 rate_limit_exceeded that outlasted the retries.

    `retry_after` is the wait in seconds the response asked for (Retry-After or
    X-RateLimit-Reset), used by the retry policy while attempts remain.
    """

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class QuotaExhausted(RateLimitExceeded):
    """The budget resets too far in the future to wait for (typically the daily cap).

    Raised at once instead of sleeping for hours; `resets_at` (UTC) says when to run again.
    """

    def __init__(self, message: str, *, resets_at: datetime | None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.resets_at = resets_at

    @classmethod
    def until(cls, resets_at: datetime, *, status: int | None) -> QuotaExhausted:
        """The error for a budget that resets at `resets_at`, too late to wait for."""
        when = resets_at.strftime("%Y-%m-%d %H:%M:%S UTC")
        return cls(
            f"The LeadRat request quota is spent and resets at {when}; run again after that "
            "(or use a plan with a larger daily cap).",
            code="rate_limit_exceeded",
            status=status,
            resets_at=resets_at,
        )


class LoadIncomplete(LeadRatError):
    """A run loaded only a part of its window (`max_leads_per_run`); run again to go on.

    `parts` lists what was left unread (`run_report.UnreadPart`).
    """

    def __init__(self, message: str, *, parts: list[Any], **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.parts = parts


class ServerError(LeadRatError):
    """5xx (the API's server_error or a gateway's 502/503/504) that outlasted the retries."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class TransportError(LeadRatError):
    """No usable response: timeout, dropped connection or a truncated/malformed body."""


#: Errors the retry policy may retry; everything else is final on the first answer.
RETRYABLE_ERRORS: tuple[type[LeadRatError], ...] = (RateLimitExceeded, ServerError, TransportError)

_ERROR_BY_CODE: dict[str, type[LeadRatError]] = {
    "invalid_request": InvalidRequest,
    "unauthorized": AuthenticationFailed,
    "forbidden": PermissionDenied,
    "not_found": NotFound,
    # The contract's only 409 is a duplicate email (POST /leads, PUT /leads/{id}).
    "conflict": DuplicateLead,
    "validation_error": ValidationFailed,
    "rate_limit_exceeded": RateLimitExceeded,
    "server_error": ServerError,
}
_ERROR_BY_STATUS: dict[int, type[LeadRatError]] = {
    status: _ERROR_BY_CODE[code] for code, status in ERROR_STATUS.items()
}

#: What a user can do about each error, appended to the API's own message.
_ADVICE: dict[type[LeadRatError], str] = {
    InvalidRequest: "Check the filters and parameters sent; a cursor must be used with the "
    "same sort and filters as the scan that produced it.",
    AuthenticationFailed: "Check the API key: it is read from `sources.leadrat.api_key` in "
    ".dlt/secrets.toml or the env var SOURCES__LEADRAT__API_KEY (or the bearer token from "
    "`sources.leadrat.bearer_token` / SOURCES__LEADRAT__BEARER_TOKEN).",
    PermissionDenied: "This key may not do this: a read-only key cannot create, update or "
    "delete; reverse sync needs a read_write key.",
    NotFound: "The object does not exist or was deleted.",
    Conflict: "The data clashes with an existing record.",
    ValidationFailed: "Fix the fields listed in details.",
    RateLimitExceeded: "The plan's rate limit was hit and retries ran out; lower concurrency "
    "or run again later.",
    ServerError: "LeadRat failed on its side and retries ran out; try again later.",
}


def error_class_for(code: str | None, status: int) -> type[LeadRatError]:
    """The exception class for an error response: by code, else by status, else the base."""
    if code in _ERROR_BY_CODE:
        return _ERROR_BY_CODE[code]
    if status in _ERROR_BY_STATUS:
        return _ERROR_BY_STATUS[status]
    if status >= 500:
        return ServerError
    return LeadRatError


def advice_for(error_class: type[LeadRatError]) -> str:
    """The what-to-do sentence for an error class (inherited along the hierarchy)."""
    for klass in error_class.__mro__:
        if klass in _ADVICE:
            return _ADVICE[klass]  # type: ignore[index]
    return ""
