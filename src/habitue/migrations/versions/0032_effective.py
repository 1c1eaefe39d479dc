"""ledger: every transaction keeps when it happened (`effective_at`) beside when it was booked

Revision ID: 0032_effective
Revises: 0024_kinds
Create Date: 2026-12-07 04:30:00.000000

`ledger_transactions.effective_at` is when what a transaction records happened: an event's
`occurred_at` for what an event wrote (its earn, its payment with points, a refund's
take-back and return), a lot's expiry for an expiry, the booking time (`created_at`) for
what happens as it is booked (adjustments, redemptions). The backfill takes the linked
event's `occurred_at` where there is one, else `created_at` (a release, whose `event_id` is
the purchase's, was booked when it happened). On SQLite the column is added NOT NULL in
place, with a constant default SQLite asks for: rebuilding the table (batch mode) would drop
it, which the postings' foreign key refuses once there are rows. The member index becomes
(member_id, effective_at, id): the history is read in order of effect.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0032_effective"
down_revision: str | Sequence[str] | None = "0024_kinds"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BACKFILL = """
UPDATE ledger_transactions
SET effective_at = coalesce(
    (SELECT e.occurred_at FROM events e
     WHERE e.id = ledger_transactions.event_id AND ledger_transactions.kind <> 'release'),
    created_at
)
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        # A rebuild (batch mode) would drop the table, which the postings' foreign key
        # refuses once it has rows: the column is added NOT NULL in place, its constant
        # default only there to satisfy SQLite (every row is backfilled; writers set it).
        op.execute(
            "ALTER TABLE ledger_transactions ADD COLUMN effective_at DATETIME NOT NULL "
            "DEFAULT '1970-01-01 00:00:00.000000'"
        )
        op.execute(BACKFILL)
    else:
        op.add_column(
            "ledger_transactions",
            sa.Column("effective_at", sa.DateTime(timezone=True), nullable=True),
        )
        op.execute(BACKFILL)
        op.alter_column(
            "ledger_transactions",
            "effective_at",
            existing_type=sa.DateTime(timezone=True),
            nullable=False,
        )
    # A member's history is read in order of effect (`ledger.read.history`).
    op.drop_index("ix_ledger_transactions_member", table_name="ledger_transactions")
    op.create_index(
        "ix_ledger_transactions_member",
        "ledger_transactions",
        ["member_id", "effective_at", "id"],
    )


def downgrade() -> None:
    op.drop_index("ix_ledger_transactions_member", table_name="ledger_transactions")
    op.execute("ALTER TABLE ledger_transactions DROP COLUMN effective_at")
    op.create_index("ix_ledger_transactions_member", "ledger_transactions", ["member_id", "id"])
