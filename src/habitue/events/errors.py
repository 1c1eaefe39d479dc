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


class IdempotencyKeyReused(HabitueError):
    status = 422
    type = "idempotency-key-reused"
    title = "Idempotency-Key reused"


class RequestInProgress(HabitueError):
    """The first request with this key still holds it (its lease runs), or a retry took it
    over after its lease ran out. Sent with `Retry-After`."""

    status = 409
    type = "request-in-progress"
    title = "Request in progress"


class ResponseLost(HabitueError):
    """The first request committed work whose answer was not its work's value, and died
    before it answered: running it again would do the work twice."""

    status = 409
    type = "idempotent-response-lost"
    title = "Request committed, response lost"
