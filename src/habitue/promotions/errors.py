"""Errors of the promotions room, each with a stable problem type."""

from habitue.errors import Conflict, HabitueError, NotFound


class PromotionNotFound(NotFound):
    type = "promotion-not-found"
    title = "Promotion not found"


class PromotionExists(Conflict):
    type = "promotion-exists"
    title = "Promotion already exists"


class InvalidPromotion(HabitueError):
    """A promotion that cannot be saved (422): the entry names the field."""

    status = 422
    type = "invalid-promotion"
    title = "Invalid promotion"


class BasketRefused(HabitueError):
    """A confirm whose basket has a bad line, code or points payment: nothing is written.

    `errors` lists each refusal with its `field` (`lines[2].quantity`, `codes`, `points`),
    the `code` when there is one, and the `message`."""

    status = 422
    type = "basket-refused"
    title = "Basket refused"
    missed = 0
    """Codes that named no coupon of the program (for the guessing protection)."""


class CouponTaken(Conflict):
    """A coupon or offer of the basket was used meanwhile (by another till): nothing written."""

    type = "coupon-already-redeemed"
    title = "Coupon already redeemed"
