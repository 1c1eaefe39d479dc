"""identifiers compared byte by byte on PostgreSQL (COLLATE "C")

Revision ID: 0012_ident_collation
Revises: 0001_foundation
Create Date: 2026-12-05 06:30:00.000000

Ids, external ids, ledger references, card numbers and key hashes are looked up on every
request and inserted into a unique index with every purchase. Under the database's locale
(`en_US.UTF-8`, `C.UTF-8`…) each comparison in those indexes goes through the locale's string
comparison; with `COLLATE "C"` PostgreSQL compares bytes. Nothing sorts these values for
people, and byte order is what their equality and the ids' time order need.

PostgreSQL rebuilds the indexes over these columns, holding each table's lock while it does:
plan the upgrade of a large database for a quiet moment (docs/benchmarks.md gives the time on
a million purchases). SQLite compares bytes already: nothing to do there.
"""

from collections.abc import Sequence

from habitue.migrate import set_collation

revision: str = "0012_ident_collation"
down_revision: str | Sequence[str] | None = "0001_foundation"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# table: [(column, length)] — the columns declared with `habitue.db.ident`
COLUMNS: dict[str, list[tuple[str, int]]] = {
    "programs": [("code", 64)],
    "api_keys": [("key_hash", 64)],
    "members": [("public_id", 36), ("external_id", 200), ("email_hash", 64),
                ("phone_hash", 64)],
    "cards": [("number", 32), ("replaced_by", 32)],
    "accounts": [("kind", 16)],
    "events": [("id", 36), ("source", 64), ("external_id", 200), ("refers_to", 36)],
    "event_lines": [("event_id", 36)],
    "idempotency_records": [("key", 200)],
    "ledger_transactions": [("reference", 200), ("event_id", 36)],
    "lots": [("event_id", 36)],
    "outbox": [("member_id", 36)],
}  # fmt: skip


def upgrade() -> None:
    set_collation(COLUMNS, "C")


def downgrade() -> None:
    set_collation(COLUMNS, "default")
