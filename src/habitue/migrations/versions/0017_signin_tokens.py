"""member_sign_in_tokens: links delivered from a seed, never from the outbox

Revision ID: 0017_signin_tokens
Revises: 0014_rewards_ident_collation
Create Date: 2026-12-06 21:00:00.000000

A sign-in link's token was written, whole, in the `member.sign_in_link` outbox event, which
any key with `events:read` reads from the events feed. The token is now derived from a random
`seed` kept in this table and `HABITUE_HMAC_KEY` (see `habitue.web.service`); the table keeps
only the seed and the token's SHA-256, and the outbox event carries no link. A sign-up's
password waits in `password_hash` until its link is used.

Links issued before this revision are spent, and their URLs removed from the outbox.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017_signin_tokens"
down_revision: str | Sequence[str] | None = "0019_api_keys"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = "0005_web"  # the table it alters


def upgrade() -> None:
    with op.batch_alter_table("member_sign_in_tokens", schema=None) as batch_op:
        batch_op.add_column(sa.Column("seed", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("password_hash", sa.String(length=200), nullable=True))
    op.execute("UPDATE member_sign_in_tokens SET used_at = expires_at WHERE used_at IS NULL")
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "UPDATE outbox SET payload = CAST(CAST(payload AS jsonb) - 'url' AS json) "
            "WHERE type = 'member.sign_in_link'"
        )
    else:
        op.execute(
            "UPDATE outbox SET payload = json_remove(payload, '$.url') "
            "WHERE type = 'member.sign_in_link'"
        )


def downgrade() -> None:
    with op.batch_alter_table("member_sign_in_tokens", schema=None) as batch_op:
        batch_op.drop_column("password_hash")
        batch_op.drop_column("seed")
