"""Routes: a member's movements, spending and support adjustments."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy.ext.asyncio import AsyncSession

from habitue.bounds import OptionalCursor
from habitue.deps import DbDep, ProgramDep, ReadSession, scoped
from habitue.ledger import service as ledger_service
from habitue.ledger.schemas import AdjustmentCreate, LedgerPage, MovementRead, SpendCreate
from habitue.members import points as operations
from habitue.members import service as members_service
from habitue.programs.service import Principal

# The member's status read under the member's row lock, in the member's own query (see
# `members_service.with_locked_status`): an erasure in progress is waited for.
_LOCKED = (members_service.LOCKED_STATUS,)

router = APIRouter(prefix="/v1/programs/{program}/members/{member_id}", tags=["ledger"])


@router.get("/ledger", response_model=LedgerPage)
async def member_ledger(
    program: ProgramDep,
    member_id: str,
    session: ReadSession,
    before: OptionalCursor = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    _: Principal = scoped("members:read"),
) -> LedgerPage:
    ref = await members_service.resolve(session, program, member_id=member_id)
    items = await ledger_service.history(session, ref.id, before=before, limit=limit)
    cursor = int(items[-1]["id"]) if len(items) == limit else None
    return LedgerPage(items=items, next_cursor=cursor)


@router.post("/adjustments", status_code=201, response_model=MovementRead)
async def adjust(
    program: ProgramDep,
    member_id: str,
    body: AdjustmentCreate,
    db: DbDep,
    principal: Principal = scoped("points:write"),
) -> MovementRead:
    async def work(session: AsyncSession) -> MovementRead:
        ref = await members_service.resolve(session, program, member_id=member_id, reads=_LOCKED)
        return await operations.adjust(session, program, ref, body, actor=principal.name)

    return await db.write(work, key=member_id)


@router.post("/spends", status_code=201, response_model=MovementRead)
async def spend(
    program: ProgramDep,
    member_id: str,
    body: SpendCreate,
    db: DbDep,
    principal: Principal = scoped("points:write"),
) -> MovementRead:
    async def work(session: AsyncSession) -> MovementRead:
        ref = await members_service.resolve(session, program, member_id=member_id, reads=_LOCKED)
        return await operations.spend(session, program, ref, body, actor=principal.name)

    return await db.write(work, key=member_id)
