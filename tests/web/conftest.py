"""Helpers of the web tests: CSRF tokens from pages, members signed up through the portal."""

from __future__ import annotations

import re
import secrets
from typing import cast

import httpx
import pytest
from sqlalchemy import select

from habitue.db import Database, table_of
from habitue.messaging.models import OutboxEvent
from habitue.programs import service as programs_service
from habitue.settings import Settings
from habitue.web import service as web_service

PASSWORD = "correct-horse-battery"


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "no CSRF field in the page"
    return found.group(1)


def cell_texts(row: str) -> list[str]:
    """The text of each `<td>` of a table row's HTML, tags dropped and spaces squeezed."""
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
    return [re.sub(r"<[^>]+>|\s+", " ", c).strip() for c in cells]


@pytest.fixture
def settings(settings: Settings, request: pytest.FixtureRequest) -> Settings:
    """The test settings; with an email channel for tests marked `email` (nothing listens
    there: those tests read the link the worker would send from the outbox)."""
    if request.node.get_closest_marker("email") is None:
        return settings
    return settings.model_copy(update={"smtp_url": "smtp://127.0.0.1:9"})


async def signup(
    client: httpx.AsyncClient, program: str, *, email: str | None = None, **fields: str
) -> httpx.Response:
    """Sign a new member up through the portal form; the client keeps the session cookie.

    Without an email channel (the default settings) the sign-up signs the member in at once
    (a 303 to the card); with one (`@pytest.mark.email`), the emailed link is followed as the
    member would. A refused form's answer is returned as it is."""
    page = await client.get(f"/app/{program}/signup")
    assert page.status_code == 200, page.text
    form = {
        "csrf_token": csrf_of(page.text),
        "email": email or f"m{secrets.token_hex(4)}@example.com",
        "password": PASSWORD,
        "first_name": "Ana",
        "last_name": "Martin",
        "locale": "en",
        "consent_email": "on",
        **fields,
    }
    r = await client.post(f"/app/{program}/signup", data=form)
    if r.status_code != 200 or 'id="signup-sent"' not in r.text:
        return r
    return await client.get(await emailed_link(client, program, form["email"]))


async def emailed_link(client: httpx.AsyncClient, program: str, email: str) -> str:
    """The path of the latest sign-in link sent to `email`, as the message sender builds it
    (the outbox event names the link; `web_service.sign_in_link_url` makes its URL)."""
    app = cast(httpx.ASGITransport, client._transport).app
    db = cast(Database, app.state.db)  # type: ignore[attr-defined]
    settings = cast(Settings, app.state.settings)  # type: ignore[attr-defined]
    outbox = table_of(OutboxEvent)
    async with db.read() as session:
        info = await programs_service.get_info(session, program)
        rows = await session.execute(
            select(outbox.c.payload)
            .where(outbox.c.program_id == info.id, outbox.c.type == "member.sign_in_link")
            .order_by(outbox.c.id.desc())
        )
        link_id = next(int(p["link_id"]) for (p,) in rows if p["email"] == email.lower())
        url = await web_service.sign_in_link_url(session, info, link_id, settings=settings)
    assert url is not None and url.startswith(settings.base_url + "/"), url
    return url[len(settings.base_url) :]


async def make_staff(db: Database, role: str, program_id: int | None = None) -> str:
    email = f"{role}-{secrets.token_hex(4)}@example.com"
    await db.write(
        lambda s: web_service.create_staff(
            s, email=email, role=role, password=PASSWORD, program_id=program_id
        )
    )
    return email


async def staff_signin(client: httpx.AsyncClient, email: str) -> httpx.Response:
    page = await client.get("/admin/signin")
    return await client.post(
        "/admin/signin",
        data={"csrf_token": csrf_of(page.text), "email": email, "password": PASSWORD},
    )
