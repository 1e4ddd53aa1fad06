"""Checks on query parameters and request bodies, turning bad input into 400/422 errors."""

from __future__ import annotations

import re
from typing import Any

from leadrat_source.contract import (
    DEFAULT_PER_PAGE,
    LEAD_SORTS,
    LEAD_STATUSES,
    LEAD_UPDATABLE_FIELDS,
    MAX_PER_PAGE,
    SCORE_MAX,
    SCORE_MIN,
)
from leadrat_source.sandbox.clock import parse_iso
from leadrat_source.sandbox.errors import ApiError, invalid_field

Query = dict[str, str]
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
#: POST /leads also takes the placement and tags; PUT takes only LEAD_UPDATABLE_FIELDS.
CREATE_FIELDS = (*LEAD_UPDATABLE_FIELDS, "tags", "pipeline_id", "stage_id")
MAX_TEXT = 500


def positive_int(query: Query, name: str, default: int, maximum: int | None = None) -> int:
    raw = query.get(name)
    if raw is None:
        return default
    if not re.fullmatch(r"\d{1,9}", raw):
        raise invalid_field(name, "not_an_integer", f"'{name}' must be a positive integer.")
    value = int(raw)
    if value < 1:
        raise invalid_field(name, "too_small", f"'{name}' must be at least 1.")
    if maximum is not None and value > maximum:
        raise invalid_field(name, "too_large", f"'{name}' must be at most {maximum}.")
    return value


def per_page(query: Query) -> int:
    return positive_int(query, "per_page", DEFAULT_PER_PAGE, MAX_PER_PAGE)


def timestamp(query: Query, name: str) -> int | None:
    raw = query.get(name)
    if raw is None:
        return None
    try:
        return parse_iso(raw)
    except (ValueError, OverflowError):
        raise invalid_field(name, "invalid_timestamp",
                            f"'{name}' must be an ISO 8601 timestamp.") from None


def boolean(query: Query, name: str) -> bool:
    raw = query.get(name, "false").lower()
    if raw not in ("true", "false"):
        raise invalid_field(name, "invalid_boolean", f"'{name}' must be true or false.")
    return raw == "true"


def sort(query: Query) -> str | None:
    raw = query.get("sort")
    if raw is not None and raw not in LEAD_SORTS:
        raise invalid_field("sort", "invalid_choice", f"'sort' must be one of {LEAD_SORTS}.")
    return raw


def status_filter(query: Query) -> str | None:
    raw = query.get("status")
    if raw is not None and raw not in LEAD_STATUSES:
        raise invalid_field("status", "invalid_choice")
    return raw


def json_object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ApiError("invalid_request", "The request body must be a JSON object.")
    return body


def _text(value: Any, field: str, nullable: bool) -> None:
    if value is None and nullable:
        return
    if not isinstance(value, str) or not value.strip():
        raise invalid_field(field, "invalid_type" if not isinstance(value, str) else "blank")
    if len(value) > MAX_TEXT:
        raise invalid_field(field, "too_long")


def _check_field(name: str, value: Any) -> None:
    if name in ("name", "source"):
        _text(value, name, nullable=False)
    elif name in ("phone", "company"):
        _text(value, name, nullable=True)
    elif name == "email":
        _text(value, name, nullable=False)
        if not EMAIL.match(value):
            raise invalid_field("email", "invalid_format")
    elif name == "status":
        if value not in LEAD_STATUSES:
            raise invalid_field("status", "invalid_choice")
    elif name == "score":
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise invalid_field("score", "invalid_type")
        if value is not None and not SCORE_MIN <= value <= SCORE_MAX:
            raise invalid_field("score", "out_of_range")
    elif name == "custom_fields":
        if not isinstance(value, dict):
            raise invalid_field("custom_fields", "invalid_type")
    elif name == "tags":
        tags(value)
    elif name in ("pipeline_id", "stage_id"):
        _text(value, name, nullable=True)


def _fields(body: dict[str, Any], allowed: tuple[str, ...]) -> dict[str, Any]:
    details = [{"field": name, "issue": "not_allowed"} for name in body if name not in allowed]
    if details:
        raise ApiError("validation_error", "The body has fields that cannot be set.", details)
    for name, value in body.items():
        _check_field(name, value)
    return body


def lead_create(body: Any) -> dict[str, Any]:
    body = json_object(body)
    missing = [{"field": name, "issue": "required"} for name in ("name", "email")
               if body.get(name) is None]
    if missing:
        raise ApiError("validation_error", "Required fields are missing.", missing)
    return _fields(body, CREATE_FIELDS)


def lead_update(body: Any) -> dict[str, Any]:
    return _fields(json_object(body), LEAD_UPDATABLE_FIELDS)


def tags(value: Any) -> list[str]:
    if (not isinstance(value, list) or not value
            or not all(isinstance(t, str) and t.strip() and len(t) <= 64 for t in value)):
        raise invalid_field("tags", "invalid", "'tags' must be a non-empty list of short strings.")
    return value


def required_text(body: dict[str, Any], field: str) -> str:
    value = body.get(field)
    if value is None:
        raise invalid_field(field, "required")
    _text(value, field, nullable=False)
    return str(value)
