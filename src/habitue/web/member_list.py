"""The console's member list: the program's members filtered by tier, dynamic segment, RFM
group, consent and status, a page at a time (newest first), for the screen, a CSV file or an
offer's targets. Reads only.

The RFM group is a profiling output: it is shown, exported and filtered on only for members
consenting to profiling, and a filter by a profiling segment keeps only them too — so that an
offer to the filtered members never targets by profiling someone who refused it
(docs/privacy.md, "Where each purpose is enforced")."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from habitue import clock
from habitue.analytics.models import MemberScore, Segment, SegmentMember
from habitue.analytics.segments import is_profiling
from habitue.db import table_of
from habitue.members.models import Member
from habitue.members.schemas import CHANNELS
from habitue.programs.service import ProgramInfo

_members = table_of(Member)
_scores = table_of(MemberScore)
_segments = table_of(Segment)
_segment_members = table_of(SegmentMember)

PAGE = 50
EXPORT_LIMIT = 100_000
STATUSES = ("active", "suspended", "closed", "erased")
CSV_COLUMNS = (
    "id",
    "first_name",
    "last_name",
    "email",
    "phone",
    "tier",
    "status",
    "rfm_group",
    *(f"consent_{c}" for c in CHANNELS),
    "enrolled_at",
)


@dataclass(frozen=True, slots=True)
class Filters:
    """What the list is narrowed to; None (or "") means any."""

    tier: str | None = None
    segment: str | None = None
    rfm: str | None = None
    consent: str | None = None
    status: str | None = None

    @classmethod
    def of(cls, params: Any) -> Filters:
        def one(name: str, size: int = 64) -> str | None:
            value = str(params.get(name) or "").strip()[:size]
            return value or None

        consent = one("consent")
        status = one("status")
        return cls(
            tier=one("tier"),
            segment=one("segment"),
            rfm=one("rfm", 32),
            consent=consent if consent in CHANNELS else None,
            status=status if status in STATUSES else None,
        )

    def query(self) -> dict[str, str]:
        """The filters as query parameters (for links: next page, CSV export)."""
        return {
            k: v
            for k, v in (
                ("tier", self.tier),
                ("segment", self.segment),
                ("rfm", self.rfm),
                ("consent", self.consent),
                ("status", self.status),
            )
            if v
        }


@dataclass(frozen=True, slots=True)
class Row:
    id: str
    internal_id: int
    first_name: str | None
    last_name: str | None
    email: str | None
    phone: str | None
    tier: str | None
    status: str
    rfm: str | None
    consents: dict[str, bool]
    enrolled_at: datetime


def _granted(value: Any) -> bool:
    if isinstance(value, dict):
        return bool(value.get("granted"))
    return bool(value)


async def _query(session: AsyncSession, program: ProgramInfo, filters: Filters) -> Any:
    """`_select`, knowing whether the segment filtered on is a profiling one."""
    profiling = False
    if filters.segment:
        condition = (
            await session.execute(
                select(_segments.c.condition).where(
                    _segments.c.program_id == program.id, _segments.c.code == filters.segment
                )
            )
        ).scalar_one_or_none()
        profiling = condition is not None and is_profiling(condition)
    return _select(program, filters, profiling_segment=profiling)


def _select(program: ProgramInfo, filters: Filters, *, profiling_segment: bool = False) -> Any:
    score = and_(_scores.c.member_id == _members.c.id, _scores.c.program_id == program.id)
    profiled = _members.c.consents[("profiling", "granted")].as_boolean().is_(True)
    query = (
        select(
            _members.c.id,
            _members.c.public_id,
            _members.c.first_name,
            _members.c.last_name,
            _members.c.email,
            _members.c.phone,
            _members.c.tier,
            _members.c.status,
            _members.c.consents,
            _members.c.enrolled_at,
            case((profiled, _scores.c.segment), else_=None).label("rfm"),
        )
        .select_from(_members.outerjoin(_scores, score))
        .where(_members.c.program_id == program.id)
    )
    if filters.tier == "-":
        query = query.where(_members.c.tier.is_(None))
    elif filters.tier:
        query = query.where(_members.c.tier == filters.tier)
    if filters.status:
        query = query.where(_members.c.status == filters.status)
    if filters.rfm:
        query = query.where(_scores.c.segment == filters.rfm, profiled)
    if filters.segment:
        inside = (
            select(_segment_members.c.member_id)
            .join(_segments, _segments.c.id == _segment_members.c.segment_id)
            .where(_segments.c.program_id == program.id, _segments.c.code == filters.segment)
        )
        query = query.where(_members.c.id.in_(inside))
        if profiling_segment:
            query = query.where(profiled)
    if filters.consent:
        granted = _members.c.consents[(filters.consent, "granted")].as_boolean()
        query = query.where(granted.is_(True))
    return query


def _row(r: Any) -> Row:
    consents = r.consents if isinstance(r.consents, dict) else {}
    return Row(
        id=str(r.public_id),
        internal_id=int(r.id),
        first_name=r.first_name,
        last_name=r.last_name,
        email=r.email,
        phone=r.phone,
        tier=r.tier,
        status=str(r.status),
        rfm=r.rfm,
        consents={c: _granted(consents.get(c)) for c in CHANNELS},
        enrolled_at=clock.as_utc(r.enrolled_at),
    )


async def page(
    session: AsyncSession,
    program: ProgramInfo,
    filters: Filters,
    *,
    before: int | None = None,
    limit: int = PAGE,
) -> tuple[list[Row], int | None, int]:
    """A page of members, newest first, from below the internal id `before`; with the
    cursor of the next page (None at the end) and how many members match in all."""
    query = await _query(session, program, filters)
    total = (await session.execute(select(func.count()).select_from(query.subquery()))).scalar_one()
    if before is not None:
        query = query.where(_members.c.id < before)
    rows = (await session.execute(query.order_by(_members.c.id.desc()).limit(limit + 1))).all()
    items = [_row(r) for r in rows[:limit]]
    more = len(rows) > limit
    return items, (items[-1].internal_id if more and items else None), int(total)


async def public_ids(
    session: AsyncSession, program: ProgramInfo, filters: Filters, *, limit: int = EXPORT_LIMIT
) -> list[str]:
    """The public ids of every member the filters keep (at most `limit`)."""
    query = (await _query(session, program, filters)).order_by(_members.c.id).limit(limit)
    return [str(r.public_id) for r in (await session.execute(query)).all()]


async def csv_text(session: AsyncSession, program: ProgramInfo, filters: Filters) -> str:
    """The members the filters keep, as CSV (UTF-8, a header line, oldest first)."""
    query = (await _query(session, program, filters)).order_by(_members.c.id).limit(EXPORT_LIMIT)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for r in (await session.execute(query)).all():
        row = _row(r)
        writer.writerow(
            [
                row.id,
                _safe(row.first_name),
                _safe(row.last_name),
                _safe(row.email),
                _safe(row.phone),
                row.tier or "",
                row.status,
                row.rfm or "",
                *("yes" if row.consents[c] else "no" for c in CHANNELS),
                row.enrolled_at.isoformat(),
            ]
        )
    return out.getvalue()


def _safe(value: str | None) -> str:
    """A cell a spreadsheet will not run as a formula."""
    text = value or ""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


async def choices(session: AsyncSession, program: ProgramInfo) -> dict[str, Sequence[str]]:
    """The values the filters offer: tiers in use, segments, RFM groups."""
    tiers = (
        await session.execute(
            select(_members.c.tier)
            .where(_members.c.program_id == program.id, _members.c.tier.is_not(None))
            .distinct()
        )
    ).scalars()
    segments = (
        await session.execute(
            select(_segments.c.code)
            .where(_segments.c.program_id == program.id)
            .order_by(_segments.c.code)
        )
    ).scalars()
    groups = (
        await session.execute(
            select(_scores.c.segment)
            .where(_scores.c.program_id == program.id, _scores.c.segment.is_not(None))
            .distinct()
        )
    ).scalars()
    return {
        "tiers": sorted(str(t) for t in tiers),
        "segments": [str(s) for s in segments],
        "rfm": sorted(str(g) for g in groups),
    }
