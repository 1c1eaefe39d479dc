"""API shapes of point movements."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from habitue.bounds import Points, PositivePoints, StrictModel


class Strict(StrictModel):
    """A request body (see habitue.bounds: unknown fields and control characters refused)."""


class AdjustmentCreate(Strict):
    points: Points = Field(description="signed: a credit (>0) or a debit (<0)")
    reason: str = Field(min_length=3, max_length=500)
    reference: str | None = Field(default=None, max_length=150)


class SpendCreate(Strict):
    points: PositivePoints
    reason: str = Field(default="spend", min_length=1, max_length=500)
    reference: str | None = Field(default=None, max_length=150)


class MovementRead(BaseModel):
    transaction_id: int
    kind: str
    points: int
    balance: dict[str, int]
    reason: str | None = None


class LedgerPage(BaseModel):
    items: list[dict[str, Any]]
    next_cursor: int | None = None
