"""promo: basket lines keep their tax

Revision ID: 0037_promo
Revises: 0036_kind_checks
Create Date: 2026-12-07 12:40:00.000000

A program's `earn_on` (`tax_included`, what every program did until now, or `tax_excluded`)
is kept in `programs.settings`, as its other later settings are, so no column is added there.
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
    with op.batch_alter_table("event_lines") as batch:
        batch.add_column(
            sa.Column("tax_minor", sa.BigInteger(), nullable=False, server_default="0")
        )


def downgrade() -> None:
    with op.batch_alter_table("event_lines") as batch:
        batch.drop_column("tax_minor")
