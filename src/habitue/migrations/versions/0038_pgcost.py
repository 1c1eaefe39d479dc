"""pgcost: the purchase path's references checked by `habitue ledger verify`, not by
PostgreSQL's foreign keys

Revision ID: 0038_pgcost
Revises: 0037_promo
Create Date: 2026-12-08 00:30:00.000000

A purchase checked eight references plus one per basket line, each a query per row at the
end of the statement (8–10 µs each), and two of them (events and ledger transactions to
`programs`, postings to the program's `issued` account) locked a row that every till's
transaction shares, FOR KEY SHARE: concurrent transactions made MultiXacts of it. None of
these parents is ever deleted (erasure pseudonymises the member and keeps the books), and
each reference is written from a row the same transaction read or wrote; `habitue ledger
verify` reports a row that names a missing parent (`habitue.ledger.verify.REFERENCES`).
On PostgreSQL the constraints are dropped (no table is rewritten: a catalogue change under a
brief lock of each table). SQLite keeps them: its checks lock nothing and cost little, and
they catch a writer's bug in the tests (`habitue.db.sqlite_foreign_key`).

The downgrade adds them back, which checks every row (and fails if an orphan was written
meanwhile: `habitue ledger verify` names it).
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0038_pgcost"
down_revision: str | Sequence[str] | None = "0037_promo"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (table, column, parent table): the foreign key's name follows the naming convention.
REFERENCES = [
    ("events", "program_id", "programs"),
    ("events", "member_id", "members"),
    ("event_lines", "event_id", "events"),
    ("ledger_transactions", "program_id", "programs"),
    ("postings", "transaction_id", "ledger_transactions"),
    ("postings", "account_id", "accounts"),
    ("lots", "account_id", "accounts"),
]


def _name(table: str, column: str, parent: str) -> str:
    return f"fk_{table}_{column}_{parent}"


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        return
    for table, column, parent in REFERENCES:
        op.drop_constraint(_name(table, column, parent), table, type_="foreignkey")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        return
    for table, column, parent in REFERENCES:
        op.create_foreign_key(_name(table, column, parent), table, parent, [column], ["id"])
