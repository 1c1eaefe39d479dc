"""Price a basket and confirm it: reads around the pure core, one transaction to confirm.

`price` writes nothing. `confirm` runs in one unit of work: it prices the basket again in
its own transaction, records the purchase (net of every discount, so the rules earn on what
was paid) through the event service, burns the coupons, uses the offers and counts the
promotions' uses; a coupon burnt meanwhile refuses the whole basket. Idempotent by the
purchase's `external_id`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, insert, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from habitue import clock
from habitue.db import Database, dialect_name, driver_connection, pooled_driver, table_of
from habitue.errors import HabitueError, ValidationFailed
from habitue.events import service as events_service
from habitue.events.models import Event
from habitue.events.pipeline import Pipeline
from habitue.events.prepare import Prepared
from habitue.events.schemas import EffectRead
from habitue.ledger import service as ledger_service
from habitue.members import service as members_service
from habitue.members.service import MemberRef
from habitue.programs.service import ProgramInfo
from habitue.promotions import service as promotions_service
from habitue.promotions.basket import (
    Priced,
    answer_json,
    parse_lines,
    purchase_body,
    quote_event,
    read_answer,
    refuse,
    terms_deal,
)
from habitue.promotions.errors import CouponTaken
from habitue.promotions.models import BasketConfirmation
from habitue.promotions.pricing import (
    CodeInput,
    Deal,
    PointsTerms,
    Source,
    price,
)
from habitue.promotions.schemas import (
    BasketConfirm,
    BasketIn,
    BasketRead,
)
from habitue.rewards import codes, coupons, offers
from habitue.rewards.errors import CouponLookupFailed, OfferNotFound

_confirmations = table_of(BasketConfirmation)
_events = table_of(Event)

_USES_AND_CONFIRMATION = text(
    """
    WITH uses AS (
        INSERT INTO promotion_uses (program_id, promotion_id, member_id, external_id,
                                    discount_minor, created_at)
        SELECT CAST(:program_id AS bigint), u.promotion_id, CAST(:member_id AS bigint),
               CAST(:external_id AS varchar), u.discount_minor, CAST(:created_at AS timestamptz)
        FROM unnest(CAST(:promotion_ids AS bigint[]), CAST(:discounts AS bigint[]))
             AS u(promotion_id, discount_minor)
    )
    INSERT INTO basket_confirmations (program_id, external_id, member_id, response, created_at)
    VALUES (CAST(:program_id AS bigint), CAST(:external_id AS varchar),
            CAST(:member_id AS bigint), CAST(:response AS json), CAST(:created_at AS timestamptz))
    """
)
"""PostgreSQL: a confirmed basket's promotion uses (`service.record_uses`) and its
confirmation, in one round trip."""


def _coupon_deal(row: Any, live: promotions_service.Live, code: str) -> Deal | None:
    """The deal of a catalogue coupon: its reward's promotion when one prices it, else the
    reward's own terms (a voucher pays as stored value; a discount is off the order)."""
    promo = live.by_reward.get(row["reward_code"])
    if promo is not None:
        return promotions_service.deal_of(promo, source=Source.COUPON, code=code)
    return terms_deal(row, Source.COUPON, code)


async def _code_inputs(
    session: AsyncSession,
    program: ProgramInfo,
    raw_codes: list[str],
    member: MemberRef | None,
    live: promotions_service.Live,
    uses: dict[int, int],
) -> list[CodeInput]:
    out: list[CodeInput] = []
    for raw in raw_codes:
        code = codes.normalise(raw)
        promo = live.by_promo_code.get(code)
        if promo is not None:
            out.append(CodeInput(code, _with_uses(promotions_service.deal_of(promo), uses)))
            continue
        try:
            row = await coupons.find(
                session, program, raw, member_id=member.id if member is not None else None
            )
        except CouponLookupFailed as exc:
            shown = codes.display(code) if codes.is_well_formed(code) else code
            out.append(CodeInput(shown, refusal=exc.detail, lookup_failed=True))
            continue
        display = codes.display(row["code"])
        found = _coupon_deal(row, live, display)
        if found is None:
            out.append(CodeInput(display, refusal=f"a {row['kind']} coupon takes nothing off"))
            continue
        deal = _with_uses(replace(found, ref=row["id"]), uses)
        expires = clock.as_utc(row["expires_at"]) if row["expires_at"] else None
        out.append(CodeInput(display, deal, state=row["state"], expires_at=expires))
    return out


def _with_uses(deal: Deal, uses: dict[int, int]) -> Deal:
    if deal.promotion_id is None or deal.per_member_limit is None:
        return deal
    used = uses.get(deal.promotion_id, 0)
    return deal if used == deal.member_uses else replace(deal, member_uses=used)


async def _offer_inputs(
    session: AsyncSession,
    program: ProgramInfo,
    raw: list[str],
    member: MemberRef | None,
    now: datetime,
) -> list[CodeInput]:
    out: list[CodeInput] = []
    for code in raw:
        if member is None:
            out.append(CodeInput(code, refusal="an offer needs the member"))
            continue
        try:
            offer, target = await offers.for_till(session, program, member, code)
        except OfferNotFound as exc:
            out.append(CodeInput(code, refusal=exc.detail))
            continue
        if target["used_at"] is not None:
            out.append(CodeInput(code, refusal="this offer was used"))
        elif target["clipped_at"] is None:
            out.append(CodeInput(code, refusal="this offer was not clipped"))
        elif not offers.active_at(offer, now):
            out.append(CodeInput(code, refusal="this offer is not open now"))
        else:
            deal = terms_deal(offer, Source.OFFER, code)
            if deal is None:
                out.append(CodeInput(code, refusal="this offer takes nothing off"))
            else:
                out.append(CodeInput(code, replace(deal, ref=target["id"])))
    return out


async def _member_driver(session: AsyncSession) -> Any | None:
    """The asyncpg connection to send the member's query to straight
    (`members.resolve(..., raw=...)`): a price's, whose reads run in autocommit. In a
    transaction (a confirm) the query locks the member's row and counters, and a deadlock
    must reach `Database.write`'s retry as SQLAlchemy raises it: the session reads them."""
    raw = await driver_connection(session)
    return None if raw is None or raw.is_in_transaction() else raw


@asynccontextmanager
async def _member_connection(session: AsyncSession) -> AsyncIterator[Any | None]:
    """The asyncpg connection a price's member is read on straight, or None: one of the
    pool's, checked out for the read alone (`db.pooled_driver`: a session reading in
    autocommit that has begun nothing), else `_member_driver`'s."""
    async with pooled_driver(session) as raw:
        yield raw if raw is not None else await _member_driver(session)


async def _member(
    session: AsyncSession, pipeline: Pipeline, program: ProgramInfo, body: BasketIn
) -> MemberRef | None:
    sel = body.member
    if sel is None:
        return None
    reads = (*pipeline.member_reads, *promotions_service.MEMBER_READS)
    if sel.card_number is not None:  # the card's look-up goes through the session first
        raw = await _member_driver(session)
        return await members_service.resolve(
            session, program, card_number=sel.card_number, reads=reads, raw=raw
        )
    async with _member_connection(session) as raw:
        return await members_service.resolve(
            session, program, member_id=sel.id, external_id=sel.external_id, reads=reads, raw=raw
        )


async def price_in(
    session: AsyncSession,
    pipeline: Pipeline,
    program: ProgramInfo,
    body: BasketIn,
    *,
    now: datetime,
) -> Priced:
    """Price a basket in the caller's session: every read the core needs, then the core."""
    occurred = clock.as_utc(body.occurred_at) if body.occurred_at else now
    if occurred > now + timedelta(minutes=10):
        raise ValidationFailed("occurred_at", "is in the future")
    lines, refused_lines, index = parse_lines(program, body)
    member = await _member(session, pipeline, program, body)
    live = await promotions_service.live(session, program, member)
    uses = live.uses
    snap = None
    terms = None
    if member is not None:
        # The purchase this basket makes (quoted or recorded) reads this member again: hand
        # them over instead (same session, same unit of work).
        members_service.hand_over(session, program, member, pipeline.member_reads)
        snap = await pipeline.snapshot(session, program, member, now)
        if body.points:
            balance = await ledger_service.balances(session, member.accounts, expiring=0)
            terms = PointsTerms(
                int(balance["available"]),
                program.redeem_rate,
                program.redeem_step,
                program.currency_exponent,
            )
    automatic = [_with_uses(promotions_service.deal_of(r), uses) for r in live.automatic]
    code_inputs = await _code_inputs(session, program, body.codes, member, live, uses)
    code_inputs += await _offer_inputs(session, program, body.offers, member, occurred)
    pricing = price(
        lines,
        member=snap,
        promotions=automatic,
        codes=code_inputs,
        points=body.points,
        points_terms=terms,
        now=occurred,
        timezone=program.timezone,
        exponent=program.currency_exponent,
        refused_lines=refused_lines,
    )
    missed = sum(1 for c in code_inputs if c.lookup_failed)
    return Priced(pricing, member, occurred, missed, index, snap)


async def price_basket(
    session: AsyncSession, pipeline: Pipeline, program: ProgramInfo, body: BasketIn
) -> tuple[bytes, int]:
    """What the basket costs with every deal, and what it would earn, as the JSON of its
    `BasketRead` (`basket.answer_json`); writes nothing. Also answers how many codes named
    no coupon (for the guessing protection)."""
    now = clock.now()
    priced = await price_in(session, pipeline, program, body, now=now)
    index = priced.index or {}
    earned = 0
    effects: list[EffectRead] = []
    if priced.member is not None and priced.pricing.lines and not priced.pricing.invalid:
        event = quote_event(program, priced)
        if event is not None:
            earned, effects = await events_service.quote_input(
                session, pipeline, program, priced.member, event, priced.snapshot
            )
        else:
            quote = await events_service.quote(
                session, pipeline, program, purchase_body(program, priced, "price", "default")
            )
            earned, effects = quote.points_earned, quote.effects
    answer = answer_json(program, priced, index=index, earned=earned, effects=effects)
    return answer, priced.missed


_PREVIOUS = select(
    select(_confirmations.c.response)
    .where(
        _confirmations.c.program_id == bindparam("prev_program"),
        _confirmations.c.external_id == bindparam("prev_external_id"),
    )
    .scalar_subquery()
    .label("response"),
    select(_events.c.id)
    .where(
        _events.c.program_id == bindparam("prev_program"),
        _events.c.source == bindparam("prev_source"),
        _events.c.external_id == bindparam("prev_external_id"),
    )
    .scalar_subquery()
    .label("event_id"),
)
"""`_previous`'s statement, built once (building it per confirm cost ~0.1 ms of CPU)."""


async def _previous(
    session: AsyncSession, program: ProgramInfo, body: BasketConfirm
) -> tuple[BasketRead | None, bool]:
    """In one statement: the answer stored under this basket's `external_id` (a retry), and
    whether a purchase event with this source and external id exists already."""
    params = {
        "prev_program": program.id,
        "prev_external_id": body.external_id,
        "prev_source": body.source,
    }
    row = (await session.execute(_PREVIOUS, params)).one()
    stored = None if row.response is None else BasketRead.model_validate(row.response)
    return stored, row.event_id is not None


async def _stored(
    session: AsyncSession, program: ProgramInfo, external_id: str
) -> BasketRead | None:
    row = (
        await session.execute(
            select(_confirmations.c.response).where(
                _confirmations.c.program_id == program.id,
                _confirmations.c.external_id == external_id,
            )
        )
    ).first()
    return None if row is None else BasketRead.model_validate(row.response)


async def confirm_in(
    session: AsyncSession, pipeline: Pipeline, program: ProgramInfo, body: BasketConfirm
) -> BasketRead:
    """Confirm a basket in the caller's transaction (see the module's docstring)."""
    found, event_exists = await _previous(session, program, body)
    if found is not None:
        return found
    now = clock.now()
    priced = await price_in(session, pipeline, program, body, now=now)
    pricing = priced.pricing
    if pricing.invalid:
        refused = refuse(pricing)
        refused.missed = priced.missed
        raise refused
    if not pricing.lines:
        raise ValidationFailed("lines", "no line to sell")
    member = priced.member
    if member is not None:
        member.require_active()
    reference = f"{coupons.BASKET_REFERENCE}{body.external_id}"
    uses: list[tuple[int, int]] = []
    for d in pricing.discounts:
        deal = d.deal
        assert deal is not None
        if deal.source == Source.COUPON and deal.ref is not None:
            ok = await coupons.burn_for_basket(
                session, deal.ref, reference=reference, basket_minor=pricing.total_minor,
                discount_minor=d.amount_minor, now=now,
            )  # fmt: skip
            if not ok:
                raise CouponTaken(f"coupon {deal.code} was redeemed meanwhile: nothing written")
        elif deal.source == Source.OFFER and deal.ref is not None:
            if not await offers.mark_used(session, deal.ref, now=now):
                raise CouponTaken(f"offer {deal.code} was used meanwhile: nothing written")
        if deal.promotion_id is not None:
            uses.append((deal.promotion_id, d.amount_minor))
    member_id = member.id if member is not None else None
    together = dialect_name(session) == "postgresql"
    if not together:
        await promotions_service.record_uses(
            session, program, uses, member_id=member_id, external_id=body.external_id, now=now
        )
    index = priced.index or {}
    earned, effects, event_id = 0, [], None
    if member is not None:
        purchase = purchase_body(program, priced, body.external_id, body.source)
        # `record` would look the event up again and write it under a savepoint; the look-up
        # was made above, and a concurrent duplicate (IntegrityError) fails the whole unit,
        # which `confirm_basket` answers from what the other one stored or runs once more.
        quoted = quote_event(program, priced, body.external_id)
        if event_exists:
            event = await events_service.record(session, pipeline, program, purchase)
        elif quoted is not None:  # what `prepare` makes of the purchase, without parsing it
            ready = Prepared(purchase, quoted, quoted.discount_minor)
            event = await events_service.apply_prepared(session, pipeline, program, ready)
        else:
            event = await events_service.apply(session, pipeline, program, purchase)
        earned, effects, event_id = event.points_earned, event.effects, event.id
    read = read_answer(program, priced, index=index, earned=earned, effects=effects)
    read.event_id = event_id
    read.external_id = body.external_id
    if together:
        # The promotions' uses and the confirmation in one statement (nothing in between
        # reads the uses: the purchase's rules know nothing of promotions).
        await session.execute(
            _USES_AND_CONFIRMATION,
            {
                "program_id": program.id, "member_id": member_id,
                "external_id": body.external_id, "created_at": now,
                "promotion_ids": [pid for pid, _ in uses], "discounts": [off for _, off in uses],
                "response": read.model_dump_json(),
            },
        )  # fmt: skip
        return read
    await session.execute(
        insert(_confirmations).values(
            program_id=program.id,
            external_id=body.external_id,
            member_id=member_id,
            response=read.model_dump(mode="json"),
            created_at=now,
        )
    )
    return read


async def confirm_basket(
    db: Database, pipeline: Pipeline, program: ProgramInfo, body: BasketConfirm
) -> BasketRead:
    """The request path: one unit of work; a concurrent retry reads the first answer."""
    key = ""
    if body.member is not None:
        key = body.member.id or body.member.card_number or body.member.external_id or ""
    try:
        return await db.write(lambda s: confirm_in(s, pipeline, program, body), key=key)
    except IntegrityError:
        async with db.read() as session:
            found = await _stored(session, program, body.external_id)
        if found is not None:
            return found
    # Another request recorded a purchase under this external_id meanwhile (not a basket):
    # once more, the look-up now finds it and the purchase answers as recorded.
    return await db.write(lambda s: confirm_in(s, pipeline, program, body), key=key)


__all__ = ["HabitueError", "confirm_basket", "price_basket"]
