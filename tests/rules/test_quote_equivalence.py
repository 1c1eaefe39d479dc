"""The quote and the real event give the same points, per rule, for 1,000 random baskets.

Rules are set up through the API; the baskets go straight to the events service (the code
under both routes) so that 2,000 calls stay fast: a read session for the quote, a unit of work
for the event.
"""

from __future__ import annotations

import asyncio
import random
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession
from tests.conftest import create_program, enrol

from habitue import clock
from habitue.db import Database
from habitue.events import service as events_service
from habitue.events.schemas import EventCreate, EventRead
from habitue.programs import service as programs_service
from habitue.rooms import build_pipeline

RULES: list[dict[str, Any]] = [
    {"code": "coffee-x2", "event_type": "purchase", "line_condition": "line.category == 'coffee'",
     "effect": {"kind": "multiplier", "factor": "2"},
     "schedule": {"days": ["wed", "sat"], "start": "18:00", "end": "23:59"}},
    {"code": "pastry-bonus", "event_type": "purchase",
     "line_condition": "line.category == 'pastry'", "effect": {"kind": "per_line", "points": 3},
     "caps": [{"period": "day", "points": 10}]},
    {"code": "big-basket", "event_type": "purchase", "condition": "event.total >= 20.0",
     "effect": {"kind": "fixed", "points": 25}, "caps": [{"period": "week", "count": 2}]},
    {"code": "tea-units", "event_type": "purchase", "line_condition": "line.category == 'tea'",
     "effect": {"kind": "per_unit", "points": 2}},
    {"code": "regulars", "event_type": "purchase",
     "condition": "member.counters.purchases_30d >= 5",
     "effect": {"kind": "per_currency_unit", "rate": "0.5"}, "priority": 5},
    {"code": "lucky", "event_type": "purchase",
     "effect": {"kind": "fixed", "points": 40, "probability": "0.1"}},
]
CATEGORIES = ("coffee", "pastry", "tea", "sandwich")
MEMBERS = 20
BASKETS = 1_000


def _basket(rng: random.Random, member: str, n: int) -> dict[str, Any]:
    lines: list[dict[str, Any]] = [
        {"sku": f"S{rng.randrange(50)}", "category": rng.choice(CATEGORIES),
         "quantity": rng.randint(1, 3),
         "unit_price": f"{rng.randint(1, 8)}.{rng.randrange(100):02d}"}
        for _ in range(rng.randint(1, 6))
    ]
    total = sum(ln["quantity"] * round(float(ln["unit_price"]) * 100) for ln in lines)
    at = clock.now() - timedelta(minutes=rng.randrange(60 * 24 * 40))
    return {"type": "purchase", "member": {"id": member}, "external_id": f"{member}-{n}",
            "occurred_at": at.isoformat(), "total": f"{total / 100:.2f}", "lines": lines}


def _by_rule(body: EventRead) -> dict[str, int]:
    return {e.rule or "": e.points for e in body.effects if e.points}


async def test_quote_equals_the_real_event(client: httpx.AsyncClient, db: Database) -> None:
    program = await create_program(client, earn_rate="1")
    for rule in RULES:
        r = await client.post(f"/v1/programs/{program}/rules", json=rule)
        assert r.status_code == 201, r.text
    members = [(await enrol(client, program))["id"] for _ in range(MEMBERS)]
    rng = random.Random(20261124)  # noqa: S311 - reproducible baskets
    plans = {m: [_basket(rng, m, n) for n in range(BASKETS // MEMBERS)] for m in members}
    async with db.read() as session:
        info = await programs_service.get_info(session, program)
    pipeline = build_pipeline()

    async def run(member: str) -> list[tuple[dict[str, int], dict[str, int]]]:
        out = []
        for basket in sorted(plans[member], key=lambda b: str(b["occurred_at"])):
            body = EventCreate.model_validate(basket)
            async with db.read() as session:
                quoted = await events_service.quote(session, pipeline, info, body)

            async def work(session: AsyncSession, b: EventCreate = body) -> EventRead:
                return await events_service.record(session, pipeline, info, b)

            real = await db.write(work)
            assert quoted.points_earned == real.points_earned
            out.append((_by_rule(quoted), _by_rule(real)))
        return out

    results = [pair for chunk in await asyncio.gather(*map(run, members)) for pair in chunk]
    assert len(results) == BASKETS
    assert all(q == r for q, r in results)
    fired = {code for _, r in results for code in r}
    assert fired == {"base", *(rule["code"] for rule in RULES)}
