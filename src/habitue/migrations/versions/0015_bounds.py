"""ledger: balances, postings and lots within ±10^15 (CHECK constraints)

Revision ID: 0015_bounds
Revises: 0014_rewards_ident_collation
Create Date: 2026-12-06 21:00:00.000000

A balance, a posting and a lot stay within ±`habitue.bounds.MAX_BALANCE`, so no sum the ledger
computes comes near the 64-bit limit (SQLite would otherwise turn an overflowing sum into a
float). SQLite cannot add a constraint to a table: the three tables are rebuilt (batch mode),
their indexes with them. A database holding a value out of range fails this migration; none
can be written by the application since the API bounds every movement.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0015_bounds"
down_revision: str | Sequence[str] | None = "0018_idempotency"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MAX_BALANCE = 10**15  # habitue.bounds.MAX_BALANCE, frozen here as migrations must be
BOUNDS = f"{{column}} BETWEEN -{MAX_BALANCE} AND {MAX_BALANCE}"

# table: [(constraint name, column)]
CHECKS: dict[str, list[tuple[str, str]]] = {
    "accounts": [("balance_bounds", "balance")],
    "postings": [("amount_bounds", "amount")],
    "lots": [("amount_bounds", "amount"), ("remaining_bounds", "remaining")],
}


def upgrade() -> None:
    for table, checks in CHECKS.items():
        with op.batch_alter_table(table) as batch:
            for name, column in checks:
                batch.create_check_constraint(
                    op.f(f"ck_{table}_{name}"), BOUNDS.format(column=column)
                )


def downgrade() -> None:
    for table, checks in CHECKS.items():
        with op.batch_alter_table(table) as batch:
            for name, _ in checks:
                batch.drop_constraint(op.f(f"ck_{table}_{name}"), type_="check")
