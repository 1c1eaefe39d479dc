"""idempotency records: scoped to the credential, leased while in progress, expiring

Revision ID: 0018_idempotency
Revises: 0014_rewards_ident_collation
Create Date: 2026-12-06 21:00:00.000000

The table is made anew: a record of the old shape does not say which credential sent it, so
it could never be matched again under the new scope (the records are short-lived: a day by
default). Retries across the upgrade are still safe for events, which are idempotent by
their `external_id`.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018_idempotency"
down_revision: str | Sequence[str] | None = "0017_signin_tokens"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _ident(length: int) -> sa.String:
    return sa.String(length).with_variant(sa.String(length, collation="C"), "postgresql")


def upgrade() -> None:
    op.drop_table("idempotency_records")
    op.create_table(
        "idempotency_records",
        sa.Column("id", _ID, nullable=False),
        sa.Column("program_id", sa.BigInteger(), nullable=False),
        sa.Column("credential", _ident(64), nullable=False),
        sa.Column("key", _ident(200), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("token", sa.String(length=32), nullable=False),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("committed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("content_type", sa.String(length=100), nullable=True),
        sa.Column("body", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_idempotency_records")),
        sa.UniqueConstraint(
            "program_id",
            "credential",
            "key",
            name=op.f("uq_idempotency_records_program_id_credential_key"),
        ),
    )
    op.create_index("ix_idempotency_records_created_at", "idempotency_records", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_idempotency_records_created_at", table_name="idempotency_records")
    op.drop_table("idempotency_records")
    op.create_table(
        "idempotency_records",
        sa.Column("id", _ID, nullable=False),
        sa.Column("program_id", sa.BigInteger(), nullable=False),
        sa.Column("key", _ident(200), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("body", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_idempotency_records")),
        sa.UniqueConstraint(
            "program_id", "key", name=op.f("uq_idempotency_records_program_id_key")
        ),
    )
