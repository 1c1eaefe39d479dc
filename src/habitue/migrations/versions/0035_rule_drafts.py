"""rule_drafts: a rule (new, or the next version of a live rule) saved without applying

Revision ID: 0035_rule_drafts
Revises: 0034_counters_rows
Create Date: 2026-12-07 07:10:00.000000

One draft per program and rule code. Drafts are not rules: the rule set the events read never
sees them until one is published (as a version of `rules`).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0035_rule_drafts"
down_revision: str | Sequence[str] | None = "0034_counters_rows"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _big_id() -> sa.types.TypeEngine[int]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "rule_drafts",
        sa.Column("id", _big_id(), nullable=False),
        sa.Column("program_id", _big_id(), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("base_version", sa.Integer(), nullable=True),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_rule_drafts"),
        sa.ForeignKeyConstraint(
            ["program_id"], ["programs.id"], name="fk_rule_drafts_program_id_programs"
        ),
        sa.UniqueConstraint("program_id", "code", name="uq_rule_drafts_program_id_code"),
    )


def downgrade() -> None:
    op.drop_table("rule_drafts")
