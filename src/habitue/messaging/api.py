"""Routes: the domain-event feed and the message templates."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response
from sqlalchemy.ext.asyncio import AsyncSession

from habitue.bounds import Cursor
from habitue.deps import DbDep, ProgramDep, ReadSession, scoped
from habitue.messaging import outbox
from habitue.messaging import templates as templates_service
from habitue.messaging.schemas import (
    CODE_PATTERN,
    Channel,
    Locale,
    PreviewRead,
    PreviewRequest,
    TemplateRead,
    TemplateWrite,
)
from habitue.programs.service import Principal

router = APIRouter(prefix="/v1/programs/{program}", tags=["events-feed"])


@router.get("/events-feed")
async def events_feed(
    program: ProgramDep,
    db: DbDep,
    after: Cursor = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    _: Principal = scoped("events:read"),
) -> dict[str, Any]:
    """Domain events after position `after`, in commit order; positions only grow."""

    async def work(session: AsyncSession) -> dict[str, Any]:
        await outbox.sequence_pending(session, program.id)
        items = await outbox.read_feed(session, program.id, after=after, limit=limit)
        return {"items": items, "next_after": items[-1]["id"] if items else after}

    return await db.write(work)


# --- message templates ----------------------------------------------------------------------

TEMPLATES = "/message-templates"
CodePath = Annotated[str, Path(pattern=CODE_PATTERN, description="e.g. welcome, tier_up")]


@router.get(TEMPLATES, response_model=list[TemplateRead], tags=["messages"])
async def list_templates(
    program: ProgramDep,
    session: ReadSession,
    code: Annotated[str | None, Query(pattern=CODE_PATTERN)] = None,
    _: Principal = scoped("admin"),
) -> list[TemplateRead]:
    """The program's message templates (of one `code` when given)."""
    return await templates_service.list_templates(session, program, code)


@router.get(
    TEMPLATES + "/{code}/{channel}/{locale}", response_model=TemplateRead, tags=["messages"]
)
async def get_template(
    program: ProgramDep,
    code: CodePath,
    channel: Channel,
    locale: Locale,
    session: ReadSession,
    _: Principal = scoped("admin"),
) -> TemplateRead:
    return await templates_service.get_template(session, program, code, channel, locale)


@router.put(
    TEMPLATES + "/{code}/{channel}/{locale}",
    response_model=TemplateRead,
    responses={201: {"description": "created"}, 422: {"description": "invalid template"}},
    tags=["messages"],
)
async def put_template(
    program: ProgramDep,
    code: CodePath,
    channel: Channel,
    locale: Locale,
    body: TemplateWrite,
    db: DbDep,
    response: Response,
    _: Principal = scoped("admin"),
) -> TemplateRead:
    """Create (201) or replace (200) a template; one that does not compile, names an unknown
    variable or is refused by the sandbox is a 422 `invalid-message-template`."""

    async def work(session: AsyncSession) -> tuple[TemplateRead, bool]:
        return await templates_service.put_template(session, program, code, channel, locale, body)

    saved, created = await db.write(work)
    response.status_code = 201 if created else 200
    return saved


@router.delete(TEMPLATES + "/{code}/{channel}/{locale}", status_code=204, tags=["messages"])
async def delete_template(
    program: ProgramDep,
    code: CodePath,
    channel: Channel,
    locale: Locale,
    db: DbDep,
    _: Principal = scoped("admin"),
) -> Response:
    async def work(session: AsyncSession) -> None:
        await templates_service.delete_template(session, program, code, channel, locale)

    await db.write(work)
    return Response(status_code=204)


@router.post(TEMPLATES + "/{code}/preview", response_model=PreviewRead, tags=["messages"])
async def preview_template(
    program: ProgramDep,
    code: CodePath,
    body: PreviewRequest,
    session: ReadSession,
    _: Principal = scoped("admin"),
) -> PreviewRead:
    """The template rendered for a member (in their language) or for sample data; writes
    nothing."""
    return await templates_service.preview(session, program, code, body)
