"""Words of the ledger: what a transaction records and what an account holds.

The values are stored (`ledger_transactions.kind`, `accounts.kind`) and CHECK constraints
keep the tables to them (migration 0024); `tests/ledger/test_kinds.py` checks that the enums
and the constraints agree.
"""

from __future__ import annotations

from enum import StrEnum


class EntryKind(StrEnum):
    """What a ledger transaction records."""

    EARN = "earn"
    """Points an event earned (its rules' `earn` and `multiplier` effects, or the import's)."""
    SPEND = "spend"
    """Points paid with at the till, or spent through the API."""
    REDEEM = "redeem"
    """Points exchanged for a catalogue reward."""
    RETURN = "return"
    """Spent points given back: a refunded purchase paid with points, a redemption undone."""
    TAKEBACK = "takeback"
    """Points of a refunded purchase taken back from the member."""
    RELEASE = "release"
    """Pending points that became available at the end of their waiting period."""
    EXPIRE = "expire"
    """Points past their expiry, or written off when a member is erased."""
    ADJUST = "adjust"
    """A manual correction by an operator, with its reason."""
    REFERRAL = "referral"
    """A referral's reward, to the referrer or the referee."""
    CLUB_VOUCHER = "club_voucher"
    """The points a paid club's period gives its subscriber."""


class MemberAccount(StrEnum):
    """A member's two accounts."""

    AVAILABLE = "available"
    """Points the member can spend now."""
    PENDING = "pending"
    """Points earned but still waiting (the program's `pending_days`), not yet spendable."""


class SystemAccount(StrEnum):
    """A program's system accounts: the other side of every member posting."""

    ISSUED = "issued"
    """Points the program gave (earned, referral, club voucher; less what was taken back)."""
    REDEEMED = "redeemed"
    """Points members spent or redeemed (less what was returned)."""
    EXPIRED = "expired"
    """Points that expired or were written off."""
    ADJUSTED = "adjusted"
    """Points moved by operators' manual corrections."""


ACCOUNT_KINDS: tuple[str, ...] = (*MemberAccount, *SystemAccount)
"""Every value `accounts.kind` may hold."""


def check_in(column: str, values: tuple[str, ...] | type[StrEnum]) -> str:
    """The CHECK constraint's text: `column` holds one of `values`.

    Comparisons joined by OR rather than `IN (…)`: SQLite builds a temporary index of an IN
    list for every row it checks (about 7 µs a row against 0.3; migration 0036).
    """
    return " OR ".join(f"{column} = '{v}'" for v in values)


ENTRY_KIND_CHECK = check_in("kind", EntryKind)
"""The CHECK of `ledger_transactions.kind` (migrations 0024 and 0036)."""
ACCOUNT_KIND_CHECK = check_in("kind", ACCOUNT_KINDS)
"""The CHECK of `accounts.kind` (migrations 0024 and 0036)."""
