"""The partners room's stages of the event pipeline (listed in `habitue.rooms`).

Issued and redeemed points are recorded by an `after_record` stage: it runs once the event's
row is written (movements refer to it) and is told the event's `source`, which names the
partner. Refunds reverse them in `after_refund`.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from habitue.events.pipeline import EventApplied, Planned, RefundApplied
from habitue.events.schemas import EffectRead
from habitue.partners import service as partners_service


async def after_record(session: AsyncSession, applied: EventApplied) -> None:
    await partners_service.on_event_recorded(session, applied)


async def after_refund(session: AsyncSession, applied: RefundApplied) -> Planned:
    effects = await partners_service.on_refund(session, applied)
    return Planned([EffectRead.model_validate(x) for x in effects])
