"""Benchmark of the analytics core: RFM + segments at scale, and the CDNOW lifetime-value fits.

Generates a synthetic store with NumPy straight into Arrow (no database): members with a
gamma-distributed purchase rate, purchases over two years, 3 % refunds. Runs RFM + segments
through `habitue.analytics.rfm` (the portable query on DuckDB) and the same RFM as one
hand-written DuckDB query, alternating, and reports the best time of each, their ratio and the
peak resident memory of each step (Linux VmHWM, reset before each step). Then fits BG/NBD and
Gamma-Gamma on all 23,570 CDNOW customers and values them. Last, replays 1,000,000 synthetic
purchases through `habitue.analytics.backtest` (base earn + three rules, then base only).

    .venv/bin/python bench/analytics.py                       # 1,000,000 members, 10,000,000 rows
    .venv/bin/python bench/analytics.py --members 10000 --purchases 100000   # a quick look
    .venv/bin/python bench/analytics.py --only-backtest --backtest 1000000    # the backtest only
    .venv/bin/python bench/analytics.py --only-clv                            # the CDNOW fits only
    .venv/bin/python bench/analytics.py --only-backtest --backtest 100000 --lines-per-basket 7
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from habitue.analytics import backtest, clv, rfm  # noqa: E402
from habitue.rules.compile import compile_rules  # noqa: E402
from habitue.rules.model import parse_rule  # noqa: E402
from habitue.rules.types import EventInput, LineInput, ProgramSnapshot  # noqa: E402

CDNOW_MASTER = ROOT / "tests" / "analytics" / "data" / "CDNOW_master.txt"
AS_OF = datetime(2026, 1, 1, tzinfo=UTC)
START = np.datetime64("2024-01-01T00:00:00", "us")
SPAN_US = 731 * 86_400 * 1_000_000  # two years up to AS_OF

HAND_WRITTEN_RFM = """
WITH m AS (
    SELECT
        member_id,
        date_diff('day', max(occurred_at) FILTER (WHERE type = 'purchase')::DATE,
                  DATE '2026-01-01') AS recency_days,
        count(*) FILTER (WHERE type = 'purchase') AS frequency,
        greatest(sum(total_minor), 0)::BIGINT AS monetary_minor
    FROM purchases
    WHERE member_id IS NOT NULL
      AND occurred_at >= TIMESTAMPTZ '2025-01-01 00:00:00+00'
      AND occurred_at < TIMESTAMPTZ '2026-01-01 00:00:00+00'
    GROUP BY member_id
    HAVING count(*) FILTER (WHERE type = 'purchase') > 0
),
s AS (
    SELECT
        member_id, recency_days, frequency, monetary_minor,
        (1 + 5 * (2 * rank() OVER (ORDER BY recency_days DESC)
                  + count(*) OVER (PARTITION BY recency_days) - 2)
             // (2 * count(*) OVER ()))::INTEGER AS r,
        (1 + 5 * (2 * rank() OVER (ORDER BY frequency)
                  + count(*) OVER (PARTITION BY frequency) - 2)
             // (2 * count(*) OVER ()))::INTEGER AS f,
        (1 + 5 * (2 * rank() OVER (ORDER BY monetary_minor)
                  + count(*) OVER (PARTITION BY monetary_minor) - 2)
             // (2 * count(*) OVER ()))::INTEGER AS m
    FROM m
)
SELECT
    member_id, recency_days, frequency::BIGINT AS frequency, monetary_minor, r, f, m,
    CASE
        WHEN r = 5 AND (f + m + 1) // 2 >= 4 THEN 'Champions'
        WHEN r >= 3 AND (f + m + 1) // 2 >= 4 THEN 'Loyal'
        WHEN r >= 4 AND (f + m + 1) // 2 >= 2 THEN 'Potential loyalists'
        WHEN r = 5 THEN 'New'
        WHEN r = 4 THEN 'Promising'
        WHEN r = 3 AND (f + m + 1) // 2 = 3 THEN 'Need attention'
        WHEN r = 3 THEN 'About to sleep'
        WHEN (f + m + 1) // 2 = 5 THEN 'Can''t lose them'
        WHEN (f + m + 1) // 2 >= 3 THEN 'At risk'
        WHEN r = 1 AND (f + m + 1) // 2 = 1 THEN 'Lost'
        ELSE 'Hibernating'
    END AS segment
FROM s
ORDER BY member_id
"""


def reset_peak_memory() -> bool:
    """Reset the process's resident-memory high-water mark (Linux); False where impossible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def peak_memory_mib() -> float:
    """Peak resident memory since the last reset (VmHWM), or since start (ru_maxrss)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_memory_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def synthetic_store(members: int, purchases: int, seed: int = 2026) -> pa.Table:
    """Purchases of a synthetic store: member_id, occurred_at (UTC), total_minor, type."""
    rng = np.random.default_rng(seed)
    rate = rng.gamma(0.8, 1.0, members)
    cumulative = np.cumsum(rate)
    member = np.searchsorted(cumulative, rng.random(purchases) * cumulative[-1])
    member = np.minimum(member, members - 1)
    ids = pa.array([f"m{i:07d}" for i in range(members)], pa.string())
    occurred = START + rng.integers(0, SPAN_US, purchases).astype("timedelta64[us]")
    amount = np.maximum(rng.lognormal(np.log(2_500), 0.9, purchases).astype(np.int64), 50)
    refund = rng.random(purchases) < 0.03
    return pa.table(
        {
            "member_id": pc.take(ids, pa.array(member)),
            "occurred_at": pa.array(occurred, pa.timestamp("us", tz="UTC")),
            "total_minor": pa.array(np.where(refund, -amount, amount)),
            "type": pa.array(np.where(refund, "refund", "purchase"), pa.string()),
        }
    )


def run_module(store: pa.Table) -> pa.Table:
    return rfm.compute_rfm(store, as_of=AS_OF, window_days=365)


def run_hand_written(store: pa.Table) -> pa.Table:
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.register("purchases", store)
        result: pa.Table = con.sql(HAND_WRITTEN_RFM).to_arrow_table()
        return result
    finally:
        con.close()


def measure(step: Callable[[], Any]) -> tuple[float, float, Any]:
    """Seconds, peak resident MiB during the step, and its result."""
    reset_peak_memory()
    started = time.perf_counter()
    result = step()
    return time.perf_counter() - started, peak_memory_mib(), result


def best_fits(summary: clv.RfmSummary, repeat: int = 5) -> tuple[float, float]:
    """Best wall and best CPU time (`time.process_time`, all threads) of both fits, outside
    tracemalloc (which slows NumPy's calls). On a shared machine the CPU time is the figure."""
    best = best_cpu = float("inf")
    for _ in range(repeat):
        started, cpu = time.perf_counter(), time.process_time()
        clv.fit_bgnbd(summary.frequency, summary.recency, summary.T)
        clv.fit_gamma_gamma(summary.frequency, summary.monetary_value)
        best = min(best, time.perf_counter() - started)
        best_cpu = min(best_cpu, time.process_time() - cpu)
    return best, best_cpu


def cdnow() -> list[tuple[str, str]]:
    raw = np.loadtxt(CDNOW_MASTER, skiprows=1, dtype=str)
    dates = np.array([f"{d[:4]}-{d[4:6]}-{d[6:]}" for d in raw[:, 1]], dtype="datetime64[D]")
    rows: list[tuple[str, str]] = []
    tracemalloc.start()
    started = time.perf_counter()
    summary = clv.summarise_transactions(
        raw[:, 0], dates, raw[:, 3].astype(float), calibration_end=np.datetime64("1997-09-30")
    )
    summarised = time.perf_counter()
    bgnbd = clv.fit_bgnbd(summary.frequency, summary.recency, summary.T)
    fitted_bgnbd = time.perf_counter()
    gg = clv.fit_gamma_gamma(summary.frequency, summary.monetary_value)
    fitted_gg = time.perf_counter()
    value = clv.customer_lifetime_value(
        bgnbd, gg, summary.frequency, summary.recency, summary.T, summary.monetary_value,
        horizon_months=12, annual_discount_rate=0.10,
    )  # fmt: skip
    valued = time.perf_counter()
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    wall, cpu = best_fits(summary)
    rows += [
        ("CDNOW customers (all, 39-week calibration)", f"{summary.frequency.size:,}"),
        ("  repeat buyers", f"{int((summary.frequency > 0).sum()):,}"),
        ("  repeat buyers in the Gamma-Gamma fit (mean spend > 0)", f"{gg.n_customers:,}"),
        ("  summarise 69,659 transactions", f"{summarised - started:.3f} s"),
        ("  BG/NBD fit", f"{fitted_bgnbd - summarised:.3f} s"),
        (
            "  BG/NBD r, alpha, a, b",
            f"{bgnbd.r:.4f}, {bgnbd.alpha:.4f}, {bgnbd.a:.4f}, {bgnbd.b:.4f}",
        ),
        ("  BG/NBD log-likelihood", f"{bgnbd.log_likelihood:,.2f}"),
        ("  Gamma-Gamma fit", f"{fitted_gg - fitted_bgnbd:.3f} s"),
        ("  Gamma-Gamma p, q, gamma", f"{gg.p:.4f}, {gg.q:.4f}, {gg.gamma:.4f}"),
        ("  Gamma-Gamma log-likelihood", f"{gg.log_likelihood:,.2f}"),
        (
            "  BG/NBD + Gamma-Gamma fits (target <= 0.45 s), best of 5",
            f"{cpu:.3f} s CPU ({wall:.3f} s wall)",
        ),
        ("  12-month CLV at 10 %/yr, all customers", f"{valued - fitted_gg:.3f} s"),
        ("  mean CLV (USD)", f"{float(np.mean(value)):.2f}"),
        ("  total, summary to CLV", f"{valued - started:.3f} s"),
        ("  peak traced Python memory", f"{traced_peak / 2**20:.1f} MiB"),
    ]
    return rows


BACKTEST_PROGRAM = ProgramSnapshot(
    id=1,
    code="bench",
    currency="EUR",
    currency_exponent=2,
    timezone="Europe/Paris",
    earn_rate=Decimal("1"),
    rounding="down",
    pending_days=0,
)
BACKTEST_RULES: list[dict[str, Any]] = [
    {
        "code": "coffee-bonus",
        "event_type": "purchase",
        "line_condition": 'line.category == "coffee"',
        "effect": {"kind": "per_line", "points": 5},
        "caps": [{"period": "day", "count": 1}],
    },
    {
        "code": "wednesday-night",
        "event_type": "purchase",
        "schedule": {"days": ["wed"], "start": "21:00", "end": "23:59"},
        "effect": {"kind": "multiplier", "factor": "2"},
    },
    {
        "code": "big-basket",
        "event_type": "purchase",
        "condition": "event.total_minor >= 5000",
        "effect": {"kind": "fixed", "points": 50},
        "budget": 10000000,
    },
]


def backtest_transactions(
    n: int, members: int, seed: int = 7, lines_per_basket: int = 0
) -> Iterator[backtest.Transaction]:
    """n purchases of a synthetic store, in time order: one or two basket lines each, or
    `lines_per_basket` lines each (spread over four categories and 40 SKUs) when given."""
    rng = np.random.default_rng(seed)
    who = rng.integers(0, members, n)
    offsets = np.sort(rng.integers(0, SPAN_US, n))
    amounts = np.maximum(rng.lognormal(np.log(2_500), 0.9, n).astype(np.int64), 50)
    two_lines = rng.random(n) < 0.5
    categories = ("coffee", "food", "tea", "merch")
    cat = rng.integers(0, 4, n)
    width = max(lines_per_basket, 1)
    line_cat = rng.integers(0, 4, (n, width))
    line_sku = rng.integers(0, 40, (n, width))
    start = datetime(2024, 1, 1, tzinfo=UTC)
    keys = [f"m{i}" for i in range(members)]
    skus = [f"sku{i}" for i in range(40)]
    for i in range(n):
        total = int(amounts[i])
        category = categories[cat[i]]
        lines: tuple[LineInput, ...]
        if lines_per_basket > 0:
            share = total // lines_per_basket
            parts = [share] * (lines_per_basket - 1) + [total - share * (lines_per_basket - 1)]
            lines = tuple(
                LineInput(skus[line_sku[i, j]], categories[line_cat[i, j]], Decimal(1), p, p)
                for j, p in enumerate(parts)
            )
        elif two_lines[i]:
            half = total // 2
            lines = (
                LineInput("sku1", category, Decimal(1), half, half),
                LineInput("sku2", "food", Decimal(1), total - half, total - half),
            )
        else:
            lines = (LineInput("sku1", category, Decimal(1), total, total),)
        event = EventInput(
            type="purchase",
            external_id=f"t{i}",
            occurred_at=start + timedelta(microseconds=int(offsets[i])),
            total_minor=total,
            lines=lines,
        )
        yield backtest.Transaction(keys[who[i]], event)


def run_backtest_bench(n: int, lines_per_basket: int = 0) -> list[tuple[str, str]]:
    """Replay n transactions with three rules (line rule with a daily cap, ritual, budget)."""
    members = max(n // 20, 1)
    started = time.perf_counter()
    for _ in backtest_transactions(n, members, lines_per_basket=lines_per_basket):
        pass
    generation = time.perf_counter() - started
    rules = compile_rules(parse_rule(r) for r in BACKTEST_RULES)
    reset_peak_memory()
    started = time.perf_counter()
    result = backtest.run_backtest(
        backtest_transactions(n, members, lines_per_basket=lines_per_basket),
        program=BACKTEST_PROGRAM,
        rules=rules,
    )
    total = time.perf_counter() - started
    replay = total - generation
    started = time.perf_counter()
    base_only = backtest.run_backtest(
        backtest_transactions(n, members, lines_per_basket=lines_per_basket),
        program=BACKTEST_PROGRAM,
    )
    base_replay = time.perf_counter() - started - generation
    per_rule = ", ".join(f"{k} {v:,}" for k, v in sorted(result.by_rule.items()))
    return [
        (
            f"backtest: {n:,} purchases of {result.members:,} members, base + 3 rules, "
            + (f"{lines_per_basket} lines each" if lines_per_basket else "1-2 lines each"),
            "",
        ),
        ("  generating the transactions alone", f"{generation:.2f} s"),
        (
            "  replay through decide with the simulated ledger (generation included)",
            f"{total:.2f} s, {n / total:,.0f} transactions/s",
        ),
        (
            "  replay alone (target ≥ 20,000 transactions/s)",
            f"{replay:.2f} s, {n / replay:,.0f} transactions/s",
        ),
        ("  points issued", f"{result.points_issued:,} ({per_rule})"),
        (
            "  replay alone, base earn only (no rules)",
            f"{base_replay:.2f} s, {n / base_replay:,.0f} transactions/s, "
            f"{base_only.points_issued:,} points",
        ),
        ("  peak resident memory", f"{peak_memory_mib():,.0f} MiB"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--purchases", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--backtest", type=int, default=1_000_000, help="transactions to replay")
    parser.add_argument("--only-backtest", action="store_true", help="skip RFM and CDNOW")
    parser.add_argument("--only-clv", action="store_true", help="the CDNOW fits only")
    parser.add_argument(
        "--lines-per-basket", type=int, default=0, help="backtest basket lines (0: 1 or 2)"
    )
    args = parser.parse_args()
    if args.only_clv:
        print_rows(cdnow())
        return
    if args.only_backtest:
        print_rows(run_backtest_bench(args.backtest, args.lines_per_basket))
        return

    rows: list[tuple[str, str]] = [
        ("machine", f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}, "
                    f"DuckDB {duckdb.__version__}, PyArrow {pa.__version__}"),
    ]  # fmt: skip
    started = time.perf_counter()
    store = synthetic_store(args.members, args.purchases)
    rows.append(
        (
            f"generate {args.members:,} members / {args.purchases:,} purchases (NumPy → Arrow)",
            f"{time.perf_counter() - started:.1f} s, {store.nbytes / 2**20:,.0f} MiB of Arrow",
        )
    )
    baseline = current_memory_mib()
    module_times: list[float] = []
    hand_times: list[float] = []
    module_peak = hand_peak = 0.0
    module_result = hand_result = None
    for _ in range(args.repeat):
        seconds, peak, module_result = measure(partial(run_module, store))
        module_times.append(seconds)
        module_peak = max(module_peak, peak)
        seconds, peak, hand_result = measure(partial(run_hand_written, store))
        hand_times.append(seconds)
        hand_peak = max(hand_peak, peak)
    sizes_seconds, sizes_peak, _ = measure(
        partial(rfm.segment_sizes, store, as_of=AS_OF, window_days=365)
    )
    assert module_result is not None
    assert hand_result is not None
    same = module_result.equals(hand_result)
    segments = pc.value_counts(module_result.column("segment")).to_pylist()
    best_module, best_hand = min(module_times), min(hand_times)
    rows += [
        ("members scored (purchase in the last 365 days)", f"{module_result.num_rows:,}"),
        (
            "RFM + segments, habitue.analytics.rfm (DuckDB)",
            f"{best_module:.2f} s best of {args.repeat} "
            f"({', '.join(f'{t:.2f}' for t in module_times)})",
        ),
        (
            "RFM + segments, one hand-written DuckDB query",
            f"{best_hand:.2f} s best of {args.repeat} "
            f"({', '.join(f'{t:.2f}' for t in hand_times)})",
        ),
        ("ratio module / hand-written (target ≤ 1.5)", f"{best_module / best_hand:.2f}"),
        ("RFM within 20 s", "yes" if best_module <= 20 else "NO"),
        ("results identical row for row", "yes" if same else "NO"),
        (
            "segment sizes, habitue.analytics.rfm (DuckDB)",
            f"{sizes_seconds:.2f} s, peak {sizes_peak:,.0f} MiB",
        ),
        ("resident memory with the store loaded", f"{baseline:,.0f} MiB"),
        ("peak resident memory, module step", f"{module_peak:,.0f} MiB"),
        ("peak resident memory, hand-written step", f"{hand_peak:,.0f} MiB"),
        (
            "segment sizes",
            ", ".join(f"{s['values']} {s['counts']:,}" for s in sorted(
                segments, key=lambda s: -int(s["counts"])))
        ),
    ]  # fmt: skip
    del store, module_result, hand_result
    rows += cdnow()
    rows += run_backtest_bench(args.backtest)
    print_rows(rows)
    if not same:
        sys.exit(1)


def print_rows(rows: list[tuple[str, str]]) -> None:
    """The figures as a two-column table."""
    width = max(len(name) for name, _ in rows)
    print(f"{'figure':<{width}} | value")
    print(f"{'-' * width}-|-{'-' * 40}")
    for name, value in rows:
        print(f"{name:<{width}} | {value}")


if __name__ == "__main__":
    main()
