"""messaging: index the outbox by member, for a member's latest events

Revision ID: 0010_outbox_member
Revises: 0001_foundation
Create Date: 2026-11-26 09:00:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0010_outbox_member"
down_revision: str | Sequence[str] | None = "0001_foundation"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = ["program_id", "member_id", "id"]


def upgrade() -> None:
    # Every recorded event writes to the outbox: on PostgreSQL the index is built without
    # blocking those writes (outside the migration's transaction, as CONCURRENTLY requires).
    # Should that build fail, PostgreSQL keeps an INVALID index: drop it and upgrade again.
    if op.get_context().dialect.name == "postgresql":
        with op.get_context().autocommit_block():
            op.create_index(
                "ix_outbox_program_member",
                "outbox",
                COLUMNS,
                unique=False,
                postgresql_concurrently=True,
                if_not_exists=True,
            )
    else:
        op.create_index("ix_outbox_program_member", "outbox", COLUMNS, unique=False)


def downgrade() -> None:
    op.drop_index("ix_outbox_program_member", table_name="outbox")
