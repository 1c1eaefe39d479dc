"""privacy and security: the hash-chained audit log; fraud holds and velocity limits; members' email and phone as text long
enough for their encrypted form (`habitue keys rotate-pii` encrypts the rows written before)

Revision ID: 0027_privacy_security
Revises: 0022_intake
Create Date: 2026-12-07 00:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0027_privacy_security"
down_revision: str | Sequence[str] | None = "0026_messaging"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("chain", sa.BigInteger(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor_kind", sa.String(length=16), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("resource", sa.String(length=32), nullable=False),
        sa.Column("resource_id", sa.String(length=200), nullable=True),
        sa.Column("request_id", sa.String(length=64), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
        sa.UniqueConstraint("chain", "seq", name=op.f("uq_audit_log_chain")),
    )
    op.create_index(
        "ix_audit_log_chain_resource", "audit_log", ["chain", "resource", "resource_id"]
    )
    op.create_table(
        "audit_heads",
        sa.Column("chain", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("chain", name=op.f("pk_audit_heads")),
    )

    op.create_table(
        "fraud_settings",
        sa.Column("program_id", BIG_ID, nullable=False),
        sa.Column("limits", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["program_id"], ["programs.id"], name=op.f("fk_fraud_settings_program_id_programs")
        ),
        sa.PrimaryKeyConstraint("program_id", name=op.f("pk_fraud_settings")),
    )
    op.create_table(
        "fraud_holds",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("program_id", BIG_ID, nullable=False),
        sa.Column("member_id", BIG_ID, nullable=False),
        sa.Column("rule", sa.String(length=32), nullable=False),
        sa.Column("reason", sa.String(length=300), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decided_by", sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name=op.f("fk_fraud_holds_member_id_members")
        ),
        sa.ForeignKeyConstraint(
            ["program_id"], ["programs.id"], name=op.f("fk_fraud_holds_program_id_programs")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fraud_holds")),
    )
    op.create_index(
        "ix_fraud_holds_program_status", "fraud_holds", ["program_id", "status", "id"]
    )
    if op.get_bind().dialect.name == "postgresql":  # SQLite does not enforce lengths
        for name in ("email", "phone"):
            op.alter_column("members", name, type_=sa.Text())


def downgrade() -> None:
    op.drop_index("ix_fraud_holds_program_status", table_name="fraud_holds")
    op.drop_table("fraud_holds")
    op.drop_table("fraud_settings")
    # members.email and members.phone stay text: their encrypted values do not fit the old
    # lengths, and the earlier code reads them as text all the same.
    op.drop_table("audit_heads")
    op.drop_index("ix_audit_log_chain_resource", table_name="audit_log")
    op.drop_table("audit_log")
