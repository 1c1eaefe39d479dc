"""Routes: a program's earning rules (create, list, read with history, edit, delete)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Response
from sqlalchemy.ext.asyncio import AsyncSession

from habitue.deps import DbDep, ProgramDep, ReadSession, scoped
from habitue.programs.service import Principal
from habitue.rules import service as rules_service
from habitue.rules.errors import InvalidRule, RuleExists, RuleNotFound
from habitue.rules.schemas import RulePage, RuleRead

router = APIRouter(prefix="/v1/programs/{program}", tags=["rules"])

RuleBody = Annotated[
    dict[str, Any],
    Body(
        description="a rule (see docs/rules.md): code, event_type, condition (CEL), "
        "line_condition, effect, valid_from/valid_to, schedule, audience, caps, budget, "
        "priority, exclusive, active",
    ),
]
_INVALID: dict[int | str, dict[str, Any]] = {422: {"description": InvalidRule.title}}
_MISSING: dict[int | str, dict[str, Any]] = {404: {"description": RuleNotFound.title}}


@router.post(
    "/rules",
    status_code=201,
    response_model=RuleRead,
    responses={**_INVALID, 409: {"description": RuleExists.title}},
)
async def create_rule(
    program: ProgramDep,
    body: RuleBody,
    db: DbDep,
    principal: Principal = scoped("rules:write"),
) -> RuleRead:
    async def work(session: AsyncSession) -> RuleRead:
        return await rules_service.create_rule(session, program, body, actor=principal.name)

    return await db.write(work)


@router.get("/rules", response_model=RulePage)
async def list_rules(
    program: ProgramDep, session: ReadSession, _: Principal = scoped("rules:write")
) -> RulePage:
    return await rules_service.list_rules(session, program)


@router.get("/rules/{code}", response_model=RuleRead, responses=_MISSING)
async def get_rule(
    program: ProgramDep, code: str, session: ReadSession, _: Principal = scoped("rules:write")
) -> RuleRead:
    return await rules_service.get_rule(session, program, code)


@router.patch("/rules/{code}", response_model=RuleRead, responses={**_INVALID, **_MISSING})
async def update_rule(
    program: ProgramDep,
    code: str,
    body: RuleBody,
    db: DbDep,
    principal: Principal = scoped("rules:write"),
) -> RuleRead:
    async def work(session: AsyncSession) -> RuleRead:
        return await rules_service.update_rule(session, program, code, body, actor=principal.name)

    return await db.write(work)


@router.delete("/rules/{code}", status_code=204, responses=_MISSING)
async def delete_rule(
    program: ProgramDep, code: str, db: DbDep, _: Principal = scoped("rules:write")
) -> Response:
    async def work(session: AsyncSession) -> None:
        await rules_service.delete_rule(session, program, code)

    await db.write(work)
    return Response(status_code=204)
