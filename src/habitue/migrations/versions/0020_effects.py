"""effects: benefits granted by rules, coupons issued by events

Revision ID: 0020_effects
Revises: 0014_rewards_ident_collation
Create Date: 2026-12-06 22:00:00.000000

`member_benefits` holds the privileges `benefit` rules grant (one row per member and code; a
repeat grant extends `until`, NULL meaning open-ended). `coupons.event_id` names the event
whose `coupon` rule issued the coupon (a refund of that purchase voids it while unused), and
a member's coupons are listed by `(member_id, issued_at)`.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020_effects"
down_revision: str | Sequence[str] | None = "0023_privacy"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _ident(length: int) -> sa.String:
    if op.get_bind().dialect.name == "postgresql":
        return sa.String(length, collation="C")
    return sa.String(length)


def upgrade() -> None:
    big_id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    op.create_table(
        "member_benefits",
        sa.Column("id", big_id, nullable=False),
        sa.Column("program_id", big_id, nullable=False),
        sa.Column("member_id", big_id, nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("rule_code", sa.String(length=64), nullable=True),
        sa.Column("event_id", _ident(36), nullable=True),
        sa.Column("granted_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["program_id"], ["programs.id"], name=op.f("fk_member_benefits_program_id_programs")
        ),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name=op.f("fk_member_benefits_member_id_members")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_member_benefits")),
        sa.UniqueConstraint("member_id", "code", name=op.f("uq_member_benefits_member_id_code")),
    )
    with op.batch_alter_table("coupons", schema=None) as batch_op:
        batch_op.add_column(sa.Column("event_id", _ident(36), nullable=True))
        batch_op.create_index("ix_coupons_event_id", ["event_id"])
        batch_op.create_index("ix_coupons_member_issued", ["member_id", "issued_at"])


def downgrade() -> None:
    with op.batch_alter_table("coupons", schema=None) as batch_op:
        batch_op.drop_index("ix_coupons_member_issued")
        batch_op.drop_index("ix_coupons_event_id")
        batch_op.drop_column("event_id")
    op.drop_table("member_benefits")
