"""Routes: newsletters and their reports, a program's message settings, and the webhook
event catalogue's JSON Schemas (public: a receiver's developer reads them without a key)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Path
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncSession

from habitue.deps import DbDep, ProgramDep, ReadSession, scoped
from habitue.messaging import catalogue, newsletters, preferences
from habitue.messaging.errors import WebhookEventNotFound
from habitue.messaging.schemas import CODE_PATTERN, MessageSettings, NewsletterCreate
from habitue.programs.service import Principal

router = APIRouter(prefix="/v1/programs/{program}", tags=["newsletters"])
public = APIRouter(prefix="/v1/webhook-events", tags=["webhooks"])

NEWSLETTERS = "/newsletters"


@router.post(NEWSLETTERS, status_code=201)
async def create_newsletter(
    program: ProgramDep, body: NewsletterCreate, db: DbDep, _: Principal = scoped("admin")
) -> dict[str, Any]:
    """Schedule a newsletter, or send it now when `send_at` is absent; with its report."""

    async def work(session: AsyncSession) -> dict[str, Any]:
        return await newsletters.create(
            session,
            program,
            code=body.code,
            segment=body.segment,
            template=body.template,
            holdout_share=body.holdout_share,
            send_at=body.send_at,
        )

    return await db.write(work)


@router.get(NEWSLETTERS)
async def list_newsletters(
    program: ProgramDep, session: ReadSession, _: Principal = scoped("admin")
) -> dict[str, Any]:
    """The program's newsletters, latest first."""
    return {"items": await newsletters.list_newsletters(session, program)}


@router.get(NEWSLETTERS + "/{code}")
async def get_newsletter(
    program: ProgramDep,
    session: ReadSession,
    code: str = Path(pattern=CODE_PATTERN),
    _: Principal = scoped("admin"),
) -> dict[str, Any]:
    """The newsletter and its send report: `targeted`, `holdout`, `sent`, `skipped_consent`,
    `skipped_cap`, `skipped_other`, `failed`, `bounced`, `pending`."""
    return await newsletters.get(session, program, code)


@router.post(NEWSLETTERS + "/{code}/send")
async def send_newsletter(
    program: ProgramDep,
    db: DbDep,
    code: str = Path(pattern=CODE_PATTERN),
    _: Principal = scoped("admin"),
) -> dict[str, Any]:
    """Send a scheduled newsletter now."""

    async def work(session: AsyncSession) -> dict[str, Any]:
        await newsletters.send(session, program, code)
        return await newsletters.get(session, program, code)

    return await db.write(work)


@router.post(NEWSLETTERS + "/{code}/cancel")
async def cancel_newsletter(
    program: ProgramDep,
    db: DbDep,
    code: str = Path(pattern=CODE_PATTERN),
    _: Principal = scoped("admin"),
) -> dict[str, Any]:
    """Cancel a scheduled newsletter."""

    async def work(session: AsyncSession) -> dict[str, Any]:
        return await newsletters.cancel(session, program, code)

    return await db.write(work)


@router.get("/message-settings", tags=["messages"])
async def get_message_settings(
    program: ProgramDep, session: ReadSession, _: Principal = scoped("admin")
) -> dict[str, Any]:
    """The program's `weekly_cap`, `quiet_hours` and `points_expiring_days` (null: the
    server's default)."""
    return await preferences.read(session, program)


@router.put("/message-settings", tags=["messages"])
async def put_message_settings(
    program: ProgramDep, body: MessageSettings, db: DbDep, _: Principal = scoped("admin")
) -> dict[str, Any]:
    """Set the program's message settings (a field left out or null: the server's default)."""

    async def work(session: AsyncSession) -> dict[str, Any]:
        return await preferences.write(session, program, body)

    return await db.write(work)


@public.get("/schemas")
async def webhook_schemas() -> dict[str, Any]:
    """The webhook event catalogue: its version and the event types."""
    return catalogue.index()


@public.get("/schemas/{event_type}")
async def webhook_schema(event_type: str) -> JSONResponse:
    """The JSON Schema of one event type's deliveries (`application/schema+json`)."""
    if event_type.endswith(".json"):
        event_type = event_type.removesuffix(".json")
    try:
        body = catalogue.schema(event_type)
    except KeyError:
        raise WebhookEventNotFound(f"no webhook event type {event_type!r}") from None
    return JSONResponse(body, media_type="application/schema+json")
