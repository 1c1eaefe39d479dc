"""Routes: member scores and recommendations, RFM segment sizes, dynamic segments, campaigns,
and the monthly program report."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response
from sqlalchemy.ext.asyncio import AsyncSession

from habitue import clock
from habitue.analytics import asof
from habitue.analytics import campaigns as campaigns_service
from habitue.analytics import report as report_service
from habitue.analytics import segments as segments_service
from habitue.analytics import service as analytics_service
from habitue.analytics.schemas import (
    CampaignCreate,
    CampaignRead,
    CampaignReport,
    Recommendations,
    ScoresRead,
    ScoresRun,
    SegmentCreate,
    SegmentMembers,
    SegmentRead,
    SegmentSize,
    SegmentSizes,
)
from habitue.db import Database
from habitue.deps import DbDep, ProgramDep, ReadSession, scoped
from habitue.members import service as members_service
from habitue.money import format_minor
from habitue.privacy import purposes, release
from habitue.programs.service import Principal, ProgramInfo

router = APIRouter(prefix="/v1/programs/{program}", tags=["analytics"])

AsOf = Annotated[
    str | None,
    Query(
        description="the moment analytics describe: a date (its end, UTC) or an ISO timestamp; "
        "default: now, or the end of the day of the last event when the history is older than "
        "the pending period"
    ),
]


def _as_of(value: str | None) -> datetime | None:
    return None if value is None else asof.parse_as_of(value)


@router.get("/members/{member_id}/scores", response_model=ScoresRead)
async def member_scores(
    program: ProgramDep,
    member_id: str,
    session: ReadSession,
    principal: Principal = scoped("analytics:read"),
) -> ScoresRead:
    release.require_member_access(principal, "a member's scores")
    scores = await analytics_service.member_scores(session, program, member_id)
    # Per-member scores feed personalisation: shown only with the member's consent to
    # profiling (otherwise all null, as for a member never scored).
    profiled = await purposes.public_member_allows(
        session, program.id, member_id, purposes.Purpose.PROFILING
    )
    if not profiled:
        scores = {name: (value if name == "member_id" else None) for name, value in scores.items()}
    return ScoresRead(**scores)


@router.post("/analytics/scores", response_model=ScoresRun)
async def compute_scores(
    program: ProgramDep, db: DbDep, as_of: AsOf = None, _: Principal = scoped("rules:write")
) -> ScoresRun:
    moment = _as_of(as_of)

    async def work(session: AsyncSession) -> ScoresRun:
        run = await analytics_service.refresh_scores_async(session, program, as_of=moment)
        await segments_service.recompute_async(session, program)
        return ScoresRun(
            members_scored=run.members_scored,
            members_with_rfm=run.members_with_rfm,
            clv_fitted=run.clv_fitted,
            computed_at=run.computed_at,
            segments=run.segments,
            as_of=run.as_of,
        )

    return await db.write(work)


@router.get("/analytics/segments", response_model=SegmentSizes)
async def segment_sizes(
    program: ProgramDep,
    db: DbDep,
    months: Annotated[int, Query(ge=1, le=120)] = 12,
    as_of: AsOf = None,
    principal: Principal = scoped("analytics:read"),
) -> SegmentSizes:
    moment = _as_of(as_of)
    exp = program.currency_exponent
    if release.is_owner(principal):
        rows = await analytics_service.run_read(
            db,
            lambda conn: analytics_service.segment_history(
                conn, program, months=months, now=moment
            ),
        )
        return SegmentSizes(
            items=[
                SegmentSize(
                    as_of=r["as_of"],
                    segment=r["segment"],
                    members=r["members"],
                    monetary=format_minor(r["monetary_minor"], exp),
                )
                for r in rows
            ]
        )
    k = await _k(db, program)
    released = await analytics_service.run_read(
        db,
        lambda conn: analytics_service.released_segment_history(
            conn, program, months=months, now=moment, k=k
        ),
    )
    return SegmentSizes(
        items=[
            SegmentSize(
                as_of=r["as_of"],
                segment=r["segment"],
                members=r["members"],
                monetary=None if r["suppressed"] else format_minor(r["monetary_minor"], exp),
                suppressed=r["suppressed"],
            )
            for r in released
        ]
    )


async def _k(db: Database, program: ProgramInfo) -> int:
    async with db.read() as session:
        return await release.min_group_size(session, program)


def _segment_read(
    info: segments_service.SegmentInfo, hidden: set[str] | frozenset[str] = frozenset()
) -> SegmentRead:
    return SegmentRead(
        code=info.code,
        name=info.name,
        condition=info.condition,
        members=None if info.code in hidden else info.members,
        profiling=info.profiling,
        computed_at=info.computed_at,
        created_at=info.created_at,
    )


@router.post("/segments", status_code=201, response_model=SegmentRead)
async def create_segment(
    program: ProgramDep, body: SegmentCreate, db: DbDep, _: Principal = scoped("rules:write")
) -> SegmentRead:
    async def work(session: AsyncSession) -> SegmentRead:
        info = await segments_service.create_segment(
            session, program, code=body.code, name=body.name, condition=body.condition
        )
        return _segment_read(info)

    return await db.write(work)


@router.get("/segments", response_model=list[SegmentRead])
async def list_segments(
    program: ProgramDep, session: ReadSession, principal: Principal = scoped("analytics:read")
) -> list[SegmentRead]:
    hidden = await _hidden_segments(session, program, principal)
    return [
        _segment_read(i, hidden) for i in await segments_service.list_segments(session, program)
    ]


async def _hidden_segments(
    session: AsyncSession, program: ProgramInfo, principal: Principal
) -> set[str]:
    """The segments whose size a key without `admin` does not see (see habitue.privacy)."""
    if release.is_owner(principal):
        return set()
    k = await release.min_group_size(session, program)
    return await release.suppressed_segments(session, program, k)


@router.get("/segments/{code}", response_model=SegmentRead)
async def get_segment(
    program: ProgramDep,
    code: str,
    session: ReadSession,
    principal: Principal = scoped("analytics:read"),
) -> SegmentRead:
    info = await segments_service.get_segment(session, program, code)
    return _segment_read(info, await _hidden_segments(session, program, principal))


@router.post("/segments/{code}/recompute", response_model=SegmentRead)
async def recompute_segment(
    program: ProgramDep, code: str, db: DbDep, _: Principal = scoped("rules:write")
) -> SegmentRead:
    async def work(session: AsyncSession) -> SegmentRead:
        await segments_service.get_segment(session, program, code)
        await segments_service.recompute_async(session, program, [code])
        return _segment_read(await segments_service.get_segment(session, program, code))

    return await db.write(work)


@router.get("/segments/{code}/members", response_model=SegmentMembers)
async def segment_members(
    program: ProgramDep,
    code: str,
    session: ReadSession,
    principal: Principal = scoped("analytics:read"),
) -> SegmentMembers:
    release.require_member_access(principal, "a segment's member list")
    ids = await segments_service.members_in_segment(session, program, code)
    # A member listing feeds personalisation: only the members consenting to profiling.
    ids = await purposes.members_allowing(session, ids, purposes.Purpose.PROFILING)
    return SegmentMembers(code=code, members=await segments_service.member_public_ids(session, ids))


@router.get("/members/{member_id}/recommendations", response_model=Recommendations)
async def recommendations(
    program: ProgramDep,
    member_id: str,
    session: ReadSession,
    db: DbDep,
    k: Annotated[int, Query(ge=1, le=100)] = 10,
    exclude_recent_days: Annotated[int | None, Query(ge=1, le=3650)] = None,
    strategy: Literal["item-item", "blend"] = "item-item",
    principal: Principal = scoped("analytics:read"),
) -> Recommendations:
    # Drawn from the member's own baskets: per-member data, like their scores.
    release.require_member_access(principal, "a member's recommendations")
    ref = await members_service.resolve(session, program, member_id=member_id)
    # Personalised only with the member's consent to profiling (else the popular items).
    personal = await purposes.member_allows(session, ref.id, purposes.Purpose.PROFILING)
    items, source = await analytics_service.run_read(
        db,
        lambda conn: analytics_service.recommend_for_member(
            conn,
            program,
            ref.id,
            k=k,
            exclude_recent_days=exclude_recent_days,
            personal=personal,
            strategy=strategy,
        ),
    )
    return Recommendations(member_id=member_id, source=source, items=items)


@router.post("/campaigns", status_code=201, response_model=CampaignRead)
async def create_campaign(
    program: ProgramDep, body: CampaignCreate, db: DbDep, _: Principal = scoped("rules:write")
) -> CampaignRead:
    async def work(session: AsyncSession) -> CampaignRead:
        info = await campaigns_service.create_campaign(
            session,
            program,
            code=body.code,
            kind=body.kind,
            holdout_share=body.holdout_share,
            starts_at=body.starts_at,
            ends_at=body.ends_at,
            subject=body.subject,
        )
        return CampaignRead(
            code=info.code,
            kind=info.kind,
            subject=info.subject,
            holdout_share=info.holdout_share,
            starts_at=info.starts_at,
            ends_at=info.ends_at,
            created_at=info.created_at,
            treatment=info.treatment,
            holdout=info.holdout,
        )

    return await db.write(work)


@router.get("/campaigns/{code}/report", response_model=CampaignReport)
async def campaign_report(
    program: ProgramDep,
    code: str,
    session: ReadSession,
    principal: Principal = scoped("analytics:read"),
) -> CampaignReport:
    report = await campaigns_service.campaign_report(session, program, code)
    if not release.is_owner(principal):
        k = await release.min_group_size(session, program)
        report = release.suppress_campaign(report, k, clock.now())
    return CampaignReport(**report)


@router.get(
    "/reports/monthly",
    response_class=Response,
    responses={
        200: {
            "description": "The report in the requested format",
            "content": {
                "application/json": {"schema": {"type": "object"}},
                "text/csv": {"schema": {"type": "string"}},
                "application/vnd.apache.parquet": {
                    "schema": {"type": "string", "format": "binary"}
                },
            },
        }
    },
)
async def monthly_report(
    program: ProgramDep,
    db: DbDep,
    format: Literal["json", "csv", "parquet"] = "json",  # noqa: A002 - the API's parameter name
    as_of: AsOf = None,
    principal: Principal = scoped("analytics:read"),
) -> Response:
    moment = _as_of(as_of)
    rows, rewards = await analytics_service.run_read(
        db, lambda conn: report_service.program_report(conn, program, as_of=moment)
    )
    if not release.is_owner(principal):  # ended months only; those of fewer than k suppressed
        rows, rewards = release.ended_months(rows, rewards, clock.now())
        rows, rewards = release.suppress_monthly(rows, rewards, await _k(db, program))
    body, media_type = report_service.render(rows, format, rewards=rewards)
    headers = {}
    if format != "json":
        headers["Content-Disposition"] = f'attachment; filename="{program.code}-monthly.{format}"'
    return Response(body, media_type=media_type, headers=headers)
