"""The rule a marketer writes, as the API accepts it in JSON.

A `RuleSpec` is only checked for shape here (types, known keys); `validate_rule` in
`habitue.rules.compile` checks its meaning (CEL that compiles, known fields, caps, windows)
and raises `RuleValidationError`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic import ValidationError as PydanticValidationError

from habitue.rules.errors import RuleValidationError
from habitue.rules.types import Period

EffectKind = Literal[
    "fixed",
    "per_currency_unit",
    "per_unit",
    "per_line",
    "multiplier",
    "tier_credits",
    "benefit",
    "coupon",
]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]

WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
POINT_KINDS: frozenset[str] = frozenset(
    {"fixed", "per_currency_unit", "per_unit", "per_line", "multiplier"}
)
"""Effect kinds that credit spendable points (and so count against points caps and budgets)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EffectSpec(_Strict):
    """What a rule grants when it applies."""

    kind: EffectKind
    points: int | None = None
    """`fixed`: points; `per_unit`: points per unit; `per_line`: points per matching line;
    `tier_credits`: fixed credits."""
    rate: Decimal | None = None
    """`per_currency_unit` (and `tier_credits`): points per unit of currency."""
    factor: Decimal | None = None
    """`multiplier`: ×factor over the base points (2 doubles them)."""
    benefit: str | None = None
    days: int | None = None
    """`benefit`: how long the benefit lasts (None: until revoked)."""
    reward_code: str | None = None
    probability: Decimal | None = None
    """Random rewards: the chance, 0 < p ≤ 1, that the effect is granted on a matching event."""


class ScheduleSpec(_Strict):
    """A ritual: days of the week and a local time range in the program's time zone."""

    days: list[Weekday] = Field(default_factory=lambda: list(WEEKDAYS))
    start: str = "00:00"
    end: str = "23:59"
    """Inclusive, minute resolution; an `end` before `start` runs past midnight into the next
    day (the `days` name the day the range starts)."""


class AudienceSpec(_Strict):
    """Who may benefit: members of any listed tier and of any listed segment (empty: all)."""

    tiers: list[str] = Field(default_factory=list)
    segments: list[str] = Field(default_factory=list)


class CapSpec(_Strict):
    """A per-member limit over a period: at most `points` points and/or `count` grants."""

    period: Period
    points: int | None = None
    count: int | None = None


class RuleSpec(_Strict):
    """An earning rule as written by a marketer (see docs/rules.md)."""

    code: str
    name: str = ""
    event_type: str
    condition: str = "true"
    line_condition: str | None = None
    effect: EffectSpec
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    schedule: ScheduleSpec | None = None
    audience: AudienceSpec | None = None
    caps: list[CapSpec] = Field(default_factory=list)
    budget: int | None = None
    """Total points this rule may ever grant, over all members."""
    priority: int = 0
    exclusive: bool = False
    active: bool = True


def parse_rule(data: Mapping[str, Any]) -> RuleSpec:
    """Read a rule from JSON-like data, turning shape errors into `RuleValidationError`."""
    try:
        return RuleSpec.model_validate(dict(data))
    except PydanticValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in first["loc"]).replace(
            ".[", "["
        )
        raise RuleValidationError(field or "rule", first["msg"]) from exc
