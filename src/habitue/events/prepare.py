"""An event made ready for the pipeline: validated against its program (no I/O), its member
resolved with the pipeline's reads, and its row as written."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from habitue import clock
from habitue.db import table_of
from habitue.errors import ValidationFailed
from habitue.events.errors import (
    CurrencyMismatch,
    LinesMismatch,
    UnknownEventType,
)
from habitue.events.models import Event
from habitue.events.pipeline import Pipeline
from habitue.events.schemas import BUILTIN_TYPES, EventCreate, EventRead
from habitue.events.write import EventRow
from habitue.members import service as members_service
from habitue.members.service import MemberRef
from habitue.money import (
    MAX_MINOR,
    MoneyFormatError,
    format_minor,
    line_tax,
    parse_minor,
    parse_unit_price,
    round_minor,
)
from habitue.programs.service import ProgramInfo
from habitue.rules.types import EventInput, LineInput

_events = table_of(Event)


CENT_TOLERANCE = 1


@dataclass(frozen=True, slots=True)
class Prepared:
    """A validated event: its body, parsed money and the rules' view of it."""

    body: EventCreate
    event: EventInput
    discount_minor: int


def _money(value: str | None, field: str, exponent: int) -> int:
    if value is None:
        raise ValidationFailed(field, "is required")
    try:
        return parse_minor(value, exponent)
    except MoneyFormatError as exc:
        raise ValidationFailed(field, str(exc)) from exc


_ATTRIBUTE_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "number": (int, float),
    "integer": (int,),
    "boolean": (bool,),
}


def _check_attributes(attributes: dict[str, Any], schema: dict[str, Any]) -> None:
    """Attributes of a custom event against its declared schema (no extra, typed, required)."""
    declared: dict[str, str] = schema.get("attributes", {})
    for name, value in attributes.items():
        kind = declared.get(name)
        if kind is None:
            raise ValidationFailed(f"attributes.{name}", "not declared for this event type")
        is_bool = isinstance(value, bool)
        if not isinstance(value, _ATTRIBUTE_TYPES[kind]) or (is_bool and kind != "boolean"):
            raise ValidationFailed(f"attributes.{name}", f"must be {kind}")
    for name in schema.get("required", []):
        if name not in attributes:
            raise ValidationFailed(f"attributes.{name}", "is required")


def prepare(
    program: ProgramInfo, body: EventCreate, *, now: datetime, allow_future: bool = False
) -> Prepared:
    """Check an event against the program and turn it into plain values (no I/O).

    `allow_future` lets a simulation (which writes nothing) date the event ahead of now."""
    if body.type not in BUILTIN_TYPES:
        custom = program.event_types.get(body.type)
        if custom is None:
            known = [*BUILTIN_TYPES, *sorted(program.event_types)]
            raise UnknownEventType(
                f"unknown event type {body.type!r}",
                errors=[{"field": "type", "message": f"known types: {known}"}],
            )
        _check_attributes(body.attributes, custom)
    if body.currency is not None and body.currency != program.currency:
        raise CurrencyMismatch(
            f"the program's currency is {program.currency}",
            errors=[{"field": "currency", "message": f"expected {program.currency}"}],
        )
    exp = program.currency_exponent
    total = 0
    if body.type in ("purchase", "refund"):
        total = _money(body.total, "total", exp)
    elif body.total is not None:
        total = _money(body.total, "total", exp)
    if body.type == "refund":
        if body.refers_to is None:
            raise ValidationFailed("refers_to", "a refund names the purchase it refunds")
        if total == 0:
            raise ValidationFailed("total", "a refund must be positive")
    elif body.refers_to is not None and body.type == "purchase":
        raise ValidationFailed("refers_to", "only refunds refer to a purchase")
    if body.member is None and body.type != "refund":
        raise ValidationFailed("member", "is required")
    if body.spend_points and body.type != "purchase":
        raise ValidationFailed("spend_points", "only a purchase can be paid with points")
    lines: list[LineInput] = []
    for i, line in enumerate(body.lines):
        try:
            unit = parse_unit_price(line.unit_price, exp)
        except MoneyFormatError as exc:
            raise ValidationFailed(f"lines[{i}].unit_price", str(exc)) from exc
        if line.amount is not None:
            amount = _money(line.amount, f"lines[{i}].amount", exp)
        else:
            amount = round_minor(line.quantity * unit)
            if amount > MAX_MINOR:
                raise ValidationFailed(f"lines[{i}]", "quantity × unit_price is too large")
        tax = 0
        if line.tax_rate:
            amount, tax = line_tax(amount, line.tax_rate, line.tax_included)
            if not line.tax_included:
                unit = unit * (1 + line.tax_rate)
            if amount > MAX_MINOR:
                raise ValidationFailed(f"lines[{i}]", "the amount with tax is too large")
        lines.append(
            LineInput(
                sku=line.sku,
                category=line.category,
                quantity=line.quantity,
                unit_price_minor=round_minor(unit),
                amount_minor=amount,
                tax_minor=tax,
                tax_rate=line.tax_rate or None,
            )
        )
    if lines:
        line_sum = sum(ln.amount_minor for ln in lines)
        if abs(line_sum - total) > CENT_TOLERANCE:
            raise LinesMismatch(
                f"lines add up to {format_minor(line_sum, exp)}, total is "
                f"{format_minor(total, exp)}",
                errors=[{"field": "lines", "message": "do not add up to the total"}],
            )
    discount = 0
    if body.spend_points:
        discount_dec = (Decimal(body.spend_points) * program.redeem_rate).scaleb(exp)
        discount = int(discount_dec.to_integral_value())
        if discount > total:
            raise ValidationFailed("spend_points", "the discount would exceed the basket total")
        if body.spend_points % program.redeem_step:
            raise ValidationFailed("spend_points", f"must be a multiple of {program.redeem_step}")
    occurred = clock.as_utc(body.occurred_at) if body.occurred_at else now
    if occurred > now + timedelta(minutes=10) and not allow_future:
        raise ValidationFailed("occurred_at", "is in the future")
    event = EventInput(
        type=body.type,
        external_id=body.external_id,
        occurred_at=occurred,
        total_minor=total,
        lines=tuple(lines),
        attributes=body.attributes,
        points_spent=body.spend_points,
        discount_minor=discount,
    )
    return Prepared(body=body, event=event, discount_minor=discount)


async def _member_for(
    session: AsyncSession, pipeline: Pipeline, program: ProgramInfo, body: EventCreate
) -> MemberRef:
    sel = body.member
    assert sel is not None
    return await members_service.resolve_in_batch(
        session,
        program,
        member_id=sel.id,
        card_number=sel.card_number,
        external_id=sel.external_id,
        reads=pipeline.member_reads,
    )


def _row(
    program: ProgramInfo,
    member: MemberRef,
    prepared: Prepared,
    event_id: str,
    response: EventRead,
    now: datetime,
    *,
    points: int,
    refers_to: str | None,
    response_json: str | None = None,
) -> EventRow:
    body = prepared.body
    return EventRow(
        id=event_id,
        program_id=program.id,
        member_id=member.id,
        type=body.type,
        source=body.source,
        external_id=body.external_id,
        event=prepared.event,
        points=points,
        points_spent=body.spend_points,
        refers_to=refers_to,
        attributes=body.attributes,
        response=response,
        created_at=now,
        response_json=response_json,
    )
