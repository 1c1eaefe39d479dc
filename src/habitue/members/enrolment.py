"""Enrolling a member: unique contacts, a card and two point accounts."""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from habitue import clock
from habitue.ids import new_id
from habitue.ledger import service as ledger_service
from habitue.members.cards import new_card_number
from habitue.members.errors import (
    DuplicateMember,
)
from habitue.members.profile import read
from habitue.members.refs import _cards, _check_unique, _members, contact_hash, phone_normal
from habitue.members.schemas import (
    MemberCreate,
    MemberRead,
)
from habitue.messaging import outbox
from habitue.privacy import consent
from habitue.programs.service import ProgramInfo
from habitue.rules import counter_store


async def enrol(
    session: AsyncSession,
    program: ProgramInfo,
    data: MemberCreate,
    *,
    source: str = "api",
    actor: str | None = None,
) -> MemberRead:
    """Enrol a member with a card and two point accounts; email and external id are unique.

    The consents given are recorded in the consent history with `source` and the text
    version."""
    now = clock.now()
    email = data.email.lower() if data.email else None
    values: dict[str, Any] = {
        "public_id": new_id(),
        "program_id": program.id,
        "external_id": data.external_id,
        "email": email,
        "email_hash": contact_hash(email) if email else None,
        "phone": data.phone,
        "phone_hash": contact_hash(phone_normal(data.phone)) if data.phone else None,
        "first_name": data.first_name,
        "last_name": data.last_name,
        "birth_date": data.birth_date,
        "locale": data.locale,
        "status": "active",
        "tier": None,
        "consents": {k: {"granted": v, "at": now.isoformat()} for k, v in data.consents.items()},
        "attributes": data.attributes,
        "lifetime_earned": 0,
        "enrolled_at": now,
        "updated_at": now,
    }
    await _check_unique(session, program, email=email, external_id=data.external_id)
    try:
        async with session.begin_nested():
            member_id = (
                await session.execute(insert(_members).values(values).returning(_members.c.id))
            ).scalar_one()
    except IntegrityError as exc:
        raise DuplicateMember("a member with this email or external_id exists") from exc
    await ledger_service.open_accounts(session, program.id, member_id)
    await counter_store.open_counters(session, program.id, member_id, now)
    await consent.record(
        session,
        program_id=program.id,
        member_id=member_id,
        changes=data.consents,
        source=source,
        text_version=data.consent_text_version,
        actor=actor,
    )
    number = await _issue_card(session, program, member_id, data.card_kind)
    await outbox.emit(
        session,
        program_id=program.id,
        type_="member.enrolled",
        member_id=values["public_id"],
        payload={
            "member_id": values["public_id"],
            "card_number": number,
            "external_id": data.external_id,
            "locale": data.locale,
        },
    )
    return await read(session, program, values["public_id"], with_balance=False)


async def _issue_card(
    session: AsyncSession, program: ProgramInfo, member_id: int, kind: str
) -> str:
    for _ in range(5):
        number = new_card_number(program.card_prefix)
        try:
            async with session.begin_nested():
                await session.execute(
                    insert(_cards).values(
                        program_id=program.id,
                        member_id=member_id,
                        number=number,
                        kind=kind,
                        status="active",
                        created_at=clock.now(),
                    )
                )
            return number
        except IntegrityError:
            continue
    raise RuntimeError("could not draw a free card number")
