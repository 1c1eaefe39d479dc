"""price: a stamp of each program's promotions, for the till's process cache

Revision ID: 0039_price
Revises: 0038_pgcost
Create Date: 2026-12-08 00:20:00.000000

`promotion_stamps` holds one random token per program, replaced in the transaction of every
change of the program's promotions (create, edit, delete). The till reads it with the member
and prices from the promotions its process kept when the token is the one they were read
under (`promotions.service.live`). Each program with promotions gets a token here, so the
promotions made before this migration are cached too.
"""

import secrets
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0039_price"
down_revision: str | Sequence[str] | None = "0038_pgcost"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _big_id() -> sa.types.TypeEngine[int]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    stamps = op.create_table(
        "promotion_stamps",
        sa.Column("program_id", _big_id(), nullable=False),
        sa.Column("stamp", sa.String(32), nullable=False),
        sa.PrimaryKeyConstraint("program_id", name="pk_promotion_stamps"),
        sa.ForeignKeyConstraint(
            ["program_id"], ["programs.id"], name="fk_promotion_stamps_program_id_programs"
        ),
    )
    programs = op.get_bind().execute(sa.text("SELECT DISTINCT program_id FROM promotions"))
    rows = [{"program_id": r[0], "stamp": secrets.token_hex(16)} for r in programs]
    if rows:
        op.bulk_insert(stamps, rows)


def downgrade() -> None:
    op.drop_table("promotion_stamps")
