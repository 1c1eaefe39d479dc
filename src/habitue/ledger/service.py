"""The only writer of points: transactions of postings that sum to zero, balances, lots.

Every function here runs inside the caller's transaction and never commits. The ledger is
split by use case: `entries` (accounts, transactions, postings), `credit`, `debit`, `lots`
(release and expiry) and `read` (balances, history); this module keeps their public names
importable as `ledger.service.X` for the other rooms.
"""

from __future__ import annotations

from habitue.ledger.credit import (
    CREDIT_CTES,
    CreditPlan,
    apply_credit,
    credit,
    credits_part,
    plan_credit,
)
from habitue.ledger.debit import (
    DEBIT_CTES,
    STRICT_DEBIT_CTES,
    DebitPlan,
    apply_debit,
    debit,
    finish_strict_debit,
    plan_strict_debit,
    take_balance,
)
from habitue.ledger.entries import (
    DebitMode,
    Leg,
    MemberAccounts,
    accounts_of,
    check_movement,
    open_accounts,
)
from habitue.ledger.lots import (
    expire_due,
    expired_points,
    open_lots_for_event,
    program_expired_points,
    release_due,
    release_one,
    write_down_expired,
)
from habitue.ledger.read import balances, history

__all__ = [
    "CREDIT_CTES",
    "CreditPlan",
    "DEBIT_CTES",
    "DebitMode",
    "DebitPlan",
    "Leg",
    "MemberAccounts",
    "STRICT_DEBIT_CTES",
    "accounts_of",
    "apply_credit",
    "credits_part",
    "apply_debit",
    "balances",
    "check_movement",
    "credit",
    "debit",
    "expire_due",
    "expired_points",
    "program_expired_points",
    "write_down_expired",
    "finish_strict_debit",
    "history",
    "open_accounts",
    "open_lots_for_event",
    "plan_credit",
    "plan_strict_debit",
    "release_due",
    "release_one",
    "take_balance",
]
