"""API shapes of rules. A rule is written as a `RuleSpec` (see `habitue.rules.model`)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from habitue.bounds import StrictModel
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


class DraftRead(BaseModel):
    """A rule saved as a draft: what publishing it would make live."""

    code: str
    spec: dict[str, Any]
    base_version: int | None
    """The live rule's version the draft was written over (null: a new rule)."""
    live_version: int | None
    """The live rule's version now (null: no live rule has this code)."""
    outdated: bool
    """The live rule changed since the draft was written: publishing is refused until the
    draft is saved again."""
    changed: list[str]
    """Top-level fields the draft changes in the live rule (every field for a new rule)."""
    actor: str
    created_at: UtcDatetime
    updated_at: UtcDatetime


class DraftTestRead(BaseModel):
    """What one event would earn with the live rules and with the draft swapped in."""

    live: dict[str, Any]
    """The answer of `POST /events/quote` for the event (the live rules)."""
    draft: dict[str, Any]
    """The same answer, the draft in place of the live version (or added, for a new rule)."""
    difference: int
    """Draft points less live points."""


class BacktestCreate(StrictModel):
    """The window of past events to replay (default: the 30 days up to now)."""

    since: UtcDatetime | None = None
    until: UtcDatetime | None = None


class BacktestTotals(BaseModel):
    """Points of one replay of the window."""

    points_issued: int
    points_taken_back: int
    net_points: int
    by_rule: dict[str, int]
    """Rule → points issued (`base`: the program's base earn)."""
    grants_by_rule: dict[str, int]
    """Rule → benefits granted and coupons issued."""
    rule_errors: int


class DraftBacktestRead(BaseModel):
    """The program's events of a window replayed twice through `decide`: with the live rules
    (`before`) and with the draft in place (`after`)."""

    since: UtcDatetime
    until: UtcDatetime
    events: int
    members: int
    before: BacktestTotals
    after: BacktestTotals
    difference: int
    """`after.net_points` less `before.net_points`."""
    members_affected: int
    """Members whose net points, or number of benefits and coupons, differ between the two
    replays."""
    tiers_replayed: bool
    """Whether the program's tier ladder was replayed (members decided with their tier)."""
