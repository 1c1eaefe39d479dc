"""Routes: a rule's draft (save, read, discard, test on an event, backtest, publish).

Around the core contract: `/rules/{code}/draft…` and `/rule-drafts`; the `/rules` paths and
fields are unchanged. Every route needs the `rules:write` scope.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Response
from sqlalchemy.ext.asyncio import AsyncSession

from habitue.deps import DbDep, PipelineDep, ProgramDep, ReadSession, scoped
from habitue.events.schemas import EventCreate
from habitue.programs.service import Principal
from habitue.rules import drafts
from habitue.rules.errors import InvalidRule
from habitue.rules.schemas import (
    BacktestCreate,
    DraftBacktestRead,
    DraftRead,
    DraftTestRead,
    RuleRead,
)

router = APIRouter(prefix="/v1/programs/{program}", tags=["rules"])

DraftBody = Annotated[
    dict[str, Any],
    Body(description="the whole rule, as `POST /rules` takes it (its `code` may be left out)"),
]
_INVALID: dict[int | str, dict[str, Any]] = {422: {"description": InvalidRule.title}}
_MISSING: dict[int | str, dict[str, Any]] = {404: {"description": "No draft of this rule"}}


@router.put("/rules/{code}/draft", response_model=DraftRead, responses=_INVALID)
async def put_draft(
    program: ProgramDep,
    code: str,
    body: DraftBody,
    db: DbDep,
    principal: Principal = scoped("rules:write"),
) -> DraftRead:
    async def work(session: AsyncSession) -> DraftRead:
        return await drafts.put_draft(session, program, code, body, actor=principal.name)

    return await db.write(work)


@router.get("/rules/{code}/draft", response_model=DraftRead, responses=_MISSING)
async def get_draft(
    program: ProgramDep, code: str, session: ReadSession, _: Principal = scoped("rules:write")
) -> DraftRead:
    return await drafts.get_draft(session, program, code)


@router.get("/rule-drafts", response_model=list[DraftRead])
async def list_drafts(
    program: ProgramDep, session: ReadSession, _: Principal = scoped("rules:write")
) -> list[DraftRead]:
    return await drafts.list_drafts(session, program)


@router.delete("/rules/{code}/draft", status_code=204, responses=_MISSING)
async def delete_draft(
    program: ProgramDep, code: str, db: DbDep, _: Principal = scoped("rules:write")
) -> Response:
    async def work(session: AsyncSession) -> None:
        await drafts.delete_draft(session, program, code)

    await db.write(work)
    return Response(status_code=204)


@router.post(
    "/rules/{code}/draft/test", response_model=DraftTestRead, responses={**_INVALID, **_MISSING}
)
async def try_draft(
    program: ProgramDep,
    code: str,
    body: EventCreate,
    pipeline: PipelineDep,
    session: ReadSession,
    _: Principal = scoped("rules:write"),
) -> DraftTestRead:
    return await drafts.try_draft(session, pipeline, program, code, body)


@router.post(
    "/rules/{code}/draft/backtest",
    response_model=DraftBacktestRead,
    responses={**_INVALID, **_MISSING},
)
async def backtest_draft(
    program: ProgramDep,
    code: str,
    session: ReadSession,
    body: BacktestCreate | None = None,
    _: Principal = scoped("rules:write"),
) -> DraftBacktestRead:
    return await drafts.backtest_draft(session, program, code, body or BacktestCreate())


@router.post(
    "/rules/{code}/draft/publish",
    response_model=RuleRead,
    responses={**_INVALID, **_MISSING, 409: {"description": "The live rule changed since"}},
)
async def publish_draft(
    program: ProgramDep, code: str, db: DbDep, principal: Principal = scoped("rules:write")
) -> RuleRead:
    async def work(session: AsyncSession) -> RuleRead:
        return await drafts.publish_draft(session, program, code, actor=principal.name)

    return await db.write(work)
