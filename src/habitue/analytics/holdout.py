"""Lifetime-value fit as of a date, with a holdout check a user can read.

The purchases before ``as_of`` are the calibration period: they are summarised per member
(`clv.summarise_transactions`, weeks as the unit, the calibration ending on the last day before
``as_of``), BG/NBD and Gamma-Gamma are fitted, and the fitted parameters are reported. When the
store holds purchases after ``as_of`` (an as-of run on history), the period ``[as_of,
holdout_end)`` is the holdout: for every calibration member the model's expected number of
purchase days in that period (`conditional_expected_purchases`) is compared with the number of
days on which the member actually bought, in total and per number of repeat purchases in the
calibration period (0, 1, …, 6, 7+), as in Fader, Hardie & Lee's (2005) figure 4.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from habitue.analytics import clv
from habitue.analytics.errors import AnalyticsError

WEEK_DAYS = 7.0
_US = timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class Bucket:
    """Calibration members with a number of repeat purchases, and their holdout purchases."""

    label: str
    members: int
    predicted: float
    actual: int


@dataclass(frozen=True, slots=True)
class FitCheck:
    """Fitted parameters as of a moment and, when later purchases exist, the holdout check."""

    as_of: datetime
    members: int
    repeat_buyers: int
    bgnbd: clv.BgNbdParams | None
    gamma_gamma: clv.GammaGammaParams | None
    reason: str | None
    """Why a model could not be fitted (no repeat purchases, …), else None."""
    expected_30d_mean: float | None
    holdout_end: datetime | None
    holdout_weeks: float
    predicted: float
    actual: int
    buckets: tuple[Bucket, ...]


def _naive_us(moment: datetime) -> np.datetime64:
    return np.datetime64(moment.astimezone(UTC).replace(tzinfo=None), "us")


def _purchases(events: pa.Table) -> pa.Table:
    rows = events.filter(pc.equal(events.column("type"), "purchase"))
    return rows.filter(pc.is_valid(rows.column("member_id")))


def check_fit(
    events: pa.Table, *, as_of: datetime, holdout_end: datetime | None = None
) -> FitCheck:
    """Fit BG/NBD + Gamma-Gamma on the purchases before as_of; check them on [as_of, end)."""
    purchases = _purchases(events)
    times = purchases.column("occurred_at").to_numpy().astype("datetime64[us]")
    before = times < _naive_us(as_of)
    members = purchases.column("member_id").to_numpy()
    amounts = purchases.column("total_minor").to_numpy().astype(np.float64)
    summary = clv.summarise_transactions(
        members[before].astype(np.int64),
        times[before],
        amounts[before],
        calibration_end=_naive_us(as_of - _US),
        time_unit_days=WEEK_DAYS,
    )
    bgnbd: clv.BgNbdParams | None = None
    spend: clv.GammaGammaParams | None = None
    reason: str | None = None
    expected_mean: float | None = None
    try:
        with np.errstate(all="ignore"):
            bgnbd = clv.fit_bgnbd(summary.frequency, summary.recency, summary.T)
            expected_mean = float(
                np.mean(
                    clv.conditional_expected_purchases(
                        bgnbd, 30.0 / WEEK_DAYS, summary.frequency, summary.recency, summary.T
                    )
                )
            )
            spend = clv.fit_gamma_gamma(summary.frequency, summary.monetary_value)
    except AnalyticsError as exc:
        reason = str(exc)
    if holdout_end is None and times.size and bool(np.any(~before)):
        last = times[~before].max().astype(datetime).replace(tzinfo=UTC)
        holdout_end = datetime.combine(
            last.date() + timedelta(days=1), datetime.min.time(), tzinfo=UTC
        )
    buckets: list[Bucket] = []
    predicted_total = 0.0
    actual_total = 0
    weeks = 0.0
    if bgnbd is not None and holdout_end is not None and holdout_end > as_of:
        weeks = (holdout_end - as_of).total_seconds() / 86_400 / WEEK_DAYS
        predicted = clv.conditional_expected_purchases(
            bgnbd, weeks, summary.frequency, summary.recency, summary.T
        )
        later = (~before) & (times < _naive_us(holdout_end))
        actual = _purchase_days(summary.customer_id, members[later], times[later])
        x = summary.frequency
        for label, chosen in [(str(n), x == n) for n in range(7)] + [("7+", x >= 7)]:
            buckets.append(
                Bucket(
                    label,
                    int(chosen.sum()),
                    float(predicted[chosen].sum()),
                    int(actual[chosen].sum()),
                )
            )
        predicted_total = float(predicted.sum())
        actual_total = int(actual.sum())
    else:
        holdout_end = None
    return FitCheck(
        as_of=as_of,
        members=int(summary.frequency.size),
        repeat_buyers=int((summary.frequency > 0).sum()),
        bgnbd=bgnbd,
        gamma_gamma=spend,
        reason=reason,
        expected_30d_mean=expected_mean,
        holdout_end=holdout_end,
        holdout_weeks=weeks,
        predicted=predicted_total,
        actual=actual_total,
        buckets=tuple(buckets),
    )


def _purchase_days(
    customers: np.ndarray[tuple[int], np.dtype[np.str_]],
    members: np.ndarray[tuple[int], np.dtype[np.int64]],
    times: np.ndarray[tuple[int], np.dtype[np.datetime64]],
) -> np.ndarray[tuple[int], np.dtype[np.int64]]:
    """Distinct UTC days with a purchase per calibration customer (in the summary's order)."""
    ids = customers.astype(np.int64)
    days = times.astype("datetime64[D]").astype(np.int64)
    order = np.argsort(ids, kind="stable")  # the summary sorts ids as strings
    sorted_ids = ids[order]
    found = np.minimum(np.searchsorted(sorted_ids, members), max(ids.size - 1, 0))
    known = (ids.size > 0) & (sorted_ids[found] == members) if ids.size else found < 0
    position = order[found[known]]
    pairs = np.unique(np.stack([position, days[known]]), axis=1)
    counts: np.ndarray[tuple[int], np.dtype[np.int64]] = np.bincount(
        pairs[0], minlength=ids.size
    ).astype(np.int64)
    return counts
