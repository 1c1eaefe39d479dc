"""Coalition partners: who they are, the points issued and redeemed with them, settlement.

An event belongs to a partner when its `source` is the partner's `code`. The points it
earned are *issued* with the partner (the partner funds them), the points the member paid
with at the partner's till are *redeemed* with it (the partner is reimbursed for them); a
refund of such a purchase *reverses* what it took back and *returns* what it gave back.
Movements are written in the event's own transaction, so a statement never disagrees with
the ledger.

Rates are integer minor units per 100 points; a statement multiplies each movement's
points by the rate that applied to it and rounds the period's total once, half up, to the
currency's minor unit.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from datetime import time as dtime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from habitue import clock
from habitue.db import table_of
from habitue.errors import ValidationFailed
from habitue.events.pipeline import EventApplied, RefundApplied
from habitue.messaging import outbox
from habitue.money import MoneyFormatError, format_minor, parse_minor
from habitue.partners.errors import PartnerExists, PartnerNotFound
from habitue.partners.models import Partner, PartnerMovement
from habitue.partners.schemas import PartnerCreate, PartnerRead, PartnerUpdate, StatementRead
from habitue.programs.service import ProgramInfo

_partners = table_of(Partner)
_movements = table_of(PartnerMovement)

ISSUED, REDEEMED, REVERSED, RETURNED = "issued", "redeemed", "reversed", "returned"
KINDS = (ISSUED, REDEEMED, REVERSED, RETURNED)
MAX_RATE_MINOR = 10**9
"""A rate above this per 100 points is a typing mistake, not a contract."""


# ----------------------------------------------------------------------------------------
# Partners


def _rate_in(program: ProgramInfo, value: str, field: str) -> int:
    """A decimal string (money per 100 points) as minor units; 422 on the field otherwise."""
    try:
        minor = parse_minor(value, program.currency_exponent)
    except MoneyFormatError as exc:
        raise ValidationFailed(field, str(exc)) from exc
    if minor > MAX_RATE_MINOR:
        raise ValidationFailed(field, "too large")
    return minor


def _read(program: ProgramInfo, row: Any) -> PartnerRead:
    exp = program.currency_exponent
    return PartnerRead(
        code=row["code"],
        name=row["name"],
        funding_rate=format_minor(row["funding_minor_per_100"], exp),
        reimbursement_rate=format_minor(row["reimbursement_minor_per_100"], exp),
        currency=program.currency,
        active=bool(row["active"]),
        created_at=clock.as_utc(row["created_at"]),
        updated_at=clock.as_utc(row["updated_at"]),
    )


async def create_partner(
    session: AsyncSession, program: ProgramInfo, data: PartnerCreate
) -> PartnerRead:
    """Add a partner; its code is unique in the program and its rates are exact amounts."""
    now = clock.now()
    values = {
        "program_id": program.id,
        "code": data.code,
        "name": data.name,
        "funding_minor_per_100": _rate_in(program, data.funding_rate, "funding_rate"),
        "reimbursement_minor_per_100": _rate_in(
            program, data.reimbursement_rate, "reimbursement_rate"
        ),
        "active": data.active,
        "created_at": now,
        "updated_at": now,
    }
    try:
        async with session.begin_nested():
            await session.execute(insert(_partners).values(values))
    except IntegrityError as exc:
        raise PartnerExists(
            f"a partner {data.code!r} exists",
            errors=[{"field": "code", "message": "already used by another partner"}],
        ) from exc
    forget(program.id)
    await outbox.emit(
        session,
        program_id=program.id,
        type_="partner.created",
        member_id=None,
        payload={"partner": data.code, "name": data.name},
    )
    return _read(program, values)


async def list_partners(session: AsyncSession, program: ProgramInfo) -> list[PartnerRead]:
    """The program's partners, by code."""
    rows = (
        await session.execute(
            select(_partners).where(_partners.c.program_id == program.id).order_by(_partners.c.code)
        )
    ).mappings()
    return [_read(program, r) for r in rows]


async def _row(session: AsyncSession, program: ProgramInfo, code: str) -> Any:
    row = (
        (
            await session.execute(
                select(_partners).where(
                    _partners.c.program_id == program.id, _partners.c.code == code
                )
            )
        )
        .mappings()
        .first()
    )
    if row is None:
        raise PartnerNotFound(f"no partner {code!r} in this program")
    return row


async def exists(session: AsyncSession, program: ProgramInfo, code: str) -> bool:
    """Whether the program has a partner of this code (active or not)."""
    found = await session.execute(
        select(_partners.c.id).where(_partners.c.program_id == program.id, _partners.c.code == code)
    )
    return found.first() is not None


async def get_partner(session: AsyncSession, program: ProgramInfo, code: str) -> PartnerRead:
    """One partner by code; raises PartnerNotFound (another program's partner included)."""
    return _read(program, await _row(session, program, code))


async def update_partner(
    session: AsyncSession, program: ProgramInfo, code: str, data: PartnerUpdate
) -> PartnerRead:
    """Rename, re-rate or (de)activate a partner; past movements keep the rate they had."""
    row = await _row(session, program, code)
    values: dict[str, Any] = {}
    if data.name is not None:
        if not data.name.strip():
            raise ValidationFailed("name", "must not be blank")
        values["name"] = data.name.strip()
    if data.funding_rate is not None:
        values["funding_minor_per_100"] = _rate_in(program, data.funding_rate, "funding_rate")
    if data.reimbursement_rate is not None:
        values["reimbursement_minor_per_100"] = _rate_in(
            program, data.reimbursement_rate, "reimbursement_rate"
        )
    if data.active is not None:
        values["active"] = data.active
    if values:
        values["updated_at"] = clock.now()
        await session.execute(update(_partners).where(_partners.c.id == row["id"]).values(values))
        forget(program.id)
        await outbox.emit(
            session,
            program_id=program.id,
            type_="partner.updated",
            member_id=None,
            payload={"partner": code, "changed": sorted(k for k in values if k != "updated_at")},
        )
    return _read(program, {**row, **values})


# ----------------------------------------------------------------------------------------
# Attribution (from the event path, in the event's transaction)


@dataclass(frozen=True, slots=True)
class ActivePartner:
    id: int
    funding_minor_per_100: int
    reimbursement_minor_per_100: int


_CACHE_TTL = 5.0
_active: dict[int, tuple[float, dict[str, ActivePartner]]] = {}


def forget(program_id: int | None = None) -> None:
    """Drop the cached partners of a program (after a change, and between tests)."""
    if program_id is None:
        _active.clear()
    else:
        _active.pop(program_id, None)


async def active_partners(session: AsyncSession, program_id: int) -> dict[str, ActivePartner]:
    """The program's active partners by code (cached briefly: every event asks)."""
    hit = _active.get(program_id)
    if hit is not None and hit[0] > time.monotonic():
        return hit[1]
    rows = (
        await session.execute(
            select(
                _partners.c.code,
                _partners.c.id,
                _partners.c.funding_minor_per_100,
                _partners.c.reimbursement_minor_per_100,
            ).where(_partners.c.program_id == program_id, _partners.c.active.is_(True))
        )
    ).all()
    found = {r.code: ActivePartner(r.id, int(r[2]), int(r[3])) for r in rows}
    _active[program_id] = (time.monotonic() + _CACHE_TTL, found)
    return found


async def on_event_recorded(session: AsyncSession, applied: EventApplied) -> None:
    """Record the points an event issued and redeemed with its partner, if it has one.

    Runs after the event's row is written, in the event's transaction: the partner is the
    one whose code is the event's `source`.
    """
    program_id = applied.program.id
    partners = await active_partners(session, program_id)
    partner = partners.get(applied.source) if partners else None
    if partner is None:
        return
    now = clock.now()
    base = {
        "program_id": program_id,
        "partner_id": partner.id,
        "member_id": applied.member.id,
        "event_id": applied.event_id,
        "refers_to": None,
        "occurred_at": applied.event.occurred_at,
        "created_at": now,
    }
    rows = []
    if applied.points_earned > 0:
        rows.append(
            {
                **base,
                "kind": ISSUED,
                "points": applied.points_earned,
                "rate_minor_per_100": partner.funding_minor_per_100,
            }
        )
    if applied.event.points_spent > 0:
        rows.append(
            {
                **base,
                "kind": REDEEMED,
                "points": applied.event.points_spent,
                "rate_minor_per_100": partner.reimbursement_minor_per_100,
            }
        )
    if rows:
        await session.execute(insert(_movements), rows)


async def on_refund(session: AsyncSession, applied: RefundApplied) -> list[dict[str, Any]]:
    """Reverse, in proportion, what a refund undid of a purchase made with a partner.

    Issued points are reversed by what the refund really took back from the member (a
    shortfall stays funded); redeemed points are returned in proportion to the refunded
    share of the basket, the way the event path gives them back. Purchases recorded before
    their partner existed have no movement and stay out of settlement.
    """
    program_id = applied.program.id
    originals = (
        (
            await session.execute(
                select(_movements).where(
                    _movements.c.program_id == program_id,
                    _movements.c.event_id == applied.purchase_id,
                    _movements.c.kind.in_((ISSUED, REDEEMED)),
                )
            )
        )
        .mappings()
        .all()
    )
    if not originals:
        return []
    done = dict(
        (
            await session.execute(
                select(_movements.c.kind, func.sum(_movements.c.points))
                .where(
                    _movements.c.program_id == program_id,
                    _movements.c.refers_to == applied.purchase_id,
                )
                .group_by(_movements.c.kind)
            )
        ).all()
    )
    rows = []
    for original in originals:
        if original["kind"] == ISSUED:
            kind = REVERSED
            left = original["points"] - int(done.get(REVERSED) or 0)
            points = min(applied.points_taken_back, left)
        else:
            kind = RETURNED
            already = int(done.get(RETURNED) or 0)
            full = applied.purchase_total_minor
            target = original["points"] * applied.refunded_total_minor // full if full else 0
            points = min(target, original["points"]) - already
        if points <= 0:
            continue
        rows.append(
            {
                "program_id": program_id,
                "partner_id": original["partner_id"],
                "member_id": original["member_id"],
                "event_id": applied.refund_event_id,
                "refers_to": applied.purchase_id,
                "kind": kind,
                "points": points,
                "rate_minor_per_100": original["rate_minor_per_100"],
                "occurred_at": applied.now,
                "created_at": applied.now,
            }
        )
    if rows:
        await session.execute(insert(_movements), rows)
    return []


# ----------------------------------------------------------------------------------------
# Statements


def period_bounds(program: ProgramInfo, start: date, end: date) -> tuple[datetime, datetime]:
    """The UTC instants of `start` 00:00 and of the day after `end`, in the program's zone."""
    for field, day in (("from", start), ("to", end)):
        if not 1900 <= day.year <= 9000:
            raise ValidationFailed(field, "must be a day between the years 1900 and 9000")
    if start > end:
        raise ValidationFailed("to", "must not be before from")
    zone = ZoneInfo(program.timezone)
    lower = datetime.combine(start, dtime(0), tzinfo=zone)
    upper = datetime.combine(end + timedelta(days=1), dtime(0), tzinfo=zone)
    return clock.as_utc(lower), clock.as_utc(upper)


def minor_of(weighted: int) -> int:
    """Σ points × rate (minor units per 100 points) as minor units, rounded half up."""
    whole, rest = divmod(abs(weighted), 100)
    if rest >= 50:
        whole += 1
    return whole if weighted >= 0 else -whole


async def statement(
    session: AsyncSession, program: ProgramInfo, code: str, start: date, end: date
) -> StatementRead:
    """A partner's points and money for the local days `start`..`end` (both included)."""
    lower, upper = period_bounds(program, start, end)
    partner = await _row(session, program, code)
    weighted = _movements.c.points * _movements.c.rate_minor_per_100
    rows = (
        await session.execute(
            select(
                _movements.c.kind,
                func.sum(_movements.c.points),
                func.sum(weighted),
                func.count(),
            )
            .where(
                _movements.c.program_id == program.id,
                _movements.c.partner_id == partner["id"],
                _movements.c.occurred_at >= lower,
                _movements.c.occurred_at < upper,
            )
            .group_by(_movements.c.kind)
        )
    ).all()
    points = {k: 0 for k in KINDS}
    value = {k: 0 for k in KINDS}
    count = 0
    for kind, total, total_value, n in rows:
        points[kind] = int(total or 0)
        value[kind] = int(total_value or 0)
        count += int(n)
    exp = program.currency_exponent
    funding = minor_of(value[ISSUED] - value[REVERSED])
    reimbursement = minor_of(value[REDEEMED] - value[RETURNED])
    return StatementRead(
        partner=partner["code"],
        name=partner["name"],
        currency=program.currency,
        period_from=start,
        period_to=end,
        points_issued=points[ISSUED],
        points_reversed=points[REVERSED],
        points_redeemed=points[REDEEMED],
        points_returned=points[RETURNED],
        net_points=points[ISSUED] - points[REVERSED] - points[REDEEMED] + points[RETURNED],
        funding=format_minor(funding, exp),
        reimbursement=format_minor(reimbursement, exp),
        balance_due=format_minor(funding - reimbursement, exp),
        movements=count,
    )
