"""A member's profile: read, found, balance and changes."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from habitue import clock
from habitue.ledger import service as ledger_service
from habitue.members.cards import parse_card_input
from habitue.members.refs import (
    _card_read,
    _cards,
    _check_unique,
    _members,
    contact_hash,
    member_row,
    phone_normal,
    resolve,
)
from habitue.members.schemas import (
    BalanceRead,
    MemberRead,
    MemberUpdate,
)
from habitue.messaging import outbox
from habitue.privacy import consent
from habitue.programs.service import ProgramInfo


async def read(
    session: AsyncSession, program: ProgramInfo, public_id: str, *, with_balance: bool = True
) -> MemberRead:
    """A member's profile with cards, tier and balance."""
    row = await member_row(session, program, public_id)
    return await _read_row(session, program, row, with_balance=with_balance)


async def _read_row(
    session: AsyncSession, program: ProgramInfo, row: Any, *, with_balance: bool
) -> MemberRead:
    cards = (
        await session.execute(
            select(_cards).where(_cards.c.member_id == row.id).order_by(_cards.c.id)
        )
    ).all()
    card_reads = [_card_read(program, c) for c in cards]
    active = next((c.number for c in card_reads if c.status == "active"), None)
    balance = await balance_of(session, row) if with_balance else None
    return MemberRead(
        id=row.public_id,
        external_id=row.external_id,
        email=row.email,
        phone=row.phone,
        first_name=row.first_name,
        last_name=row.last_name,
        birth_date=row.birth_date,
        locale=row.locale,
        status=row.status,
        consents=row.consents or {},
        attributes=row.attributes or {},
        enrolled_at=clock.as_utc(row.enrolled_at),
        card_number=active,
        cards=card_reads,
        tier=row.tier,
        balance=balance,
    )


async def balance_of(session: AsyncSession, row: Any) -> BalanceRead:
    accounts = (await ledger_service.accounts_of(session, [row.id]))[row.id]
    b = await ledger_service.balances(session, accounts)
    return BalanceRead(
        available=b["available"],
        pending=b["pending"],
        expiring=b["expiring"],
        lifetime_earned=int(row.lifetime_earned),
        tier=row.tier,
    )


async def balance(session: AsyncSession, program: ProgramInfo, public_id: str) -> BalanceRead:
    row = await member_row(session, program, public_id)
    return await balance_of(session, row)


async def find(
    session: AsyncSession,
    program: ProgramInfo,
    *,
    external_id: str | None,
    email: str | None,
    card_number: str | None,
    after: str | None,
    limit: int,
) -> tuple[list[MemberRead], str | None]:
    """Members matching one criterion (or all, paged by id)."""
    q = select(_members).where(_members.c.program_id == program.id)
    if external_id is not None:
        q = q.where(_members.c.external_id == external_id)
    if email is not None:
        q = q.where(_members.c.email_hash == contact_hash(email))
    if card_number is not None:
        _, number = parse_card_input(card_number)
        q = q.where(
            _members.c.id.in_(
                select(_cards.c.member_id).where(
                    _cards.c.number == number,
                    _cards.c.program_id == program.id,
                    _cards.c.status != "erased",
                )
            )
        )
    if after is not None:
        q = q.where(_members.c.public_id > after)
    rows = (await session.execute(q.order_by(_members.c.public_id).limit(limit + 1))).all()
    items = [await _read_row(session, program, r, with_balance=False) for r in rows[:limit]]
    cursor = items[-1].id if len(rows) > limit and items else None
    return items, cursor


async def update_member(
    session: AsyncSession,
    program: ProgramInfo,
    public_id: str,
    data: MemberUpdate,
    *,
    actor: str,
) -> MemberRead:
    """Change profile fields, consents (with history) or status."""
    ref = await resolve(session, program, member_id=public_id)
    ref.require_not_erased()
    row = (await session.execute(select(_members).where(_members.c.id == ref.id))).first()
    assert row is not None
    changes: dict[str, Any] = {}
    fields = data.model_fields_set
    if "email" in fields:
        email = data.email.lower() if data.email else None
        await _check_unique(session, program, email=email, external_id=None, exclude=ref.id)
        changes["email"] = email
        changes["email_hash"] = contact_hash(email) if email else None
    if "phone" in fields:
        changes["phone"] = data.phone
        changes["phone_hash"] = contact_hash(phone_normal(data.phone)) if data.phone else None
    for name in ("first_name", "last_name", "birth_date", "locale", "status"):
        if name in fields and getattr(data, name) is not None:
            changes[name] = getattr(data, name)
    if data.attributes is not None:
        changes["attributes"] = {**(row.attributes or {}), **data.attributes}
    if data.consents is not None:
        consents = dict(row.consents or {})
        now = clock.now().isoformat()
        changed: dict[str, bool] = {}
        for channel, granted in data.consents.items():
            prior = consents.get(channel, {})
            history = list(prior.get("history", []))
            if prior:
                history.append({"granted": prior.get("granted"), "at": prior.get("at")})
            consents[channel] = {"granted": granted, "at": now, "history": history}
            if not prior or prior.get("granted") != granted:
                changed[channel] = granted
        changes["consents"] = consents
        await consent.record(
            session,
            program_id=program.id,
            member_id=ref.id,
            changes=changed,
            source="portal" if actor == "member" else "api",
            text_version=data.consent_text_version,
            actor=actor,
        )
    if changes:
        changes["updated_at"] = clock.now()
        await session.execute(update(_members).where(_members.c.id == ref.id).values(changes))
        await outbox.emit(
            session,
            program_id=program.id,
            type_="member.updated",
            member_id=public_id,
            payload={
                "member_id": public_id,
                "fields": sorted(k for k in changes if not k.endswith("_hash")),
                "actor": actor,
            },
        )
    return await read(session, program, public_id)
