"""The recommendation protocol: baselines pinned on a small fixed dataset, exact small cases."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pytest

from habitue.analytics import recommend_eval
from habitue.analytics.errors import InvalidAnalyticsInput

DATA = Path(__file__).parent / "data"
SPLIT = datetime(2026, 4, 1, tzinfo=UTC)
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def small_set() -> pa.Table:
    return pacsv.read_csv(
        DATA / "baskets_small.csv",
        convert_options=pacsv.ConvertOptions(
            column_types={
                "member_id": pa.string(),
                "item_id": pa.string(),
                "occurred_at": pa.timestamp("us", "UTC"),
            }
        ),
    )


@pytest.fixture(scope="module")
def result() -> recommend_eval.ProtocolResult:
    return recommend_eval.evaluate_protocol(small_set(), split_at=SPLIT, k=10)


def rounded(score: recommend_eval.MethodScore) -> tuple[float, float, float, float]:
    return (
        round(score.precision, 4),
        round(score.recall, 4),
        round(score.ndcg, 4),
        round(score.hit_rate, 4),
    )


def test_the_split_and_the_members_evaluated(result: recommend_eval.ProtocolResult) -> None:
    assert (result.train_lines, result.test_lines) == (14_896, 4_981)
    assert result.task("next basket").members == 309
    assert result.task("new to you").members == 298


def test_baselines_are_pinned(result: recommend_eval.ProtocolResult) -> None:
    """Precision, recall, NDCG at 10 and hit rate of each baseline on each task (item-item's
    neighbours tied at the cut are the lower item ids: the same on every NumPy)."""
    nb = result.task("next basket").by_method()
    assert rounded(nb["popularity"]) == (0.1417, 0.2061, 0.2095, 0.7896)
    assert rounded(nb["item-item"]) == (0.2042, 0.2828, 0.2492, 0.8576)
    assert rounded(nb["repurchase"]) == (0.3725, 0.5055, 0.5785, 0.9935)
    new = result.task("new to you").by_method()
    assert rounded(new["popularity"]) == (0.057, 0.1417, 0.1204, 0.4195)
    assert rounded(new["item-item"]) == (0.0463, 0.1053, 0.091, 0.3658)
    # Repurchase cannot recommend anything new: it falls back to popularity entirely.
    assert rounded(new["repurchase"]) == rounded(new["popularity"])


def test_the_model_on_the_small_set(result: recommend_eval.ProtocolResult) -> None:
    """On 480 members the model (own counts smoothed by a shrunk item-item score and
    popularity, its blend chosen per task on the last third of the training period) beats
    every baseline on both tasks, in NDCG@10 and precision@10."""
    nb = result.task("next basket").by_method()
    assert rounded(nb["model"]) == (0.3806, 0.5179, 0.5846, 0.9871)
    new = result.task("new to you").by_method()
    assert rounded(new["model"]) == (0.0768, 0.1753, 0.1473, 0.5235)
    for baseline in ("popularity", "item-item", "repurchase"):
        assert nb["model"].ndcg > nb[baseline].ndcg
        assert nb["model"].precision > nb[baseline].precision
        assert new["model"].ndcg > new[baseline].ndcg
        assert new["model"].precision > new[baseline].precision


def test_the_blends_are_chosen_on_the_training_period(
    result: recommend_eval.ProtocolResult,
) -> None:
    """The validation split is the last third of the training period (2026-01-01 … 04-01):
    the blends chosen there, per task, from the grids."""
    validation = result.validation
    assert validation is not None and validation.split_at is not None
    assert validation.split_at.date().isoformat() == "2026-03-02"
    assert validation.members == 297
    assert validation.blends == {
        "next basket": recommend_eval.Blend(1.0, 0.5, "log"),
        "new to you": recommend_eval.Blend(1.0, 0.01, "binary"),
    }
    assert validation.blends["next basket"] in recommend_eval.NEXT_BASKET_GRID
    assert validation.blends["new to you"] in recommend_eval.NEW_TO_YOU_GRID


def test_the_test_period_does_not_choose_the_blends() -> None:
    """Replacing every test-period line by other purchases leaves the chosen blends (and the
    validation's scores) unchanged: only the training period chooses them."""
    table = small_set()
    split = pa.scalar(SPLIT, pa.timestamp("us", "UTC"))
    before = table.filter(pc.less(table.column("occurred_at"), split))
    after = table.filter(pc.greater_equal(table.column("occurred_at"), split))
    shuffled = after.set_column(
        1, "item_id", pa.array(list(reversed(after.column("item_id").to_pylist())))
    )
    one = recommend_eval.evaluate_protocol(pa.concat_tables([before, after]), split_at=SPLIT)
    two = recommend_eval.evaluate_protocol(pa.concat_tables([before, shuffled]), split_at=SPLIT)
    assert one.validation == two.validation
    assert one.task("next basket").by_method() != two.task("next basket").by_method()


def test_fixed_weights_give_the_earlier_blend(result: recommend_eval.ProtocolResult) -> None:
    """Both weights given: no validation, that blend for both tasks (here the blend before
    the validation, 1.0 × item-item + 0.5 × popularity, with the shrunk similarity)."""
    table = small_set()
    fixed = recommend_eval.evaluate_protocol(
        table, split_at=SPLIT, item_weight=1.0, popularity_weight=0.5
    )
    assert fixed.validation is not None and fixed.validation.split_at is None
    for task in recommend_eval.TASKS:  # the baselines do not depend on the model's blend
        got, want = fixed.task(task).by_method(), result.task(task).by_method()
        for baseline in ("popularity", "item-item", "repurchase"):
            assert got[baseline] == want[baseline]


def _ndcg(ranked: dict[str, list[str]], relevant: dict[str, set[str]], k: int) -> float:
    total = 0.0
    for member, truth in relevant.items():
        gains = [1.0 / math.log2(r + 2) for r, i in enumerate(ranked[member]) if i in truth]
        ideal = sum(1.0 / math.log2(r + 2) for r in range(min(k, len(truth))))
        total += sum(gains) / ideal
    return total / len(relevant)


def test_model_top_k_is_what_the_protocol_scores(result: recommend_eval.ProtocolResult) -> None:
    """The model's lists of `model_top_k`, scored by hand, give the protocol's NDCG@10."""
    table = small_set()
    ranked = recommend_eval.model_top_k(table, split_at=SPLIT, k=10)
    bought: dict[str, set[str]] = {}
    later: dict[str, set[str]] = {}
    for row in table.to_pylist():
        into = bought if row["occurred_at"] < SPLIT else later
        into.setdefault(row["member_id"], set()).add(row["item_id"])
    next_basket = {m: items for m, items in later.items() if m in bought}
    new = {m: items - bought[m] for m, items in next_basket.items() if items - bought[m]}
    assert set(ranked["new to you"]) == set(ranked["next basket"]) == set(bought)
    assert len(next_basket) == result.task("next basket").members
    models = {t: result.task(t).by_method()["model"].ndcg for t in recommend_eval.TASKS}
    assert _ndcg(ranked["next basket"], next_basket, 10) == pytest.approx(models["next basket"])
    assert _ndcg(ranked["new to you"], new, 10) == pytest.approx(models["new to you"])


def test_the_served_model_is_the_evaluated_model(result: recommend_eval.ProtocolResult) -> None:
    """What `recommend_top_k` serves a member (the API's `strategy=blend`) is the evaluated
    model's top k for them, on both tasks: next basket (nothing excluded) and new to you
    (everything they bought excluded), with the blends the protocol chose (and their first
    three for k = 3)."""
    k = 10
    table = small_set()
    served = recommend_eval.fit_served(table, until=SPLIT, k=k)
    assert result.validation is not None
    assert served.blends == result.validation.blends
    assert served.validation.split_at == result.validation.split_at
    ranked = recommend_eval.model_top_k(recommend_eval.in_time_order(table), split_at=SPLIT, k=k)
    history: dict[str, list[str]] = {}
    for row in table.to_pylist():
        if row["occurred_at"] < SPLIT:
            history.setdefault(row["member_id"], []).append(row["item_id"])
    assert set(ranked["next basket"]) == set(history)
    assert set(ranked["new to you"]) == set(history)
    for member, items in ranked["next basket"].items():
        assert len(items) == k
        assert recommend_eval.recommend_top_k(served, history[member], k=k) == items
        assert recommend_eval.recommend_top_k(served, history[member], k=3) == items[:3]
    for member, items in ranked["new to you"].items():
        assert not set(items) & set(history[member])
        got = recommend_eval.recommend_top_k(
            served, history[member], k=k, exclude=history[member]
        )
        assert got == items
        three = recommend_eval.recommend_top_k(
            served, history[member], k=3, exclude=history[member]
        )
        assert three == items[:3]
    # The blends differ between the tasks, so the served lists do too.
    assert served.blends["next basket"] != served.blends["new to you"]


def test_served_model_edges() -> None:
    """Recent purchases excluded: still the next basket, without them; unknown items and an
    empty history; k out of range."""
    served = recommend_eval.fit_served(small_set(), until=SPLIT)
    assert recommend_eval.served_task(["i1", "i2"], ["i1"]) == "next basket"
    assert recommend_eval.served_task(["i1", "i2"], ["i2", "i1", "i3"]) == "new to you"
    assert recommend_eval.served_task([], []) == "next basket"
    history = ["i116", "i116", "i926", "i3"]
    full = recommend_eval.recommend_top_k(served, history, k=10)
    assert full[0] == "i116"
    without = recommend_eval.recommend_top_k(served, history, k=9, exclude=["i116"])
    assert without == [i for i in full if i != "i116"][:9]
    assert recommend_eval.recommend_top_k(served, ["nope"], k=5) == [
        served.items[i] for i in np.argsort(-served.popularity, kind="stable")[:5]
    ]
    with pytest.raises(InvalidAnalyticsInput):
        recommend_eval.recommend_top_k(served, history, k=0)
    empty = recommend_eval.fit_served(lines([]))
    assert recommend_eval.recommend_top_k(empty, ["x"], k=3) == []


def lines(rows: list[tuple[str, str, int]]) -> pa.Table:
    return pa.table(
        {
            "member_id": [r[0] for r in rows],
            "item_id": [r[1] for r in rows],
            "occurred_at": pa.array(
                [T0 + timedelta(days=r[2]) for r in rows], pa.timestamp("us", "UTC")
            ),
        }
    )


def test_exact_small_case() -> None:
    """a buys milk thrice and bread once, then milk and jam; b and c show bread goes with jam."""
    table = lines(
        [
            ("a", "milk", 1), ("a", "milk", 2), ("a", "milk", 3), ("a", "bread", 3),
            ("b", "bread", 1), ("b", "jam", 1), ("c", "bread", 2), ("c", "jam", 2),
            ("c", "tea", 2), ("d", "tea", 4),
            ("a", "milk", 20), ("a", "jam", 21),
        ]
    )  # fmt: skip
    result = recommend_eval.evaluate_protocol(table, split_at=T0 + timedelta(days=10), k=2)
    assert (result.train_lines, result.test_lines) == (10, 2)
    nb = result.task("next basket").by_method()
    assert result.task("next basket").members == 1
    # Repurchase: milk, bread → 1 hit of 2; NDCG = 1 / (1 + 1/log2(3)).
    assert nb["repurchase"].precision == 0.5
    assert nb["repurchase"].ndcg == pytest.approx(1 / (1 + 1 / 1.5849625007211563))
    # Popularity (buyers): bread 3, then jam and tea 2 (ties in order of first appearance):
    # bread, jam → jam is a hit at rank 2.
    assert nb["popularity"].precision == 0.5
    assert nb["popularity"].ndcg == pytest.approx(
        (1 / 1.5849625007211563) / (1 + 1 / 1.5849625007211563)
    )
    new = result.task("new to you").by_method()
    # New to a: jam. Item-item from milk and bread ranks jam first (bread ~ jam).
    assert new["item-item"].precision == 0.5
    assert new["item-item"].ndcg == 1.0
    assert new["model"].ndcg == 1.0
    # Without a's own items popularity gives jam then tea (jam first on the tie).
    assert new["popularity"].ndcg == 1.0
    # Repurchase has nothing new to offer a, and falls back to the same popular items.
    assert new["repurchase"] == recommend_eval.MethodScore("repurchase", 0.5, 1.0, 1.0, 1.0)


def test_bad_input() -> None:
    with pytest.raises(InvalidAnalyticsInput):
        recommend_eval.evaluate_protocol(lines([]), split_at=datetime(2026, 1, 1), k=10)
    with pytest.raises(InvalidAnalyticsInput):
        recommend_eval.evaluate_protocol(lines([]), split_at=SPLIT, k=0)
    empty = recommend_eval.evaluate_protocol(lines([]), split_at=SPLIT, k=10)
    assert empty.task("next basket").members == 0


def test_nobody_with_new_items() -> None:
    """Members who only buy again what they bought: the new-to-you task has nobody to score."""
    table = lines([("a", "milk", 1), ("b", "tea", 1), ("a", "milk", 20), ("b", "tea", 20)])
    result = recommend_eval.evaluate_protocol(table, split_at=T0 + timedelta(days=10))
    assert result.task("next basket").members == 2
    assert result.task("next basket").by_method()["repurchase"].hit_rate == 1.0
    assert result.task("new to you").members == 0


def test_the_demo_cafes_customers_have_tastes(tmp_path: Path) -> None:
    """The demo's regulars reorder their favourites (habitue.demo): the protocol measures
    something there — repurchase and the model far ahead of popularity on the next basket, and
    the model ahead of all three baselines on both tasks."""
    import random

    from habitue import demo

    path = tmp_path / "demo.csv"
    end = datetime(2026, 12, 1, tzinfo=UTC)
    demo._purchases_csv(path, 600, 8_000, random.Random(7), end)  # noqa: SLF001
    raw = pacsv.read_csv(path)
    table = pa.table(
        {
            "member_id": raw.column("member_external_id"),
            "item_id": raw.column("sku"),
            "occurred_at": raw.column("occurred_at").cast(pa.timestamp("us", "UTC")),
        }
    )
    result = recommend_eval.evaluate_protocol(table, split_at=end - timedelta(days=91))
    nb = result.task("next basket").by_method()
    assert nb["repurchase"].ndcg > nb["popularity"].ndcg + 0.1
    assert nb["model"].ndcg > max(nb["popularity"].ndcg, nb["item-item"].ndcg) + 0.1
    new = result.task("new to you").by_method()
    for baseline in ("popularity", "item-item", "repurchase"):
        assert nb["model"].ndcg > nb[baseline].ndcg
        assert new["model"].ndcg > new[baseline].ndcg
    assert round(nb["model"].ndcg, 4) == 0.8577
    assert round(new["model"].ndcg, 4) == 0.7133
