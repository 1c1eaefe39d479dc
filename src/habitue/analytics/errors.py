"""Errors of the analytics domain; each one is a client error the API renders as 422."""

from __future__ import annotations

from habitue.errors import HabitueError, NotFound


class AnalyticsError(HabitueError, ValueError):
    """Bad input to an analytics computation (a client error, rendered as 422)."""

    status: int = 422
    type: str = "analytics-error"
    title: str = "Invalid analytics input"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)


class InvalidHoldoutShare(AnalyticsError):
    """A hold-out share that is not strictly between 0 and 1."""

    type = "invalid-holdout-share"


class UnknownCampaignSubject(AnalyticsError):
    """A campaign naming a rule, offer or newsletter the program does not have."""

    type = "unknown-campaign-subject"


class InvalidAnalyticsInput(AnalyticsError):
    """Arrays of mismatched lengths, negative counts or another malformed input."""

    type = "invalid-analytics-input"


class ModelNotFitted(AnalyticsError):
    """A fit that could not be made (no data, or no repeat buyers)."""

    type = "model-not-fitted"


class InvalidSegmentCondition(AnalyticsError):
    """A segment condition that is not valid CEL over the member features."""

    type = "invalid-segment-condition"


class SegmentExists(AnalyticsError):
    """A segment code already used in the program."""

    status = 409
    type = "segment-exists"
    title = "Conflict"


class CampaignExists(AnalyticsError):
    """A campaign code already used in the program."""

    status = 409
    type = "campaign-exists"
    title = "Conflict"


class SegmentNotFound(NotFound):
    """No segment of that code in the program."""

    type = "segment-not-found"


class CampaignNotFound(NotFound):
    """No campaign of that code in the program."""

    type = "campaign-not-found"
