"""RFM scoring, named segments, segment sizes and the monthly program report, as portable SQL.

Input is a table of purchases with columns ``member_id`` (string), ``occurred_at`` (timestamp,
UTC), ``total_minor`` (int64, negative for refunds) and ``type`` ('purchase' or 'refund').

Scores. Over the n members with at least one purchase in the window ``[as_of - window_days,
as_of)``, each measure is ranked; a value shared by ``ties`` members occupies the ranks
``rank .. rank + ties - 1`` (SQL ``RANK``), and its score is the quintile of the middle of that
span: ``1 + floor(5 * (rank - 1 + ties / 2) / n)``, computed in integers. Ties therefore always
share a score, a measure that is the same for everyone scores 3 (not 1 or 5), and the result is
the same on every engine. Recency is ranked from the oldest last purchase (score 1) to the most
recent (score 5); frequency and monetary value from the smallest to the largest.

- ``recency_days``: whole UTC calendar days from the last purchase to ``as_of``;
- ``frequency``: number of purchases in the window;
- ``monetary_minor``: purchases minus refunds in the window, never below 0.

Segments come from the usual R × F grid, with F replaced by FM, the mean of F and M rounded half
up: R 5 & FM 4–5 Champions; R 3–4 & FM 4–5 Loyal; R 4–5 & FM 2–3 Potential loyalists; R 5 & FM 1
New; R 4 & FM 1 Promising; R 3 & FM 3 Need attention; R 3 & FM 1–2 About to sleep; R 1–2 & FM 3–4
At risk; R 1–2 & FM 5 Can't lose them; R 1–2 & FM 1–2 Hibernating, except R 1 & FM 1 Lost.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import pyarrow as pa

from habitue.analytics.errors import InvalidAnalyticsInput
from habitue.analytics.portable import Backend, date_literal, run_duckdb, timestamp_literal

SEGMENTS: tuple[str, ...] = (
    "Champions",
    "Loyal",
    "Potential loyalists",
    "New",
    "Promising",
    "Need attention",
    "About to sleep",
    "At risk",
    "Can't lose them",
    "Hibernating",
    "Lost",
)

PURCHASES = "purchases"
RFM = "rfm"

_SEGMENT_CASE = """
        CASE
            WHEN r = 5 AND fm >= 4 THEN 'Champions'
            WHEN r >= 3 AND fm >= 4 THEN 'Loyal'
            WHEN r >= 4 AND fm >= 2 THEN 'Potential loyalists'
            WHEN r = 5 THEN 'New'
            WHEN r = 4 THEN 'Promising'
            WHEN r = 3 AND fm = 3 THEN 'Need attention'
            WHEN r = 3 THEN 'About to sleep'
            WHEN fm = 5 THEN 'Can''t lose them'
            WHEN fm >= 3 THEN 'At risk'
            WHEN r = 1 AND fm = 1 THEN 'Lost'
            ELSE 'Hibernating'
        END"""


def segment_of(r: int, f: int, m: int) -> str:
    """The named segment of one member's scores, as the SQL computes it (scores in 1..5)."""
    if not all(1 <= s <= 5 for s in (r, f, m)):
        raise InvalidAnalyticsInput("RFM scores are between 1 and 5")
    fm = (f + m + 1) // 2
    if r == 5 and fm >= 4:
        return "Champions"
    if r >= 3 and fm >= 4:
        return "Loyal"
    if r >= 4 and fm >= 2:
        return "Potential loyalists"
    if r == 5:
        return "New"
    if r == 4:
        return "Promising"
    if r == 3:
        return "Need attention" if fm == 3 else "About to sleep"
    if fm == 5:
        return "Can't lose them"
    if fm >= 3:
        return "At risk"
    return "Lost" if r == 1 and fm == 1 else "Hibernating"


def _window(as_of: datetime, window_days: int | None) -> str:
    if window_days is None:
        return f"occurred_at < {timestamp_literal(as_of)}"
    if window_days < 1:
        raise InvalidAnalyticsInput("window_days must be at least 1")
    start = as_of - timedelta(days=window_days)
    return f"occurred_at >= {timestamp_literal(start)} AND occurred_at < {timestamp_literal(as_of)}"


def rfm_query(*, as_of: datetime, window_days: int | None = 365, source: str = PURCHASES) -> str:
    """Portable SQL giving one row per member with a purchase in the window, ordered by id."""
    return f"""
WITH per_member AS (
    SELECT
        member_id,
        MAX(occurred_at) FILTER (WHERE type = 'purchase') AS last_purchase_at,
        COUNT(*) FILTER (WHERE type = 'purchase') AS purchases,
        SUM(total_minor) AS net_minor
    FROM {source}
    WHERE member_id IS NOT NULL AND {_window(as_of, window_days)}
    GROUP BY member_id
),
measured AS (
    SELECT
        member_id,
        CAST(DATE_DIFF('day', CAST(last_purchase_at AS DATE), {date_literal(as_of)}) AS BIGINT)
            AS recency_days,
        CAST(purchases AS BIGINT) AS frequency,
        CAST(GREATEST(net_minor, 0) AS BIGINT) AS monetary_minor
    FROM per_member
    WHERE purchases > 0
),
ranked AS (
    SELECT
        member_id, recency_days, frequency, monetary_minor,
        COUNT(*) OVER () AS n,
        RANK() OVER (ORDER BY recency_days DESC) AS r_rank,
        COUNT(*) OVER (PARTITION BY recency_days) AS r_ties,
        RANK() OVER (ORDER BY frequency) AS f_rank,
        COUNT(*) OVER (PARTITION BY frequency) AS f_ties,
        RANK() OVER (ORDER BY monetary_minor) AS m_rank,
        COUNT(*) OVER (PARTITION BY monetary_minor) AS m_ties
    FROM measured
),
scored AS (
    SELECT
        member_id, recency_days, frequency, monetary_minor,
        CAST(1 + (5 * (2 * r_rank + r_ties - 2)) // (2 * n) AS INTEGER) AS r,
        CAST(1 + (5 * (2 * f_rank + f_ties - 2)) // (2 * n) AS INTEGER) AS f,
        CAST(1 + (5 * (2 * m_rank + m_ties - 2)) // (2 * n) AS INTEGER) AS m
    FROM ranked
),
with_fm AS (
    SELECT *, CAST((f + m + 1) // 2 AS INTEGER) AS fm FROM scored
)
SELECT
    member_id, recency_days, frequency, monetary_minor, r, f, m,{_SEGMENT_CASE} AS segment
FROM with_fm
ORDER BY member_id
"""  # noqa: S608 - literals are built from datetimes and ints, never from user text


def segment_sizes_query(*, as_of: datetime, window_days: int | None = 365) -> str:
    """Portable SQL giving, per segment present, its members and their monetary value."""
    inner = rfm_query(as_of=as_of, window_days=window_days).replace("ORDER BY member_id", "")
    return f"""
WITH scores AS ({inner})
SELECT
    segment,
    CAST(COUNT(*) AS BIGINT) AS members,
    CAST(SUM(monetary_minor) AS BIGINT) AS monetary_minor
FROM scores
GROUP BY segment
ORDER BY segment
"""  # noqa: S608 - built from our own query text


def monthly_report_query(
    *, start: datetime | None = None, end: datetime | None = None, source: str = PURCHASES
) -> str:
    """Portable SQL giving, per UTC month, active members, purchases and revenue from members."""
    conditions = ["member_id IS NOT NULL"]
    if start is not None:
        conditions.append(f"occurred_at >= {timestamp_literal(start)}")
    if end is not None:
        conditions.append(f"occurred_at < {timestamp_literal(end)}")
    return f"""
SELECT
    STRFTIME(occurred_at, '%Y-%m') AS month,
    CAST(COUNT(DISTINCT CASE WHEN type = 'purchase' THEN member_id END) AS BIGINT)
        AS active_members,
    CAST(SUM(CASE WHEN type = 'purchase' THEN 1 ELSE 0 END) AS BIGINT) AS purchases,
    CAST(SUM(CASE WHEN type = 'purchase' THEN total_minor ELSE 0 END) AS BIGINT)
        AS gross_revenue_minor,
    CAST(SUM(CASE WHEN type = 'refund' THEN -total_minor ELSE 0 END) AS BIGINT) AS refunds_minor,
    CAST(SUM(total_minor) AS BIGINT) AS revenue_minor
FROM {source}
WHERE {" AND ".join(conditions)}
GROUP BY STRFTIME(occurred_at, '%Y-%m')
ORDER BY month
"""  # noqa: S608 - literals are built from datetimes, never from user text


def compute_rfm(
    purchases: Any,
    *,
    as_of: datetime,
    window_days: int | None = 365,
    backend: Backend = run_duckdb,
) -> pa.Table:
    """RFM scores and segment per member with a purchase in the window, ordered by member_id."""
    return backend(rfm_query(as_of=as_of, window_days=window_days), {PURCHASES: purchases})


def segment_sizes(
    purchases: Any,
    *,
    as_of: datetime,
    window_days: int | None = 365,
    backend: Backend = run_duckdb,
) -> pa.Table:
    """Members and monetary value per segment at as_of, ordered by segment name."""
    query = segment_sizes_query(as_of=as_of, window_days=window_days)
    return backend(query, {PURCHASES: purchases})


def segment_sizes_over_time(
    purchases: Any,
    *,
    as_of_dates: Sequence[datetime],
    window_days: int | None = 365,
    backend: Backend = run_duckdb,
) -> pa.Table:
    """Segment sizes at each date, with an ``as_of`` column, in the order of the dates given."""
    parts = []
    for as_of in as_of_dates:
        sizes = segment_sizes(purchases, as_of=as_of, window_days=window_days, backend=backend)
        column = pa.array([as_of] * sizes.num_rows, type=pa.timestamp("us", tz="UTC"))
        parts.append(sizes.add_column(0, "as_of", column))
    if not parts:
        return pa.table(
            {
                "as_of": pa.array([], pa.timestamp("us", tz="UTC")),
                "segment": pa.array([], pa.string()),
                "members": pa.array([], pa.int64()),
                "monetary_minor": pa.array([], pa.int64()),
            }
        )
    return pa.concat_tables(parts, promote_options="permissive")


def monthly_report(
    purchases: Any,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    backend: Backend = run_duckdb,
) -> pa.Table:
    """Active members, purchases and revenue from members per UTC month, ordered by month."""
    return backend(monthly_report_query(start=start, end=end), {PURCHASES: purchases})
