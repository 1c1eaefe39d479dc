"""promo: a program earns on amounts with or without tax; basket lines keep their tax

Revision ID: 0037_promo
Revises: 0036_kind_checks
Create Date: 2026-12-07 12:40:00.000000

`programs.earn_on` is `tax_included` (what every program did until now) or `tax_excluded`;
`event_lines.tax_minor` is the tax in a line's `amount_minor` (0 for the lines recorded
before, which carried none), so a backtest over stored events earns as the events did.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0037_promo"
down_revision: str | Sequence[str] | None = "0036_kind_checks"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("programs") as batch:
        batch.add_column(
            sa.Column(
                "earn_on", sa.String(length=16), nullable=False, server_default="tax_included"
            )
        )
    with op.batch_alter_table("event_lines") as batch:
        batch.add_column(
            sa.Column("tax_minor", sa.BigInteger(), nullable=False, server_default="0")
        )


def downgrade() -> None:
    with op.batch_alter_table("event_lines") as batch:
        batch.drop_column("tax_minor")
    with op.batch_alter_table("programs") as batch:
        batch.drop_column("earn_on")
