"""API shapes of the partners room."""

from __future__ import annotations

from datetime import date

from pydantic import BaseModel, Field, field_validator

from habitue.bounds import StrictModel
from habitue.timestamps import UtcDatetime

RESERVED_CODES = frozenset({"default"})
"""`default` is the source of every event that names none: it cannot be a partner."""


class Strict(StrictModel):
    """A request body (see habitue.bounds: unknown fields and control characters refused)."""


class PartnerCreate(Strict):
    code: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$",
        description="the `source` the partner's tills send with their events",
    )
    name: str = Field(min_length=1, max_length=200)
    funding_rate: str = Field(
        description="money the partner pays per 100 points issued with it (decimal string)"
    )
    reimbursement_rate: str = Field(
        description="money paid to the partner per 100 points redeemed with it (decimal string)"
    )
    active: bool = True

    @field_validator("code")
    @classmethod
    def _code(cls, v: str) -> str:
        if v in RESERVED_CODES:
            raise ValueError(f"{v!r} is reserved for events that name no source")
        return v

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must not be blank")
        return v.strip()


class PartnerUpdate(Strict):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    funding_rate: str | None = None
    reimbursement_rate: str | None = None
    active: bool | None = None


class PartnerRead(BaseModel):
    code: str
    name: str
    funding_rate: str
    reimbursement_rate: str
    currency: str
    active: bool
    created_at: UtcDatetime
    updated_at: UtcDatetime


class StatementRead(BaseModel):
    """What a partner and the program owe each other for the points of a period."""

    partner: str
    name: str
    currency: str
    period_from: date = Field(serialization_alias="from")
    period_to: date = Field(serialization_alias="to")
    points_issued: int
    points_reversed: int
    """Issued points that refunds took back."""
    points_redeemed: int
    points_returned: int
    """Redeemed points that refunds gave back to members."""
    net_points: int
    """issued − reversed − redeemed + returned: the points the partner put in circulation."""
    funding: str
    """What the partner owes for the points issued with it, net of reversals."""
    reimbursement: str
    """What the partner is owed for the points redeemed with it, net of returns."""
    balance_due: str
    """funding − reimbursement: positive, the partner pays the program; negative, the
    program pays the partner."""
    movements: int
