"""ledger: transaction kinds and account kinds are the ledger's words (CHECK constraints)

Revision ID: 0024_kinds
Revises: 0022_intake
Create Date: 2026-12-07 00:30:00.000000

`ledger_transactions.kind` holds one of `habitue.ledger.kinds.EntryKind` and `accounts.kind`
one of `MemberAccount` and `SystemAccount`; the values are frozen here, as migrations must be
(`tests/ledger/test_kinds.py` checks that they agree with the enums). SQLite cannot add a
constraint to a table: both tables are rebuilt (batch mode), their indexes with them.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0024_kinds"
down_revision: str | Sequence[str] | None = "0028_console"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ENTRY_KINDS = (
    "earn", "spend", "redeem", "return", "takeback", "release", "expire", "adjust", "referral",
    "club_voucher",
)  # fmt: skip
ACCOUNT_KINDS = ("available", "pending", "issued", "redeemed", "expired", "adjusted")


def _in(values: tuple[str, ...]) -> str:
    return f"kind IN ({', '.join(repr(v) for v in values)})"


CHECKS = {"ledger_transactions": _in(ENTRY_KINDS), "accounts": _in(ACCOUNT_KINDS)}


def upgrade() -> None:
    for table, check in CHECKS.items():
        with op.batch_alter_table(table) as batch:
            batch.create_check_constraint(op.f(f"ck_{table}_kind_known"), check)


def downgrade() -> None:
    for table in CHECKS:
        with op.batch_alter_table(table) as batch:
            batch.drop_constraint(op.f(f"ck_{table}_kind_known"), type_="check")
