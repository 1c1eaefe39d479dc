"""outbox: index only the rows the feed has not sequenced yet

Revision ID: 0013_outbox_unsequenced
Revises: 0011_write_path
Create Date: 2026-12-05 06:45:00.000000

Each read of the events feed first gives the committed, unsequenced outbox rows their
positions (`seq IS NULL`, in id order). The index over (program_id, id) held every row, so
that lookup walked all the rows ever sequenced before it found the new ones: 53 ms with two
million rows on PostgreSQL (a sequential scan), growing with the outbox, under the program's
lock. Restricted to `seq IS NULL`, the index holds only the rows still waiting.
"""

from collections.abc import Sequence

from habitue.migrate import rebuild_index

revision: str = "0013_outbox_unsequenced"
down_revision: str | Sequence[str] | None = "0011_write_path"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = ("ix_outbox_program_unsequenced", "outbox", ["program_id", "id"])


def upgrade() -> None:
    rebuild_index(*INDEX, unique=False, where="seq IS NULL")


def downgrade() -> None:
    rebuild_index(*INDEX, unique=False, where=None)
