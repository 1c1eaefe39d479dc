"""A member's cards: looked up, replaced and blocked."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from habitue import clock
from habitue.members.cards import parse_card_input
from habitue.members.enrolment import _issue_card
from habitue.members.errors import (
    CardNotFound,
)
from habitue.members.profile import read
from habitue.members.refs import _card_read, _cards, _members, resolve
from habitue.members.schemas import (
    CardRead,
    CardReplace,
    MemberRead,
)
from habitue.messaging import outbox
from habitue.programs.service import ProgramInfo


async def lookup_card(
    session: AsyncSession, program: ProgramInfo, value: str
) -> tuple[MemberRead, CardRead]:
    """Identify a member at a till by card number, barcode or QR payload."""
    ref = await resolve(session, program, card_number=value)
    member = await read(session, program, ref.public_id)
    _, number = parse_card_input(value)
    card = next(c for c in member.cards if c.number == number)
    return member, card


async def replace_card(
    session: AsyncSession, program: ProgramInfo, public_id: str, data: CardReplace
) -> MemberRead:
    """Block the member's active cards and issue a new one; the balance stays with the member."""
    ref = await resolve(session, program, member_id=public_id)
    ref.require_not_erased()
    number = await _issue_card(session, program, ref.id, data.kind)
    await session.execute(
        update(_cards)
        .where(_cards.c.member_id == ref.id, _cards.c.status == "active", _cards.c.number != number)
        .values(status="blocked", blocked_at=clock.now(), replaced_by=number)
    )
    await outbox.emit(
        session,
        program_id=program.id,
        type_="card.replaced",
        member_id=public_id,
        payload={"member_id": public_id, "card_number": number, "reason": data.reason},
    )
    return await read(session, program, public_id)


async def block_card(session: AsyncSession, program: ProgramInfo, number: str) -> CardRead:
    """Block a card (lost or stolen) without issuing a new one."""
    row = (
        await session.execute(
            select(_cards).where(_cards.c.number == number, _cards.c.program_id == program.id)
        )
    ).first()
    if row is None or row.status == "erased":
        raise CardNotFound(f"no card {number}")
    await session.execute(
        update(_cards).where(_cards.c.id == row.id).values(status="blocked", blocked_at=clock.now())
    )
    member_public = (
        await session.execute(select(_members.c.public_id).where(_members.c.id == row.member_id))
    ).scalar_one()
    await outbox.emit(
        session,
        program_id=program.id,
        type_="card.blocked",
        member_id=member_public,
        payload={"member_id": member_public, "card_number": number},
    )
    row2 = (await session.execute(select(_cards).where(_cards.c.id == row.id))).first()
    return _card_read(program, row2)
