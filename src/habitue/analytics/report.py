"""The monthly program report: members, points issued, redeemed and expired, liability, revenue.

Per UTC month with any activity (a point movement counts in the month of its transaction's
effective time, when what it records happened: imported or backdated history in its own
months): active members (who purchased), purchases, revenue from
members (net of refunds), points issued (credited by earn, net of take-backs), redeemed (net of
returns), expired, adjusted; the outstanding liability at the month's end (the sum of members'
points); the month's redemption rate (redeemed / issued) and the breakage to date (expired /
issued, cumulative); the members whose points moved in the month (earned, spent, expired or
adjusted: the group the points figures describe). A ratio with nothing to divide by is null,
never NaN. The report renders as JSON rows, CSV or Parquet.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import Connection

from habitue.analytics import rfm, snapshot
from habitue.analytics.errors import InvalidAnalyticsInput
from habitue.analytics.portable import run_duckdb
from habitue.money import format_minor
from habitue.programs.service import ProgramInfo

Format = Literal["json", "csv", "parquet"]

POSTINGS = "postings"

LEDGER_QUERY = f"""
SELECT
    STRFTIME(effective_at, '%Y-%m') AS month,
    CAST(SUM(CASE WHEN account_kind = 'issued' THEN -amount ELSE 0 END) AS BIGINT)
        AS points_issued,
    CAST(SUM(CASE WHEN account_kind = 'redeemed' THEN amount ELSE 0 END) AS BIGINT)
        AS points_redeemed,
    CAST(SUM(CASE WHEN account_kind = 'expired' THEN amount ELSE 0 END) AS BIGINT)
        AS points_expired,
    CAST(SUM(CASE WHEN account_kind = 'adjusted' THEN -amount ELSE 0 END) AS BIGINT)
        AS points_adjusted,
    CAST(SUM(CASE WHEN member_id IS NOT NULL THEN amount ELSE 0 END) AS BIGINT)
        AS liability_change,
    CAST(COUNT(DISTINCT member_id) AS BIGINT) AS members_with_points
FROM {POSTINGS}
GROUP BY STRFTIME(effective_at, '%Y-%m')
ORDER BY month
"""  # noqa: S608 - a constant query


REDEMPTIONS = "redemptions"

TOP_REWARDS_QUERY = f"""
WITH per_reward AS (
    SELECT
        STRFTIME(created_at, '%Y-%m') AS month,
        reward,
        CAST(SUM(quantity) AS BIGINT) AS redemptions,
        CAST(SUM(points) AS BIGINT) AS points,
        CAST(COUNT(DISTINCT member_id) AS BIGINT) AS members
    FROM {REDEMPTIONS}
    GROUP BY STRFTIME(created_at, '%Y-%m'), reward
)
SELECT month, reward, redemptions, points, members
FROM (
    SELECT *, ROW_NUMBER() OVER (PARTITION BY month ORDER BY redemptions DESC, reward) AS place
    FROM per_reward
) AS ranked
WHERE place <= 5
ORDER BY month, place
"""  # noqa: S608 - a constant query


def top_rewards(redemptions: pa.Table) -> list[dict[str, Any]]:
    """The five most redeemed rewards of each UTC month, with their redemptions, points and
    the members who redeemed them."""
    rows = run_duckdb(TOP_REWARDS_QUERY, {REDEMPTIONS: redemptions}).to_pylist()
    return [
        {
            "month": r["month"],
            "reward": r["reward"],
            "redemptions": int(r["redemptions"]),
            "points": int(r["points"]),
            "members": int(r["members"]),
        }
        for r in rows
    ]


def _ratio(numerator: int, denominator: int) -> float | None:
    return round(numerator / denominator, 6) if denominator > 0 else None


def monthly_rows(
    events: pa.Table,
    postings: pa.Table,
    *,
    currency_exponent: int,
    start: datetime | None = None,
    end: datetime | None = None,
) -> list[dict[str, Any]]:
    """One row per month with activity, oldest first; money as decimal strings."""
    revenue = {r["month"]: r for r in rfm.monthly_report(events).to_pylist()}
    ledger = {r["month"]: r for r in run_duckdb(LEDGER_QUERY, {POSTINGS: postings}).to_pylist()}
    months = sorted(set(revenue) | set(ledger))
    first = start.strftime("%Y-%m") if start is not None else None
    last = end.strftime("%Y-%m") if end is not None else None
    rows: list[dict[str, Any]] = []
    liability = issued_to_date = expired_to_date = 0
    for month in months:
        money = revenue.get(month, {})
        points = ledger.get(month, {})
        issued = int(points.get("points_issued") or 0)
        redeemed = int(points.get("points_redeemed") or 0)
        expired = int(points.get("points_expired") or 0)
        liability += int(points.get("liability_change") or 0)
        issued_to_date += issued
        expired_to_date += expired
        if (first is not None and month < first) or (last is not None and month >= last):
            continue
        rows.append(
            {
                "month": month,
                "active_members": int(money.get("active_members") or 0),
                "purchases": int(money.get("purchases") or 0),
                "revenue": format_minor(int(money.get("revenue_minor") or 0), currency_exponent),
                "refunds": format_minor(int(money.get("refunds_minor") or 0), currency_exponent),
                "points_issued": issued,
                "points_redeemed": redeemed,
                "points_expired": expired,
                "points_adjusted": int(points.get("points_adjusted") or 0),
                "outstanding_liability": liability,
                "redemption_rate": _ratio(redeemed, issued),
                "breakage_to_date": _ratio(expired_to_date, issued_to_date),
                "members_with_points": int(points.get("members_with_points") or 0),
            }
        )
    return rows


COLUMNS = (
    "month",
    "active_members",
    "purchases",
    "revenue",
    "refunds",
    "points_issued",
    "points_redeemed",
    "points_expired",
    "points_adjusted",
    "outstanding_liability",
    "redemption_rate",
    "breakage_to_date",
    "members_with_points",
)

_PARQUET_SCHEMA = pa.schema(
    [
        ("month", pa.string()),
        ("active_members", pa.int64()),
        ("purchases", pa.int64()),
        ("revenue", pa.string()),
        ("refunds", pa.string()),
        ("points_issued", pa.int64()),
        ("points_redeemed", pa.int64()),
        ("points_expired", pa.int64()),
        ("points_adjusted", pa.int64()),
        ("outstanding_liability", pa.int64()),
        ("redemption_rate", pa.float64()),
        ("breakage_to_date", pa.float64()),
        ("members_with_points", pa.int64()),
    ]
)


def render(
    rows: list[dict[str, Any]], fmt: str, *, rewards: list[dict[str, Any]] | None = None
) -> tuple[bytes, str]:
    """The rows as bytes of the format, with the media type (top rewards in JSON only)."""
    if fmt == "json":
        import orjson

        return orjson.dumps({"months": rows, "top_rewards": rewards or []}), "application/json"
    if fmt == "csv":
        buffer = io.StringIO()
        # `suppressed` (a key without admin: habitue.privacy.release) shows as empty cells.
        writer = csv.DictWriter(
            buffer, fieldnames=COLUMNS, lineterminator="\n", extrasaction="ignore"
        )
        writer.writeheader()
        writer.writerows(rows)
        return buffer.getvalue().encode(), "text/csv; charset=utf-8"
    if fmt == "parquet":
        table = pa.Table.from_pylist(rows, schema=_PARQUET_SCHEMA)
        sink = io.BytesIO()
        pq.write_table(table, sink)
        return sink.getvalue(), "application/vnd.apache.parquet"
    raise InvalidAnalyticsInput(f"format must be json, csv or parquet, not {fmt!r}")


def program_report(
    conn: Connection,
    program: ProgramInfo,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    stream: bool = False,
    as_of: datetime | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The program's monthly rows and top rewards per month, read from the store.

    With ``as_of``, the months up to the one holding the last instant before it (the report of
    a history as it stood then); without, every month with activity."""
    if as_of is not None:
        month = as_of - timedelta(microseconds=1)
        following = month.year * 12 + month.month  # the index of the next month
        cut = datetime(following // 12, following % 12 + 1, 1, tzinfo=UTC)
        end = cut if end is None else min(end, cut)
    rows = monthly_rows(
        snapshot.events(conn, program.id, stream=stream),
        snapshot.postings(conn, program.id, stream=stream),
        currency_exponent=program.currency_exponent,
        start=start,
        end=end,
    )
    months = {r["month"] for r in rows}
    rewards = [
        r
        for r in top_rewards(snapshot.redemptions(conn, program.id, stream=stream))
        if r["month"] in months
    ]
    return rows, rewards
