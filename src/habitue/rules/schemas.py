"""API shapes of rules. A rule is written as a `RuleSpec` (see `habitue.rules.model`)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from habitue.timestamps import UtcDatetime


class RuleVersionRead(BaseModel):
    """One saved version of a rule."""

    version: int
    created_at: UtcDatetime
    actor: str
    spec: dict[str, Any]


class RuleRead(BaseModel):
    """A rule as stored: its current spec, version and state."""

    id: int
    code: str
    name: str
    event_type: str
    version: int
    active: bool
    """False once deleted; a rule may also be paused with `spec.active` false."""
    spec: dict[str, Any]
    expected_cost_per_event: str | None = None
    """Random rewards: probability × points (or × 1 grant) per matching event."""
    warnings: list[str] = Field(default_factory=list)
    created_at: UtcDatetime
    updated_at: UtcDatetime
    deleted_at: UtcDatetime | None = None
    versions: list[RuleVersionRead] | None = None
    """The version history, oldest first (on `GET /rules/{code}`)."""


class RulePage(BaseModel):
    """The program's rules, by code; warnings over the whole rule set."""

    items: list[RuleRead]
    warnings: list[str] = Field(default_factory=list)
