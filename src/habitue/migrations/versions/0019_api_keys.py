"""api_keys: when each key was last used

Revision ID: 0019_api_keys
Revises: 0014_rewards_ident_collation
Create Date: 2026-12-06 21:00:00.000000

`last_used_at` is written at most once a minute per key and server process (an in-memory
throttle), in a small write of its own, so it costs the request path nothing measurable.
`revoked_at` already exists (0001); `DELETE …/api-keys/{id}` and `habitue keys revoke` set it.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019_api_keys"
down_revision: str | Sequence[str] | None = "0014_rewards_ident_collation"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_column("last_used_at")
