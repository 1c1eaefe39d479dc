"""The console's webhooks pages: the program's endpoints made, changed, disabled, deleted and
their secrets rotated; each endpoint's deliveries, with failed (parked) ones sent again.

Owners only (the `webhooks` action). Every change is the same service call as the API's
(`messaging.webhooks`, `POST /v1/programs/{p}/webhooks`…). A new secret is shown once, in the
answer to the form that made it (never in an address, never on a later page).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy.ext.asyncio import AsyncSession

from habitue.errors import ValidationFailed
from habitue.messaging import deliveries, webhooks
from habitue.messaging.errors import DeliveryNotFound, WebhookNotFound
from habitue.settings import Settings
from habitue.web.admin import Console, _db
from habitue.web.admin_forms import TOO_LONG, console_for, posted
from habitue.web.i18n import _l
from habitue.web.member_messages import STATUS_LABELS

router = APIRouter(prefix="/admin", include_in_schema=False)

LATEST = 20
ALL = 100
EVENT_FIELD = "event-"
"""A subscription's checkbox is named `event-<type>` (`event-*` for every type)."""

URL_RULE = _l("Enter an address starting with http:// or https://.")
URL_CREDENTIALS = _l("Leave the user name and password out of the address.")
URL_REFUSED = _l("Link-local and cloud metadata addresses are refused.")
EVENTS_NEEDED = _l("Choose at least one event type.")
EVENT_UNKNOWN = _l("Choose event types from the list.")


def _production(request: Request) -> bool:
    settings: Settings = request.app.state.settings
    return settings.env == "production"


def _url_message(message: str) -> str:
    if "credentials" in message:
        return URL_CREDENTIALS
    if "refused" in message:
        return URL_REFUSED
    return URL_RULE


class _Form:
    """An endpoint form read and checked with the service's own checks: values, errors."""

    def __init__(self, form: dict[str, str], *, production: bool, with_url: bool) -> None:
        self.values: dict[str, Any] = {
            "url": form.get("url", "").strip(),
            "description": form.get("description", "").strip(),
            "enabled": form.get("enabled", "") not in ("", "0", "off", "false"),
        }
        self.events = sorted(k[len(EVENT_FIELD) :] for k in form if k.startswith(EVENT_FIELD))
        self.values["events"] = self.events
        self.errors: dict[str, str] = {}
        if with_url:
            try:
                self.values["url"] = webhooks.check_url(self.values["url"], production=production)
            except ValidationFailed as exc:
                self.errors["url"] = _url_message(str(exc))
            if len(self.values["url"]) > 2000:
                self.errors["url"] = TOO_LONG
        if len(self.values["description"]) > 200:
            self.errors["description"] = TOO_LONG
        try:
            webhooks.check_events(self.events)
        except ValidationFailed:
            self.errors["events"] = EVENT_UNKNOWN if self.events else EVENTS_NEEDED


async def _list_page(
    request: Request,
    console: Console,
    *,
    values: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    made: dict[str, Any] | None = None,
    status: int = 200,
) -> Response:
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
        status,
        endpoints=endpoints,
        statuses=STATUS_LABELS,
        catalogue=list(webhooks.CATALOGUE),
        values=values or {"events": []},
        errors=errors or {},
        made=made,
        deleted=request.query_params.get("deleted") is not None,
    )


async def _endpoint_page(
    request: Request,
    console: Console,
    endpoint_id: str,
    *,
    values: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    secret: str | None = None,
    status: int = 200,
) -> Response:
    info = console.program
    assert info is not None
    async with _db(request).read() as session:
        try:
            endpoint = webhooks.read(await webhooks.get_row(session, info, endpoint_id[:64]))
        except WebhookNotFound:
            return console.not_found()
        items = await deliveries.endpoint_deliveries(session, info, endpoint["id"], limit=ALL)
    return console.render(
        "admin/webhook.html",
        status,
        endpoint=endpoint,
        items=items,
        statuses=STATUS_LABELS,
        catalogue=list(webhooks.CATALOGUE),
        values=values or endpoint,
        errors=errors or {},
        secret=secret,
        saved=request.query_params.get("saved") is not None,
        retried=request.query_params.get("retried"),
    )


@router.get("/{program}/webhooks")
async def webhooks_page(request: Request, program: str) -> Response:
    console = await console_for(request, program, "webhooks")
    if isinstance(console, Response):
        return console
    return await _list_page(request, console)


@router.post("/{program}/webhooks")
async def create_webhook(request: Request, program: str) -> Response:
    """A new endpoint; the page answering the form shows its secret, once."""
    found = await posted(request, program, "webhooks")
    if isinstance(found, Response):
        return found
    console, form = found
    info = console.program
    assert info is not None
    production = _production(request)
    checked = _Form(form, production=production, with_url=True)
    if checked.errors:
        return await _list_page(
            request, console, values=checked.values, errors=checked.errors, status=422
        )

    async def work(session: AsyncSession) -> dict[str, Any]:
        return await webhooks.create(
            session,
            info,
            url=checked.values["url"],
            events=checked.events,
            description=checked.values["description"] or None,
            production=production,
        )

    made = await _db(request).write(work)
    return await _list_page(request, console, made=made)


@router.get("/{program}/webhooks/{endpoint_id}")
async def webhook_page(request: Request, program: str, endpoint_id: str) -> Response:
    console = await console_for(request, program, "webhooks")
    if isinstance(console, Response):
        return console
    return await _endpoint_page(request, console, endpoint_id)


@router.post("/{program}/webhooks/{endpoint_id}")
async def update_webhook(request: Request, program: str, endpoint_id: str) -> Response:
    """The endpoint's address, description, subscriptions and whether it is active."""
    found = await posted(request, program, "webhooks")
    if isinstance(found, Response):
        return found
    console, form = found
    info = console.program
    assert info is not None
    production = _production(request)
    checked = _Form(form, production=production, with_url=True)
    if checked.errors:
        return await _endpoint_page(
            request,
            console,
            endpoint_id,
            values=checked.values,
            errors=checked.errors,
            status=422,
        )
    changes = {
        "url": checked.values["url"],
        "events": checked.events,
        "description": checked.values["description"] or None,
        "enabled": checked.values["enabled"],
    }

    async def work(session: AsyncSession) -> None:
        await webhooks.update_endpoint(
            session, info, endpoint_id[:64], changes, production=production
        )

    try:
        await _db(request).write(work)
    except WebhookNotFound:
        return console.not_found()
    return console.page.redirect(f"/admin/{info.code}/webhooks/{endpoint_id[:64]}?saved=1")


@router.post("/{program}/webhooks/{endpoint_id}/rotate-secret")
async def rotate_secret(request: Request, program: str, endpoint_id: str) -> Response:
    """A new secret, shown once on the page answering; the old one signs for 24 more hours."""
    found = await posted(request, program, "webhooks")
    if isinstance(found, Response):
        return found
    console, _form = found
    info = console.program
    assert info is not None

    async def work(session: AsyncSession) -> dict[str, Any]:
        return await webhooks.rotate_secret(session, info, endpoint_id[:64])

    try:
        rotated = await _db(request).write(work)
    except WebhookNotFound:
        return console.not_found()
    return await _endpoint_page(request, console, endpoint_id, secret=rotated["secret"])


@router.post("/{program}/webhooks/{endpoint_id}/delete")
async def delete_webhook(request: Request, program: str, endpoint_id: str) -> Response:
    found = await posted(request, program, "webhooks")
    if isinstance(found, Response):
        return found
    console, _form = found
    info = console.program
    assert info is not None

    async def work(session: AsyncSession) -> None:
        await webhooks.delete_endpoint(session, info, endpoint_id[:64])

    try:
        await _db(request).write(work)
    except WebhookNotFound:
        return console.not_found()
    return console.page.redirect(f"/admin/{info.code}/webhooks?deleted=1")


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
    return console.page.redirect(
        f"/admin/{info.code}/webhooks/{endpoint_id[:64]}?retried={delivery_id[:64]}"
    )
