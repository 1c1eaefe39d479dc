"""Routes: the tier ladder, a member's tier progress, history, guarantee and benefits."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy.ext.asyncio import AsyncSession

from habitue.deps import DbDep, ProgramDep, ReadSession, scoped
from habitue.members import service as members_service
from habitue.partners import access as partner_access
from habitue.partners.access import PartnerAccess
from habitue.programs.service import Principal
from habitue.tiers import jobs as tiers_jobs
from habitue.tiers import service as tiers_service
from habitue.tiers.benefits import benefits_of
from habitue.tiers.schemas import (
    BenefitsRead,
    EvaluationRead,
    GuaranteeWrite,
    HistoryRead,
    LadderRead,
    LadderWrite,
    TierProgress,
)

router = APIRouter(prefix="/v1/programs/{program}", tags=["tiers"])


@router.post("/tiers", status_code=201, response_model=LadderRead)
async def set_ladder(
    program: ProgramDep, body: LadderWrite, db: DbDep, _: Principal = scoped("rules:write")
) -> LadderRead:
    async def work(session: AsyncSession) -> LadderRead:
        ladder = await tiers_service.set_ladder(session, program, body)
        return tiers_service.to_read(ladder, program)

    return await db.write(work)


@router.get("/tiers", response_model=LadderRead)
async def get_ladder(
    program: ProgramDep,
    session: ReadSession,
    _: Principal = scoped("members:read", partner=PartnerAccess.TILL),
) -> LadderRead:
    ladder = await tiers_service.require_ladder(session, program)
    return tiers_service.to_read(ladder, program)


@router.post("/tiers/evaluate", response_model=EvaluationRead)
async def evaluate_now(
    program: ProgramDep, db: DbDep, _: Principal = scoped("rules:write")
) -> EvaluationRead:
    done = await tiers_jobs.run_evaluation(db, program.code)
    return EvaluationRead(
        program=program.code,
        closed=done.closed,
        downgraded=done.downgraded,
        graced=done.graced,
    )


@router.get("/members/{member_id}/tier", response_model=TierProgress)
async def member_tier(
    program: ProgramDep,
    member_id: str,
    session: ReadSession,
    principal: Principal = scoped("members:read", partner=PartnerAccess.TILL),
) -> TierProgress:
    await partner_access.require_sharing(session, program, principal, member_id)
    ref = await members_service.resolve(session, program, member_id=member_id)
    return await tiers_service.progress(session, program, ref)


@router.get("/members/{member_id}/tier/history", response_model=list[HistoryRead])
async def member_tier_history(
    program: ProgramDep,
    member_id: str,
    session: ReadSession,
    _: Principal = scoped("members:read"),
) -> list[HistoryRead]:
    ref = await members_service.resolve(session, program, member_id=member_id)
    return await tiers_service.history(session, ref)


@router.put("/members/{member_id}/tier/guarantee", response_model=TierProgress)
async def member_tier_guarantee(
    program: ProgramDep,
    member_id: str,
    body: GuaranteeWrite,
    db: DbDep,
    _: Principal = scoped("members:write"),
) -> TierProgress:
    async def work(session: AsyncSession) -> TierProgress:
        ref = await members_service.resolve(session, program, member_id=member_id)
        return await tiers_service.guarantee(session, program, ref, body)

    return await db.write(work)


@router.get("/members/{member_id}/benefits", response_model=BenefitsRead)
async def member_benefits(
    program: ProgramDep,
    member_id: str,
    session: ReadSession,
    principal: Principal = scoped("members:read", partner=PartnerAccess.TILL),
) -> BenefitsRead:
    await partner_access.require_sharing(session, program, principal, member_id)
    ref = await members_service.resolve(session, program, member_id=member_id)
    return await benefits_of(session, program, ref)
