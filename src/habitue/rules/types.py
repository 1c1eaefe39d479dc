"""Plain values that flow into and out of the pure `decide` function.

Nothing here touches the database: the events service builds these snapshots, calls
`decide`, and applies the effects it returns in one transaction. The quote endpoint and the
backtester call the same function.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, ClassVar, Literal

from habitue.frozen import fast_init

Rounding = Literal["down", "half_up", "up"]
EarnOn = Literal["tax_included", "tax_excluded"]
TAX_INCLUDED: EarnOn = "tax_included"
TAX_EXCLUDED: EarnOn = "tax_excluded"
Period = Literal["day", "week", "month", "year", "lifetime"]


@fast_init
@dataclass(frozen=True, slots=True)
class LineInput:
    """One basket line; money in minor units of the program's currency."""

    sku: str | None
    category: str | None
    quantity: Decimal
    unit_price_minor: int
    amount_minor: int
    """The line's amount as charged, tax included."""
    tax_minor: int = 0
    """The tax in `amount_minor` (0: none known); a program that earns on amounts without tax
    (`ProgramSnapshot.earn_on`) earns on `amount_minor − tax_minor`."""
    tax_rate: Decimal | None = None
    """The rate `tax_minor` came from, when the line was sent with one (not kept in store)."""


@fast_init
@dataclass(frozen=True, slots=True)
class EventInput:
    """An event as the rules see it (a purchase, a refund or an action)."""

    type: str
    external_id: str
    occurred_at: datetime
    total_minor: int
    lines: tuple[LineInput, ...] = ()
    attributes: dict[str, Any] = field(default_factory=dict)
    points_spent: int = 0
    """Points the member spent on this basket at the till (a discount)."""
    discount_minor: int = 0
    """Money taken off the basket by spent points and coupons: not eligible for earning."""


@fast_init
@dataclass(frozen=True, slots=True)
class MemberSnapshot:
    """What the rules may know about the member at decision time."""

    id: str
    status: str
    enrolled_at: datetime
    tier: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)
    benefits: frozenset[str] = frozenset()
    earn_multiplier: Decimal = Decimal(1)
    segments: frozenset[str] = frozenset()
    """Named segments the member belongs to (for rule audiences)."""


@dataclass(frozen=True, slots=True)
class ProgramSnapshot:
    """The program settings that shape a decision."""

    id: int
    code: str
    currency: str
    currency_exponent: int
    timezone: str
    earn_rate: Decimal
    rounding: Rounding
    pending_days: int
    earn_on: EarnOn = TAX_INCLUDED
    """Whether purchases earn on amounts with tax (the default) or without it: each line's
    amount less its `tax_minor`, after the discounts shared pro rata."""


class EffectKind(StrEnum):
    """The public `kind` of an effect a rule decides (the `effects` of an event's answer)."""

    EARN = "earn"
    """Spendable points credited to the member (the base earn and point rules)."""
    MULTIPLIER = "multiplier"
    """Extra spendable points: the base points of a purchase times a factor, less the base."""
    TIER_CREDITS = "tier_credits"
    """Tier credits, counted toward the member's tier and never spendable."""
    BENEFIT = "benefit"
    """A named privilege granted to the member until a date (or open-ended)."""
    COUPON = "coupon"
    """A coupon of a catalogue reward issued to the member, burnt once at the till."""


@fast_init
@dataclass(frozen=True, slots=True)
class EarnPoints:
    """Credit points to the member (pending first when `pending_until` is set)."""

    amount: int
    rule_code: str
    rule_id: int | None = None
    rule_version: int | None = None
    kind: EffectKind = EffectKind.EARN
    """`earn`, or `multiplier` for the points a multiplier rule adds."""
    clipped: int = 0
    """Points a cap or budget took off what the rule asked for."""


@fast_init
@dataclass(frozen=True, slots=True)
class AddTierCredits:
    """Tier credits, separate from spendable points."""

    kind: ClassVar[EffectKind] = EffectKind.TIER_CREDITS
    amount: int
    rule_code: str
    rule_id: int | None = None
    rule_version: int | None = None
    clipped: int = 0


@dataclass(frozen=True, slots=True)
class GrantBenefit:
    """A named privilege (fast lane, free delivery) for a period."""

    kind: ClassVar[EffectKind] = EffectKind.BENEFIT
    benefit: str
    rule_code: str
    days: int | None = None
    rule_id: int | None = None
    rule_version: int | None = None


@dataclass(frozen=True, slots=True)
class IssueCoupon:
    """A coupon for a reward of the catalogue."""

    kind: ClassVar[EffectKind] = EffectKind.COUPON
    reward_code: str
    rule_code: str
    rule_id: int | None = None
    rule_version: int | None = None


Effect = EarnPoints | AddTierCredits | GrantBenefit | IssueCoupon


@dataclass(frozen=True, slots=True)
class RuleError:
    """A rule that failed at run time: it is skipped and the error recorded on the event."""

    rule_code: str
    message: str
    rule_version: int | None = None


@fast_init
@dataclass(frozen=True, slots=True)
class Capped:
    """A rule whose grant a cap or budget reduced (`granted` may be 0: nothing applied)."""

    rule_code: str
    requested: int
    granted: int
    reason: str
    rule_version: int | None = None


@dataclass(frozen=True, slots=True)
class RandomDraw:
    """The audit record of a random reward's draw.

    `draw` is the first 8 bytes of sha256(f"{rule_code}:{rule_version}:{external_id}") read as
    a big-endian integer; the rule wins when ``draw < probability × 2**64``.
    """

    rule_code: str
    rule_version: int
    draw: int
    probability: Decimal
    won: bool


@fast_init
@dataclass(frozen=True, slots=True)
class Tally:
    """Points and grants a rule already gave one member in one period."""

    points: int = 0
    count: int = 0


@fast_init
@dataclass(frozen=True, slots=True)
class RuleTally:
    """One rule's usage: this member's tallies for the periods containing the event, and
    the points the rule granted so far over all members (its budget used)."""

    periods: dict[Period, Tally] = field(default_factory=dict)
    budget_used: int = 0


@fast_init
@dataclass(frozen=True, slots=True)
class RuleUsage:
    """Usage state for caps and budgets, by rule code; rules not listed have used nothing."""

    rules: dict[str, RuleTally] = field(default_factory=dict)


@fast_init
@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of `decide`: effects to apply and rule errors to record."""

    effects: tuple[Effect, ...]
    errors: tuple[RuleError, ...] = ()
    capped: tuple[Capped, ...] = ()
    draws: tuple[RandomDraw, ...] = ()

    @property
    def delivers(self) -> bool:
        """Whether an effect needs an applier beyond the points and tier credits."""
        return any(isinstance(e, GrantBenefit | IssueCoupon) for e in self.effects)

    @property
    def points(self) -> int:
        return sum(e.amount for e in self.effects if isinstance(e, EarnPoints))

    def points_by_rule(self) -> dict[str, int]:
        """Points credited per rule code (the base earn under "base")."""
        out: dict[str, int] = {}
        for e in self.effects:
            if isinstance(e, EarnPoints):
                out[e.rule_code] = out.get(e.rule_code, 0) + e.amount
        return out
