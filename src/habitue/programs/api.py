"""Routes: programs and API keys."""

from __future__ import annotations

from fastapi import APIRouter

from habitue.deps import DbDep, ProgramDep, ReadSession, scoped
from habitue.errors import Forbidden
from habitue.programs import service as programs_service
from habitue.programs.schemas import ApiKeyCreate, ApiKeyRead, ProgramCreate, ProgramRead
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
