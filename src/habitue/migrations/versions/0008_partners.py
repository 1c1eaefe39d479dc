"""partners: coalition partners and the points issued and redeemed with them

Revision ID: 0008_partners
Revises: 0001_foundation
Create Date: 2026-11-25 09:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_partners"
down_revision: str | Sequence[str] | None = "0001_foundation"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "partners",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("program_id", BIG_ID, nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("funding_minor_per_100", sa.BigInteger(), nullable=False),
        sa.Column("reimbursement_minor_per_100", sa.BigInteger(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["program_id"], ["programs.id"], name=op.f("fk_partners_program_id_programs")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_partners")),
        sa.UniqueConstraint("program_id", "code", name=op.f("uq_partners_program_id_code")),
    )
    op.create_table(
        "partner_movements",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("program_id", BIG_ID, nullable=False),
        sa.Column("partner_id", BIG_ID, nullable=False),
        sa.Column("member_id", BIG_ID, nullable=False),
        sa.Column("event_id", sa.String(length=36), nullable=False),
        sa.Column("refers_to", sa.String(length=36), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.Column("rate_minor_per_100", sa.BigInteger(), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name=op.f("fk_partner_movements_member_id_members")
        ),
        sa.ForeignKeyConstraint(
            ["partner_id"], ["partners.id"], name=op.f("fk_partner_movements_partner_id_partners")
        ),
        sa.ForeignKeyConstraint(
            ["program_id"], ["programs.id"], name=op.f("fk_partner_movements_program_id_programs")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_partner_movements")),
        sa.UniqueConstraint(
            "program_id",
            "event_id",
            "kind",
            name=op.f("uq_partner_movements_program_id_event_id_kind"),
        ),
    )
    with op.batch_alter_table("partner_movements", schema=None) as batch_op:
        batch_op.create_index(
            "ix_partner_movements_statement",
            ["program_id", "partner_id", "occurred_at"],
            unique=False,
        )
        batch_op.create_index(
            "ix_partner_movements_refers_to", ["program_id", "refers_to"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("partner_movements", schema=None) as batch_op:
        batch_op.drop_index("ix_partner_movements_refers_to")
        batch_op.drop_index("ix_partner_movements_statement")
    op.drop_table("partner_movements")
    op.drop_table("partners")
