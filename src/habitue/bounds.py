"""Every number and text bounded where it enters: the limits and the types that enforce them.

The ledger's integers are 64-bit. A single movement is at most `MAX_POINTS` and a balance
stays within ±`MAX_BALANCE` (a CHECK constraint on `accounts.balance`, `postings.amount` and
`lots`), so no sum the ledger computes on one account comes near 2**63. Request schemas use
the annotated types below; a `StrictModel` refuses NUL, control characters (other than tab,
newline and carriage return) and lone surrogates in every string it holds, nested or not.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from datetime import date, datetime, time
from decimal import Decimal
from typing import Annotated, Any
from urllib.parse import parse_qsl

from fastapi import Query
from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.types import ASGIApp, Receive, Scope, Send

from habitue.errors import ERROR_BASE

MAX_POINTS = 1_000_000_000
"""The most points one movement (adjustment, spend, earn, reward cost) may carry."""
MAX_BALANCE = 1_000_000_000_000_000
"""Bound of every account balance, posting and lot (±10^15, far below 2^63 ≈ 9.2·10^18)."""
MAX_AMOUNT_MINOR = 10**15 - 1
"""Largest money amount in minor units (9,999,999,999,999.99 EUR)."""
MAX_EARN_RATE = Decimal(10_000)
"""Most points earned per currency unit."""
MAX_REDEEM_RATE = Decimal(1_000_000)
"""Most money one point may be worth."""
MAX_RATE_DECIMALS = 6
"""Most decimal places of a rate (earn rate, redeem rate)."""
MAX_ID = 2**63 - 1
"""Largest cursor or identifier a query parameter may carry (a signed 64-bit integer)."""
MIN_YEAR, MAX_YEAR = 2000, 2100
"""Years accepted by yearly statements."""

# C0 controls except \t \n \r, DEL, C1 controls, and lone UTF-16 surrogates.
_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")


BOUND_CONSTRAINTS = (
    "ck_accounts_balance_bounds",
    "ck_postings_amount_bounds",
    "ck_lots_amount_bounds",
    "ck_lots_remaining_bounds",
)
"""The CHECK constraints of migration 0015 (names as both databases report them)."""


def is_bound_violation(exc: BaseException) -> bool:
    """Whether a database error is one of the ledger's bound checks refusing a write."""
    message = str(getattr(exc, "orig", exc))
    return any(name in message for name in BOUND_CONSTRAINTS)


def text_problem(value: str) -> str | None:
    """Why `value` cannot be stored as text, or None when it can."""
    m = _FORBIDDEN.search(value)
    if m is None:
        return None
    ch = m.group()
    return f"must not contain control characters (found U+{ord(ch):04X})"


def check_text(value: str) -> str:
    """Return `value` when it holds no forbidden character; raise ValueError otherwise."""
    problem = text_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


_OPAQUE: frozenset[type] = frozenset({type(None), bool, Decimal, datetime, date, time})
"""Exact types a field may hold that carry no text and no unbounded number."""


def _check_nested(value: Any) -> None:
    # The usual values by their exact type first (one dict lookup, no ABC check): this runs
    # for every field of every request body, 20 times for a purchase with 3 lines.
    kind = type(value)
    if kind is str:
        if _FORBIDDEN.search(value) is not None:
            check_text(value)
        return
    if kind in _OPAQUE:
        return
    if kind is int:
        if abs(value) > MAX_ID:
            raise ValueError("must be a 64-bit integer")
        return
    if kind is dict:
        for k, v in value.items():
            _check_nested(k)
            _check_nested(v)
        return
    if kind is list:
        for v in value:
            _check_nested(v)
        return
    if isinstance(value, BaseModel):
        return  # it validated its own fields
    if isinstance(value, str):
        check_text(value)
    elif isinstance(value, float) and not math.isfinite(value):
        raise ValueError("must be a finite number")
    elif isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_ID:
        raise ValueError("must be a 64-bit integer")
    elif isinstance(value, Mapping):
        for k, v in value.items():
            _check_nested(k)
            _check_nested(v)
    elif isinstance(value, list | tuple | set | frozenset):
        for v in value:
            _check_nested(v)


class StrictModel(BaseModel):
    """A request body: unknown fields refused, every string free of control characters, every
    number (nested ones too, as in `attributes`) finite and within 64 bits."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="after")
    @classmethod
    def _safe_text(cls, value: Any) -> Any:
        # Nested models validate their own fields; only plain containers are walked here.
        _check_nested(value)
        return value


Points = Annotated[int, Field(strict=True, ge=-MAX_POINTS, le=MAX_POINTS)]
"""A signed number of points in one movement; strings and booleans refused."""
PositivePoints = Annotated[int, Field(strict=True, ge=1, le=MAX_POINTS)]
"""A positive number of points in one movement."""
NonNegativePoints = Annotated[int, Field(strict=True, ge=0, le=MAX_POINTS)]
"""Points, zero allowed."""
Count = Annotated[int, Field(strict=True, ge=0, le=MAX_POINTS)]
"""A stock, a limit or a quantity that may be zero."""
PositiveCount = Annotated[int, Field(strict=True, ge=1, le=MAX_POINTS)]
"""A limit or a quantity of at least one."""
StrictInt = Annotated[int, Field(strict=True)]
"""An integer, never a string or a boolean (bounds given by the field)."""

Cursor = Annotated[int, Query(ge=0, le=MAX_ID)]
"""A position in a feed (0: from the start)."""
OptionalCursor = Annotated[int | None, Query(ge=1, le=MAX_ID)]
"""An id to page before; absent: from the newest."""
Year = Annotated[int, Query(ge=MIN_YEAR, le=MAX_YEAR)]
"""A calendar year of a statement."""


def decimal_rate(value: str, field: str, *, positive: bool = False, most: Decimal) -> str:
    """A rate given as a plain decimal string, bounded, with at most `MAX_RATE_DECIMALS`."""
    if not isinstance(value, str) or not re.fullmatch(r"\d{1,12}(\.\d{1,30})?", value):
        raise ValueError(f"{field} must be a plain decimal string such as '1' or '0.5'")
    d = Decimal(value)
    if d != d.quantize(Decimal(1).scaleb(-MAX_RATE_DECIMALS)):
        raise ValueError(f"{field} has more than {MAX_RATE_DECIMALS} decimal places")
    if positive and d == 0:
        raise ValueError(f"{field} must be a positive decimal")
    if d > most:
        raise ValueError(f"{field} must be at most {most}")
    return str(d)


def url_problem(path: str, query_string: str) -> tuple[str, str] | None:
    """The (field, reason) of the first forbidden character in a URL's path or query."""
    problem = text_problem(path)  # ASGI gives the path decoded
    if problem is not None:
        return "path", problem
    for name, value in parse_qsl(query_string, keep_blank_values=True, errors="surrogateescape"):
        problem = text_problem(name) or text_problem(value)
        if problem is not None:
            return name, problem
    return None


class SafeUrl:
    """Refuse (422) a request whose decoded path or query holds a control character.

    Path and query values reach SQL as text (member ids, codes, search terms); PostgreSQL
    refuses NUL in text, so it is turned away here, before any route or credential runs.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            query = scope.get("query_string", b"").decode("latin-1")
            found = url_problem(scope.get("path", ""), query)
            if found is not None:
                field, reason = found
                body = json.dumps(
                    {
                        "type": ERROR_BASE + "validation",
                        "title": "Invalid request",
                        "status": 422,
                        "detail": f"{field}: {reason}",
                        "errors": [{"field": field, "message": reason}],
                    }
                ).encode()
                await send(
                    {
                        "type": "http.response.start",
                        "status": 422,
                        "headers": [
                            (b"content-type", b"application/problem+json"),
                            (b"content-length", str(len(body)).encode()),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)
