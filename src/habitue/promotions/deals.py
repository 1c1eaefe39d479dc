"""The values the pricing core works on: basket lines, deals, codes, discounts, the outcome.

Plain frozen dataclasses and documented enums; no I/O and no logic beyond tax arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum

from habitue.promotions.conditions import Condition


class Source(StrEnum):
    """Where a discount comes from."""

    PROMOTION = "promotion"
    """An automatic promotion, or one triggered by a promo code typed at the till."""
    COUPON = "coupon"
    """A single-use coupon of the catalogue (issued by a redemption or a rule)."""
    OFFER = "offer"
    """A personal offer the member clipped."""
    POINTS = "points"
    """Points the member pays with."""


class Stacking(StrEnum):
    """How a deal combines with the others."""

    EXCLUSIVE = "exclusive"
    """Applies alone: no other promotion, coupon or offer on the basket (points still pay)."""
    STACKS = "stacks"
    """Applies together with every other deal."""
    BEST_OF = "best_of"
    """Only the deal with the largest discount of its `stacking_class` applies."""


class EffectType(StrEnum):
    """What a deal takes off."""

    ORDER_PERCENT = "order_percent"
    """`percent` off what the order costs after line discounts (of matching lines only when
    the deal has a line condition)."""
    ORDER_AMOUNT = "order_amount"
    """`amount` off the order after line discounts."""
    LINES_PERCENT = "lines_percent"
    """`percent` off each matching line."""
    LINES_AMOUNT = "lines_amount"
    """`amount` off each matching unit (never more than the unit)."""
    CHEAPEST = "cheapest"
    """`percent` (default 100) off the cheapest matching unit, `times` units (default 1)."""
    MOST_EXPENSIVE = "most_expensive"
    """`percent` (default 100) off the most expensive matching unit, `times` units."""
    BUY_X_GET_Y = "buy_x_get_y"
    """For every `buy` matching units, `get` units free (of `get_sku`, or of the matching
    units themselves, the cheapest, counted within each group of buy + get)."""
    BUNDLE_PRICE = "bundle_price"
    """Each complete `bundle` (SKU → quantity) costs `amount`."""
    FREE_ITEM = "free_item"
    """`quantity` units of `sku` free (they must be in the basket)."""
    STORED_VALUE = "stored_value"
    """A voucher or gift card: pays `amount` of what is left, after every discount."""


LINE_EFFECTS = frozenset(
    {
        EffectType.LINES_PERCENT, EffectType.LINES_AMOUNT, EffectType.CHEAPEST,
        EffectType.MOST_EXPENSIVE, EffectType.BUY_X_GET_Y, EffectType.BUNDLE_PRICE,
        EffectType.FREE_ITEM,
    }
)  # fmt: skip
ORDER_EFFECTS = frozenset({EffectType.ORDER_PERCENT, EffectType.ORDER_AMOUNT})
SOURCE_RANK = {Source.PROMOTION: 0, Source.OFFER: 1, Source.COUPON: 2, Source.POINTS: 3}


@dataclass(frozen=True, slots=True)
class BasketLine:
    """One basket line as the till charges it, in minor units (tax included)."""

    sku: str
    category: str
    quantity: Decimal
    unit_price_minor: int
    amount_minor: int
    tax_rate: Decimal = Decimal(0)
    """The line's tax rate as a fraction (0.15 for 15 %)."""

    @property
    def amount_excl_minor(self) -> int:
        """The line's amount without tax."""
        return excl_tax(self.amount_minor, self.tax_rate)


def excl_tax(amount_minor: int, rate: Decimal) -> int:
    """An amount with tax included, without it (half up to the minor unit)."""
    if not rate:
        return amount_minor
    return int((Decimal(amount_minor) / (1 + rate)).to_integral_value(ROUND_HALF_UP))


def incl_tax(amount_minor: int, rate: Decimal) -> int:
    """An amount without tax, with it (half up to the minor unit)."""
    if not rate:
        return amount_minor
    return int((Decimal(amount_minor) * (1 + rate)).to_integral_value(ROUND_HALF_UP))


@dataclass(frozen=True, slots=True)
class Deal:
    """A promotion, a coupon or an offer as the core sees it."""

    source: Source
    code: str
    effect: EffectType
    percent: Decimal | None = None
    amount_minor: int | None = None
    buy: int = 0
    get: int = 0
    get_sku: str | None = None
    sku: str | None = None
    quantity: int = 1
    bundle: tuple[tuple[str, int], ...] = ()
    condition: Condition | None = None
    line_condition: Condition | None = None
    priority: int = 0
    stacking: Stacking = Stacking.STACKS
    stacking_class: str = "default"
    valid_from: datetime | None = None
    valid_until: datetime | None = None
    times: int | None = None
    """Most applications per order (groups of buy X get Y, bundles, units)."""
    cap_minor: int | None = None
    """Most money the deal takes off one order."""
    per_member_limit: int | None = None
    member_uses: int = 0
    """Orders of this member the deal was already used on."""
    min_basket_minor: int | None = None
    promotion_id: int | None = None
    ref: int | None = None
    """The caller's id of the coupon or offer (to burn it at confirm)."""
    phase: int = field(init=False, repr=False, compare=False)
    """0: a line effect (`LINE_EFFECTS`), 1: an order effect, 2: a payment."""
    label: str = field(init=False, repr=False, compare=False)
    """`promotion:CODE`, `coupon:CODE`, `offer:CODE`."""
    sort_key: tuple[int, int, int, str] = field(init=False, repr=False, compare=False)
    """The order of play: line deals, then order deals, then payments; by priority (highest
    first), source and code."""

    def __post_init__(self) -> None:
        # Computed once per deal (a basket sorts and labels its deals several times).
        phase = 0 if self.effect in LINE_EFFECTS else 1 if self.effect in ORDER_EFFECTS else 2
        object.__setattr__(self, "phase", phase)
        object.__setattr__(self, "label", f"{self.source}:{self.code}")
        object.__setattr__(
            self, "sort_key", (phase, -self.priority, SOURCE_RANK[self.source], self.code)
        )


@dataclass(frozen=True, slots=True)
class CodeInput:
    """A code typed at the till, as the caller found it (deal None: refused with `refusal`)."""

    code: str
    deal: Deal | None = None
    refusal: str | None = None
    state: str = "issued"
    expires_at: datetime | None = None
    lookup_failed: bool = False
    """The code named no coupon of the program (a guess, or a typo)."""


@dataclass(frozen=True, slots=True)
class PointsTerms:
    """The member's balance and the program's price of a point."""

    balance: int
    rate: Decimal
    step: int
    exponent: int


@dataclass(frozen=True, slots=True)
class Discount:
    """One discount applied: its source, level (`line`, `order`, `payment`) and its share per
    line (index → minor units)."""

    source: Source
    code: str
    effect: str
    level: str
    amount_minor: int
    lines: tuple[tuple[int, int], ...]
    deal: Deal | None = None


@dataclass(frozen=True, slots=True)
class Refusal:
    """A line, code or points payment not applied, and why. `invalid` ones make a confirm fail
    (unknown or expired code, the same code twice, points above the balance, a bad line)."""

    field: str
    reason: str
    code: str | None = None
    invalid: bool = False


@dataclass(frozen=True, slots=True)
class Pricing:
    """The outcome: discounts in order of application and the net amount of every line."""

    lines: tuple[BasketLine, ...]
    discounts: tuple[Discount, ...]
    refused: tuple[Refusal, ...]
    net_minor: tuple[int, ...]
    """Each line after line and order discounts and stored value (points not taken off)."""
    total_minor: int
    points: int
    points_minor: int
    to_pay_minor: int
    errors: tuple[str, ...] = ()

    @property
    def invalid(self) -> tuple[Refusal, ...]:
        return tuple(r for r in self.refused if r.invalid)

    @property
    def discount_minor(self) -> int:
        """Everything taken off before points."""
        return sum(d.amount_minor for d in self.discounts)

    @property
    def applied(self) -> tuple[Deal, ...]:
        return tuple(d.deal for d in self.discounts if d.deal is not None)
