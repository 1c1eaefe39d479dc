"""The member's lifetime earned total, moved by events and adjustments."""

from __future__ import annotations

from sqlalchemy import bindparam, update
from sqlalchemy.ext.asyncio import AsyncSession

from habitue.db import Part
from habitue.members.refs import _members

_ADD_LIFETIME = (
    update(_members)
    .where(_members.c.id == bindparam("member"))
    .values(lifetime_earned=_members.c.lifetime_earned + bindparam("points"))
)


# The same change as a part of a caller's statement on PostgreSQL (the event's).
_ADD_LIFETIME_SQL = """
    UPDATE members SET lifetime_earned = lifetime_earned + :points
    WHERE id = :member AND :points <> 0
"""


def lifetime_part(member_id: int, points: int) -> Part:
    """`add_lifetime` as a CTE (`lifetime`) of a composed statement (`db.compose`)."""
    return Part("members", _ADD_LIFETIME_SQL, {"member": member_id, "points": points}, "lifetime")


async def add_lifetime(session: AsyncSession, member_id: int, points: int) -> None:
    """Add (or, for a take-back, subtract) points to the member's lifetime earned total."""
    await session.execute(_ADD_LIFETIME, {"member": member_id, "points": points})
