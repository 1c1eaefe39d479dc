"""RFM scores, segments and the monthly report: a hand-made set, edge cases, DuckDB = Spark."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from functools import partial
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from habitue.analytics import rfm
from habitue.analytics.errors import InvalidAnalyticsInput
from habitue.analytics.portable import run_spark

AS_OF = datetime(2024, 7, 1, tzinfo=UTC)


def purchases(rows: list[tuple[str | None, datetime, int, str]]) -> pa.Table:
    member_id, occurred_at, total_minor, kind = zip(*rows, strict=True) if rows else ([],) * 4
    return pa.table(
        {
            "member_id": pa.array(member_id, pa.string()),
            "occurred_at": pa.array(occurred_at, pa.timestamp("us", tz="UTC")),
            "total_minor": pa.array(total_minor, pa.int64()),
            "type": pa.array(kind, pa.string()),
        }
    )


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def hand_made() -> pa.Table:
    """Five scored members, each a different rank on every measure, and rows to ignore."""
    rows: list[tuple[str | None, datetime, int, str]] = []
    # a: 6 purchases, last one a second before midnight UTC on 30 June.
    rows += [("a", at(f"2024-0{m}-10T12:00:00"), 8_000, "purchase") for m in range(1, 6)]
    rows += [("a", at("2024-06-30T23:59:59"), 10_000, "purchase")]
    # b: 4 purchases of 4,000 and a refund of 3,000.
    rows += [("b", at(f"2024-0{m}-20T09:00:00"), 4_000, "purchase") for m in (3, 4, 5, 6)]
    rows += [("b", at("2024-06-25T09:00:00"), -3_000, "refund")]
    # c: 3 purchases, the last on 1 May.
    rows += [("c", at(f"2024-0{m}-01T08:00:00"), 3_000, "purchase") for m in (3, 4, 5)]
    # d: 2 purchases, the last on 15 January; one earlier purchase outside the window.
    rows += [("d", at("2024-01-10T10:00:00"), 1_000, "purchase")]
    rows += [("d", at("2024-01-15T10:00:00"), 1_000, "purchase")]
    rows += [("d", at("2023-06-01T10:00:00"), 50_000, "purchase")]
    # e: one purchase, refunded for more than it cost: monetary value floors at 0.
    rows += [("e", at("2023-08-01T10:00:00"), 1_000, "purchase")]
    rows += [("e", at("2023-08-05T10:00:00"), -1_500, "refund")]
    # Ignored: only outside the window, only a refund, anonymous, at as_of exactly.
    rows += [("f", at("2023-06-01T10:00:00"), 9_999, "purchase")]
    rows += [("g", at("2024-06-01T10:00:00"), -500, "refund")]
    rows += [(None, at("2024-06-01T10:00:00"), 70_000, "purchase")]
    rows += [("h", AS_OF, 70_000, "purchase")]
    return purchases(rows)


EXPECTED_HAND_MADE = [
    {"member_id": "a", "recency_days": 1, "frequency": 6, "monetary_minor": 50_000,
     "r": 5, "f": 5, "m": 5, "segment": "Champions"},
    {"member_id": "b", "recency_days": 11, "frequency": 4, "monetary_minor": 13_000,
     "r": 4, "f": 4, "m": 4, "segment": "Loyal"},
    {"member_id": "c", "recency_days": 61, "frequency": 3, "monetary_minor": 9_000,
     "r": 3, "f": 3, "m": 3, "segment": "Need attention"},
    {"member_id": "d", "recency_days": 168, "frequency": 2, "monetary_minor": 2_000,
     "r": 2, "f": 2, "m": 2, "segment": "Hibernating"},
    {"member_id": "e", "recency_days": 335, "frequency": 1, "monetary_minor": 0,
     "r": 1, "f": 1, "m": 1, "segment": "Lost"},
]  # fmt: skip


def random_purchases(seed: int, rows: int = 3_000, members: int = 400) -> pa.Table:
    rng = np.random.default_rng(seed)
    start = np.datetime64("2023-01-01T00:00:00", "us")
    offsets = rng.integers(0, 560 * 86_400, rows) * 1_000_000
    amounts = rng.integers(100, 20_000, rows)
    refund = rng.random(rows) < 0.06
    ids = [f"m{int(i):04d}" for i in rng.zipf(1.3, rows) % members]
    return pa.table(
        {
            "member_id": pa.array(ids, pa.string()),
            "occurred_at": pa.array(
                start + offsets.astype("timedelta64[us]"), pa.timestamp("us", tz="UTC")
            ),
            "total_minor": pa.array(np.where(refund, -amounts // 2, amounts), pa.int64()),
            "type": pa.array(np.where(refund, "refund", "purchase"), pa.string()),
        }
    )


def test_hand_made_scores_and_segments() -> None:
    result = rfm.compute_rfm(hand_made(), as_of=AS_OF, window_days=365)
    assert result.to_pylist() == EXPECTED_HAND_MADE
    assert result.schema.names == [
        "member_id", "recency_days", "frequency", "monetary_minor", "r", "f", "m", "segment"
    ]  # fmt: skip


def test_hand_made_segment_sizes() -> None:
    sizes = rfm.segment_sizes(hand_made(), as_of=AS_OF, window_days=365)
    assert sizes.to_pylist() == [
        {"segment": "Champions", "members": 1, "monetary_minor": 50_000},
        {"segment": "Hibernating", "members": 1, "monetary_minor": 2_000},
        {"segment": "Lost", "members": 1, "monetary_minor": 0},
        {"segment": "Loyal", "members": 1, "monetary_minor": 13_000},
        {"segment": "Need attention", "members": 1, "monetary_minor": 9_000},
    ]


def test_ties_share_the_middle_score() -> None:
    # Four members who all bought once, the same day, the same amount: every measure is tied.
    rows: list[tuple[str | None, datetime, int, str]] = [
        (m, at("2024-06-01T10:00:00"), 500, "purchase") for m in "wxyz"
    ]
    result = rfm.compute_rfm(purchases(rows), as_of=AS_OF).to_pylist()
    assert [(row["r"], row["f"], row["m"], row["segment"]) for row in result] == [
        (3, 3, 3, "Need attention")
    ] * 4
    # Two ties at the bottom of frequency (ranks 1-2 of 5) score 2; a tie on ranks 3-4 scores 4.
    rows = [(m, at("2024-06-01T10:00:00"), 500, "purchase") for m in "abcde"]
    rows += [(m, at("2024-06-02T10:00:00"), 500, "purchase") for m in "cdee"]
    scores = {row["member_id"]: row["f"] for row in rfm.compute_rfm(purchases(rows), as_of=AS_OF)
              .to_pylist()}  # fmt: skip
    assert scores == {"a": 2, "b": 2, "c": 4, "d": 4, "e": 5}


def test_empty_and_single_member_programs() -> None:
    assert rfm.compute_rfm(purchases([]), as_of=AS_OF).num_rows == 0
    assert rfm.segment_sizes(purchases([]), as_of=AS_OF).num_rows == 0
    assert rfm.monthly_report(purchases([])).num_rows == 0
    one = rfm.compute_rfm(purchases([("solo", at("2024-06-30T10:00:00"), 1, "purchase")]),
                          as_of=AS_OF)  # fmt: skip
    assert one.to_pylist() == [
        {"member_id": "solo", "recency_days": 1, "frequency": 1, "monetary_minor": 1,
         "r": 3, "f": 3, "m": 3, "segment": "Need attention"}
    ]  # fmt: skip


def test_window_and_as_of_are_configurable() -> None:
    # A 200-day window keeps a, b, c, d (d's last purchase 168 days ago) and drops e.
    result = rfm.compute_rfm(hand_made(), as_of=AS_OF, window_days=200).to_pylist()
    assert [row["member_id"] for row in result] == ["a", "b", "c", "d"]
    # Without a window, d's purchase of June 2023 counts too.
    everything = {
        row["member_id"]: row for row in rfm.compute_rfm(hand_made(), as_of=AS_OF,
                                                         window_days=None).to_pylist()
    }  # fmt: skip
    assert everything["d"]["frequency"] == 3
    assert everything["d"]["monetary_minor"] == 52_000
    assert everything["f"]["recency_days"] == 396
    with pytest.raises(InvalidAnalyticsInput):
        rfm.compute_rfm(hand_made(), as_of=AS_OF, window_days=0)
    with pytest.raises(InvalidAnalyticsInput):
        rfm.compute_rfm(hand_made(), as_of=datetime(2024, 7, 1), window_days=30)  # noqa: DTZ001


def test_sql_segments_follow_the_documented_grid() -> None:
    names = {rfm.segment_of(r, f, m) for r, f, m in itertools.product(range(1, 6), repeat=3)}
    assert names == set(rfm.SEGMENTS)
    result = rfm.compute_rfm(random_purchases(7), as_of=at("2024-07-01T00:00:00"))
    for row in result.to_pylist():
        assert row["segment"] == rfm.segment_of(row["r"], row["f"], row["m"])
    with pytest.raises(InvalidAnalyticsInput):
        rfm.segment_of(0, 1, 1)


def test_hand_made_monthly_report() -> None:
    report = rfm.monthly_report(hand_made(), start=at("2024-04-01T00:00:00"),
                                end=AS_OF)  # fmt: skip
    assert report.to_pylist() == [
        {"month": "2024-04", "active_members": 3, "purchases": 3,
         "gross_revenue_minor": 15_000, "refunds_minor": 0, "revenue_minor": 15_000},
        {"month": "2024-05", "active_members": 3, "purchases": 3,
         "gross_revenue_minor": 15_000, "refunds_minor": 0, "revenue_minor": 15_000},
        {"month": "2024-06", "active_members": 2, "purchases": 2,
         "gross_revenue_minor": 14_000, "refunds_minor": 3_500, "revenue_minor": 10_500},
    ]  # fmt: skip


def test_segment_sizes_over_time() -> None:
    dates = [at("2024-01-01T00:00:00"), AS_OF]
    table = rfm.segment_sizes_over_time(hand_made(), as_of_dates=dates, window_days=365)
    by_date: dict[Any, int] = {}
    for row in table.to_pylist():
        by_date[row["as_of"]] = by_date.get(row["as_of"], 0) + row["members"]
    # On 1 January: d and f (June 2023 purchases) and e; on 1 July: a to e.
    assert by_date == {dates[0]: 3, dates[1]: 5}
    assert rfm.segment_sizes_over_time(hand_made(), as_of_dates=[]).num_rows == 0


@pytest.mark.spark
def test_duckdb_and_spark_agree_row_for_row(spark: Any) -> None:
    on_spark = partial(run_spark, spark=spark)
    for table, as_of in ((hand_made(), AS_OF), (random_purchases(11), at("2024-05-15T00:00:00"))):
        for compute in (rfm.compute_rfm, rfm.segment_sizes):
            duck = compute(table, as_of=as_of, window_days=365)
            sparked = compute(table, as_of=as_of, window_days=365, backend=on_spark)
            assert duck.num_rows > 0
            assert sparked.to_pylist() == duck.to_pylist()
            if compute is rfm.compute_rfm and as_of == AS_OF:
                assert sparked.to_pylist() == EXPECTED_HAND_MADE
        duck_report = rfm.monthly_report(table)
        assert rfm.monthly_report(table, backend=on_spark).to_pylist() == duck_report.to_pylist()
    # An empty program: no rows on either engine, no error.
    assert rfm.compute_rfm(purchases([]), as_of=AS_OF, backend=on_spark).num_rows == 0
