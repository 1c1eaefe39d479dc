"""Routes: programs and API keys."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response
from fastapi import Path as PathParam

from habitue.deps import DbDep, ProgramDep, ReadSession, scoped
from habitue.errors import Forbidden
from habitue.partners.access import PartnerAccess
from habitue.programs import service as programs_service
from habitue.programs.schemas import (
    ApiKeyCreate,
    ApiKeyRead,
    Branding,
    EventTypeSpec,
    ProgramCreate,
    ProgramRead,
)
from habitue.programs.service import Principal

router = APIRouter(prefix="/v1/programs", tags=["programs"])


async def operator_only(principal: Principal = scoped("admin")) -> Principal:
    """The operator's key, checked before the body is read (a program's key learns nothing
    from a validation answer)."""
    if principal.program_id is not None:
        raise Forbidden("only the operator key creates programs")
    return principal


@router.post("", status_code=201, response_model=ProgramRead)
async def create_program(
    body: ProgramCreate, db: DbDep, _: Principal = Depends(operator_only)
) -> ProgramRead:
    async def work(session: object) -> ProgramRead:
        from sqlalchemy.ext.asyncio import AsyncSession

        assert isinstance(session, AsyncSession)
        info = await programs_service.create_program(session, body)
        return programs_service.to_read(info)

    return await db.write(work)


@router.get("/{program}", response_model=ProgramRead)
async def get_program(
    program: ProgramDep,
    session: ReadSession,
    _: Principal = scoped("members:read", partner=PartnerAccess.TILL),
) -> ProgramRead:
    created = await programs_service.program_created_at(session, program.id)
    return programs_service.to_read(program, created)


@router.post("/{program}/api-keys", status_code=201, response_model=ApiKeyRead)
async def create_api_key(
    program: ProgramDep, body: ApiKeyCreate, db: DbDep, _: Principal = scoped("admin")
) -> ApiKeyRead:
    return await db.write(lambda s: programs_service.create_api_key(s, program, body))


@router.get("/{program}/api-keys", response_model=list[ApiKeyRead])
async def list_api_keys(
    program: ProgramDep, session: ReadSession, _: Principal = scoped("admin")
) -> list[ApiKeyRead]:
    """The program's keys with their last use and revocation; never their secrets."""
    return await programs_service.list_api_keys(session, program)


@router.delete("/{program}/api-keys/{key_id}", status_code=204)
async def revoke_api_key(
    program: ProgramDep,
    key_id: Annotated[int, PathParam(ge=1, le=2**63 - 1)],
    db: DbDep,
    _: Principal = scoped("admin"),
) -> Response:
    """Revoke a key: refused at once by this process, by the others within 5 seconds."""
    await db.write(lambda s: programs_service.revoke_api_key(s, program, key_id))
    programs_service.forget_key(key_id)
    return Response(status_code=204)


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
    program: ProgramDep, _: Principal = scoped("members:read", partner=PartnerAccess.TILL)
) -> dict[str, Any]:
    return {"items": [{"code": k, **v} for k, v in sorted(program.event_types.items())]}


@router.get("/{program}/branding", response_model=Branding)
async def get_branding(program: ProgramDep, _: Principal = scoped("members:read")) -> Branding:
    """The logo and colours the portal and the wallet pass show."""
    return programs_service.branding_of(program)


@router.put("/{program}/branding", response_model=Branding)
async def put_branding(
    program: ProgramDep, body: Branding, db: DbDep, _: Principal = scoped("admin")
) -> Branding:
    """Set the logo (an https address) and the colours (white text must read on
    `primary_color`, dark text on `background_color`)."""
    return await db.write(lambda s: programs_service.put_branding(s, program, body))
