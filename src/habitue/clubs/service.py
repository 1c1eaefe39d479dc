"""Club plans and subscriptions: trialing → active → past_due → canceled/expired.

Benefits are active while a subscription is trialing or active, and while it is past due
within its plan's grace days; they end at once on cancellation, on a refund of a fee and when
the retries of a failed renewal run out (the subscription expires).
"""

from __future__ import annotations

from habitue.clubs.common import ENDED, LIVE, RETRY_DAYS, ClubBenefit, add_period, benefits_active
from habitue.clubs.plans import create_plan, list_plans
from habitue.clubs.renewal import active_benefits, due_subscriptions, renew_one, tally
from habitue.clubs.subscriptions import (
    cancel,
    get_payment,
    get_subscription,
    member_subscriptions,
    record_payment,
    refund_payment,
    subscribe,
    subscription_payments,
)
from habitue.clubs.webhooks import WEBHOOK_TOLERANCE, rotate_secret, sign, verify, webhook

__all__ = [
    "ClubBenefit",
    "ENDED",
    "LIVE",
    "RETRY_DAYS",
    "WEBHOOK_TOLERANCE",
    "active_benefits",
    "add_period",
    "benefits_active",
    "cancel",
    "create_plan",
    "due_subscriptions",
    "get_payment",
    "get_subscription",
    "list_plans",
    "member_subscriptions",
    "record_payment",
    "refund_payment",
    "renew_one",
    "rotate_secret",
    "sign",
    "subscribe",
    "subscription_payments",
    "tally",
    "verify",
    "webhook",
]
