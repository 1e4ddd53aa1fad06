"""Checks on query parameters and request bodies, turning bad input into 400/422 errors."""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import partial
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


def _email(value: Any, field: str) -> None:
    _text(value, field, nullable=False)
    if not EMAIL.match(value):
        raise invalid_field(field, "invalid_format")


def _status(value: Any, field: str) -> None:
    if value not in LEAD_STATUSES:
        raise invalid_field(field, "invalid_choice")


def _score(value: Any, field: str) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise invalid_field(field, "invalid_type")
    if not SCORE_MIN <= value <= SCORE_MAX:
        raise invalid_field(field, "out_of_range")


def _object(value: Any, field: str) -> None:
    if not isinstance(value, dict):
        raise invalid_field(field, "invalid_type")


def _tags(value: Any, field: str) -> None:
    tags(value)


_required_text = partial(_text, nullable=False)
_optional_text = partial(_text, nullable=True)
#: How each field a body may set is checked (`_fields` refuses any other name first).
_FIELD_CHECKS: dict[str, Callable[[Any, str], None]] = {
    "name": _required_text,
    "source": _required_text,
    "email": _email,
    "phone": _optional_text,
    "company": _optional_text,
    "pipeline_id": _optional_text,
    "stage_id": _optional_text,
    "status": _status,
    "score": _score,
    "custom_fields": _object,
    "tags": _tags,
}


def _check_field(name: str, value: Any) -> None:
    check = _FIELD_CHECKS.get(name)
    if check is not None:
        check(value, name)


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
