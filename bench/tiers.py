"""Benchmark the period-end tier evaluation on PostgreSQL and SQLite: members/s.

    .venv/bin/python bench/tiers.py                         # 1,000,000 members, both stores
    .venv/bin/python bench/tiers.py --members 100000 --db sqlite   # a quick look

Builds a fresh, migrated database per store, a program with a Bronze/Silver/Gold spend ladder
over the calendar year and N members whose 2026 period is due to close, each with a status (a
third at each rank) and a 2026 spend bucket: by default 80 % of silver and gold members spent
enough to keep their tier and 20 % did not (`--downgrade 1.0`: all of them fall). Then moves
the clock to 1 January 2027 and times `habitue.tiers.jobs.run_evaluation` (the function behind
`habitue tiers evaluate` and the scheduler): one set-based pass that closes every period,
downgrades one step, writes the history rows and the `tier.changed` outbox events, and updates
`members.tier`. A second run must find nothing to do (idempotence). The reference, timed in the
same run, is one `UPDATE tier_status SET updated_at = …` over all the program's rows: the floor
cost of touching every member once.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from sqlalchemy import text  # noqa: E402

from habitue import clock  # noqa: E402
from habitue.db import Database, make_sync_engine  # noqa: E402
from habitue.migrate import upgrade  # noqa: E402
from habitue.programs import service as programs_service  # noqa: E402
from habitue.programs.schemas import ProgramCreate  # noqa: E402
from habitue.tiers import service as tiers_service  # noqa: E402
from habitue.tiers.jobs import run_evaluation  # noqa: E402
from habitue.tiers.schemas import LadderWrite  # noqa: E402

PG_ADMIN_URL = os.environ.get("HABITUE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
ENROLLED = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
CLOSE = datetime(2027, 1, 1, 12, 0, tzinfo=UTC)
LADDER = LadderWrite.model_validate(
    {
        "metric": "qualifying_spend",
        "window": {"kind": "calendar_year"},
        "tiers": [
            {"code": "bronze", "name": "Bronze", "threshold": "0.00"},
            {"code": "silver", "name": "Silver", "threshold": "100.00", "multiplier": "1.5"},
            {"code": "gold", "name": "Gold", "threshold": "500.00", "multiplier": "2"},
        ],
    }
)


async def _setup_program(url: str) -> int:
    db = Database(url)
    try:

        async def work(session: Any) -> int:
            info = await programs_service.create_program(
                session,
                ProgramCreate(code="bench", name="Bench", currency="EUR", timezone="Europe/Paris"),
            )
            await tiers_service.set_ladder(session, info, LADDER)
            return info.id

        return await db.write(work)
    finally:
        await db.dispose()


def _seed(url: str, program_id: int, members: int, downgrade: float) -> float:
    """Members, statuses and one 2026 spend bucket each, in three INSERT … SELECT."""
    engine = make_sync_engine(url)
    sqlite = engine.dialect.name == "sqlite"
    if sqlite:
        series = (
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < :n) "
            "SELECT printf('%036d', x), :pid, 'en', 'active', "
            "CASE x % 3 WHEN 0 THEN 'bronze' WHEN 1 THEN 'silver' ELSE 'gold' END, "
            "'{}', '{}', 0, :t, :t FROM c"
        )
        t: Any = ENROLLED.strftime("%Y-%m-%d %H:%M:%S.%f")
    else:
        series = (
            "SELECT lpad(g::text, 36, '0'), :pid, 'en', 'active', "
            "CASE g % 3 WHEN 0 THEN 'bronze' WHEN 1 THEN 'silver' ELSE 'gold' END, "
            "'{}', '{}', 0, :t, :t FROM generate_series(1, :n) g"
        )
        t = ENROLLED
    started = time.perf_counter()
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO members (public_id, program_id, locale, status, tier, consents, "
                "attributes, lifetime_earned, enrolled_at, updated_at) " + series
            ),
            {"n": members, "pid": program_id, "t": t},
        )
        conn.execute(
            text(
                "INSERT INTO tier_status (member_id, program_id, rank, anchor_md, since,"
                " updated_at) SELECT id, program_id, (id - 1) % 3, 601, '2025-06-01', :t "
                "FROM members WHERE program_id = :pid"
            ),
            {"pid": program_id, "t": t},
        )
        # Bronze members stay below 100 €; silver and gold members who keep their tier spent
        # between its threshold and the next; the others (a share `downgrade` of them) spent
        # within the tier below, so they go down one step.
        conn.execute(
            text(
                "INSERT INTO tier_buckets (member_id, bucket, program_id, value) "
                "SELECT id, '2026-01-01', program_id, CASE "
                "WHEN (id - 1) % 3 = 0 THEN (id * 104729) % 10000 "
                "WHEN (id * 7919) % 1000 < :keep "
                "THEN CASE (id - 1) % 3 WHEN 1 THEN 10000 + (id * 104729) % 40000 "
                "ELSE 50000 + (id * 104729) % 30000 END "
                "ELSE CASE (id - 1) % 3 WHEN 1 THEN (id * 104729) % 10000 "
                "ELSE 10000 + (id * 104729) % 40000 END END "
                "FROM members WHERE program_id = :pid"
            ),
            {"pid": program_id, "keep": round(1000 * (1 - downgrade))},
        )
    if not sqlite:
        with engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("VACUUM ANALYZE"))
    else:
        with engine.begin() as conn:
            conn.execute(text("ANALYZE"))
    engine.dispose()
    return time.perf_counter() - started


def _reference(url: str, program_id: int) -> float:
    engine = make_sync_engine(url)
    t: Any = CLOSE if engine.dialect.name != "sqlite" else CLOSE.strftime("%Y-%m-%d %H:%M:%S.%f")
    started = time.perf_counter()
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE tier_status SET updated_at = :t WHERE program_id = :pid"),
            {"t": t, "pid": program_id},
        )
    elapsed = time.perf_counter() - started
    engine.dispose()
    return elapsed


async def _evaluate(url: str) -> tuple[float, Any, float, Any]:
    db = Database(url)
    try:
        clock.reset()
        clock.advance(CLOSE - clock.now())
        started = time.perf_counter()
        first = await run_evaluation(db, "bench")
        elapsed = time.perf_counter() - started
        started = time.perf_counter()
        second = await run_evaluation(db, "bench")
        again = time.perf_counter() - started
        return elapsed, first, again, second
    finally:
        await db.dispose()
        clock.reset()


def _counts(url: str, program_id: int) -> dict[str, int]:
    engine = make_sync_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT tier, count(*) FROM members WHERE program_id = :pid GROUP BY tier"),
            {"pid": program_id},
        ).all()
        changed = conn.execute(
            text("SELECT count(*) FROM outbox WHERE program_id = :pid AND type = 'tier.changed'"),
            {"pid": program_id},
        ).scalar_one()
    engine.dispose()
    return {**{str(r[0]): int(r[1]) for r in rows}, "tier.changed": int(changed)}


def run_one(kind: str, members: int, downgrade: float) -> dict[str, Any]:
    if kind == "sqlite":
        tmp = tempfile.mkdtemp(prefix="habitue-bench-tiers-")
        url = f"sqlite:///{tmp}/bench.db"
        cleanup = None
    else:
        import psycopg

        name = f"habitue_bench_tiers_{secrets.token_hex(4)}"
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"

        def cleanup() -> None:
            with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    programs_service.forget()
    tiers_service.forget()
    try:
        upgrade(url)
        program_id = asyncio.run(_setup_program(url))
        seeded = _seed(url, program_id, members, downgrade)
        elapsed, first, again, second = asyncio.run(_evaluate(url))
        ref = _reference(url, program_id)  # after: its million dead rows would slow the run
        counts = _counts(url, program_id)
    finally:
        if cleanup is not None:
            cleanup()
    assert first.closed == members, first
    assert second.closed == 0, second
    assert second.downgraded == 0, second
    return {
        "db": kind,
        "members": members,
        "seed_s": seeded,
        "eval_s": elapsed,
        "rate": members / elapsed,
        "ref_s": ref,
        "downgraded": first.downgraded,
        "again_s": again,
        "counts": counts,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--db", choices=("postgres", "sqlite", "both"), default="both")
    parser.add_argument(
        "--downgrade",
        type=float,
        default=0.2,
        help="share of silver and gold members below their threshold (1.0: the worst case)",
    )
    args = parser.parse_args()
    kinds = ["postgres", "sqlite"] if args.db == "both" else [args.db]
    results = [run_one(kind, args.members, args.downgrade) for kind in kinds]
    print(
        f"{'database':<10} {'members':>10} {'evaluate s':>11} {'members/s':>11} "
        f"{'ref UPDATE s':>13} {'× ref':>6} {'downgraded':>11} {'2nd run s':>10}"
    )
    for r in results:
        print(
            f"{r['db']:<10} {r['members']:>10,} {r['eval_s']:>11.2f} {r['rate']:>11,.0f} "
            f"{r['ref_s']:>13.2f} {r['eval_s'] / r['ref_s']:>6.1f} {r['downgraded']:>11,} "
            f"{r['again_s']:>10.3f}"
        )
    for r in results:
        print(f"{r['db']}: tiers after = {r['counts']}; seeding took {r['seed_s']:.1f} s")


if __name__ == "__main__":
    main()
