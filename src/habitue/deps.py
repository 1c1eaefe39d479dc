"""Typed dependencies shared by the routes: the store, the caller, the program."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from typing import Annotated, Any

import structlog
from fastapi import Depends, Path, Request
from sqlalchemy.ext.asyncio import AsyncSession

from habitue.db import Database, no_unit_hook
from habitue.errors import Forbidden, Unauthorized
from habitue.events.pipeline import Pipeline
from habitue.partners.access import PartnerAccess
from habitue.programs import service as programs_service
from habitue.programs.errors import ProgramNotFound
from habitue.programs.service import Principal, ProgramInfo
from habitue.settings import Settings

log = structlog.get_logger()


async def get_db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


async def get_settings_dep(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_pipeline(request: Request) -> Pipeline:
    """The event pipeline, built once with the app (`habitue.rooms.build_pipeline`)."""
    pipeline: Pipeline = request.app.state.pipeline
    return pipeline


DbDep = Annotated[Database, Depends(get_db)]
PipelineDep = Annotated[Pipeline, Depends(get_pipeline)]
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
    if principal.key_id is not None and programs_service.last_use_due(principal.key_id):
        await _record_use(db, principal.key_id)
    request.state.principal = principal
    return principal


async def _record_use(db: Database, key_id: int) -> None:
    """Stamp the key's last use: once a minute per key and process (`last_use_due`), in a unit
    of work of its own; a failure is logged, never the request's."""
    try:
        with no_unit_hook():  # not the request's work: no Idempotency-Key record of it
            await db.write(lambda s: programs_service.record_key_use(s, key_id))
    except Exception:  # bookkeeping must not fail the request
        log.warning("could not record an API key's use", key_id=key_id, exc_info=False)


PrincipalDep = Annotated[Principal, Depends(get_principal)]


@dataclass(frozen=True, slots=True)
class Require:
    """A dependency that checks the caller holds `scope`, and lets a partner key in only where
    the route says so (`partner`; it then needs `partner_scope` when given, else `scope`).

    The one place partner keys are kept out: a route that does not open itself to them
    (`PartnerAccess.NONE`, the default) answers them 403."""

    scope: str
    partner: PartnerAccess = PartnerAccess.NONE
    partner_scope: str | None = None

    async def __call__(self, principal: PrincipalDep) -> Principal:
        needed = self.scope
        if principal.partner is not None:
            if self.partner is PartnerAccess.NONE:
                raise Forbidden("a partner key cannot use this path")
            needed = self.partner_scope or self.scope
        if not principal.allows(needed):
            raise Forbidden(f"this key lacks the {needed!r} scope")
        return principal


def require(scope: str) -> Callable[..., Coroutine[Any, Any, Principal]]:
    """A dependency that checks the caller holds `scope` (partner keys refused)."""
    return Require(scope).__call__


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


def scoped(
    scope: str, *, partner: PartnerAccess = PartnerAccess.NONE, partner_scope: str | None = None
) -> Any:
    """The caller, who must hold `scope`; a partner key only where `partner` allows it."""
    return Depends(Require(scope, partner, partner_scope))
