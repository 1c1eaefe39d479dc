"""The console's webhooks page: the program's endpoints and their latest deliveries, with
failed (parked) deliveries retried on demand.

Owners only. Endpoints are made, changed and rotated through the API
(`POST /v1/programs/{p}/webhooks`, docs/messaging.md): their secrets are shown once, to the
caller that made them, never on a page.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy.ext.asyncio import AsyncSession

from habitue.messaging import deliveries, webhooks
from habitue.messaging.errors import DeliveryNotFound, WebhookNotFound
from habitue.web.admin import _db
from habitue.web.admin_forms import console_for, posted
from habitue.web.member_messages import STATUS_LABELS

router = APIRouter(prefix="/admin", include_in_schema=False)

LATEST = 20


@router.get("/{program}/webhooks")
async def webhooks_page(request: Request, program: str) -> Response:
    console = await console_for(request, program, "webhooks")
    if isinstance(console, Response):
        return console
    info = console.program
    assert info is not None
    endpoints: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []
    async with _db(request).read() as session:
        for endpoint in await webhooks.list_endpoints(session, info):
            latest = await deliveries.endpoint_deliveries(
                session, info, endpoint["id"], limit=LATEST
            )
            endpoints.append((endpoint, latest))
    return console.render(
        "admin/webhooks.html",
        endpoints=endpoints,
        statuses=STATUS_LABELS,
        retried=request.query_params.get("retried"),
    )


@router.post("/{program}/webhooks/{endpoint_id}/deliveries/{delivery_id}/retry")
async def retry_delivery(
    request: Request, program: str, endpoint_id: str, delivery_id: str
) -> Response:
    found = await posted(request, program, "webhooks")
    if isinstance(found, Response):
        return found
    console, _form = found
    info = console.program
    assert info is not None

    async def work(session: AsyncSession) -> None:
        await deliveries.retry(session, info, endpoint_id[:64], delivery_id[:64])

    try:
        await _db(request).write(work)
    except (WebhookNotFound, DeliveryNotFound):
        return console.not_found()
    return console.page.redirect(f"/admin/{info.code}/webhooks?retried={delivery_id[:64]}")
