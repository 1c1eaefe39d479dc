"""`tiers.service.update_tier`: one rung changes, the rest of the ladder and its checks hold."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from habitue.db import Database
from habitue.messaging.models import OutboxEvent
from habitue.programs import service as programs_service
from habitue.tiers import periods
from habitue.tiers import service as tiers_service
from habitue.tiers.errors import InvalidLadder, NoLadder, UnknownTier
from habitue.tiers.models import Tier, TierLadder
from habitue.tiers.schemas import TierWrite
from habitue.tiers.service import Ladder, TierDef
from tests.conftest import create_program, enrol
from tests.tiers.helpers import event, ladder, set_now, tier

BRONZE = TierDef("bronze", "Bronze", 0, 0, Decimal("1"), ())
SILVER = TierDef("silver", "Silver", 1, 10_000, Decimal("1.5"), ("free_delivery",))
GOLD = TierDef("gold", "Gold", 2, 50_000, Decimal("2"), ("free_delivery", "lounge", "presale"))
GOLD_ONLY = {"code": "gold-bonus", "event_type": "purchase", "audience": {"tiers": ["gold"]},
             "effect": {"kind": "fixed", "points": 5}}  # fmt: skip


async def _update(db: Database, program: str, code: str, data: TierWrite) -> Ladder:
    async def work(session: AsyncSession) -> Ladder:
        info = await programs_service.get_info(session, program)
        return await tiers_service.update_tier(session, info, code, data)

    return await db.write(work)


async def _stored(db: Database, program: str) -> tuple[list[tuple[Any, ...]], Any, int]:
    """The program's tier rows, its ladder row and how many `tiers.ladder_changed` it sent."""
    async with db.read() as s:
        info = await programs_service.get_info(s, program)
        rows = (
            await s.execute(
                select(Tier.code, Tier.name, Tier.rank, Tier.threshold, Tier.multiplier)
                .where(Tier.program_id == info.id)
                .order_by(Tier.rank)
            )
        ).all()
        head = (
            await s.execute(
                select(
                    TierLadder.metric,
                    TierLadder.window,
                    TierLadder.window_months,
                    TierLadder.grace_days,
                    TierLadder.updated_at,
                ).where(TierLadder.program_id == info.id)
            )
        ).one()
        sent = (
            await s.execute(
                select(func.count()).where(
                    OutboxEvent.program_id == info.id, OutboxEvent.type == "tiers.ladder_changed"
                )
            )
        ).scalar_one()
    return [tuple(r) for r in rows], tuple(head), int(sent)


async def _program_with_ladder(client: httpx.AsyncClient, **kw: Any) -> str:
    code = await create_program(client)
    r = await ladder(client, code, **kw)
    assert r.status_code == 201, r.text
    return code


async def test_one_tier_changes_and_the_others_are_kept(
    client: httpx.AsyncClient, db: Database
) -> None:
    program = await _program_with_ladder(client)
    _, _, sent = await _stored(db, program)
    change = TierWrite(
        code="ignored",  # the tier is named by the argument: an update never renames a code
        name="Argent",
        threshold="120.50",
        multiplier="1.25",
        privileges=["lounge", "free_delivery", "lounge"],
    )
    got = await _update(db, program, "silver", change)

    argent = TierDef("silver", "Argent", 1, 12_050, Decimal("1.25"), ("free_delivery", "lounge"))
    assert got.tiers == (BRONZE, argent, GOLD)
    assert (got.metric, got.window, got.grace_days) == (
        "qualifying_spend",
        periods.Window("calendar_year", 12),
        0,
    )
    rows, head, sent_after = await _stored(db, program)
    assert rows == [
        ("bronze", "Bronze", 0, 0, "1"),
        ("silver", "Argent", 1, 12_050, "1.25"),
        ("gold", "Gold", 2, 50_000, "2"),
    ]
    assert head[:4] == ("qualifying_spend", "calendar_year", None, 0)
    assert sent_after == sent + 1  # the change is announced like any ladder change
    api = (await client.get(f"/v1/programs/{program}/tiers")).json()
    assert [(t["code"], t["threshold"], t["privileges"]) for t in api["tiers"]] == [
        ("bronze", "0.00", []),
        ("silver", "120.50", ["free_delivery", "lounge"]),
        ("gold", "500.00", ["free_delivery", "lounge", "presale"]),
    ]


async def test_a_count_ladder_keeps_its_window_and_grace(
    client: httpx.AsyncClient, db: Database
) -> None:
    program = await _program_with_ladder(
        client,
        metric="visits",
        window={"kind": "rolling_months", "months": 6},
        grace_days=30,
        tiers=[
            {"code": "regular", "name": "Regular", "threshold": 5},
            {"code": "habitue", "name": "Habitué", "threshold": 20, "multiplier": "1.1"},
        ],
    )
    got = await _update(
        db, program, "regular", TierWrite(code="regular", name="Fidèle", threshold=8)
    )
    assert got.tiers == (
        TierDef("regular", "Fidèle", 0, 8, Decimal("1"), ()),
        TierDef("habitue", "Habitué", 1, 20, Decimal("1.1"), ()),
    )
    assert (got.metric, got.window, got.grace_days) == (
        "visits",
        periods.Window("rolling_months", 6),
        30,
    )
    assert got.base_rank == -1  # the lowest threshold is above 0: nobody holds a tier unearned
    _, head, _ = await _stored(db, program)
    assert head[:4] == ("visits", "rolling_months", 6, 30)


async def test_unknown_tier_is_refused_and_nothing_changes(
    client: httpx.AsyncClient, db: Database
) -> None:
    program = await _program_with_ladder(client)
    before = await _stored(db, program)
    with pytest.raises(UnknownTier) as caught:
        await _update(
            db, program, "platinum", TierWrite(code="platinum", name="Platinum", threshold="900.00")
        )
    assert caught.value.status == 422
    assert caught.value.errors == [{"field": "tier", "message": "unknown"}]
    assert await _stored(db, program) == before


async def test_a_program_without_a_ladder_has_no_tier_to_update(
    client: httpx.AsyncClient, db: Database, program: str
) -> None:
    with pytest.raises(NoLadder):
        await _update(db, program, "silver", TierWrite(code="silver", name="S", threshold="1.00"))


@pytest.mark.parametrize(
    ("code", "threshold", "field", "message"),
    [
        ("silver", "500.00", "tiers[2].threshold", "not above the tier below"),  # gold ≤ it
        ("silver", "0.00", "tiers[1].threshold", "not above the tier below"),  # = bronze
        ("gold", "99.99", "tiers[2].threshold", "not above the tier below"),  # under silver
        ("bronze", "100.00", "tiers[1].threshold", "not above the tier below"),  # silver fails
        ("silver", 120, "tiers[1].threshold", "expected a decimal string such as '500.00'"),
    ],
)
async def test_a_threshold_out_of_order_is_refused_and_the_ladder_kept(
    client: httpx.AsyncClient,
    db: Database,
    code: str,
    threshold: int | str,
    field: str,
    message: str,
) -> None:
    program = await _program_with_ladder(client)
    before = await _stored(db, program)
    with pytest.raises(InvalidLadder) as caught:
        await _update(db, program, code, TierWrite(code=code, name="Changed", threshold=threshold))
    assert caught.value.status == 422
    assert caught.value.errors == [{"field": field, "message": message}]
    assert await _stored(db, program) == before  # no rung, no name, no outbox event written
    api = (await client.get(f"/v1/programs/{program}/tiers")).json()
    assert [(t["name"], t["threshold"]) for t in api["tiers"]] == [
        ("Bronze", "0.00"),
        ("Silver", "100.00"),
        ("Gold", "500.00"),
    ]


async def test_a_tier_named_by_a_rule_can_be_changed_and_the_rule_still_applies(
    client: httpx.AsyncClient, db: Database
) -> None:
    set_now(datetime(2026, 3, 2, 12, 0, tzinfo=UTC))
    program = await _program_with_ladder(client)
    r = await client.post(f"/v1/programs/{program}/rules", json=GOLD_ONLY)
    assert r.status_code == 201, r.text
    m = await enrol(client, program)
    await event(client, program, m["id"], "purchase", total="450.00")
    assert (await tier(client, program, m["id"]))["tier"] == "silver"

    got = await _update(
        db,
        program,
        "gold",
        TierWrite(code="gold", name="Or", threshold="400.00", multiplier="3"),
    )
    assert got.tiers[2] == TierDef("gold", "Or", 2, 40_000, Decimal("3"), ())
    rule = await client.get(f"/v1/programs/{program}/rules/gold-bonus")
    assert rule.status_code == 200, rule.text
    assert rule.json()["active"] is True

    assert (await tier(client, program, m["id"]))["tier"] == "silver"  # ranks are kept
    await event(client, program, m["id"], "purchase", total="1.00")  # 451.00: now gold
    assert (await tier(client, program, m["id"]))["tier"] == "gold"
    paid = await event(client, program, m["id"], "purchase", total="10.00")
    by_rule = [e for e in paid["effects"] if e["rule"] == "gold-bonus"]
    assert [e["points"] for e in by_rule] == [5]
    assert paid["points"] == 10 * 3 + 5  # the new multiplier, and the rule of the renamed tier
