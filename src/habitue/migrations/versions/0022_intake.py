"""intake_parked: stream messages `habitue consume` could not record, with the reason

Revision ID: 0022_intake
Revises: 0017_signin_tokens
Create Date: 2026-12-06 21:30:00.000000

A message of the NATS JetStream intake that is not an event body (not JSON, not an object),
or whose event is refused (validation, unknown member…), is kept here with its raw body and
the reason, and acknowledged: the consumer goes on. One row per stream message (its stream
sequence), so a redelivered message is parked once.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0022_intake"
down_revision: str | Sequence[str] | None = "0021_delivery"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _ident(length: int) -> sa.types.TypeEngine[str]:
    return sa.String(length).with_variant(sa.String(length, collation="C"), "postgresql")


def _big_id() -> sa.types.TypeEngine[int]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "intake_parked",
        sa.Column("id", _big_id(), nullable=False),
        sa.Column("program_id", _big_id(), nullable=False),
        sa.Column("stream", _ident(64), nullable=False),
        sa.Column("subject", sa.String(length=255), nullable=False),
        sa.Column("stream_seq", sa.BigInteger(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("parked_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_intake_parked"),
        sa.ForeignKeyConstraint(
            ["program_id"], ["programs.id"], name="fk_intake_parked_program_id_programs"
        ),
        sa.UniqueConstraint("stream", "stream_seq", name="uq_intake_parked_stream"),
    )
    op.create_index(
        "ix_intake_parked_program_parked", "intake_parked", ["program_id", "parked_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_intake_parked_program_parked", table_name="intake_parked")
    op.drop_table("intake_parked")
