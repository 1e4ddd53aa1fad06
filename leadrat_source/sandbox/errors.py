"""The API's error envelope as an exception, raised anywhere and rendered once by the app."""

from __future__ import annotations

from leadrat_source.contract import ERROR_STATUS


class ApiError(Exception):
    """An error of the contract: `code` picks the HTTP status, `details` name the fields."""

    def __init__(self, code: str, message: str, details: list[dict[str, str]] | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details or []
        self.status = ERROR_STATUS[code]

    def envelope(self) -> dict[str, object]:
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


def invalid_field(field: str, issue: str, message: str | None = None) -> ApiError:
    """A 422 about one field; `issue` is a short machine word such as `required`."""
    return ApiError("validation_error", message or f"The '{field}' field is {issue}.",
                    [{"field": field, "issue": issue}])


def not_found(what: str) -> ApiError:
    return ApiError("not_found", f"{what} does not exist.")
