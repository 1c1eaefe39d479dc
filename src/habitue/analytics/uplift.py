"""Campaign uplift: a deterministic hold-out group and the incremental revenue it reveals.

A member's place in a campaign is fixed by a hash of the campaign and the member: the same pair
always lands in the same group, on every machine, with no table to store. The report compares
the treatment group with the hold-out: the difference of mean revenue per member is the
incremental revenue per member, with a Welch confidence interval (unequal variances), because a
discount given to members who would have bought anyway is a cost, not a gain.
"""

from __future__ import annotations

import hashlib
import math
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy import stats

from habitue.analytics.errors import InvalidAnalyticsInput, InvalidHoldoutShare

Group = Literal["treatment", "holdout"]

_TWO_POW_64 = float(2**64)


def _check_share(holdout_share: float) -> None:
    if not (isinstance(holdout_share, int | float) and 0.0 < holdout_share < 1.0):
        raise InvalidHoldoutShare(
            f"the hold-out share must be strictly between 0 and 1, not {holdout_share!r}"
        )


def assignment_score(campaign_id: str, member_id: str) -> float:
    """A number in [0, 1) fixed by sha256 of the campaign and member ids, uniform over members."""
    digest = hashlib.sha256(f"{campaign_id}\x1f{member_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / _TWO_POW_64


def assign_group(campaign_id: str, member_id: str, *, holdout_share: float) -> Group:
    """The member's group: 'holdout' when its score is below the share, else 'treatment'."""
    _check_share(holdout_share)
    if assignment_score(campaign_id, member_id) < holdout_share:
        return "holdout"
    return "treatment"


def assign_treatment(
    campaign_id: str, member_ids: Iterable[str], *, holdout_share: float
) -> npt.NDArray[np.bool_]:
    """For each member in order, True when in treatment; the same answer as assign_group."""
    _check_share(holdout_share)
    scores = np.fromiter(
        (assignment_score(campaign_id, member_id) for member_id in member_ids), dtype=np.float64
    )
    result: npt.NDArray[np.bool_] = scores >= holdout_share
    return result


@dataclass(frozen=True, slots=True)
class GroupReport:
    """Outcomes of one group; money in minor units, points in points."""

    group: Group
    members: int
    buyers: int
    revenue_minor: int
    revenue_per_member: float
    visits_per_member: float
    points_cost_per_member: float


@dataclass(frozen=True, slots=True)
class UpliftReport:
    """Treatment against hold-out: the incremental revenue and whether it is significant."""

    treatment: GroupReport
    holdout: GroupReport
    confidence: float
    incremental_revenue_per_member: float
    """Mean revenue per treated member minus mean revenue per hold-out member (minor units)."""
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    significant: bool
    total_incremental_revenue_minor: float
    """Incremental revenue per member times the number of treated members."""
    incremental_points_cost_minor: float
    """Extra points per treated member over the hold-out, valued at the point's cost, in total."""
    return_on_points: float | None
    """(Incremental revenue - points cost) / points cost; None when the points cost nothing."""
    verdict: str


def _as_array(values: npt.ArrayLike, name: str, size: int | None = None) -> npt.NDArray[np.float64]:
    array = np.asarray(values, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(array)):
        raise InvalidAnalyticsInput(f"{name} must hold finite numbers")
    if size is not None and array.size != size:
        raise InvalidAnalyticsInput(f"{name} must have one value per member")
    return array


def _group(
    group: Group,
    revenue: npt.NDArray[np.float64],
    visits: npt.NDArray[np.float64],
    points: npt.NDArray[np.float64],
) -> GroupReport:
    members = int(revenue.size)
    if members == 0:
        return GroupReport(group, 0, 0, 0, 0.0, 0.0, 0.0)
    return GroupReport(
        group=group,
        members=members,
        buyers=int(np.count_nonzero(revenue > 0)),
        revenue_minor=int(round(float(revenue.sum()))),
        revenue_per_member=float(revenue.mean()),
        visits_per_member=float(visits.mean()),
        points_cost_per_member=float(points.mean()),
    )


def _money(minor: float, exponent: int) -> str:
    value = Decimal(round(minor)).scaleb(-exponent)
    return f"{value:,.{exponent}f}"


def uplift_report(
    *,
    in_treatment: npt.ArrayLike,
    revenue_minor: npt.ArrayLike,
    visits: npt.ArrayLike,
    points_cost: npt.ArrayLike,
    point_value_minor: float,
    confidence: float = 0.95,
    currency_exponent: int = 2,
) -> UpliftReport:
    """The per-group report and the incremental revenue with a Welch interval; never NaN."""
    treated = np.asarray(in_treatment, dtype=bool).reshape(-1)
    size = treated.size
    revenue = _as_array(revenue_minor, "revenue_minor", size)
    visit_counts = _as_array(visits, "visits", size)
    points = _as_array(points_cost, "points_cost", size)
    if not 0.0 < confidence < 1.0:
        raise InvalidAnalyticsInput("confidence must be strictly between 0 and 1")
    if not (math.isfinite(point_value_minor) and point_value_minor >= 0):
        raise InvalidAnalyticsInput("point_value_minor must be a non-negative number")
    rev_t, rev_h = revenue[treated], revenue[~treated]
    treatment = _group("treatment", rev_t, visit_counts[treated], points[treated])
    holdout = _group("holdout", rev_h, visit_counts[~treated], points[~treated])

    difference = treatment.revenue_per_member - holdout.revenue_per_member
    ci_low: float | None = None
    ci_high: float | None = None
    p_value: float | None = None
    level = f"{confidence:.0%}"
    if rev_t.size < 2 or rev_h.size < 2:
        significant = False
        reason = "too few members in a group to measure an effect (at least 2 in each)"
    elif np.ptp(rev_t) == 0 and np.ptp(rev_h) == 0:
        # Both groups constant: the difference is exact, there is no sampling noise to test.
        ci_low = ci_high = difference
        p_value = 1.0 if difference == 0 else 0.0
        significant = difference != 0
        reason = "no variation in revenue within either group"
    else:
        with warnings.catch_warnings():
            # Near-identical groups make SciPy warn about precision; the interval is still
            # right to the precision that money has.
            warnings.simplefilter("ignore", RuntimeWarning)
            test = stats.ttest_ind(rev_t, rev_h, equal_var=False)
            interval = test.confidence_interval(confidence_level=confidence)
        ci_low, ci_high = float(interval.low), float(interval.high)
        p_value = float(test.pvalue)
        significant = ci_low > 0 or ci_high < 0
        reason = ""

    total_incremental = difference * treatment.members
    extra_points = treatment.points_cost_per_member - holdout.points_cost_per_member
    points_cost_total = extra_points * treatment.members * point_value_minor
    return_on_points = (
        (total_incremental - points_cost_total) / points_cost_total
        if points_cost_total > 0
        else None
    )
    per_member = _money(difference, currency_exponent)
    if ci_low is None or ci_high is None:
        verdict = f"Not significant: {reason}."
    else:
        interval_text = (
            f"{level} confidence interval {_money(ci_low, currency_exponent)} to "
            f"{_money(ci_high, currency_exponent)} per member"
        )
        if significant:
            direction = "more" if difference > 0 else "less"
            verdict = (
                f"Significant: treated members spent {_money(abs(difference), currency_exponent)}"
                f" {direction} per member than the hold-out ({interval_text}), about "
                f"{_money(total_incremental, currency_exponent)} in total."
            )
        else:
            verdict = (
                f"Not significant: the difference of {per_member} per member could be chance "
                f"({interval_text} includes 0); do not credit the campaign with this revenue."
            )
    return UpliftReport(
        treatment=treatment,
        holdout=holdout,
        confidence=confidence,
        incremental_revenue_per_member=difference,
        ci_low=ci_low,
        ci_high=ci_high,
        p_value=p_value,
        significant=bool(significant),
        total_incremental_revenue_minor=total_incremental,
        incremental_points_cost_minor=points_cost_total,
        return_on_points=return_on_points,
        verdict=verdict,
    )
