"""One error family, rendered as RFC 9457 problem+json with a stable `type`."""

from __future__ import annotations

from typing import Any

ERROR_BASE = "https://habitue.dev/errors/"


class HabitueError(Exception):
    """Base of every error a client may see."""

    status: int = 400
    type: str = "bad-request"
    title: str = "Bad request"

    def __init__(self, detail: str, *, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors or []

    def problem(self, instance: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": ERROR_BASE + self.type,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if self.errors:
            body["errors"] = self.errors
        if instance:
            body["instance"] = instance
        return body

    def headers(self) -> dict[str, str] | None:
        """Response headers that go with this error (none by default)."""
        return None


class ValidationFailed(HabitueError):
    status = 422
    type = "validation"
    title = "Invalid request"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}", errors=[{"field": field, "message": message}])


class NotFound(HabitueError):
    status = 404
    type = "not-found"
    title = "Not found"


class Unauthorized(HabitueError):
    status = 401
    type = "unauthorized"
    title = "Unauthorized"


class Forbidden(HabitueError):
    status = 403
    type = "forbidden"
    title = "Forbidden"


class Conflict(HabitueError):
    status = 409
    type = "conflict"
    title = "Conflict"


class PayloadTooLarge(HabitueError):
    status = 413
    type = "payload-too-large"
    title = "Payload too large"


class RateLimited(HabitueError):
    status = 429
    type = "rate-limited"
    title = "Too many requests"

    def __init__(self, detail: str, *, retry_after: int = 60) -> None:
        super().__init__(detail)
        self.retry_after = retry_after

    def problem(self, instance: str | None = None) -> dict[str, Any]:
        return {**super().problem(instance), "retry_after": self.retry_after}

    def headers(self) -> dict[str, str] | None:
        return {"Retry-After": str(self.retry_after)}


class ServiceUnavailable(HabitueError):
    """The database cannot be reached (down, restarting, or every connection busy)."""

    status = 503
    type = "service-unavailable"
    title = "Service unavailable"
    retry_after = 1

    def headers(self) -> dict[str, str] | None:
        return {"Retry-After": str(self.retry_after)}
