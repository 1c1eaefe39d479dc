"""Typed dependencies shared by the routes: the store, the caller, the program."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, Path, Request
from sqlalchemy.ext.asyncio import AsyncSession

from habitue.db import Database
from habitue.errors import Forbidden, Unauthorized
from habitue.programs import service as programs_service
from habitue.programs.errors import ProgramNotFound
from habitue.programs.service import Principal, ProgramInfo
from habitue.settings import Settings


async def get_db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


async def get_settings_dep(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


DbDep = Annotated[Database, Depends(get_db)]
SettingsDep = Annotated[Settings, Depends(get_settings_dep)]


async def read_session(db: DbDep) -> AsyncIterator[AsyncSession]:
    async with db.read() as session:
        yield session


ReadSession = Annotated[AsyncSession, Depends(read_session)]


async def get_principal(request: Request) -> Principal:
    # The store and the settings are read off the app, not through dependencies of their own:
    # every request resolves this one, and each dependency costs FastAPI a resolution step.
    db: Database = request.app.state.db
    settings: Settings = request.app.state.settings
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key:
        raise Unauthorized("send Authorization: Bearer <key>")
    key = key.strip()
    known, principal = programs_service.cached_principal(key, settings.admin_key)
    if not known:
        async with db.read() as session:
            principal = await programs_service.authenticate(session, key, settings.admin_key)
    if principal is None:
        raise Unauthorized("unknown or revoked key")
    request.state.principal = principal
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def require(scope: str) -> Callable[..., Coroutine[Any, Any, Principal]]:
    """A dependency that checks the caller holds `scope`."""

    async def _check(principal: PrincipalDep) -> Principal:
        if not principal.allows(scope):
            raise Forbidden(f"this key lacks the {scope!r} scope")
        return principal

    return _check


async def get_program(
    program: Annotated[str, Path(description="the program's code")],
    principal: PrincipalDep,
    request: Request,
) -> ProgramInfo:
    info = programs_service.cached_info(program)
    if info is None:
        db: Database = request.app.state.db
        async with db.read() as session:
            info = await programs_service.get_info(session, program)
    if principal.program_id is not None and principal.program_id != info.id:
        # Another program's key sees nothing of this one: not even that it exists.
        raise ProgramNotFound(f"no program {program!r}")
    return info


ProgramDep = Annotated[ProgramInfo, Depends(get_program)]


def scoped(scope: str) -> Any:
    return Depends(require(scope))
