"""promotions, promotion_uses, basket_confirmations: promotions at the till

Revision ID: 0029_promotions
Revises: 0022_intake
Create Date: 2026-12-07 00:05:00.000000

A promotion is automatic, a promo code, or the terms of a reward's coupons; its effect,
conditions and stacking are a JSON spec. A use is one confirmed basket a promotion took
something off (per-member limits count them). A confirmation keeps the answer of a confirmed
basket by the purchase's external id, so a retry returns it and writes nothing.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0029_promotions"
down_revision: str | Sequence[str] | None = "0027_privacy_security"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _ident(length: int) -> sa.types.TypeEngine[str]:
    return sa.String(length).with_variant(sa.String(length, collation="C"), "postgresql")


def _big_id() -> sa.types.TypeEngine[int]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "promotions",
        sa.Column("id", _big_id(), nullable=False),
        sa.Column("program_id", _big_id(), nullable=False),
        sa.Column("code", _ident(64), nullable=False),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("promo_code", _ident(64), nullable=True),
        sa.Column("reward_code", _ident(64), nullable=True),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_promotions"),
        sa.ForeignKeyConstraint(
            ["program_id"], ["programs.id"], name="fk_promotions_program_id_programs"
        ),
        sa.UniqueConstraint("program_id", "code", name="uq_promotions_program_id_code"),
    )
    op.create_table(
        "promotion_uses",
        sa.Column("id", _big_id(), nullable=False),
        sa.Column("program_id", _big_id(), nullable=False),
        sa.Column("promotion_id", _big_id(), nullable=False),
        sa.Column("member_id", _big_id(), nullable=True),
        sa.Column("external_id", sa.String(200), nullable=False),
        sa.Column("discount_minor", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_promotion_uses"),
        sa.ForeignKeyConstraint(
            ["program_id"], ["programs.id"], name="fk_promotion_uses_program_id_programs"
        ),
        sa.ForeignKeyConstraint(
            ["promotion_id"], ["promotions.id"], name="fk_promotion_uses_promotion_id_promotions"
        ),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name="fk_promotion_uses_member_id_members"
        ),
    )
    op.create_index("ix_promotion_uses_member", "promotion_uses", ["promotion_id", "member_id"])
    op.create_table(
        "basket_confirmations",
        sa.Column("id", _big_id(), nullable=False),
        sa.Column("program_id", _big_id(), nullable=False),
        sa.Column("external_id", sa.String(200), nullable=False),
        sa.Column("member_id", _big_id(), nullable=True),
        sa.Column("response", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_basket_confirmations"),
        sa.ForeignKeyConstraint(
            ["program_id"], ["programs.id"], name="fk_basket_confirmations_program_id_programs"
        ),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name="fk_basket_confirmations_member_id_members"
        ),
        sa.UniqueConstraint(
            "program_id", "external_id", name="uq_basket_confirmations_program_id_external_id"
        ),
    )


def downgrade() -> None:
    op.drop_table("basket_confirmations")
    op.drop_index("ix_promotion_uses_member", table_name="promotion_uses")
    op.drop_table("promotion_uses")
    op.drop_table("promotions")
