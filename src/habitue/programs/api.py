"""Routes: programs and API keys."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter
from fastapi import Path as PathParam

from habitue.deps import DbDep, ProgramDep, ReadSession, scoped
from habitue.errors import Forbidden
from habitue.programs import service as programs_service
from habitue.programs.schemas import (
    ApiKeyCreate,
    ApiKeyRead,
    EventTypeSpec,
    ProgramCreate,
    ProgramRead,
)
from habitue.programs.service import Principal

router = APIRouter(prefix="/v1/programs", tags=["programs"])


@router.post("", status_code=201, response_model=ProgramRead)
async def create_program(
    body: ProgramCreate, db: DbDep, principal: Principal = scoped("admin")
) -> ProgramRead:
    if principal.program_id is not None:
        raise Forbidden("only the operator key creates programs")

    async def work(session: object) -> ProgramRead:
        from sqlalchemy.ext.asyncio import AsyncSession

        assert isinstance(session, AsyncSession)
        info = await programs_service.create_program(session, body)
        return programs_service.to_read(info)

    return await db.write(work)


@router.get("/{program}", response_model=ProgramRead)
async def get_program(
    program: ProgramDep, session: ReadSession, _: Principal = scoped("members:read")
) -> ProgramRead:
    created = await programs_service.program_created_at(session, program.id)
    return programs_service.to_read(program, created)


@router.post("/{program}/api-keys", status_code=201, response_model=ApiKeyRead)
async def create_api_key(
    program: ProgramDep, body: ApiKeyCreate, db: DbDep, _: Principal = scoped("admin")
) -> ApiKeyRead:
    return await db.write(lambda s: programs_service.create_api_key(s, program, body))


@router.put("/{program}/event-types/{code}")
async def put_event_type(
    program: ProgramDep,
    code: Annotated[str, PathParam(pattern=r"^[a-z][a-z0-9_]{0,31}$")],
    body: EventTypeSpec,
    db: DbDep,
    _: Principal = scoped("rules:write"),
) -> dict[str, Any]:
    """Declare a custom event type (e.g. `workshop_attended`) and its attributes' schema."""
    return await db.write(lambda s: programs_service.put_event_type(s, program, code, body))


@router.get("/{program}/event-types")
async def list_event_types(
    program: ProgramDep, _: Principal = scoped("members:read")
) -> dict[str, Any]:
    return {"items": [{"code": k, **v} for k, v in sorted(program.event_types.items())]}
