"""Constants of the LeadRat API contract (../shared/api/CONTRACT.md).

This is the only module the sandbox server and the client share: everything else in
the sandbox is written independently of the client, so the sandbox can catch the
client's mistakes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

DEFAULT_BASE_URL: Final = "https://api.crm.builder.leadratd.com"
LOOPBACK_HOSTS: Final = frozenset({"127.0.0.1", "localhost", "::1"})

API_KEY_HEADER: Final = "X-API-Key"
AUTHORIZATION_HEADER: Final = "Authorization"
RATE_LIMIT_LIMIT_HEADER: Final = "X-RateLimit-Limit"
RATE_LIMIT_REMAINING_HEADER: Final = "X-RateLimit-Remaining"
RATE_LIMIT_RESET_HEADER: Final = "X-RateLimit-Reset"
RETRY_AFTER_HEADER: Final = "Retry-After"
SIGNATURE_HEADER: Final = "LeadRat-Signature"

DEFAULT_PER_PAGE: Final = 20
MAX_PER_PAGE: Final = 100

#: HTTP status of every error code of the contract.
ERROR_STATUS: Final[dict[str, int]] = {
    "invalid_request": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "conflict": 409,
    "validation_error": 422,
    "rate_limit_exceeded": 429,
    "server_error": 500,
}

LEAD_STATUSES: Final = ("new", "contacted", "qualified", "converted", "lost")
LEAD_SORTS: Final = ("created_at", "-created_at", "updated_at", "-updated_at")
#: Fields a PUT /leads/{id} may carry; any other field is a 422.
LEAD_UPDATABLE_FIELDS: Final = (
    "name",
    "email",
    "phone",
    "company",
    "status",
    "source",
    "score",
    "custom_fields",
)
#: Scalar fields of the lead object, in the contract's order.
LEAD_SCALAR_FIELDS: Final = (
    "id",
    "name",
    "email",
    "phone",
    "company",
    "status",
    "source",
    "score",
    "pipeline_id",
    "stage_id",
    "created_at",
    "updated_at",
    "deleted_at",
)
SCORE_MIN: Final = 0
SCORE_MAX: Final = 100

WEBHOOK_EVENT_TYPES: Final = ("lead.created", "lead.updated", "lead.stage_changed")
WEBHOOK_TOLERANCE_SECONDS: Final = 300

ID_PREFIX_LEAD: Final = "lead_"
ID_PREFIX_PIPELINE: Final = "pipe_"
ID_PREFIX_STAGE: Final = "stage_"
ID_PREFIX_EVENT: Final = "evt_"


@dataclass(frozen=True)
class Plan:
    """A LeadRat plan's request budget; `per_day` is None for no daily cap."""

    name: str
    per_minute: int
    per_day: int | None


PLANS: Final[dict[str, Plan]] = {
    "free": Plan("free", 30, 1_000),
    "growth": Plan("growth", 200, 50_000),
    "pro": Plan("pro", 1_000, None),
}
