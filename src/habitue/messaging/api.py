"""Routes: the domain-event feed, message templates, a member's messages, unsubscribe links
and webhook endpoints."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import HTMLResponse
from sqlalchemy.ext.asyncio import AsyncSession

from habitue.bounds import Cursor
from habitue.db import Database
from habitue.deps import DbDep, ProgramDep, ReadSession, scoped
from habitue.members import service as members_service
from habitue.members.errors import MemberNotFound
from habitue.members.schemas import MemberUpdate
from habitue.messaging import deliveries, outbox, unsubscribe, webhooks
from habitue.messaging import templates as templates_service
from habitue.messaging.errors import InvalidUnsubscribeLink
from habitue.messaging.schemas import (
    CODE_PATTERN,
    Channel,
    Locale,
    PreviewRead,
    PreviewRequest,
    TemplateRead,
    TemplateWrite,
    WebhookCreate,
    WebhookUpdate,
)
from habitue.programs import service as programs_service
from habitue.programs.service import Principal
from habitue.settings import Settings

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


# --- a member's messages ----------------------------------------------------------------------


@router.get("/members/{member_id}/messages", tags=["messages"])
async def member_messages(
    program: ProgramDep,
    member_id: str,
    session: ReadSession,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    _: Principal = scoped("members:read"),
) -> dict[str, Any]:
    """Every message owed to the member, newest first: `channel`, `template`, `status`
    (`pending`, `sent`, `skipped` with a `reason`, `failed` with a `reason`), `sent_at`."""
    await members_service.resolve(session, program, member_id=member_id)
    return {"items": await deliveries.member_messages(session, program, member_id, limit=limit)}


@router.post("/members/{member_id}/messages/{message_id}/retry", tags=["messages"])
async def retry_member_message(
    program: ProgramDep,
    member_id: str,
    message_id: str,
    db: DbDep,
    _: Principal = scoped("members:write"),
) -> dict[str, Any]:
    """Send a failed (parked) or skipped message again now."""

    async def work(session: AsyncSession) -> dict[str, Any]:
        return await deliveries.retry_message(session, program, member_id, message_id)

    return await db.write(work)


# --- one-click unsubscribe (no API key: the signed link is the credential) --------------------

_UNSUBSCRIBE_PAGE = """<!doctype html><html><head><meta charset="utf-8">
<meta name="robots" content="noindex"><title>Unsubscribe</title></head><body>
<form method="post"><p>Stop receiving emails from this program?</p>
<button type="submit" name="List-Unsubscribe" value="One-Click">Unsubscribe</button></form>
</body></html>"""
_UNSUBSCRIBED_PAGE = """<!doctype html><html><head><meta charset="utf-8">
<title>Unsubscribed</title></head><body><p>You will not receive these emails any more.</p>
</body></html>"""


def _unsubscribed_member(request: Request, program: str, token: str) -> str:
    settings: Settings = request.app.state.settings
    member_id = unsubscribe.member_of(settings.hmac_key, program, token)
    if member_id is None:
        raise InvalidUnsubscribeLink("this unsubscribe link is not valid")
    return member_id


@router.get("/unsubscribe/{token}", include_in_schema=False)
async def unsubscribe_page(program: str, token: str, request: Request) -> HTMLResponse:
    """A confirmation page (a mail client's link preview must not unsubscribe anyone)."""
    _unsubscribed_member(request, program, token)
    return HTMLResponse(_UNSUBSCRIBE_PAGE)


@router.post("/unsubscribe/{token}", tags=["messages"])
async def unsubscribe_now(program: str, token: str, request: Request) -> HTMLResponse:
    """One-click unsubscribe (RFC 8058): withdraws the member's email consent."""
    db: Database = request.app.state.db

    async def work(session: AsyncSession) -> None:
        member_id = _unsubscribed_member(request, program, token)
        info = await programs_service.get_info(session, program)
        try:
            await members_service.update_member(
                session,
                info,
                member_id,
                MemberUpdate(consents={"email": False}),
                actor="unsubscribe",
            )
        except MemberNotFound as exc:
            raise InvalidUnsubscribeLink("this unsubscribe link is not valid") from exc

    await db.write(work)
    return HTMLResponse(_UNSUBSCRIBED_PAGE)


# --- webhooks ---------------------------------------------------------------------------------

WEBHOOKS = "/webhooks"


def _production(request: Request) -> bool:
    settings: Settings = request.app.state.settings
    return settings.env == "production"


@router.get("/webhook-events", tags=["webhooks"])
async def webhook_events(_program: ProgramDep, _: Principal = scoped("admin")) -> dict[str, Any]:
    """The event types an endpoint may subscribe to, with what each says."""
    return {"items": [{"type": k, "description": v} for k, v in webhooks.CATALOGUE.items()]}


@router.post(WEBHOOKS, status_code=201, tags=["webhooks"])
async def create_webhook(
    program: ProgramDep,
    body: WebhookCreate,
    db: DbDep,
    request: Request,
    _: Principal = scoped("admin"),
) -> dict[str, Any]:
    """A new endpoint; its `secret` (`whsec_…`) is in this answer only."""
    production = _production(request)

    async def work(session: AsyncSession) -> dict[str, Any]:
        return await webhooks.create(
            session,
            program,
            url=body.url,
            events=body.events,
            description=body.description,
            production=production,
        )

    return await db.write(work)


@router.get(WEBHOOKS, tags=["webhooks"])
async def list_webhooks(
    program: ProgramDep, session: ReadSession, _: Principal = scoped("admin")
) -> dict[str, Any]:
    return {"items": await webhooks.list_endpoints(session, program)}


@router.get(WEBHOOKS + "/{webhook_id}", tags=["webhooks"])
async def get_webhook(
    program: ProgramDep, webhook_id: str, session: ReadSession, _: Principal = scoped("admin")
) -> dict[str, Any]:
    return webhooks.read(await webhooks.get_row(session, program, webhook_id))


@router.patch(WEBHOOKS + "/{webhook_id}", tags=["webhooks"])
async def patch_webhook(
    program: ProgramDep,
    webhook_id: str,
    body: WebhookUpdate,
    db: DbDep,
    request: Request,
    _: Principal = scoped("admin"),
) -> dict[str, Any]:
    production = _production(request)
    changes = body.model_dump(exclude_unset=True)

    async def work(session: AsyncSession) -> dict[str, Any]:
        return await webhooks.update_endpoint(
            session, program, webhook_id, changes, production=production
        )

    return await db.write(work)


@router.delete(WEBHOOKS + "/{webhook_id}", status_code=204, tags=["webhooks"])
async def delete_webhook(
    program: ProgramDep, webhook_id: str, db: DbDep, _: Principal = scoped("admin")
) -> Response:
    async def work(session: AsyncSession) -> None:
        await webhooks.delete_endpoint(session, program, webhook_id)

    await db.write(work)
    return Response(status_code=204)


@router.post(WEBHOOKS + "/{webhook_id}/rotate-secret", tags=["webhooks"])
async def rotate_webhook_secret(
    program: ProgramDep, webhook_id: str, db: DbDep, _: Principal = scoped("admin")
) -> dict[str, Any]:
    """A new secret (shown once); the previous one keeps signing for 24 hours."""

    async def work(session: AsyncSession) -> dict[str, Any]:
        return await webhooks.rotate_secret(session, program, webhook_id)

    return await db.write(work)


@router.get(WEBHOOKS + "/{webhook_id}/deliveries", tags=["webhooks"])
async def webhook_deliveries(
    program: ProgramDep,
    webhook_id: str,
    session: ReadSession,
    status: Annotated[Literal["pending", "sent", "skipped", "failed"] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    _: Principal = scoped("admin"),
) -> dict[str, Any]:
    """The endpoint's deliveries, newest first, each with its attempts (time, status code,
    error); `status=failed` lists the parked ones."""
    items = await deliveries.endpoint_deliveries(
        session, program, webhook_id, status=status, limit=limit
    )
    return {"items": items}


@router.post(WEBHOOKS + "/{webhook_id}/deliveries/{delivery_id}/retry", tags=["webhooks"])
async def retry_webhook_delivery(
    program: ProgramDep,
    webhook_id: str,
    delivery_id: str,
    db: DbDep,
    _: Principal = scoped("admin"),
) -> dict[str, Any]:
    """Send a delivery again now (a parked one gets a fresh retry period)."""

    async def work(session: AsyncSession) -> dict[str, Any]:
        return await deliveries.retry(session, program, webhook_id, delivery_id)

    return await db.write(work)
