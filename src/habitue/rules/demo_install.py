"""Install the demo program's earning rules (`DEMO_RULES`) through the rules service, and the
reward the pastry lottery issues coupons of."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from habitue.db import Database
from habitue.programs import service as programs_service
from habitue.rewards import catalogue
from habitue.rewards.errors import RewardExists
from habitue.rules import service as rules_service
from habitue.rules.demo_rules import DEMO_RULES, lottery_reward
from habitue.rules.errors import RuleExists


async def install(db: Database, program_code: str) -> list[str]:
    """Save each demo rule not yet present; returns the codes installed (idempotent)."""
    async with db.read() as session:
        program = await programs_service.get_info(session, program_code)
    try:
        await db.write(lambda s: catalogue.create(s, program, lottery_reward()))
    except RewardExists:
        pass
    installed: list[str] = []
    for spec in DEMO_RULES:

        async def work(session: AsyncSession, data: dict[str, object] = spec.model_dump()) -> None:
            await rules_service.create_rule(session, program, data, actor="demo")

        try:
            await db.write(work)
        except RuleExists:
            continue
        installed.append(spec.code)
    return installed
