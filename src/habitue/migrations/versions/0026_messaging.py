"""messaging: timed messages' marks, reward levels, newsletters

Revision ID: 0026_messaging
Revises: 0022_intake
Create Date: 2026-12-07 00:00:00.000000

`message_marks` remembers which timed message a member already got (one `points_expiring`
per lot, one `birthday` per year); `reward_levels` how many times over a member's balance
covered the cheapest reward when it was last looked at (a `reward_available` message on each
new crossing); `newsletters` a message to a segment, scheduled or sent, and its hold-out;
`deliveries.newsletter_id` ties each delivery of a newsletter to it, for its send report.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0026_messaging"
down_revision: str | Sequence[str] | None = "0022_intake"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _ident(length: int) -> sa.String:
    return sa.String(length).with_variant(sa.String(length, collation="C"), "postgresql")


def upgrade() -> None:
    op.create_table(
        "message_marks",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("program_id", sa.BigInteger(), nullable=False),
        sa.Column("member_id", _ident(36), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_message_marks")),
        sa.UniqueConstraint(
            "program_id", "member_id", "kind", "key", name=op.f("uq_message_marks_program_id_member_id_kind_key")
        ),
    )
    op.create_table(
        "reward_levels",
        sa.Column("program_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("member_id", _ident(36), nullable=False),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("program_id", "member_id", name=op.f("pk_reward_levels")),
    )
    op.create_table(
        "newsletters",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("public_id", _ident(36), nullable=False),
        sa.Column("program_id", sa.BigInteger(), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("segment", sa.String(length=64), nullable=False),
        sa.Column("template", sa.String(length=64), nullable=False),
        sa.Column("holdout_share", sa.Float(), nullable=False),
        sa.Column("send_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("targeted", sa.Integer(), nullable=False),
        sa.Column("holdout", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_newsletters")),
        sa.UniqueConstraint("public_id", name=op.f("uq_newsletters_public_id")),
        sa.UniqueConstraint("program_id", "code", name=op.f("uq_newsletters_program_id_code")),
    )
    scheduled = sa.text("status = 'scheduled'")
    op.create_index(
        "ix_newsletters_due",
        "newsletters",
        ["send_at"],
        postgresql_where=scheduled,
        sqlite_where=scheduled,
    )
    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(sa.Column("newsletter_id", sa.BigInteger(), nullable=True))
    op.create_index("ix_deliveries_newsletter", "deliveries", ["newsletter_id", "status"])


def downgrade() -> None:
    op.drop_index("ix_deliveries_newsletter", table_name="deliveries")
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("newsletter_id")
    op.drop_index("ix_newsletters_due", table_name="newsletters")
    op.drop_table("newsletters")
    op.drop_table("reward_levels")
    op.drop_table("message_marks")
