"""Campaigns measured against a hold-out group: deterministic assignment and the uplift report.

A member's group is `uplift.assign_group("{program}/{campaign}", member public id, share)`:
members present at creation are stored in `campaign_assignments`, later members get the same
answer from the hash. The report reads the events of the campaign's window: revenue is
purchases minus refunds, visits are purchases and `visit` actions, and the points cost is the
points the events earned, valued at the program's redeem rate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import case, func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from habitue import clock
from habitue.analytics import uplift
from habitue.analytics.errors import (
    AnalyticsError,
    CampaignExists,
    CampaignNotFound,
    UnknownCampaignSubject,
)
from habitue.analytics.models import Campaign, CampaignAssignment
from habitue.db import table_of
from habitue.errors import NotFound
from habitue.events.models import Event
from habitue.members.models import Member
from habitue.money import format_minor
from habitue.programs.service import ProgramInfo

_members = table_of(Member)
INSERT_CHUNK = 5000


def _clean(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


_campaigns = table_of(Campaign)
_assignments = table_of(CampaignAssignment)
_events = table_of(Event)
CAMPAIGN_KINDS = ("offer", "rule", "newsletter")


def campaign_key(program: ProgramInfo, code: str) -> str:
    """The campaign id the assignment hash reads: program code and campaign code."""
    return f"{program.code}/{code}"


@dataclass(frozen=True, slots=True)
class CampaignInfo:
    """A campaign and the sizes of its groups at creation."""

    code: str
    kind: str
    holdout_share: float
    starts_at: datetime
    ends_at: datetime
    created_at: datetime
    treatment: int
    holdout: int
    subject: str | None = None
    """The code of the rule, offer or newsletter measured (None for older campaigns)."""


async def create_campaign(
    session: AsyncSession,
    program: ProgramInfo,
    *,
    code: str,
    kind: str,
    holdout_share: float,
    starts_at: datetime,
    ends_at: datetime,
    subject: str | None = None,
) -> CampaignInfo:
    """Define a campaign and assign every current member to treatment or hold-out by hash;
    `subject` names the rule, offer or newsletter (of `kind`) it measures, which must exist."""
    uplift.assign_treatment("check", [], holdout_share=holdout_share)
    if kind not in CAMPAIGN_KINDS:
        raise AnalyticsError(f"kind must be one of {', '.join(CAMPAIGN_KINDS)}")
    if subject is not None and not await subject_exists(session, program, kind, subject):
        raise UnknownCampaignSubject(f"no {kind} {subject!r} in this program")
    if ends_at <= starts_at:
        raise AnalyticsError("ends_at must be after starts_at")
    now = clock.now()
    try:
        async with session.begin_nested():
            campaign_id = (
                await session.execute(
                    insert(_campaigns)
                    .values(
                        program_id=program.id,
                        code=code,
                        kind=kind,
                        subject=subject,
                        holdout_share=holdout_share,
                        starts_at=starts_at,
                        ends_at=ends_at,
                        created_at=now,
                    )
                    .returning(_campaigns.c.id)
                )
            ).scalar_one()
    except IntegrityError as exc:
        raise CampaignExists(f"a campaign {code!r} already exists in this program") from exc
    members = (
        await session.execute(
            select(_members.c.id, _members.c.public_id)
            .where(_members.c.program_id == program.id)
            .order_by(_members.c.id)
        )
    ).all()
    key = campaign_key(program, code)
    treated = uplift.assign_treatment(
        key, [m.public_id for m in members], holdout_share=holdout_share
    )
    rows = [
        {
            "program_id": program.id,
            "campaign_id": campaign_id,
            "member_id": m.id,
            "group": "treatment" if t else "holdout",
        }
        for m, t in zip(members, treated.tolist(), strict=True)
    ]
    for start in range(0, len(rows), INSERT_CHUNK):
        await session.execute(insert(_assignments), rows[start : start + INSERT_CHUNK])
    n_treated = int(treated.sum())
    return CampaignInfo(
        code,
        kind,
        holdout_share,
        starts_at,
        ends_at,
        now,
        n_treated,
        len(rows) - n_treated,
        subject,
    )


async def subject_exists(session: AsyncSession, program: ProgramInfo, kind: str, code: str) -> bool:
    """Whether the program has the rule, offer or newsletter `code` (read through its room)."""
    from habitue.messaging import newsletters
    from habitue.rewards import offers
    from habitue.rules import service as rules_service

    try:
        if kind == "rule":
            await rules_service.get_rule(session, program, code)
        elif kind == "newsletter":
            await newsletters.get(session, program, code)
        else:
            return any(o.offer.code == code for o in await offers.list_offers(session, program))
    except NotFound:
        return False
    return True


async def list_campaigns(session: AsyncSession, program: ProgramInfo) -> list[CampaignInfo]:
    """The program's campaigns, latest start first, with their groups' sizes at creation."""
    sizes = (
        select(
            _assignments.c.campaign_id,
            func.count(case((_assignments.c.group == "treatment", 1))).label("treatment"),
            func.count(case((_assignments.c.group == "holdout", 1))).label("holdout"),
        )
        .where(_assignments.c.program_id == program.id)
        .group_by(_assignments.c.campaign_id)
        .subquery()
    )
    rows = await session.execute(
        select(_campaigns, sizes.c.treatment, sizes.c.holdout)
        .outerjoin(sizes, sizes.c.campaign_id == _campaigns.c.id)
        .where(_campaigns.c.program_id == program.id)
        .order_by(_campaigns.c.starts_at.desc(), _campaigns.c.code)
    )
    return [
        CampaignInfo(
            code=r.code,
            kind=r.kind,
            holdout_share=r.holdout_share,
            starts_at=clock.as_utc(r.starts_at),
            ends_at=clock.as_utc(r.ends_at),
            created_at=clock.as_utc(r.created_at),
            treatment=int(r.treatment or 0),
            holdout=int(r.holdout or 0),
            subject=r.subject,
        )
        for r in rows
    ]


async def _campaign_row(session: AsyncSession, program: ProgramInfo, code: str) -> Any:
    row = (
        await session.execute(
            select(_campaigns).where(
                _campaigns.c.program_id == program.id, _campaigns.c.code == code
            )
        )
    ).first()
    if row is None:
        raise CampaignNotFound(f"no campaign {code!r} in this program")
    return row


async def member_group(
    session: AsyncSession, program: ProgramInfo, code: str, public_id: str
) -> str:
    """A member's group in a campaign: stored at creation, else from the hash (later members)."""
    campaign = await _campaign_row(session, program, code)
    return uplift.assign_group(
        campaign_key(program, code), public_id, holdout_share=campaign.holdout_share
    )


async def campaign_report(
    session: AsyncSession, program: ProgramInfo, code: str, *, confidence: float = 0.95
) -> dict[str, Any]:
    """Per-group outcomes over the campaign's window and the incremental revenue with its CI."""
    campaign = await _campaign_row(session, program, code)
    starts, ends = clock.as_utc(campaign.starts_at), clock.as_utc(campaign.ends_at)
    members = (
        await session.execute(
            select(_members.c.id, _members.c.public_id)
            .where(_members.c.program_id == program.id, _members.c.enrolled_at < ends)
            .order_by(_members.c.id)
        )
    ).all()
    stored = dict(
        (
            await session.execute(
                select(_assignments.c.member_id, _assignments.c.group).where(
                    _assignments.c.campaign_id == campaign.id
                )
            )
        ).all()
    )
    key = campaign_key(program, code)
    index = {m.id: i for i, m in enumerate(members)}
    n = len(members)
    in_treatment = np.zeros(n, dtype=bool)
    for i, m in enumerate(members):
        assigned = stored.get(m.id) or uplift.assign_group(
            key, m.public_id, holdout_share=campaign.holdout_share
        )
        in_treatment[i] = assigned == "treatment"
    revenue = np.zeros(n)
    visits = np.zeros(n)
    points = np.zeros(n)
    e = _events.c
    rows = await session.execute(
        select(e.member_id, e.type, e.total_minor, e.points).where(
            e.program_id == program.id, e.occurred_at >= starts, e.occurred_at < ends
        )
    )
    for member_id, kind, total, earned in rows:
        found = index.get(member_id)
        if found is None:
            continue
        i = found
        if kind == "purchase":
            revenue[i] += total
            visits[i] += 1
        elif kind == "refund":
            revenue[i] -= total
        elif kind == "visit":
            visits[i] += 1
        if earned and earned > 0:
            points[i] += earned
    point_value = float(program.redeem_rate) * 10**program.currency_exponent
    report = uplift.uplift_report(
        in_treatment=in_treatment,
        revenue_minor=revenue,
        visits=visits,
        points_cost=points,
        point_value_minor=point_value,
        confidence=confidence,
        currency_exponent=program.currency_exponent,
    )
    exp = program.currency_exponent

    def money(value: float | None) -> str | None:
        return (
            None if value is None or not math.isfinite(value) else format_minor(round(value), exp)
        )

    def group(g: uplift.GroupReport) -> dict[str, Any]:
        return {
            "members": g.members,
            "buyers": g.buyers,
            "revenue": format_minor(g.revenue_minor, exp),
            "revenue_per_member": money(g.revenue_per_member),
            "visits_per_member": round(g.visits_per_member, 6),
            "points_cost_per_member": round(g.points_cost_per_member, 6),
        }

    return {
        "code": campaign.code,
        "kind": campaign.kind,
        "subject": campaign.subject,
        "started": clock.now() >= starts,
        "holdout_share": campaign.holdout_share,
        "starts_at": starts,
        "ends_at": ends,
        "treatment": group(report.treatment),
        "holdout": group(report.holdout),
        "confidence": report.confidence,
        "incremental_revenue_per_member": money(report.incremental_revenue_per_member),
        "ci_low": money(report.ci_low),
        "ci_high": money(report.ci_high),
        "p_value": _clean(report.p_value),
        "significant": report.significant,
        "incremental_revenue": money(report.total_incremental_revenue_minor),
        "incremental_points_cost": money(report.incremental_points_cost_minor),
        "return_on_points": _clean(report.return_on_points),
        "verdict": report.verdict,
    }
