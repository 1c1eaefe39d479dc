"""The purposes a member consents to, and the one check every use goes through.

`members.consents` holds one entry per purpose (`{"granted": bool, "at": …}`); absent means
not granted: nothing is assumed. Messaging checks its channels (`email`, `sms`, `push`) in
`habitue.messaging.triggers`; `profiling` gates what is personalised from a member's
behaviour (recommendations from their baskets); `partners` gates what a partner key reads of
a member (`habitue.partners.access.require_sharing`).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from habitue.db import table_of
from habitue.members.models import Member

_members = table_of(Member)


class Purpose(StrEnum):
    EMAIL = "email"
    """Marketing email."""
    SMS = "sms"
    PUSH = "push"
    ANALYTICS = "analytics"
    """Counting the member in the program's statistics beyond what running it needs."""
    PROFILING = "profiling"
    """Personalised offers and recommendations from the member's behaviour."""
    PARTNERS = "partners"
    """Sharing with the coalition's partners: a partner key reads the member's data."""


def granted(consents: Mapping[str, Any] | None, purpose: Purpose) -> bool:
    """Whether the member's current consent for `purpose` is given (absent: no)."""
    entry = (consents or {}).get(purpose.value)
    if isinstance(entry, Mapping):
        return entry.get("granted") is True
    return entry is True


async def public_member_allows(
    session: AsyncSession, program_id: int, public_id: str, purpose: Purpose
) -> bool | None:
    """`granted` for one member, by public id; None when the program has no such member."""
    row = (
        await session.execute(
            select(_members.c.consents).where(
                _members.c.program_id == program_id, _members.c.public_id == public_id
            )
        )
    ).first()
    return None if row is None else granted(row.consents, purpose)


async def members_allowing(
    session: AsyncSession, member_ids: list[int], purpose: Purpose
) -> list[int]:
    """Those of `member_ids` (internal ids) whose consent for `purpose` is given, in order."""
    allowed: set[int] = set()
    for i in range(0, len(member_ids), 500):
        chunk = member_ids[i : i + 500]
        rows = await session.execute(
            select(_members.c.id, _members.c.consents).where(_members.c.id.in_(chunk))
        )
        allowed |= {int(r.id) for r in rows if granted(r.consents, purpose)}
    return [i for i in member_ids if i in allowed]


async def member_allows(session: AsyncSession, member_id: int, purpose: Purpose) -> bool:
    """`granted` for one member, by internal id."""
    consents = (
        await session.execute(select(_members.c.consents).where(_members.c.id == member_id))
    ).scalar_one_or_none()
    return granted(consents, purpose)
