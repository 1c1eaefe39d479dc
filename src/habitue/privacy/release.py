"""Aggregate-only release: what analytics hand to a key that is not the program's owner.

A key without the `admin` scope receives analytics as groups of at least k members (the
program's `min_group_size`, default 10); a smaller cell is suppressed (its figures null,
`suppressed` set). Per-member analytics (a segment's member list, a member's scores) are
for keys that may read members (`admin` or `members:read`); an `analytics:read` key alone
gets 403 `aggregate-only` there. Segment sizes over time are released for month starts only,
their cells that differ by fewer than k members withheld (`differencing_cells`). The monthly
report releases ended months only (`ended_months`) and suppresses its small months
(`suppress_monthly`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from habitue import clock
from habitue.analytics.models import Segment, SegmentMember
from habitue.db import table_of
from habitue.errors import Forbidden
from habitue.privacy.models import PrivacySettings
from habitue.programs.service import Principal, ProgramInfo
from habitue.rewards.sql import affected

DEFAULT_MIN_GROUP = 10

_settings = table_of(PrivacySettings)
_segments = table_of(Segment)
_segment_members = table_of(SegmentMember)


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


def suppress_campaign(report: dict[str, Any], k: int, now: datetime) -> dict[str, Any]:
    """The campaign report with every group of fewer than k members suppressed, and the
    revenue of a group whose buyers are fewer than k; the comparison needs both groups.

    A campaign that has not ended yet has every figure suppressed: its groups' buyers and
    revenue grow with each purchase, so two reads made either side of one member's purchase
    would differ by that member alone (a differencing attack across time). Once it has
    ended, its window no longer moves and the report is released (bar events imported late
    with an earlier time)."""
    out = dict(report)
    whole = True
    running = clock.as_utc(out["ends_at"]) > now
    for name in ("treatment", "holdout"):
        group = dict(out[name])
        if running or small(group["members"], k):
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


async def suppressed_segments(session: AsyncSession, program: ProgramInfo, k: int) -> set[str]:
    """Codes of the dynamic segments whose size is not released: fewer than k members, or a
    membership that differs from another segment's by fewer than k members (two overlapping
    segments whose sizes differ by one member would tell whether that member is in them)."""
    sizes: dict[int, tuple[str, int]] = {}
    rows = await session.execute(
        select(_segments.c.id, _segments.c.code, func.count(_segment_members.c.id))
        .outerjoin(_segment_members, _segment_members.c.segment_id == _segments.c.id)
        .where(_segments.c.program_id == program.id)
        .group_by(_segments.c.id, _segments.c.code)
    )
    for segment_id, code, count in rows:
        sizes[int(segment_id)] = (str(code), int(count))
    out = {code for code, count in sizes.values() if small(count, k)}
    a, b = _segment_members.alias("a"), _segment_members.alias("b")
    pairs = await session.execute(
        select(a.c.segment_id, b.c.segment_id, func.count())
        .join(b, (b.c.member_id == a.c.member_id) & (b.c.segment_id > a.c.segment_id))
        .where(a.c.program_id == program.id, b.c.program_id == program.id)
        .group_by(a.c.segment_id, b.c.segment_id)
    )
    for first, second, shared in pairs:
        (code_a, size_a), (code_b, size_b) = sizes[int(first)], sizes[int(second)]
        if 0 < size_a + size_b - 2 * int(shared) < k:
            out |= {code_a, code_b}
    return out


Cell = tuple[datetime, str]
"""A cell of `GET /analytics/segments`: an RFM segment at a date."""


def differencing_cells(
    dates: Sequence[datetime],
    memberships: Sequence[Mapping[int, str]],
    k: int,
) -> set[Cell]:
    """The segment x date cells not released to a key without `admin`.

    `memberships[i]` gives each member's segment at `dates[i]` (the segments of one date are
    a partition). A cell is withheld when it holds fewer than k members, and so are both
    cells of every pair (any segments, any two dates) whose memberships differ by 1..k-1
    members: their difference would count, and so single out, those few members (the
    member who moved into a segment between two month starts). The rule reads only the
    cells given, so the caller passes the same fixed grid of dates whatever was asked, and
    the answer for a cell never depends on the request. Pairs are counted with one
    `bincount` per pair of dates."""
    names = sorted({s for m in memberships for s in m.values()})
    code = {name: i for i, name in enumerate(names)}
    width = len(names)  # code `width`: not in any segment at that date
    keys = [np.fromiter(m.keys(), dtype=np.int64, count=len(m)) for m in memberships]
    members = np.unique(np.concatenate(keys)) if keys else np.empty(0, dtype=np.int64)
    grid = np.full((len(dates), len(members)), width, dtype=np.int64)  # a row per date
    for j, assigned in enumerate(memberships):
        segments = np.array([code[s] for s in assigned.values()], dtype=np.int64)
        grid[j, np.searchsorted(members, keys[j])] = segments
    side = width + 1
    sizes = [np.bincount(row, minlength=side)[:width] for row in grid]
    hidden = {
        (dates[j], names[s])
        for j in range(len(dates))
        for s in range(width)
        if small(int(sizes[j][s]), k)
    }
    for i in range(len(dates)):
        scaled = grid[i] * side
        for j in range(i + 1, len(dates)):
            shared = np.bincount(scaled + grid[j], minlength=side * side).reshape(side, side)
            apart = sizes[i][:, None] + sizes[j][None, :] - 2 * shared[:width, :width]
            present = (sizes[i][:, None] > 0) & (sizes[j][None, :] > 0)
            for a, b in zip(*np.nonzero(present & (apart > 0) & (apart < k)), strict=True):
                hidden |= {(dates[i], names[int(a)]), (dates[j], names[int(b)])}
    return hidden


MONTH_FIGURES = (
    "active_members", "purchases", "revenue", "refunds", "points_issued", "points_redeemed",
    "points_expired", "points_adjusted", "outstanding_liability", "redemption_rate",
    "breakage_to_date", "members_with_points",
)  # fmt: skip
"""The figures of a row of the monthly report (`habitue.analytics.report`)."""

MONTH_RUNNING = ("outstanding_liability", "breakage_to_date")
"""Running totals: the difference of two months' running totals is what the months between
them added, so once a month is suppressed no later running total is released."""


def ended_months(
    rows: list[dict[str, Any]], rewards: list[dict[str, Any]], now: datetime
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The monthly report's months that have ended (UTC), for a key without `admin`: the
    current month's row grows with each purchase, so two reads of it around one member's
    purchase would differ by that purchase; an ended month no longer changes."""
    current = f"{now.year:04d}-{now.month:02d}"
    return (
        [r for r in rows if r["month"] < current],
        [r for r in rewards if r["month"] < current],
    )


def suppress_monthly(
    rows: list[dict[str, Any]], rewards: list[dict[str, Any]], k: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The monthly report for a key without `admin`.

    A month with fewer than k active members (purchasers) or fewer than k members whose
    points moved has every figure null and `suppressed` true. From it on, the running totals
    (liability, breakage to date) are null in every month, so that no difference of two of
    them tells what the few members of the suppressed month earned. A top reward redeemed by
    fewer than k members in a month, or in a suppressed month, is left out."""
    out: list[dict[str, Any]] = []
    hidden: set[str] = set()
    for row in rows:
        row = {**row, "suppressed": False}
        if small(row["active_members"], k) or small(row["members_with_points"], k):
            row.update({name: None for name in MONTH_FIGURES}, suppressed=True)
            hidden.add(row["month"])
        elif hidden:
            row.update({name: None for name in MONTH_RUNNING})
        out.append(row)
    kept = [r for r in rewards if r["month"] not in hidden and r["members"] >= k]
    return out, kept
