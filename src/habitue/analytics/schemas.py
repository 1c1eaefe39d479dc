"""API shapes of the analytics room; money as decimal strings, ratios as floats, never NaN."""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, BaseModel, Field

from habitue.bounds import StrictModel
from habitue.timestamps import UtcDatetime


class _Strict(StrictModel):
    """A request body (see habitue.bounds: unknown fields and control characters refused)."""


class ScoresRead(BaseModel):
    """A member's RFM scores, named segment, CLV and churn figures (null when not computed)."""

    member_id: str
    recency_days: int | None
    frequency: int | None
    monetary: str | None
    r: int | None
    f: int | None
    m: int | None
    segment: str | None
    clv: str | None
    """Discounted expected revenue over the next 12 months (10 %/year)."""
    p_alive: float | None
    expected_purchases_30d: float | None
    computed_at: UtcDatetime | None


class ScoresRun(BaseModel):
    """What a computation of scores did."""

    members_scored: int
    members_with_rfm: int
    clv_fitted: bool
    computed_at: UtcDatetime
    segments: dict[str, int]
    as_of: UtcDatetime | None = None


class SegmentSize(BaseModel):
    """Members of one RFM segment at one date."""

    as_of: UtcDatetime
    segment: str
    members: int | None
    """Null when suppressed: fewer than the program's k members, for a key without `admin`."""
    monetary: str | None
    suppressed: bool = False


class SegmentSizes(BaseModel):
    """RFM segment sizes at the start of each month and now."""

    items: list[SegmentSize]


class SegmentCreate(_Strict):
    """A dynamic segment: a code and a CEL condition over `member` features."""

    code: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    name: str = Field(default="", max_length=200)
    condition: str = Field(min_length=1, max_length=4000)


class SegmentRead(BaseModel):
    """A dynamic segment and the size of its last computation."""

    code: str
    name: str
    condition: str
    members: int | None
    """Null when suppressed: fewer than the program's k members, for a key without `admin`."""
    profiling: bool = False
    """The condition reads the member's behaviour: targets only members consenting to
    profiling (offers, rule audiences, newsletters); `members` still counts everyone."""
    computed_at: UtcDatetime | None
    created_at: UtcDatetime


class SegmentMembers(BaseModel):
    """Public ids of a segment's members."""

    code: str
    members: list[str]


class Recommendations(BaseModel):
    """Items recommended to a member, and whether they came from co-purchases or popularity."""

    member_id: str
    source: Literal["item-item", "blend", "popular"]
    items: list[str]


class CampaignCreate(_Strict):
    """A campaign measured against a hold-out group of the given share."""

    code: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    kind: Literal["offer", "rule", "newsletter"]
    subject: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description="the code of the rule, offer or newsletter (of `kind`) the campaign measures",
    )
    holdout_share: float
    starts_at: AwareDatetime
    ends_at: AwareDatetime


class CampaignRead(BaseModel):
    """A campaign and its groups' sizes at creation."""

    code: str
    kind: str
    subject: str | None = None
    holdout_share: float
    starts_at: UtcDatetime
    ends_at: UtcDatetime
    created_at: UtcDatetime
    treatment: int
    holdout: int


class GroupRead(BaseModel):
    """One group's outcomes over the campaign window."""

    members: int | None
    buyers: int | None
    revenue: str | None
    revenue_per_member: str | None
    visits_per_member: float | None
    points_cost_per_member: float | None
    suppressed: bool = False
    """Fewer than the program's k members (or buyers), for a key without `admin`: the
    figures that would single people out are null."""


class CampaignReport(BaseModel):
    """Treatment against hold-out: incremental revenue with its interval, and a verdict."""

    code: str
    kind: str
    subject: str | None = None
    started: bool = True
    """False before `starts_at`: the groups' figures then measure nothing yet."""
    holdout_share: float
    starts_at: UtcDatetime
    ends_at: UtcDatetime
    treatment: GroupRead
    holdout: GroupRead
    confidence: float
    incremental_revenue_per_member: str | None
    ci_low: str | None
    ci_high: str | None
    p_value: float | None
    significant: bool
    incremental_revenue: str | None
    incremental_points_cost: str | None
    return_on_points: float | None
    verdict: str
