"""Benchmark of the recommendation protocol: model and three baselines on grocery-like baskets.

Generates real-like grocery baskets with NumPy: members with a few staples they buy again and
again, categories they favour, items of Zipf popularity, baskets of about seven lines over four
months; then runs `habitue.analytics.recommend_eval.evaluate_protocol` (train on the first three
months, test on the fourth) and prints both tasks' tables, the time and the peak memory. It also
evaluates the demo café's baskets (`habitue.demo`'s generator: regulars of four kinds, each
with favourite items they reorder).

    .venv/bin/python bench/recommend.py                         # 1,000,000 basket lines
    .venv/bin/python bench/recommend.py --lines 100000          # a quick look
    .venv/bin/python bench/recommend.py --write-fixture tests/analytics/data/baskets_small.csv
"""

from __future__ import annotations

import argparse
import csv
import random
import resource
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from habitue.analytics import recommend_eval  # noqa: E402

START = datetime(2026, 1, 1, tzinfo=UTC)
DAYS = 120
SPLIT = START + timedelta(days=90)


def grocery_baskets(lines: int, *, seed: int = 22, lines_per_basket: float = 7.0) -> pa.Table:
    """Grocery-like basket lines: (member_id, item_id, occurred_at), about `lines` of them."""
    rng = np.random.default_rng(seed)
    n_items = max(60, int(np.sqrt(lines) * 8))
    n_categories = max(6, n_items // 40)
    members = max(50, int(lines / lines_per_basket / 6))  # about six baskets each
    category = rng.integers(0, n_categories, n_items)
    popularity = 1.0 / np.arange(1, n_items + 1) ** 0.9
    rng.shuffle(popularity)
    by_category = [np.flatnonzero(category == c) for c in range(n_categories)]
    baskets_per_member = rng.gamma(1.5, 4.0, members) + 1
    baskets_per_member *= lines / lines_per_basket / baskets_per_member.sum()
    counts = rng.poisson(baskets_per_member)
    member_ids: list[np.ndarray] = []
    item_ids: list[np.ndarray] = []
    times: list[np.ndarray] = []
    for m in range(members):
        n_baskets = int(counts[m])
        if n_baskets == 0:
            continue
        liked = rng.choice(n_categories, size=3, replace=False)
        pool = np.concatenate([by_category[c] for c in liked])
        weights = popularity[pool] / popularity[pool].sum()
        staples = rng.choice(pool, size=min(pool.size, int(rng.integers(6, 20))), p=weights)
        staple_weights = rng.dirichlet(np.full(staples.size, 0.7))
        sizes = np.maximum(1, rng.poisson(lines_per_basket - 1, n_baskets) + 1)
        total = int(sizes.sum())
        kind = rng.uniform(size=total)
        chosen = np.where(
            kind < 0.6,
            rng.choice(staples, size=total, p=staple_weights),
            np.where(
                kind < 0.85,
                rng.choice(pool, size=total, p=weights),
                rng.choice(n_items, size=total, p=popularity / popularity.sum()),
            ),
        )
        days = np.sort(rng.uniform(0, DAYS, n_baskets))
        member_ids.append(np.full(total, m))
        item_ids.append(chosen)
        times.append(np.repeat(days, sizes))
    seconds = (np.concatenate(times) * 86_400).astype("timedelta64[s]")
    return pa.table(
        {
            "member_id": pa.array(np.char.add("m", np.concatenate(member_ids).astype(str))),
            "item_id": pa.array(np.char.add("i", np.concatenate(item_ids).astype(str))),
            "occurred_at": pa.array(
                np.datetime64(START.replace(tzinfo=None), "s") + seconds,
                pa.timestamp("s", "UTC"),
            ).cast(pa.timestamp("us", "UTC")),
        }
    )


def demo_baskets(members: int = 2000, purchases: int = 20000, seed: int = 7) -> pa.Table:
    """The demo café's baskets, from `habitue.demo`'s own generator."""
    from habitue import demo

    end = datetime(2026, 12, 1, tzinfo=UTC)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "demo.csv"
        demo._purchases_csv(path, members, purchases, random.Random(seed), end)  # noqa: SLF001
        raw = pacsv.read_csv(path)
    return pa.table(
        {
            "member_id": raw.column("member_external_id"),
            "item_id": raw.column("sku"),
            "occurred_at": raw.column("occurred_at").cast(pa.timestamp("us", "UTC")),
        }
    )


def print_result(title: str, result: recommend_eval.ProtocolResult) -> None:
    print(f"\n{title}: {result.train_lines:,} training lines, {result.test_lines:,} test lines, "
          f"split {result.split_at:%Y-%m-%d}, {result.seconds:.2f} s")  # fmt: skip
    v = result.validation
    if v is not None and v.split_at is not None:
        print(f"  model's blends chosen on the training period split at {v.split_at:%Y-%m-%d} "
              f"({v.members:,} members): "
              + "; ".join(f"{t}: {recommend_eval.describe(b)} (NDCG@{result.k} {v.ndcg[t]:.4f})"
                          for t, b in v.blends.items()))  # fmt: skip
    for task in result.tasks:
        print(f"  {task.task} ({task.members:,} members)")
        print(f"    {'method':<11} {'P@10':>7} {'R@10':>7} {'NDCG@10':>8} {'hit rate':>9}")
        for s in task.scores:
            print(
                f"    {s.method:<11} {s.precision:7.4f} {s.recall:7.4f} {s.ndcg:8.4f} "
                f"{s.hit_rate:9.4f}"
            )


def write_fixture(path: Path) -> None:
    table = grocery_baskets(20000, seed=2026)
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["member_id", "item_id", "occurred_at"])
        for row in table.to_pylist():
            writer.writerow([row["member_id"], row["item_id"], row["occurred_at"].isoformat()])
    print(f"{table.num_rows:,} lines written to {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--write-fixture", type=Path)
    args = parser.parse_args()
    if args.write_fixture:
        write_fixture(args.write_fixture)
        return
    table = grocery_baskets(args.lines)
    members = len(set(table.column("member_id").to_pylist()))
    items = len(set(table.column("item_id").to_pylist()))
    print(f"grocery-like: {table.num_rows:,} lines, {members:,} members, {items:,} items")
    result = recommend_eval.evaluate_protocol(table, split_at=SPLIT, k=10)
    print_result("grocery-like baskets", result)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"  peak RSS of the process {peak:,.0f} MiB")
    demo = demo_baskets()
    times = demo.column("occurred_at")
    low, high = times.combine_chunks().to_numpy().min(), times.combine_chunks().to_numpy().max()
    split = (low + (high - low) * 0.75).astype("datetime64[us]").astype(datetime)
    print_result(
        "demo café", recommend_eval.evaluate_protocol(demo, split_at=split.replace(tzinfo=UTC))
    )


if __name__ == "__main__":
    main()
