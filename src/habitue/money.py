"""Money as integer minor units; decimal strings at the edges; explicit rounding."""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal, InvalidOperation
from functools import lru_cache

from babel.numbers import get_currency_precision

_ROUNDING = {"down": ROUND_FLOOR, "half_up": ROUND_HALF_UP, "up": ROUND_CEILING}


class MoneyFormatError(ValueError):
    """A money string that is not a non-negative decimal in the currency's precision."""


@lru_cache(maxsize=256)
def currency_exponent(currency: str) -> int:
    """Number of minor-unit digits of an ISO 4217 currency (EUR → 2, JPY → 0)."""
    return int(get_currency_precision(currency))


def parse_minor(value: str, exponent: int, *, allow_negative: bool = False) -> int:
    """Turn a decimal string such as ``"12.50"`` into minor units, refusing excess precision."""
    try:
        amount = Decimal(value)
    except (InvalidOperation, TypeError) as exc:
        raise MoneyFormatError("not a decimal number") from exc
    if not amount.is_finite():
        raise MoneyFormatError("not a finite number")
    if amount < 0 and not allow_negative:
        raise MoneyFormatError("must not be negative")
    scaled = amount.scaleb(exponent)
    if scaled != scaled.to_integral_value():
        raise MoneyFormatError(f"more than {exponent} decimal places")
    if abs(scaled) >= 10**15:
        raise MoneyFormatError("too large")
    return int(scaled)


def format_minor(minor: int, exponent: int) -> str:
    """Minor units back to a decimal string with the currency's precision."""
    if exponent == 0:
        return str(minor)
    sign = "-" if minor < 0 else ""
    whole, frac = divmod(abs(minor), 10**exponent)
    return f"{sign}{whole}.{frac:0{exponent}d}"


def round_points(value: Decimal, rounding: str) -> int:
    """Round a fractional number of points to an integer by the program's rule."""
    return int(value.to_integral_value(rounding=_ROUNDING[rounding]))


def points_for_amount(amount_minor: int, exponent: int, rate: Decimal, rounding: str) -> int:
    """Points earned on an amount at `rate` points per currency unit."""
    if amount_minor <= 0:
        return 0
    return round_points(Decimal(amount_minor).scaleb(-exponent) * rate, rounding)
