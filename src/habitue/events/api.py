"""Routes: record and quote events."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from habitue.deps import DbDep, PipelineDep, ProgramDep, ReadSession, scoped
from habitue.events import batch as events_batch
from habitue.events import service as events_service
from habitue.events.schemas import EventCreate, EventRead
from habitue.partners import access as partner_access
from habitue.partners.access import PartnerAccess
from habitue.programs.service import Principal

router = APIRouter(prefix="/v1/programs/{program}/events", tags=["events"])


@router.post("", status_code=201, response_model=EventRead)
async def record_event(
    program: ProgramDep,
    body: EventCreate,
    db: DbDep,
    pipeline: PipelineDep,
    principal: Principal = scoped("events:write", partner=PartnerAccess.OWN),
) -> Response:
    if principal.partner is not None:
        body = await partner_access.event_for(db, program, principal, body)
    event = await events_service.record_event(db, pipeline, program, body)
    # Serialised once, here: the hot path skips FastAPI's validation of the answer against
    # `response_model` (which stays for the OpenAPI document and the Idempotency-Key record).
    return Response(event.model_dump_json(), status_code=201, media_type="application/json")


@router.post("/batch", response_model=events_batch.BatchRead)
async def record_batch(
    program: ProgramDep,
    body: events_batch.BatchCreate,
    db: DbDep,
    pipeline: PipelineDep,
    principal: Principal = scoped("events:write", partner=PartnerAccess.OWN),
) -> Response:
    """Up to 1,000 events, each recorded as `POST /events` would, answered slot by slot."""
    content = await events_batch.record_batch(db, pipeline, program, principal, body.events)
    return Response(content, media_type="application/json")


@router.post("/quote", response_model=EventRead)
async def quote_event(
    program: ProgramDep,
    body: EventCreate,
    db: DbDep,
    pipeline: PipelineDep,
    session: ReadSession,
    principal: Principal = scoped("events:write", partner=PartnerAccess.OWN),
) -> EventRead:
    if principal.partner is not None:
        body = await partner_access.event_for(db, program, principal, body)
    return await events_service.quote(session, pipeline, program, body)


@router.get("/{event_id}", response_model=EventRead)
async def get_event(
    program: ProgramDep,
    event_id: str,
    session: ReadSession,
    principal: Principal = scoped("events:read", partner=PartnerAccess.OWN),
) -> EventRead:
    """An event by id; a partner key finds only its own partner's events."""
    return await events_service.get(session, program, event_id, source=principal.partner)
