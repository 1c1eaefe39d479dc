"""Price a basket and confirm it: reads around the pure core, one transaction to confirm.

`price` writes nothing. `confirm` runs in one unit of work: it prices the basket again in
its own transaction, records the purchase (net of every discount, so the rules earn on what
was paid) through the event service, burns the coupons, uses the offers and counts the
promotions' uses; a coupon burnt meanwhile refuses the whole basket. Idempotent by the
purchase's `external_id`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy import bindparam, insert, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from habitue import clock
from habitue.db import (
    Database,
    Part,
    Prefetch,
    dialect_name,
    driver_connection,
    pooled_driver,
    table_of,
    write_late_merged,
)
from habitue.errors import HabitueError, ValidationFailed
from habitue.events import service as events_service
from habitue.events.models import Event
from habitue.events.pipeline import Pipeline
from habitue.events.prepare import Prepared
from habitue.events.schemas import EffectRead, MemberSelector
from habitue.events.write import EventWrite, write_event, write_runs
from habitue.ledger import service as ledger_service
from habitue.members import service as members_service
from habitue.members.service import MemberColumn, MemberRef
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

_CONFIRM_CTES = """
    confirm_uses AS (
        INSERT INTO promotion_uses (program_id, promotion_id, member_id, external_id,
                                    discount_minor, created_at)
        SELECT u.program_id, u.promotion_id, u.member_id, u.external_id, u.discount_minor,
               u.created_at
        FROM unnest(CAST(:u_programs AS bigint[]), CAST(:u_promotions AS bigint[]),
                    CAST(:u_members AS bigint[]), CAST(:u_external_ids AS varchar[]),
                    CAST(:u_discounts AS bigint[]), CAST(:u_created AS timestamptz[]))
             AS u(program_id, promotion_id, member_id, external_id, discount_minor, created_at)
    ), confirm_rows AS (
        INSERT INTO basket_confirmations (program_id, external_id, member_id, response,
                                          created_at)
        SELECT c.program_id, c.external_id, c.member_id, CAST(c.response AS json), c.created_at
        FROM unnest(CAST(:programs AS bigint[]), CAST(:external_ids AS varchar[]),
                    CAST(:members AS bigint[]), CAST(:responses AS text[]),
                    CAST(:created AS timestamptz[]))
             AS c(program_id, external_id, member_id, response, created_at)
    )
"""
"""PostgreSQL: the promotions' uses and the confirmations of one or more confirmed baskets
(their parameters as arrays), as CTEs of a composed statement (`db.compose`): of their
purchases' (`_confirm_part`) or, for guests, of `_USES_AND_CONFIRMATIONS`."""

_USES_AND_CONFIRMATIONS = text("WITH " + _CONFIRM_CTES.strip() + "\nSELECT 1")
"""PostgreSQL: `_CONFIRM_CTES` on their own (confirms without a purchase written with them)."""


def _confirm_params(confirms: Sequence[_Confirmed]) -> dict[str, list[Any]]:
    p: dict[str, list[Any]] = {k: [] for k in (
        "u_programs", "u_promotions", "u_members", "u_external_ids", "u_discounts",
        "u_created", "programs", "external_ids", "members", "responses", "created",
    )}  # fmt: skip
    for c in confirms:
        for pid, off in c.uses:
            p["u_programs"].append(c.program_id)
            p["u_promotions"].append(pid)
            p["u_members"].append(c.member_id)
            p["u_external_ids"].append(c.external_id)
            p["u_discounts"].append(off)
            p["u_created"].append(c.created_at)
        p["programs"].append(c.program_id)
        p["external_ids"].append(c.external_id)
        p["members"].append(c.member_id)
        p["responses"].append(c.response)
        p["created"].append(c.created_at)
    return p


def _merge_confirms(parts: Sequence[Part]) -> Part:
    """The uses and confirmations of several confirms' purchases as one part (a batch's run
    of purchases written by `events.write.write_events`)."""
    merged: dict[str, list[Any]] = {}
    for part in parts:
        for name, values in part.params.items():
            merged.setdefault(name, []).extend(values)
    return Part("confirm", _CONFIRM_CTES, merged, merge=_merge_confirms)


def _confirm_part(confirmed: _Confirmed) -> Part:
    """A confirm's uses and confirmation as a write of its purchase's statement
    (`EventWrite.writes`): one statement for the purchase and them."""
    return Part(
        "confirm", _CONFIRM_CTES, _confirm_params([confirmed]), merge=_merge_confirms
    )


@dataclass(frozen=True, slots=True)
class _Confirmed:
    """What a confirm writes last (PostgreSQL): its promotions' uses, its confirmation and,
    when it was left unwritten (`events_service.earn_prepared`), its purchase, whose
    statement then writes them (`_confirm_part` in its `writes`)."""

    event: EventWrite | None
    program_id: int
    member_id: int | None
    external_id: str
    created_at: datetime
    uses: list[tuple[int, int]]
    response: str


async def _write_confirmed(session: AsyncSession, confirms: list[_Confirmed]) -> None:
    """A grouped batch's consecutive confirms, written at its end (`db.write_late_merged`):
    their purchases with their uses and confirmations as the batch's purchases are
    (`write_runs`: one statement per run of different members), then the uses and
    confirmations of those without a purchase written with them, in one statement."""
    pending: dict[int, Counter[int]] = session.info.get(PENDING_USES, {})
    for c in confirms:  # written now: the member's later confirms read them
        if c.member_id is not None and c.member_id in pending:
            pending[c.member_id].subtract(pid for pid, _ in c.uses)
    events = [c.event for c in confirms if c.event is not None]
    if events:  # each with its uses and confirmation (`_confirm_part`)
        await write_runs(session, events)
    alone = [c for c in confirms if c.event is None]
    if alone:
        await session.execute(_USES_AND_CONFIRMATIONS, _confirm_params(alone))


PENDING_USES = "habitue.promotions.pending_uses"
"""`session.info`: per member, the uses of each promotion that this batch's confirms left to
its end (`_write_confirmed`), counted by the member's later confirms in the batch."""


def _with_pending(session: AsyncSession, member_id: int, uses: dict[int, int]) -> dict[int, int]:
    pending: dict[int, Counter[int]] | None = session.info.get(PENDING_USES)
    mine = pending.get(member_id) if pending is not None else None
    if not mine:
        return uses
    return {**uses, **{pid: uses.get(pid, 0) + n for pid, n in mine.items() if n}}


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


def _reads(pipeline: Pipeline) -> tuple[MemberColumn, ...]:
    """What the till reads with its member: the event pipeline's columns and the
    promotions' (their stamp, the member's uses)."""
    return (*pipeline.member_reads, *promotions_service.MEMBER_READS)


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
    reads = _reads(pipeline)
    if sel.card_number is not None:  # the card's look-up goes through the session first
        return await _resolve(session, program, sel, reads, await _member_driver(session))
    async with _member_connection(session) as raw:
        return await _resolve(session, program, sel, reads, raw)


async def _resolve(
    session: AsyncSession,
    program: ProgramInfo,
    sel: MemberSelector,
    reads: tuple[MemberColumn, ...],
    raw: Any | None,
) -> MemberRef:
    # Without a connection of its own (a confirm): from what its grouped batch read for its
    # units (`_prefetch`) if it can.
    find = (
        members_service.resolve_in_batch
        if raw is None
        else partial(members_service.resolve, raw=raw)
    )
    return await find(
        session,
        program,
        member_id=sel.id,
        card_number=sel.card_number,
        external_id=sel.external_id,
        reads=reads,
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
    if member is not None:
        uses = _with_pending(session, member.id, uses)
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


_PREVIOUS_MANY = text(
    """
    SELECT c.program_id, c.external_id, CAST(NULL AS varchar) AS source, c.response
    FROM basket_confirmations AS c
    WHERE c.program_id = ANY(CAST(:programs AS bigint[]))
      AND c.external_id = ANY(CAST(:external_ids AS varchar[]))
    UNION ALL
    SELECT e.program_id, e.external_id, e.source, CAST(NULL AS json)
    FROM events AS e
    WHERE e.program_id = ANY(CAST(:programs AS bigint[]))
      AND e.source = ANY(CAST(:sources AS varchar[]))
      AND e.external_id = ANY(CAST(:external_ids AS varchar[]))
    """
)
"""PostgreSQL: `_PREVIOUS` for a grouped batch's confirms at once (`_read_previous`): the
stored answers under their external ids, and the purchases under their sources and external
ids (rows of other pairs of the arrays are dropped by the caller)."""

PREVIOUS_SLOT = "habitue.promotions.previous"


@dataclass(slots=True)
class _Previous:
    """What a grouped batch read for its confirms (`_read_previous`): the (program, source,
    external id) it asked about, the answers stored and the purchases found."""

    asked: set[tuple[int, str, str]]
    answers: dict[tuple[int, str], Any]
    purchases: set[tuple[int, str, str]]


async def _read_previous(session: AsyncSession, args: list[tuple[int, str, str]]) -> None:
    """A `Prefetch`: the batch's confirms' stored answers and purchases, in one statement
    (PostgreSQL; elsewhere each confirm reads its own)."""
    if dialect_name(session) != "postgresql":
        return
    rows = await session.execute(
        _PREVIOUS_MANY,
        {
            "programs": sorted({a[0] for a in args}),
            "sources": sorted({a[1] for a in args}),
            "external_ids": sorted({a[2] for a in args}),
        },
    )
    found = _Previous(set(args), {}, set())
    for program_id, external_id, source, response in rows:
        if source is None:
            found.answers[(program_id, external_id)] = response
        else:
            found.purchases.add((program_id, source, external_id))
    session.info[PREVIOUS_SLOT] = found


def _previous_prefetch(program: ProgramInfo, body: BasketConfirm) -> Prefetch:
    return Prefetch(_read_previous, (program.id, body.source, body.external_id), PREVIOUS_SLOT)


async def _previous(
    session: AsyncSession, program: ProgramInfo, body: BasketConfirm
) -> tuple[BasketRead | None, bool]:
    """In one statement: the answer stored under this basket's `external_id` (a retry), and
    whether a purchase event with this source and external id exists already. In a grouped
    batch, from what it read for its confirms (`_read_previous`, in its transaction before
    any unit ran: a confirm of the batch under the same external id fails the batch's
    writes on the unique keys, and the batch runs again unit by unit)."""
    batch: _Previous | None = session.info.get(PREVIOUS_SLOT)
    asked = (program.id, body.source, body.external_id)
    if batch is not None and asked in batch.asked:
        answer = batch.answers.get((program.id, body.external_id))
        stored = None if answer is None else BasketRead.model_validate(answer)
        return stored, asked in batch.purchases
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
    unwritten: events_service.Recorded | None = None
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
            if together:  # written below, with the uses and the confirmation
                unwritten = await events_service.earn_prepared(session, pipeline, program, ready)
                event = unwritten.response
            else:
                event = await events_service.apply_prepared(session, pipeline, program, ready)
        else:
            event = await events_service.apply(session, pipeline, program, purchase)
        earned, effects, event_id = event.points_earned, event.effects, event.id
    read = read_answer(program, priced, index=index, earned=earned, effects=effects)
    read.event_id = event_id
    read.external_id = body.external_id
    if together:
        confirmed = _Confirmed(
            None, program.id, member_id, body.external_id, now, uses, read.model_dump_json()
        )
        if unwritten is not None:  # the uses and the confirmation in the purchase's statement
            write = unwritten.write
            write = replace(write, writes=[*write.writes, _confirm_part(confirmed)])
            confirmed = replace(confirmed, event=write)
        # In a grouped batch whose units write late, with the batch's other confirms at its
        # end (`_write_confirmed`); the member's uses are counted for its later confirms.
        if write_late_merged(session, _write_confirmed, confirmed):
            if member_id is not None and uses:
                pending = session.info.setdefault(PENDING_USES, {})
                pending.setdefault(member_id, Counter()).update(pid for pid, _ in uses)
        elif confirmed.event is not None:
            await write_event(session, confirmed.event)
        else:
            # The promotions' uses and the confirmation in one statement (nothing in between
            # reads the uses: the purchase's rules know nothing of promotions).
            await session.execute(_USES_AND_CONFIRMATIONS, _confirm_params([confirmed]))
        if unwritten is not None:
            await pipeline.recorded(session, unwritten.applied)
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


def _grouping(
    pipeline: Pipeline, program: ProgramInfo, body: BasketConfirm
) -> tuple[tuple[Prefetch, ...], bool]:
    """How a confirm joins a grouped batch (`Database.write`'s `prefetch` and `late`): the
    batch reads its confirms' previous answers and members in one statement each and (on
    PostgreSQL) writes their purchases, uses and confirmations at its end, as it does the
    purchases of `/events` (`record_event`); not late when the basket pays with points (the
    spend reads the lots an earlier purchase of the batch may credit)."""
    prefetch = [_previous_prefetch(program, body)]
    sel = body.member
    if sel is not None:
        named = members_service.prefetch_named(
            program,
            member_id=sel.id,
            card_number=sel.card_number,
            external_id=sel.external_id,
            reads=_reads(pipeline),
        )
        if named is not None:
            prefetch.append(named)
    return tuple(prefetch), not body.points


async def confirm_basket(
    db: Database, pipeline: Pipeline, program: ProgramInfo, body: BasketConfirm
) -> BasketRead:
    """The request path: one unit of work; a concurrent retry reads the first answer."""
    key = ""
    if body.member is not None:
        key = body.member.id or body.member.card_number or body.member.external_id or ""
    prefetch, late = _grouping(pipeline, program, body)
    try:
        return await db.write(
            lambda s: confirm_in(s, pipeline, program, body),
            key=key,
            prefetch=prefetch,
            late=late,
        )
    except IntegrityError:
        async with db.read() as session:
            found = await _stored(session, program, body.external_id)
        if found is not None:
            return found
    # Another request recorded a purchase under this external_id meanwhile (not a basket):
    # once more, the look-up now finds it and the purchase answers as recorded.
    return await db.write(lambda s: confirm_in(s, pipeline, program, body), key=key)


__all__ = ["HabitueError", "confirm_basket", "price_basket"]
