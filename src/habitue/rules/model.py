"""The rule a marketer writes, as the API accepts it in JSON.

A `RuleSpec` is only checked for shape here (types, known keys); `validate_rule` in
`habitue.rules.compile` checks its meaning (CEL that compiles, known fields, caps, windows)
and raises `RuleValidationError`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field
from pydantic import ValidationError as PydanticValidationError

from habitue.bounds import (
    MAX_BALANCE,
    MAX_EARN_RATE,
    Points,
    StrictModel,
)
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


# Upper bounds only: the rule checks (habitue.rules.validate) say what is wrong below them.
Rate = Annotated[
    Decimal, Field(le=MAX_EARN_RATE, max_digits=20, decimal_places=6, allow_inf_nan=False)
]
"""Points per currency unit, or a multiplier factor: bounded, at most 6 decimals."""
Bounded = Annotated[int, Field(strict=True, ge=-MAX_BALANCE, le=MAX_BALANCE)]
"""A count or a budget, within the ledger's bound."""


class _Strict(StrictModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EffectSpec(_Strict):
    """What a rule grants when it applies."""

    kind: EffectKind
    points: Points | None = None
    """`fixed`: points; `per_unit`: points per unit; `per_line`: points per matching line;
    `tier_credits`: fixed credits."""
    rate: Rate | None = None
    """`per_currency_unit` (and `tier_credits`): points per unit of currency."""
    factor: Rate | None = None
    """`multiplier`: ×factor over the base points (2 doubles them)."""
    benefit: str | None = None
    days: Annotated[int, Field(strict=True, le=36500)] | None = None
    """`benefit`: how long the benefit lasts (None: until revoked)."""
    reward_code: str | None = None
    probability: Annotated[Decimal, Field(max_digits=20, allow_inf_nan=False)] | None = None
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
    points: Points | None = None
    count: Bounded | None = None


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
    budget: Bounded | None = None
    """Total points this rule may ever grant, over all members."""
    priority: Annotated[int, Field(strict=True, ge=-1_000_000, le=1_000_000)] = 0
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
