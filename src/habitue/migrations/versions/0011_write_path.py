"""ledger and outbox: less index work per purchase

Revision ID: 0011_write_path
Revises: 0001_foundation
Create Date: 2026-12-05 03:40:00.000000

Every purchase updates its account's balance and its member's lifetime total. With full
pages (PostgreSQL's default fill factor, 100) each such update writes the new row version on
another page and so adds an entry to every index of the table (members have six). Leaving
room lets PostgreSQL keep the version on the same page with no index work (a "HOT" update).
The fill factor applies to pages written from now on; SQLite has no such setting.

Two indexes held an entry for every row although only some rows are ever looked up through
them: the feed position of outbox rows (unset until the feed sequences them) and the release
time of lots (only pending lots have one). They become partial indexes over those rows; the
queries that use them (`seq > :after`, `pending_until <= :now`) imply the condition.
"""

from collections.abc import Sequence

from alembic import op

from habitue.migrate import rebuild_index

revision: str = "0011_write_path"
down_revision: str | Sequence[str] | None = "0001_foundation"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FILL = {"accounts": 70, "members": 80}
# name, table, columns, unique, condition
PARTIAL = [
    ("ux_outbox_program_seq", "outbox", ["program_id", "seq"], True, "seq IS NOT NULL"),
    ("ix_lots_program_pending", "lots", ["program_id", "pending_until"], False,
     "pending_until IS NOT NULL"),
]  # fmt: skip


def upgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        for table, fill in FILL.items():
            op.execute(f"ALTER TABLE {table} SET (fillfactor = {fill})")
    for name, table, columns, unique, where in PARTIAL:
        rebuild_index(name, table, columns, unique=unique, where=where)


def downgrade() -> None:
    for name, table, columns, unique, _ in PARTIAL:
        rebuild_index(name, table, columns, unique=unique, where=None)
    if op.get_context().dialect.name == "postgresql":
        for table in FILL:
            op.execute(f"ALTER TABLE {table} RESET (fillfactor)")
