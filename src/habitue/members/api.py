"""Routes: members, cards, balances."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from habitue import ratelimit
from habitue.deps import DbDep, ProgramDep, ReadSession, scoped
from habitue.errors import NotFound
from habitue.members import service as members_service
from habitue.members.errors import InvalidCardNumber
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
from habitue.partners import access as partner_access
from habitue.partners.access import PartnerAccess
from habitue.programs.service import Principal, ProgramInfo

router = APIRouter(prefix="/v1/programs/{program}", tags=["members"])


def _card_buckets(
    request: Request, program: ProgramInfo, principal: Principal
) -> list[ratelimit.Bucket]:
    """Failed card lookups are counted per key and per client address, within a program."""
    rate = ratelimit.limits_of(request).card_misses
    key = f"{principal.program_id}:{principal.name}"
    return [
        ratelimit.Bucket(rate, f"card:{program.id}:key:{key}"),
        ratelimit.Bucket(rate, f"card:{program.id}:addr:{ratelimit.client_address(request)}"),
    ]


@router.post("/members", status_code=201, response_model=MemberRead)
async def enrol(
    program: ProgramDep, body: MemberCreate, db: DbDep, _: Principal = scoped("members:write")
) -> MemberRead:
    return await db.write(lambda s: members_service.enrol(s, program, body))


@router.get("/members", response_model=MemberPage)
async def find_members(
    request: Request,
    program: ProgramDep,
    session: ReadSession,
    external_id: str | None = None,
    email: str | None = None,
    card_number: str | None = None,
    after: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    principal: Principal = scoped("members:read", partner=PartnerAccess.REDACTED),
) -> MemberPage:
    """A search by card number that finds no one counts as a failed card lookup."""
    partner_access.member_lookup(
        principal, external_id=external_id, email=email, card_number=card_number
    )
    buckets = _card_buckets(request, program, principal) if card_number is not None else []
    async with ratelimit.failures_of(
        ratelimit.limiter_of(request), buckets, "failed card lookups"
    ) as tried:
        items, cursor = await members_service.find(
            session,
            program,
            external_id=external_id,
            email=email,
            card_number=card_number,
            after=after,
            limit=limit,
        )
        if not items:
            tried.fail()
    for found in items:
        partner_access.shares(principal, found)
    return MemberPage(
        items=[partner_access.redact(principal, m) for m in items], next_cursor=cursor
    )


@router.get("/members/{member_id}", response_model=MemberRead)
async def get_member(
    program: ProgramDep,
    member_id: str,
    session: ReadSession,
    principal: Principal = scoped("members:read", partner=PartnerAccess.REDACTED),
) -> MemberRead:
    member = await members_service.read(session, program, member_id)
    partner_access.shares(principal, member)
    return partner_access.redact(principal, member)


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
    principal: Principal = scoped("members:read", partner=PartnerAccess.TILL),
) -> BalanceRead:
    await partner_access.require_sharing(session, program, principal, member_id)
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
    request: Request,
    program: ProgramDep,
    card_number: str,
    session: ReadSession,
    principal: Principal = scoped("members:read", partner=PartnerAccess.REDACTED),
) -> CardLookup:
    """An unknown card or a wrong check digit counts as a failed lookup; once a bucket is
    empty: 429."""
    async with ratelimit.failures_of(
        ratelimit.limiter_of(request),
        _card_buckets(request, program, principal),
        "failed card lookups",
        failures=(NotFound, InvalidCardNumber),
    ):
        member, card = await members_service.lookup_card(session, program, card_number)
    partner_access.shares(principal, member)
    return CardLookup(member=partner_access.redact(principal, member), card=card)


@router.post("/cards/{card_number}/block", response_model=CardRead)
async def block_card(
    program: ProgramDep, card_number: str, db: DbDep, _: Principal = scoped("members:write")
) -> CardRead:
    return await db.write(lambda s: members_service.block_card(s, program, card_number))
