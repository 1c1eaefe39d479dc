"""Benchmark of the backtest on baskets of about seven lines, in CPU time (the machine is shared).

Three figures for N purchases (base earn + the three rules of `bench/analytics.py`: a line
rule with a daily cap, a ritual, a budget):

- the replay alone, transactions already in memory (`analytics.backtest_transactions`);
- a till's file read and replayed, as `habitue backtest --from FILE` runs it: the import's
  reader (`events.importer.reading`, the same basket rule as the import and the API) and the
  replay. 400 articles at their shelf prices, one to three units a line, and one line in
  twenty a multi-buy charged at its `amount` (3 for the price of 2);
- the same with every line at a price of its own (no article at the same price twice: the
  reader's memo of lines never hits — the worst case).

CPU time is `time.process_time()` (all threads of the process); wall time is shown beside it.

    .venv/bin/python bench/backtest.py --purchases 100000
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from analytics import BACKTEST_PROGRAM, BACKTEST_RULES, backtest_transactions  # noqa: E402
from habitue.analytics import backtest  # noqa: E402
from habitue.money import format_minor  # noqa: E402
from habitue.rules.compile import compile_rules  # noqa: E402
from habitue.rules.model import parse_rule  # noqa: E402

HEADER = ["member_external_id", "external_id", "occurred_at", "total",
          "sku", "category", "quantity", "unit_price", "amount"]  # fmt: skip
CATEGORIES = ("coffee", "food", "tea", "merch")


def write_file(path: Path, n: int, *, lines: int, shelf_prices: bool, seed: int = 7) -> None:
    """n purchases of `lines` lines each, in time order, as an import file."""
    rng = np.random.default_rng(seed)
    members = max(n // 20, 1)
    who = rng.integers(0, members, n)
    seconds = np.sort(rng.integers(0, 730 * 86_400, n))
    prices = rng.integers(50, 2_000, 400)  # cents, one per article
    start = np.datetime64("2024-01-01T00:00:00", "s")
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(HEADER)
        for i in range(n):
            at = f"{(start + np.timedelta64(int(seconds[i]), 's'))}Z"
            skus = rng.integers(0, 400, lines)
            units = rng.integers(1, 4, lines)
            rows: list[list[str]] = []
            total = 0
            for j in range(lines):
                sku = int(skus[j])
                price = int(prices[sku]) if shelf_prices else int(rng.integers(50, 2_000))
                qty = int(units[j])
                amount = ""
                line_total = qty * price
                if shelf_prices and qty == 3 and sku % 20 == 0:  # 3 for the price of 2
                    line_total = 2 * price
                    amount = format_minor(line_total, 2)
                total += line_total
                rows.append([f"sku{sku}", CATEGORIES[sku % 4], str(qty),
                             format_minor(price, 2), amount])  # fmt: skip
            for row in rows:
                w.writerow([f"m{who[i]}", f"t{i}", at, format_minor(total, 2), *row])


def timed(step: Callable[[], Any]) -> tuple[float, float, Any]:
    """CPU seconds, wall seconds and the step's result."""
    cpu, wall = time.process_time(), time.perf_counter()
    result = step()
    return time.process_time() - cpu, time.perf_counter() - wall, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--purchases", type=int, default=100_000)
    parser.add_argument("--lines", type=int, default=7)
    args = parser.parse_args()
    n, lines = args.purchases, args.lines
    rules = compile_rules(parse_rule(r) for r in BACKTEST_RULES)
    rows: list[tuple[str, str]] = []

    members = max(n // 20, 1)
    txs = list(backtest_transactions(n, members, lines_per_basket=lines))

    def replay() -> backtest.BacktestResult:
        return backtest.run_backtest(iter(txs), program=BACKTEST_PROGRAM, rules=rules)

    cpu, wall, result = timed(replay)
    rows.append((f"replay alone, {n:,} purchases of {lines} lines in memory",
                 f"{n / cpu:,.0f}/s CPU ({cpu:.2f} s CPU, {wall:.2f} s wall), "
                 f"{result.points_issued:,} points"))  # fmt: skip
    txs.clear()
    with tempfile.TemporaryDirectory() as tmp:
        for shelf, label in ((True, "shelf prices"), (False, "a price of its own per line")):
            path = Path(tmp) / "purchases.csv"
            write_file(path, n, lines=lines, shelf_prices=shelf)
            cpu, wall, result = timed(
                lambda path=path: backtest.run_backtest(
                    backtest.read_csv(path, currency_exponent=2),
                    program=BACKTEST_PROGRAM,
                    rules=rules,
                )
            )
            assert result.rejected == 0, result.rejects[:3]
            rows.append((f"file read and replayed, {label}",
                         f"{n / cpu:,.0f}/s CPU ({cpu:.2f} s CPU, {wall:.2f} s wall), "
                         f"{result.points_issued:,} points"))  # fmt: skip
    width = max(len(name) for name, _ in rows)
    print(f"{'backtest (target ≥ 20,000 purchases/s)':<{width}} | value")  # noqa: T201
    print(f"{'-' * width}-|-{'-' * 40}")  # noqa: T201
    for name, value in rows:
        print(f"{name:<{width}} | {value}")  # noqa: T201


if __name__ == "__main__":
    main()
