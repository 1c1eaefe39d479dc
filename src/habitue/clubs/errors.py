"""Errors of the clubs room."""

from __future__ import annotations

from habitue.errors import Conflict, HabitueError, NotFound, Unauthorized


class PlanNotFound(NotFound):
    type = "club-plan-not-found"
    title = "Club plan not found"


class SubscriptionNotFound(NotFound):
    type = "club-subscription-not-found"
    title = "Subscription not found"


class PaymentNotFound(NotFound):
    type = "club-payment-not-found"
    title = "Payment not found"


class PlanExists(Conflict):
    type = "club-plan-exists"
    title = "Club plan exists"


class AlreadySubscribed(Conflict):
    type = "club-already-subscribed"
    title = "Already subscribed"


class SubscriptionEnded(Conflict):
    type = "club-subscription-ended"
    title = "Subscription ended"


class AlreadyCanceled(Conflict):
    type = "club-already-canceled"
    title = "Already canceled"


class AlreadyRefunded(Conflict):
    type = "club-payment-already-refunded"
    title = "Payment already refunded"


class PaymentFailed(HabitueError):
    status = 402
    type = "club-payment-failed"
    title = "Payment failed"


class InvalidPlan(HabitueError):
    status = 422
    type = "invalid-club-plan"
    title = "Invalid club plan"


class BadSignature(Unauthorized):
    type = "bad-webhook-signature"
    title = "Bad webhook signature"
