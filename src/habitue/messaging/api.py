"""Routes: the domain-event feed."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from sqlalchemy.ext.asyncio import AsyncSession

from habitue.deps import DbDep, ProgramDep, scoped
from habitue.messaging import outbox
from habitue.programs.service import Principal

router = APIRouter(prefix="/v1/programs/{program}", tags=["events-feed"])


@router.get("/events-feed")
async def events_feed(
    program: ProgramDep,
    db: DbDep,
    after: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    _: Principal = scoped("events:read"),
) -> dict[str, Any]:
    """Domain events after position `after`, in commit order; positions only grow."""

    async def work(session: AsyncSession) -> dict[str, Any]:
        await outbox.sequence_pending(session, program.id)
        items = await outbox.read_feed(session, program.id, after=after, limit=limit)
        return {"items": items, "next_after": items[-1]["id"] if items else after}

    return await db.write(work)
