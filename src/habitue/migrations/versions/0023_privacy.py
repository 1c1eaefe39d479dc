"""privacy: the history of members' consents; programs' privacy settings (k of k-anonymity)

Revision ID: 0023_privacy
Revises: 0017_signin_tokens
Create Date: 2026-12-06 22:00:00.000000

Erasure and export need no schema change: an erased member's status and cards' status are
`erased` (strings that fit the existing columns).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0023_privacy"
down_revision: str | Sequence[str] | None = "0015_bounds"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "member_consent_history",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("program_id", BIG_ID, nullable=False),
        sa.Column("member_id", BIG_ID, nullable=False),
        sa.Column("purpose", sa.String(length=32), nullable=False),
        sa.Column("granted", sa.Boolean(), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("text_version", sa.String(length=64), nullable=True),
        sa.Column("actor", sa.String(length=200), nullable=True),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name=op.f("fk_member_consent_history_member_id_members")
        ),
        sa.ForeignKeyConstraint(
            ["program_id"],
            ["programs.id"],
            name=op.f("fk_member_consent_history_program_id_programs"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_member_consent_history")),
    )
    with op.batch_alter_table("member_consent_history", schema=None) as batch_op:
        batch_op.create_index("ix_member_consent_history_member", ["member_id", "id"], unique=False)
    op.create_table(
        "privacy_settings",
        sa.Column("program_id", BIG_ID, nullable=False),
        sa.Column("min_group_size", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["program_id"], ["programs.id"], name=op.f("fk_privacy_settings_program_id_programs")
        ),
        sa.PrimaryKeyConstraint("program_id", name=op.f("pk_privacy_settings")),
    )


def downgrade() -> None:
    op.drop_table("privacy_settings")
    with op.batch_alter_table("member_consent_history", schema=None) as batch_op:
        batch_op.drop_index("ix_member_consent_history_member")
    op.drop_table("member_consent_history")
