"""Event errors."""

from habitue.errors import HabitueError


class UnknownPurchase(HabitueError):
    status = 422
    type = "unknown-purchase"
    title = "Unknown purchase"


class RefundExceedsPurchase(HabitueError):
    status = 422
    type = "refund-exceeds-purchase"
    title = "Refund exceeds purchase"


class CurrencyMismatch(HabitueError):
    status = 422
    type = "currency-mismatch"
    title = "Currency mismatch"


class LinesMismatch(HabitueError):
    status = 422
    type = "lines-do-not-add-up"
    title = "Lines do not add up to the total"


class UnknownEventType(HabitueError):
    status = 422
    type = "unknown-event-type"
    title = "Unknown event type"
