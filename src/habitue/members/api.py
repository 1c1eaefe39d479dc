"""Routes: members, cards, balances."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from habitue.deps import DbDep, ProgramDep, ReadSession, scoped
from habitue.members import service as members_service
from habitue.members.schemas import (
    BalanceRead,
    CardLookup,
    CardRead,
    CardReplace,
    MemberCreate,
    MemberPage,
    MemberRead,
    MemberUpdate,
)
from habitue.programs.service import Principal

router = APIRouter(prefix="/v1/programs/{program}", tags=["members"])


@router.post("/members", status_code=201, response_model=MemberRead)
async def enrol(
    program: ProgramDep, body: MemberCreate, db: DbDep, _: Principal = scoped("members:write")
) -> MemberRead:
    return await db.write(lambda s: members_service.enrol(s, program, body))


@router.get("/members", response_model=MemberPage)
async def find_members(
    program: ProgramDep,
    session: ReadSession,
    external_id: str | None = None,
    email: str | None = None,
    card_number: str | None = None,
    after: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    _: Principal = scoped("members:read"),
) -> MemberPage:
    items, cursor = await members_service.find(
        session,
        program,
        external_id=external_id,
        email=email,
        card_number=card_number,
        after=after,
        limit=limit,
    )
    return MemberPage(items=items, next_cursor=cursor)


@router.get("/members/{member_id}", response_model=MemberRead)
async def get_member(
    program: ProgramDep,
    member_id: str,
    session: ReadSession,
    _: Principal = scoped("members:read"),
) -> MemberRead:
    return await members_service.read(session, program, member_id)


@router.patch("/members/{member_id}", response_model=MemberRead)
async def update_member(
    program: ProgramDep,
    member_id: str,
    body: MemberUpdate,
    db: DbDep,
    principal: Principal = scoped("members:write"),
) -> MemberRead:
    return await db.write(
        lambda s: members_service.update_member(s, program, member_id, body, actor=principal.name)
    )


@router.get("/members/{member_id}/balance", response_model=BalanceRead)
async def get_balance(
    program: ProgramDep,
    member_id: str,
    session: ReadSession,
    _: Principal = scoped("members:read"),
) -> BalanceRead:
    return await members_service.balance(session, program, member_id)


@router.post("/members/{member_id}/cards", status_code=201, response_model=MemberRead)
async def replace_card(
    program: ProgramDep,
    member_id: str,
    body: CardReplace,
    db: DbDep,
    _: Principal = scoped("members:write"),
) -> MemberRead:
    """Block the member's active card and issue a replacement that keeps the balance."""
    return await db.write(lambda s: members_service.replace_card(s, program, member_id, body))


@router.get(
    "/cards/{card_number}",
    response_model=CardLookup,
    responses={409: {"description": "The card is blocked or its member is not active"}},
)
async def identify_card(
    program: ProgramDep,
    card_number: str,
    session: ReadSession,
    _: Principal = scoped("members:read"),
) -> CardLookup:
    member, card = await members_service.lookup_card(session, program, card_number)
    return CardLookup(member=member, card=card)


@router.post("/cards/{card_number}/block", response_model=CardRead)
async def block_card(
    program: ProgramDep, card_number: str, db: DbDep, _: Principal = scoped("members:write")
) -> CardRead:
    return await db.write(lambda s: members_service.block_card(s, program, card_number))
