"""campaigns.subject: the rule, offer or newsletter a campaign measures

Revision ID: 0033_console2
Revises: 0032_effective
Create Date: 2026-12-07 04:30:00.000000

The code of the subject, of the campaign's `kind`; null for campaigns made before it existed
(and through the API without one).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0033_console2"
down_revision: str | Sequence[str] | None = "0032_effective"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = "0006_analytics"


def upgrade() -> None:
    with op.batch_alter_table("campaigns") as batch:
        batch.add_column(sa.Column("subject", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("campaigns") as batch:
        batch.drop_column("subject")
