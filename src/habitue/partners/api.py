"""Routes of the partners room: partners and their settlement statements (admin scope; a
partner key reads its own partner and statement)."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy.ext.asyncio import AsyncSession

from habitue.deps import DbDep, ProgramDep, ReadSession, scoped
from habitue.partners import access as partner_access
from habitue.partners import service as partners_service
from habitue.partners.access import PartnerAccess
from habitue.partners.schemas import PartnerCreate, PartnerRead, PartnerUpdate, StatementRead
from habitue.programs.service import Principal

router = APIRouter(prefix="/v1/programs/{program}/partners", tags=["partners"])


@router.post("", status_code=201, response_model=PartnerRead)
async def create_partner(
    program: ProgramDep, body: PartnerCreate, db: DbDep, _: Principal = scoped("admin")
) -> PartnerRead:
    async def work(session: AsyncSession) -> PartnerRead:
        return await partners_service.create_partner(session, program, body)

    return await db.write(work)


@router.get("", response_model=list[PartnerRead])
async def list_partners(
    program: ProgramDep, session: ReadSession, _: Principal = scoped("admin")
) -> list[PartnerRead]:
    return await partners_service.list_partners(session, program)


@router.get("/{code}", response_model=PartnerRead)
async def get_partner(
    program: ProgramDep,
    code: str,
    session: ReadSession,
    principal: Principal = scoped(
        "admin", partner=PartnerAccess.OWN, partner_scope="analytics:read"
    ),
) -> PartnerRead:
    partner_access.own_partner(principal, code)
    return await partners_service.get_partner(session, program, code)


@router.patch("/{code}", response_model=PartnerRead)
async def update_partner(
    program: ProgramDep,
    code: str,
    body: PartnerUpdate,
    db: DbDep,
    _: Principal = scoped("admin"),
) -> PartnerRead:
    async def work(session: AsyncSession) -> PartnerRead:
        return await partners_service.update_partner(session, program, code, body)

    return await db.write(work)


@router.get("/{code}/statement", response_model=StatementRead)
async def statement(
    program: ProgramDep,
    code: str,
    session: ReadSession,
    start: Annotated[date, Query(alias="from", description="first local day (YYYY-MM-DD)")],
    end: Annotated[date, Query(alias="to", description="last local day, included")],
    principal: Principal = scoped(
        "admin", partner=PartnerAccess.OWN, partner_scope="analytics:read"
    ),
) -> StatementRead:
    """Points issued, reversed, redeemed and returned with the partner over the period, and
    what each side owes, in the program's currency."""
    partner_access.own_partner(principal, code)
    return await partners_service.statement(session, program, code, start, end)
