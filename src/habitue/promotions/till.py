"""Price a basket and confirm it: reads around the pure core, one transaction to confirm.

`price` writes nothing. `confirm` runs in one unit of work: it prices the basket again in
its own transaction, records the purchase (net of every discount, so the rules earn on what
was paid) through the event service, burns the coupons, uses the offers and counts the
promotions' uses; a coupon burnt meanwhile refuses the whole basket. Idempotent by the
purchase's `external_id`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from habitue import clock
from habitue.db import Database, table_of
from habitue.errors import HabitueError, ValidationFailed
from habitue.events import hooks as event_hooks
from habitue.events import service as events_service
from habitue.events.schemas import EventCreate, LineIn, MemberSelector
from habitue.ledger import service as ledger_service
from habitue.members import service as members_service
from habitue.members.service import MemberRef
from habitue.money import MoneyFormatError, format_minor, parse_minor
from habitue.programs.service import ProgramInfo
from habitue.promotions import service as promotions_service
from habitue.promotions.errors import BasketRefused, CouponTaken
from habitue.promotions.models import BasketConfirmation
from habitue.promotions.pricing import (
    BasketLine,
    CodeInput,
    Deal,
    EffectType,
    PointsTerms,
    Pricing,
    Refusal,
    Source,
    incl_tax,
    price,
)
from habitue.promotions.schemas import (
    BasketConfirm,
    BasketIn,
    BasketRead,
    DiscountRead,
    LineShare,
    PricedLine,
    RefusalRead,
)
from habitue.rewards import catalogue, codes, coupons, offers
from habitue.rewards.errors import CouponLookupFailed, OfferNotFound

_confirmations = table_of(BasketConfirmation)
CENT_TOLERANCE = 1


@dataclass(frozen=True, slots=True)
class Priced:
    """A priced basket with what confirm needs: the member and the coupons and offers."""

    pricing: Pricing
    member: MemberRef | None
    occurred_at: datetime


def parse_lines(
    program: ProgramInfo, body: BasketIn
) -> tuple[list[BasketLine], list[Refusal], dict[int, int]]:
    """The basket's lines in minor units, tax included; a bad line is refused by its index
    (`lines[2].quantity`), never as the basket's total. Returns the index map kept → sent."""
    exp = program.currency_exponent
    out: list[BasketLine] = []
    refused: list[Refusal] = []
    index: dict[int, int] = {}
    for i, ln in enumerate(body.lines):
        where = f"lines[{i}]"
        if ln.quantity <= 0:
            refused.append(Refusal(f"{where}.quantity", "must be positive", invalid=True))
            continue
        if ln.quantity > 1_000_000:
            refused.append(Refusal(f"{where}.quantity", "is too large", invalid=True))
            continue
        try:
            unit = parse_minor(ln.unit_price, exp, allow_negative=True)
            amount = (
                parse_minor(ln.amount, exp, allow_negative=True)
                if ln.amount is not None
                else int((ln.quantity * unit).to_integral_value())
            )
        except MoneyFormatError as exc:
            field = "amount" if ln.amount is not None and "unit" not in str(exc) else "unit_price"
            refused.append(Refusal(f"{where}.{field}", str(exc), invalid=True))
            continue
        if unit < 0 or amount < 0:
            refused.append(
                Refusal(
                    f"{where}.{'amount' if amount < 0 and ln.amount is not None else 'unit_price'}",
                    "a discount line: send discounts as promotions or coupon codes, "
                    "not as negative lines",
                    invalid=True,
                )
            )
            continue
        rate = ln.tax_rate
        if not ln.tax_included:
            unit, amount = incl_tax(unit, rate), incl_tax(amount, rate)
        index[len(out)] = i
        out.append(BasketLine(ln.sku, ln.category, ln.quantity, unit, amount, rate))
    if body.total is not None and not refused:
        try:
            total = parse_minor(body.total, exp)
        except MoneyFormatError as exc:
            refused.append(Refusal("total", str(exc), invalid=True))
        else:
            line_sum = sum(ln.amount_minor for ln in out)
            if abs(line_sum - total) > CENT_TOLERANCE:
                refused.append(
                    Refusal(
                        "lines",
                        f"the lines add up to {format_minor(line_sum, exp)}, the total is "
                        f"{format_minor(total, exp)}",
                        invalid=True,
                    )
                )
    return out, refused, index


def _coupon_deal(row: Any, live: promotions_service.Live, code: str) -> Deal | None:
    """The deal of a catalogue coupon: its reward's promotion when one prices it, else the
    reward's own terms (a voucher pays as stored value; a discount is off the order)."""
    promo = live.by_reward.get(row["reward_code"])
    if promo is not None:
        return promotions_service.deal_of(promo, source=Source.COUPON, code=code)
    return terms_deal(row, Source.COUPON, code)


def terms_deal(row: Any, source: Source, code: str) -> Deal | None:
    """A reward's or offer's discount terms as a deal (None: not a basket discount)."""
    terms = catalogue.terms_of(row)
    kind = row.get("kind", "discount")
    common: dict[str, Any] = {
        "cap_minor": terms.cap_minor,
        "min_basket_minor": terms.min_basket_minor,
        "ref": row["id"],
    }
    if terms.sku is not None:
        return Deal(source, code, EffectType.FREE_ITEM, sku=terms.sku, **common)
    if terms.percent is not None:
        return Deal(source, code, EffectType.ORDER_PERCENT, percent=terms.percent, **common)
    if terms.value_minor is not None:
        eff = EffectType.STORED_VALUE if kind == "voucher" else EffectType.ORDER_AMOUNT
        return Deal(source, code, eff, amount_minor=terms.value_minor, **common)
    return None


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
            out.append(CodeInput(shown, refusal=exc.detail))
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
    return replace(deal, member_uses=uses.get(deal.promotion_id, 0))


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


async def _member(session: AsyncSession, program: ProgramInfo, body: BasketIn) -> MemberRef | None:
    sel = body.member
    if sel is None:
        return None
    return await members_service.resolve(
        session,
        program,
        member_id=sel.id,
        card_number=sel.card_number,
        external_id=sel.external_id,
        for_event=True,
    )


async def price_in(
    session: AsyncSession, program: ProgramInfo, body: BasketIn, *, now: datetime
) -> Priced:
    """Price a basket in the caller's session: every read the core needs, then the core."""
    occurred = clock.as_utc(body.occurred_at) if body.occurred_at else now
    if occurred > now + timedelta(minutes=10):
        raise ValidationFailed("occurred_at", "is in the future")
    lines, refused_lines, _ = parse_lines(program, body)
    member = await _member(session, program, body)
    live = await promotions_service.live(session, program)
    snap = None
    terms = None
    uses: dict[int, int] = {}
    if member is not None:
        snap = await event_hooks.snapshot(session, program, member, now)
        limited = [
            r["id"]
            for r in [*live.automatic, *live.by_promo_code.values(), *live.by_reward.values()]
            if r["spec"].get("per_member_limit") is not None
        ]
        uses = await promotions_service.member_uses(session, limited, member.id)
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
    return Priced(pricing, member, occurred)


def _net_lines(program: ProgramInfo, pricing: Pricing) -> list[LineIn]:
    """The purchase's lines at their net amounts, exact to the minor unit: a line of q whole
    units whose net does not divide by q is sent as two lines (q − r at u, r at u + 1); a
    fractional quantity is sent as one unit at the line's net."""
    exp = program.currency_exponent
    out: list[LineIn] = []
    for ln, net in zip(pricing.lines, pricing.net_minor, strict=True):
        sku, cat = ln.sku or None, ln.category or None
        q = ln.quantity
        if q == int(q) and q > 0:
            whole = int(q)
            unit, rest = divmod(net, whole)
            if whole - rest:
                out.append(
                    LineIn(sku=sku, category=cat, quantity=Decimal(whole - rest),
                           unit_price=format_minor(unit, exp))
                )  # fmt: skip
            if rest:
                out.append(
                    LineIn(sku=sku, category=cat, quantity=Decimal(rest),
                           unit_price=format_minor(unit + 1, exp))
                )  # fmt: skip
        else:
            out.append(LineIn(sku=sku, category=cat, quantity=Decimal(1),
                              unit_price=format_minor(net, exp)))  # fmt: skip
    return out


def purchase_body(
    program: ProgramInfo, priced: Priced, external_id: str, source: str
) -> EventCreate:
    """The purchase event of a basket: net lines, net total, points paid; the gross basket
    and what promotions and coupons took off in `attributes`."""
    pricing = priced.pricing
    assert priced.member is not None
    exp = program.currency_exponent
    return EventCreate(
        type="purchase",
        member=MemberSelector(id=priced.member.public_id),
        external_id=external_id,
        source=source,
        occurred_at=priced.occurred_at,
        total=format_minor(sum(pricing.net_minor), exp),
        lines=_net_lines(program, pricing),
        spend_points=pricing.points,
        attributes={
            "basket_total": format_minor(pricing.total_minor, exp),
            "basket_discount": format_minor(pricing.discount_minor, exp),
        },
    )


def _read(
    program: ProgramInfo,
    priced: Priced,
    *,
    index: dict[int, int],
    earned: int,
    effects: list[Any],
) -> BasketRead:
    p = priced.pricing
    exp = program.currency_exponent
    line_off: dict[int, int] = {}
    for d in p.discounts:
        for i, a in d.lines:
            line_off[i] = line_off.get(i, 0) + a
    return BasketRead(
        currency=program.currency,
        member_id=priced.member.public_id if priced.member is not None else None,
        total=format_minor(p.total_minor, exp),
        discount=format_minor(p.discount_minor, exp),
        points_spent=p.points,
        points_value=format_minor(p.points_minor, exp),
        to_pay=format_minor(p.to_pay_minor, exp),
        points_earned=earned,
        lines=[
            PricedLine(
                line=index.get(i, i),
                sku=ln.sku,
                amount=format_minor(ln.amount_minor, exp),
                discount=format_minor(line_off.get(i, 0), exp),
                net=format_minor(p.net_minor[i], exp),
            )
            for i, ln in enumerate(p.lines)
        ],
        discounts=[
            DiscountRead(
                source=str(d.source),
                code=d.code,
                effect=d.effect,
                level=d.level,
                amount=format_minor(d.amount_minor, exp),
                lines=[
                    LineShare(line=index.get(i, i), amount=format_minor(a, exp)) for i, a in d.lines
                ],
            )
            for d in p.discounts
        ],
        refused=[RefusalRead(field=r.field, code=r.code, reason=r.reason) for r in p.refused],
        effects=effects,
        errors=list(p.errors),
    )


async def price_basket(session: AsyncSession, program: ProgramInfo, body: BasketIn) -> BasketRead:
    """What the basket costs with every deal, and what it would earn; writes nothing."""
    now = clock.now()
    priced = await price_in(session, program, body, now=now)
    _, _, index = parse_lines(program, body)
    earned, effects = 0, []
    if priced.member is not None and priced.pricing.lines and not priced.pricing.invalid:
        quote = await events_service.quote(
            session, program, purchase_body(program, priced, "price", "default")
        )
        earned, effects = quote.points_earned, quote.effects
    return _read(program, priced, index=index, earned=earned, effects=effects)


def _refuse(pricing: Pricing) -> BasketRefused:
    bad = pricing.invalid
    first = bad[0]
    return BasketRefused(
        f"{first.field}{f' {first.code}' if first.code else ''}: {first.reason}",
        errors=[
            {"field": r.field, "message": r.reason, **({"code": r.code} if r.code else {})}
            for r in bad
        ],
    )


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
    session: AsyncSession, program: ProgramInfo, body: BasketConfirm
) -> BasketRead:
    """Confirm a basket in the caller's transaction (see the module's docstring)."""
    found = await _stored(session, program, body.external_id)
    if found is not None:
        return found
    now = clock.now()
    priced = await price_in(session, program, body, now=now)
    pricing = priced.pricing
    if pricing.invalid:
        raise _refuse(pricing)
    if not pricing.lines:
        raise ValidationFailed("lines", "no line to sell")
    member = priced.member
    if member is not None:
        member.require_active()
    reference = f"basket:{body.external_id}"
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
    await promotions_service.record_uses(
        session, program, uses, member_id=member.id if member is not None else None,
        external_id=body.external_id, now=now,
    )  # fmt: skip
    _, _, index = parse_lines(program, body)
    earned, effects, event_id = 0, [], None
    if member is not None:
        event = await events_service.record(
            session, program, purchase_body(program, priced, body.external_id, body.source)
        )
        earned, effects, event_id = event.points_earned, event.effects, event.id
    read = _read(program, priced, index=index, earned=earned, effects=effects)
    read.event_id = event_id
    read.external_id = body.external_id
    await session.execute(
        insert(_confirmations).values(
            program_id=program.id,
            external_id=body.external_id,
            member_id=member.id if member is not None else None,
            response=read.model_dump(mode="json"),
            created_at=now,
        )
    )
    return read


async def confirm_basket(db: Database, program: ProgramInfo, body: BasketConfirm) -> BasketRead:
    """The request path: one unit of work; a concurrent retry reads the first answer."""
    key = ""
    if body.member is not None:
        key = body.member.id or body.member.card_number or body.member.external_id or ""
    try:
        return await db.write(lambda s: confirm_in(s, program, body), key=key)
    except IntegrityError:
        async with db.read() as session:
            found = await _stored(session, program, body.external_id)
        if found is None:
            raise
        return found


__all__ = ["HabitueError", "confirm_basket", "price_basket"]
