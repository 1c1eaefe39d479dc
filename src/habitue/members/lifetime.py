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


_ADD_LIFETIMES_SQL = """
    UPDATE members SET lifetime_earned = members.lifetime_earned + d.points
    FROM unnest(CAST(:members AS bigint[]), CAST(:points AS bigint[])) AS d(id, points)
    WHERE members.id = d.id AND members.id = ANY(CAST(:members AS bigint[]))
"""


def lifetimes_part(points_by_member: dict[int, int]) -> Part:
    """`add_lifetime` for several members at once, as a CTE (`lifetimes`) of a composed
    statement (PostgreSQL); members whose total does not move are left out."""
    moved = {m: p for m, p in points_by_member.items() if p}
    return Part(
        "members",
        _ADD_LIFETIMES_SQL,
        {"members": list(moved), "points": list(moved.values())},
        "lifetimes",
    )
