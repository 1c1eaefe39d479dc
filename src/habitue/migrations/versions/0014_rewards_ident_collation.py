"""rewards: identifiers compared byte by byte on PostgreSQL (COLLATE "C"), as 0012

Revision ID: 0014_rewards_ident_collation
Revises: 0004_rewards
Create Date: 2026-12-05 07:00:00.000000

Reward and offer codes, coupon codes, the public ids of redemptions and referrals, and the
purchase a referral waits for: looked up by equality at the till and on every redemption.
Like 0012, PostgreSQL rebuilds the indexes over them holding each table's lock.
"""

from collections.abc import Sequence

from habitue.migrate import set_collation

revision: str = "0014_rewards_ident_collation"
down_revision: str | Sequence[str] | None = "0004_rewards"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# table: [(column, length)] — the columns declared with `habitue.db.ident`
COLUMNS: dict[str, list[tuple[str, int]]] = {
    "rewards": [("code", 64)],
    "redemptions": [("public_id", 36)],
    "coupons": [("code", 32)],
    "offers": [("code", 64)],
    "referral_codes": [("code", 32)],
    "referrals": [("public_id", 36), ("purchase_event_id", 36)],
}


def upgrade() -> None:
    set_collation(COLUMNS, "C")


def downgrade() -> None:
    set_collation(COLUMNS, "default")
