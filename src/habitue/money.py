"""Money as integer minor units; decimal strings at the edges; explicit rounding."""

from __future__ import annotations

import re
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal
from functools import lru_cache

from babel.numbers import get_currency_precision

_ROUNDING = {"down": ROUND_FLOOR, "half_up": ROUND_HALF_UP, "up": ROUND_CEILING}


class MoneyFormatError(ValueError):
    """A money string that is not a plain decimal in the currency's precision and range."""


@lru_cache(maxsize=256)
def currency_exponent(currency: str) -> int:
    """Number of minor-unit digits of an ISO 4217 currency (EUR → 2, JPY → 0)."""
    return int(get_currency_precision(currency))


_AMOUNT = re.compile(r"(-?)(\d{1,15})(?:\.(\d{1,30}))?")
MAX_MINOR = 10**15 - 1
"""Largest amount in minor units (habitue.bounds.MAX_AMOUNT_MINOR)."""


def parse_minor(value: str, exponent: int, *, allow_negative: bool = False) -> int:
    """Turn a decimal string such as ``"12.50"`` into minor units, exactly.

    Only plain decimals are read (no exponent, no sign but `-`, at most 15 integer digits);
    decimals beyond the currency's precision are refused unless they are zeros, so an amount
    is never rounded.
    """
    if not isinstance(value, str):
        raise MoneyFormatError("not a decimal string")
    m = _AMOUNT.fullmatch(value)
    if m is None:
        raise MoneyFormatError("not a plain decimal number such as 12.50")
    sign, whole, frac = m.group(1), m.group(2), m.group(3) or ""
    if frac[exponent:].strip("0"):
        raise MoneyFormatError(f"more than {exponent} decimal places")
    minor: int = int(whole) * 10**exponent + int(frac[:exponent].ljust(exponent, "0") or "0")
    if sign:
        if not allow_negative and minor != 0:
            raise MoneyFormatError("must not be negative")
        minor = -minor
    if abs(minor) > MAX_MINOR:
        raise MoneyFormatError("too large")
    return minor


UNIT_PRICE_EXTRA_PLACES = 4
"""Decimals a unit price may carry beyond the currency's (0.0125 EUR a gram: 4 places)."""


def parse_unit_price(value: str, exponent: int) -> Decimal:
    """A unit price in minor units, exactly, with up to `UNIT_PRICE_EXTRA_PLACES` decimals
    beyond the currency's precision (a price per gram or per litre); never negative."""
    if not isinstance(value, str):
        raise MoneyFormatError("not a decimal string")
    m = _AMOUNT.fullmatch(value)
    if m is None or m.group(1):
        raise MoneyFormatError("not a plain non-negative decimal number such as 12.50")
    places = exponent + UNIT_PRICE_EXTRA_PLACES
    frac = m.group(3) or ""
    if frac[places:].strip("0"):
        raise MoneyFormatError(f"more than {places} decimal places")
    minor = Decimal(f"{m.group(2)}.{frac or '0'}").scaleb(exponent)
    if minor > MAX_MINOR:
        raise MoneyFormatError("too large")
    return minor


def round_minor(value: Decimal) -> int:
    """A fractional amount of minor units to a whole one, half up (a till's line total)."""
    return int(value.to_integral_value(rounding=ROUND_HALF_UP))


def line_tax(amount: Decimal | int, rate: Decimal | None, included: bool) -> tuple[int, int]:
    """A basket line's amount as charged (tax included) and the tax in it, in whole minor
    units, as the till API reads a line: `included` (the default) means `amount` has the tax
    in it, which is `amount − amount / (1 + rate)` rounded half up; otherwise `amount` is
    without tax and the line is charged `amount × (1 + rate)` rounded half up. No rate: no
    tax. `amount` may be fractional (quantity × a unit price per gram); it is rounded half up
    first."""
    whole = amount if isinstance(amount, int) else round_minor(amount)
    if not rate:
        return whole, 0
    if included:
        return whole, whole - round_minor(Decimal(whole) / (1 + rate))
    charged = round_minor(Decimal(whole) * (1 + rate))
    return charged, charged - whole


_POWERS = tuple(10**e for e in range(19))
_FORMATS = ("%d", *(f"%d.%0{e}d" for e in range(1, 19)))


def format_minor(minor: int, exponent: int) -> str:
    """Minor units back to a decimal string with the currency's precision."""
    if exponent == 0:
        return str(minor)
    if minor >= 0 and 0 < exponent < 19:
        # The usual case in one `%` (a priced basket's answer formats ~45 amounts).
        formatted: str = _FORMATS[exponent] % divmod(minor, _POWERS[exponent])
        return formatted
    sign = "-" if minor < 0 else ""
    whole, frac = divmod(abs(minor), 10**exponent)
    return f"{sign}{whole}.{frac:0{exponent}d}"


def round_points(value: Decimal, rounding: str) -> int:
    """Round a fractional number of points to an integer by the program's rule."""
    return int(value.to_integral_value(rounding=_ROUNDING[rounding]))


def points_for_amount(amount_minor: int, exponent: int, rate: Decimal, rounding: str) -> int:
    """Points earned on an amount at `rate` points per currency unit.

    The same as rounding `Decimal(amount_minor).scaleb(-exponent) * rate` by `rounding`
    (`points_for_amount_decimal`), in integers when that product is exact in the default
    context's 28 digits, which is every amount a till sends."""
    if amount_minor <= 0:
        return 0
    ratio = _rate_ratio(rate, exponent)
    if ratio is None or amount_minor >= ratio[2]:
        return points_for_amount_decimal(amount_minor, exponent, rate, rounding)
    numerator, denominator, _ = ratio
    scaled = amount_minor * numerator
    if rounding == "down":
        return scaled // denominator
    if rounding == "up":
        return -(-scaled // denominator)
    if rounding == "half_up":
        return (2 * scaled + denominator) // (2 * denominator)
    return points_for_amount_decimal(amount_minor, exponent, rate, rounding)


def points_for_amount_decimal(
    amount_minor: int, exponent: int, rate: Decimal, rounding: str
) -> int:
    """`points_for_amount` in decimal arithmetic (the reference the integer path equals)."""
    if amount_minor <= 0:
        return 0
    return round_points(Decimal(amount_minor).scaleb(-exponent) * rate, rounding)


@lru_cache(maxsize=1024)
def _rate_ratio(rate: Decimal, exponent: int) -> tuple[int, int, int] | None:
    """A non-negative finite rate per currency unit as numerator and denominator per minor
    unit, and the amount from which the decimal product could be rounded (28 digits); None
    for any other rate."""
    if not rate.is_finite() or rate < 0:
        return None
    numerator, denominator = rate.as_integer_ratio()
    digits = len(rate.as_tuple().digits)
    return numerator, denominator * 10**exponent, 10 ** max(28 - digits, 0)
