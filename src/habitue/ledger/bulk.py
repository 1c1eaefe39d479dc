"""The ledger's bulk planner: the credits of many events at once, as rows for a bulk writer.

The API credits one event at a time (`ledger.service.plan_credit`); the import credits a
chunk of purchases at once (`events.importer`). Both are planned here, in the ledger, by the
same rules: the points go to the member's `pending` account while the event is pending,
else to `available`; the program's `issued` counter takes the opposite posting; one lot per
credit, expiring by the program's policy from when the points were earned; the balances move
by the credit. What this module returns are plain rows (tuples in the column orders below)
and balance deltas: the import's writer only copies them in, after `repay_debts` has
settled, under the writer's transaction, what new points owe to negative balances.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from habitue.ledger.expiry import lot_expiry

TXN_COLS = (
    "id", "program_id", "member_id", "kind", "reference", "event_id", "actor", "reason",
    "created_at", "effective_at",
)  # fmt: skip
POSTING_COLS = (
    "program_id", "transaction_id", "account_id", "member_id", "amount", "rule_code",
    "rule_id", "rule_version", "created_at",
)  # fmt: skip
LOT_COLS = (
    "program_id", "member_id", "account_id", "transaction_id", "event_id", "amount",
    "remaining", "earned_at", "expires_at", "pending_until",
)  # fmt: skip
_ACCOUNT, _AMOUNT, _REMAINING, _PENDING = (
    LOT_COLS.index(c) for c in ("account_id", "amount", "remaining", "pending_until")
)


class Credited(Protocol):
    """Points credited by one rule: a `ledger.service.Leg`, or a decision's `EarnPoints`."""

    @property
    def amount(self) -> int: ...
    @property
    def rule_code(self) -> str | None: ...
    @property
    def rule_id(self) -> int | None: ...
    @property
    def rule_version(self) -> int | None: ...


Time = Callable[[datetime | None], Any]
"""How the bulk writer wants a timestamp in its rows (a database-ready value)."""


@dataclass(frozen=True, slots=True)
class LedgerTerms:
    """What a program's credits depend on: its `issued` counter and its expiry policy."""

    program_id: int
    issued_account: int
    expiry_policy: str
    expiry_days: int | None
    timezone: str


@dataclass(slots=True)
class BulkCredits:
    """The ledger rows of a chunk's credits, as they are planned (nothing written here)."""

    terms: LedgerTerms
    time: Time
    actor: str | None = None
    txns: list[tuple[Any, ...]] = field(default_factory=list)
    postings: list[tuple[Any, ...]] = field(default_factory=list)
    lots: list[tuple[Any, ...]] = field(default_factory=list)
    balance: dict[int, int] = field(default_factory=dict)
    """Per account id, what the chunk adds to its balance."""
    _now: datetime | None = None
    _now_ts: Any = None

    def earn(
        self,
        txn_id: int,
        member_id: int,
        account: int,
        legs: Sequence[Credited],
        *,
        event_id: str,
        earned_at: datetime,
        pending_until: datetime | None,
        now: datetime,
        earned_ts: Any = None,
    ) -> int:
        """Plan an event's `earn` credit of `legs` to `account` (the member's `pending` one
        when `pending_until` is given, else `available`); returns the points credited.

        As `ledger.service.plan_credit` plans it for the API: reference
        `event:{id}:earn`, booked at `now` and effective at `earned_at` (the event's
        `occurred_at`), one posting per leg with its rule, the `issued` counter's opposite
        posting, one lot expiring by the program's policy (none while pending). `earned_ts`:
        `earned_at` as the rows hold it, when the caller has it already.
        """
        terms, ts = self.terms, self.time
        pid = terms.program_id
        if now is not self._now:
            self._now, self._now_ts = now, ts(now)
        now_ts = self._now_ts
        total = 0
        post = self.postings.append
        for leg in legs:
            if leg.amount:
                post((pid, txn_id, account, member_id, leg.amount, leg.rule_code, leg.rule_id,
                      leg.rule_version, now_ts))  # fmt: skip
                total += leg.amount
        if total <= 0:
            raise ValueError("a credit must be positive")
        if earned_ts is None:
            earned_ts = ts(earned_at)
        self.txns.append(
            (txn_id, pid, member_id, "earn", f"event:{event_id}:earn", event_id, self.actor,
             None, now_ts, earned_ts)
        )  # fmt: skip
        post((pid, txn_id, terms.issued_account, member_id, -total, None, None, None, now_ts))
        self.balance[account] = self.balance.get(account, 0) + total
        expires = (
            None
            if pending_until is not None
            else lot_expiry(earned_at, terms.expiry_policy, terms.expiry_days, terms.timezone)
        )
        self.lots.append(
            (pid, member_id, account, txn_id, event_id, total, total, earned_ts,
             ts(expires), ts(pending_until))
        )  # fmt: skip
        return total


def repay_debts(
    lots: list[tuple[Any, ...]], debts_of: Callable[[list[int]], dict[int, int]]
) -> None:
    """Accounts whose balance is negative: new points first repay the debt (as
    `ledger.service.apply_credit` does for one credit), so their lots among `lots` (rows in
    `LOT_COLS` order, in the order credited) stay open only for what exceeds it; a lot left
    with nothing is dropped. `debts_of` reads the negative balances among some accounts,
    under the transaction that writes the lots. Pending lots are not touched (a pending
    account is never negative)."""
    if not lots:
        return
    accounts = sorted({r[_ACCOUNT] for r in lots if r[_PENDING] is None})
    if not accounts:
        return
    debts = debts_of(accounts)
    if not debts:
        return
    kept: list[tuple[Any, ...]] = []
    for r in lots:
        account = r[_ACCOUNT]
        if r[_PENDING] is None and account in debts:
            debts[account] += r[_AMOUNT]
            remaining = max(0, min(r[_AMOUNT], debts[account]))
            if not remaining:
                continue
            r = (*r[:_REMAINING], remaining, *r[_REMAINING + 1 :])
        kept.append(r)
    lots[:] = kept
