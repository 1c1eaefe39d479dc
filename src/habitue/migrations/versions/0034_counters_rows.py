"""member_counters: every member has a counters row

Revision ID: 0034_counters_rows
Revises: 0033_console2
Create Date: 2026-12-07 07:55:00.000000

Enrolment (and the import's enrolment) now makes a member's counters row with the member, so
that a member's first purchase inserts nothing on the event path. Members enrolled before get
theirs here, with nothing counted (what their first counted event started from until now).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0034_counters_rows"
down_revision: str | Sequence[str] | None = "0033_console2"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = "0007_rules"

NOTHING_COUNTED = '{"days": {}, "years": {}, "lifetime": {}}'


def upgrade() -> None:
    text = sa.literal(NOTHING_COUNTED, sa.Text())
    # SQLite stores JSON as text (a CAST to JSON there would make it a number).
    postgres = op.get_bind().dialect.name == "postgresql"
    nothing_counted = sa.cast(text, sa.JSON()) if postgres else text
    members = sa.table("members", sa.column("id"), sa.column("program_id"), sa.column("updated_at"))
    counters = sa.table(
        "member_counters",
        sa.column("member_id"),
        sa.column("program_id"),
        sa.column("state", sa.JSON()),
        sa.column("updated_at"),
    )
    missing = sa.select(
        members.c.id,
        members.c.program_id,
        nothing_counted,
        members.c.updated_at,
    ).where(~sa.exists().where(counters.c.member_id == members.c.id))
    op.execute(
        counters.insert().from_select(
            ["member_id", "program_id", "state", "updated_at"], missing
        )
    )


def downgrade() -> None:
    """The rows stay: the code before this revision reads and updates them as its own."""
