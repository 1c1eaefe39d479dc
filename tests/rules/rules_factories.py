"""Small factories for the rules tests."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from habitue.rules.compile import RuleSet, compile_rules
from habitue.rules.model import RuleSpec
from habitue.rules.types import EventInput, LineInput, MemberSnapshot, ProgramSnapshot

PARIS = "Europe/Paris"
# Wednesday 2026-01-07, 21:30 in Paris (UTC+1 in winter).
WED_2130_PARIS = datetime(2026, 1, 7, 20, 30, tzinfo=UTC)
ENROLLED = datetime(2025, 1, 1, tzinfo=UTC)


def create_program(**kw: Any) -> ProgramSnapshot:
    values: dict[str, Any] = {
        "id": 1,
        "code": "demo",
        "currency": "EUR",
        "currency_exponent": 2,
        "timezone": PARIS,
        "earn_rate": Decimal(1),
        "rounding": "down",
        "pending_days": 0,
    }
    values.update(kw)
    return ProgramSnapshot(**values)


def create_member(**kw: Any) -> MemberSnapshot:
    values: dict[str, Any] = {"id": "m1", "status": "active", "enrolled_at": ENROLLED}
    values.update(kw)
    return MemberSnapshot(**values)


def line(category: str | None, amount: str, quantity: int = 1, sku: str | None = None) -> LineInput:
    minor = int(Decimal(amount) * 100)
    return LineInput(
        sku=sku or f"{category}-sku",
        category=category,
        quantity=Decimal(quantity),
        unit_price_minor=minor // quantity,
        amount_minor=minor,
    )


def create_event(
    type_: str = "purchase",
    *,
    lines: tuple[LineInput, ...] = (),
    total: str | None = None,
    at: datetime = WED_2130_PARIS,
    external_id: str = "e1",
    **kw: Any,
) -> EventInput:
    total_minor = (
        int(Decimal(total) * 100) if total is not None else sum(ln.amount_minor for ln in lines)
    )
    return EventInput(
        type=type_,
        external_id=external_id,
        occurred_at=at,
        total_minor=total_minor,
        lines=lines,
        **kw,
    )


def rules(*specs: dict[str, Any]) -> RuleSet:
    return compile_rules([RuleSpec.model_validate(s) for s in specs])
