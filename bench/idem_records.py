"""bench/idem_records: a grouped batch's Idempotency-Key records, executemany against arrays.

    PYTHONPATH=$PWD/src .venv/bin/python bench/idem_records.py [--batches 3000] [--per-batch 5]

On a scratch PostgreSQL database (the migrations' schema), writes `--batches` batches of
`--per-batch` records (answered, as an event's unit leaves them) in one transaction per round,
through the application's session, in the two ways the batch's end can write them: the plain
INSERT as an executemany (one execution per record, as before h6/idem) and
`idempotency._write_records` (one INSERT of parallel arrays). Prints the client's CPU and the
PostgreSQL backend's CPU per record, least and median over the rounds, the two ways alternated.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import scratch_pg  # noqa: E402
from request_cpu import backend_seconds  # noqa: E402

from habitue import clock  # noqa: E402
from habitue.db import Database  # noqa: E402
from habitue.events import idempotency  # noqa: E402
from habitue.migrate import upgrade  # noqa: E402

ANSWER = {
    "id": "01a2530d-d005-70b1-91a2-078318342203", "type": "purchase", "external_id": "r5ef3f",
    "member_id": "01a2530d-cfe0-7064-9be0-74d4a4131e89",
    "occurred_at": "2026-12-08T00:29:03.872252Z", "total": "10.00", "points": 10,
    "points_earned": 10, "points_spent": 0, "discount": None, "pending": False,
    "effects": [{"kind": "earn", "rule": "base", "points": 10, "detail": {}, "benefit": None,
                 "until": None, "coupon": None, "reward": None}],
    "errors": [], "shortfall": 0, "balance": None,
}  # fmt: skip


async def run(url: str, batches: int, per_batch: int, rounds: int) -> None:
    dbname = url.rsplit("/", 1)[1]
    db = Database(url, group_commit=False)
    seen: dict[str, list[tuple[float, float]]] = {"executemany": [], "arrays": []}
    n = 0

    def rows() -> list[dict[str, Any]]:
        nonlocal n
        now = clock.now()
        out = []
        for _ in range(per_batch):
            n += 1
            out.append({
                "program_id": 1, "credential": "c" * 64, "key": f"k{n}",
                "request_hash": "h" * 64, "token": secrets.token_hex(16),
                "lease_until": now, "committed_at": now, "status_code": 201,
                "content_type": "application/json", "body": ANSWER, "created_at": now,
            })  # fmt: skip
        return out

    for _ in range(rounds):
        for mode in seen:
            async with db.writer() as session, session.begin():
                pg = backend_seconds(dbname)
                cpu = time.process_time()
                for _ in range(batches):
                    if mode == "executemany":
                        await session.execute(idempotency._INSERT, rows())
                    else:
                        await idempotency._write_records(session, rows())
                cpu = time.process_time() - cpu
                after = backend_seconds(dbname)
            records = batches * per_batch
            pg_s = sum(t - pg.get(pid, 0) for pid, t in after.items())
            seen[mode].append((1e6 * cpu / records, 1e6 * pg_s / records))
    await db.dispose()
    for mode, got in seen.items():
        client, backend = [g[0] for g in got], [g[1] for g in got]
        print(f"{mode:<12} client µs/record least {min(client):5.1f} median "
              f"{statistics.median(client):5.1f} | PostgreSQL least {min(backend):5.1f} "
              f"median {statistics.median(backend):5.1f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", type=int, default=3000)
    ap.add_argument("--per-batch", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    with scratch_pg("bench_idem_records") as url:
        upgrade(url)
        asyncio.run(run(url, args.batches, args.per_batch, args.rounds))


if __name__ == "__main__":
    main()
