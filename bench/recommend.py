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
    .venv/bin/python bench/recommend.py --served                # cost of the API's blend model

With ``--served``: the cost of what the API caches per program for ``strategy=blend``
(`recommend_eval.fit_served`: the validation that chooses the blends, the shrunk similarity) on
the million lines and on the demo café's baskets, beside the item-item model it caches for the
default strategy (`recommend.fit_item_similarity`), measured alternately, two rounds: CPU time
of the process (`time.process_time`), the resident high-water mark of each step over what was
resident before it (Linux VmHWM, reset before each step), and the CPU per request of
`recommend_top_k` over 1,000 members.
"""

from __future__ import annotations

import argparse
import csv
import random
import resource
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from habitue.analytics import recommend, recommend_eval  # noqa: E402

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


def _resident_mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _step(fit: Any) -> tuple[float, float, Any]:
    """CPU seconds of fit() and its peak resident memory over what was resident before it."""
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    before = _resident_mib("VmRSS")
    started = time.process_time()
    model = fit()
    return time.process_time() - started, _resident_mib("VmHWM") - before, model


def served_cost(title: str, table: pa.Table, rounds: int = 2) -> None:
    print(f"\n{title}: {table.num_rows:,} lines; fitting what the API caches, "
          f"alternately, {rounds} rounds (CPU s, peak MiB over resident)")  # fmt: skip
    served = None
    for r in range(rounds):
        cpu_ii, mem_ii, _ = _step(lambda: recommend.fit_item_similarity(table))
        cpu_s, mem_s, served = _step(lambda: recommend_eval.fit_served(table))
        print(f"  round {r + 1}: item-item (default strategy) {cpu_ii:6.2f} s {mem_ii:6.0f} MiB"
              f" | blend (fit_served) {cpu_s:6.2f} s {mem_s:6.0f} MiB")  # fmt: skip
    assert served is not None
    kept = served.validation
    cpu_k, mem_k, _ = _step(lambda: recommend_eval.fit_served(table, validation=kept))
    print(f"  refit with the blends kept (no validation): {cpu_k:6.2f} s {mem_k:6.0f} MiB")
    print("  blends chosen: " + "; ".join(
        f"{t}: {recommend_eval.describe(b)}" for t, b in served.blends.items()))  # fmt: skip
    histories: dict[str, list[str]] = {}
    for m, i in zip(table.column("member_id").to_pylist(), table.column("item_id").to_pylist(),
                    strict=True):  # fmt: skip
        histories.setdefault(str(m), []).append(str(i))
    members = list(histories)[:1000]
    started = time.process_time()
    for m in members:
        recommend_eval.recommend_top_k(served, histories[m], k=10)
    per_request = (time.process_time() - started) / len(members) * 1000
    print(f"  recommend_top_k, next basket, k = 10: {per_request:.2f} ms of CPU per member")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--write-fixture", type=Path)
    parser.add_argument("--served", action="store_true")
    args = parser.parse_args()
    if args.write_fixture:
        write_fixture(args.write_fixture)
        return
    if args.served:
        served_cost("grocery-like baskets", grocery_baskets(args.lines))
        served_cost("demo café", demo_baskets())
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
