"""program_words: a program's own words per language (points name, tier names, privileges)

Revision ID: 0028_console
Revises: 0022_intake
Create Date: 2026-12-07 00:20:00.000000

The console's "Words" page writes them; the portal and the console read them through
`habitue.web.words`, falling back to the program's own names and the built-in labels.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0028_console"
down_revision: str | Sequence[str] | None = "0029_promotions"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _big_id() -> sa.types.TypeEngine[int]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "program_words",
        sa.Column("id", _big_id(), nullable=False),
        sa.Column("program_id", _big_id(), nullable=False),
        sa.Column("locale", sa.String(length=8), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("text", sa.String(length=200), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["program_id"], ["programs.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("program_id", "locale", "kind", "code", name="ux_program_words"),
    )


def downgrade() -> None:
    op.drop_table("program_words")
