"""Errors of the analytics domain; each one is a client error the API renders as 422."""

from __future__ import annotations


class AnalyticsError(ValueError):
    """Bad input to an analytics computation (a client error, rendered as 422)."""

    status: int = 422
    type: str = "analytics-error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class InvalidHoldoutShare(AnalyticsError):
    """A hold-out share that is not strictly between 0 and 1."""

    type = "invalid-holdout-share"


class InvalidAnalyticsInput(AnalyticsError):
    """Arrays of mismatched lengths, negative counts or another malformed input."""

    type = "invalid-analytics-input"


class ModelNotFitted(AnalyticsError):
    """A fit that could not be made (no data, or no repeat buyers)."""

    type = "model-not-fitted"
