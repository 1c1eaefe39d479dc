"""Aggregate-only release: what analytics hand to a key that is not the program's owner.

A key without the `admin` scope receives analytics as groups of at least k members (the
program's `min_group_size`, default 10); a smaller cell is suppressed (its figures null,
`suppressed` set). Per-member analytics (a segment's member list, a member's scores) are
for keys that may read members (`admin` or `members:read`); an `analytics:read` key alone
gets 403 `aggregate-only` there.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from habitue import clock
from habitue.db import table_of
from habitue.errors import Forbidden
from habitue.privacy.models import PrivacySettings
from habitue.programs.service import Principal, ProgramInfo
from habitue.rewards.sql import affected

DEFAULT_MIN_GROUP = 10

_settings = table_of(PrivacySettings)


class AggregateOnly(Forbidden):
    type = "aggregate-only"
    title = "Aggregates only"


async def min_group_size(session: AsyncSession, program: ProgramInfo) -> int:
    """k: the fewest members a group released to a non-owner key may hold."""
    found = (
        await session.execute(
            select(_settings.c.min_group_size).where(_settings.c.program_id == program.id)
        )
    ).scalar()
    return DEFAULT_MIN_GROUP if found is None else int(found)


async def set_min_group_size(session: AsyncSession, program: ProgramInfo, k: int) -> int:
    now = clock.now()
    done = await session.execute(
        update(_settings)
        .where(_settings.c.program_id == program.id)
        .values(min_group_size=k, updated_at=now)
    )
    if not affected(done):
        await session.execute(
            insert(_settings).values(program_id=program.id, min_group_size=k, updated_at=now)
        )
    return k


def is_owner(principal: Principal) -> bool:
    """The operator or a key with `admin`: analytics in full."""
    return principal.partner is None and "admin" in principal.scopes


def require_member_access(principal: Principal, what: str) -> None:
    """Per-member analytics: refused (403 `aggregate-only`) to a key that cannot read
    members."""
    if principal.partner is not None or not principal.allows("members:read"):
        raise AggregateOnly(
            f"{what} is per-member data; this key receives aggregates of at least k members"
        )


def small(count: int | None, k: int) -> bool:
    """A cell of fewer than k members (but not an empty one, which reveals no one)."""
    return count is not None and 0 < count < k


def suppress_campaign(report: dict[str, Any], k: int) -> dict[str, Any]:
    """The campaign report with every group of fewer than k members suppressed, and the
    revenue of a group whose buyers are fewer than k; the comparison needs both groups."""
    out = dict(report)
    whole = True
    for name in ("treatment", "holdout"):
        group = dict(out[name])
        if small(group["members"], k):
            group = {key: None for key in group}
            group["suppressed"] = True
            whole = False
        elif small(group["buyers"], k):
            group.update(buyers=None, revenue=None, revenue_per_member=None, suppressed=True)
            whole = False
        out[name] = group
    if not whole:
        out.update(
            incremental_revenue_per_member=None,
            ci_low=None,
            ci_high=None,
            p_value=None,
            significant=False,
            incremental_revenue=None,
            incremental_points_cost=None,
            return_on_points=None,
            verdict="suppressed",
        )
    return out
