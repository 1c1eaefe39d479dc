"""Emailed sign-in links: built from HABITUE_PUBLIC_URL, hashed at rest, single-use, short-lived,
and never readable from the outbox or the events feed."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select

from habitue import clock
from habitue.api import create_app
from habitue.db import Database, table_of
from habitue.messaging.models import OutboxEvent
from habitue.programs import service as programs_service
from habitue.settings import Settings
from habitue.web import service as web_service
from habitue.web.models import SignInToken
from tests.conftest import ADMIN_KEY, create_program, enrol
from tests.web.conftest import csrf_of, emailed_link

PUBLIC = "https://loyalty.example.com"
_outbox = table_of(OutboxEvent)
_links = table_of(SignInToken)


pytestmark = pytest.mark.email  # these tests are about the emailed links


@pytest.fixture
async def site(settings: Settings, db: Database) -> AsyncIterator[httpx.AsyncClient]:
    """A client of a server whose public address is `PUBLIC`, links lasting 15 minutes."""
    app = create_app(settings.model_copy(update={"public_url": PUBLIC}), db=db)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://test",
            headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        ) as c,
    ):
        yield c


async def _ask_link(
    client: httpx.AsyncClient, program: str, email: str, **headers: str
) -> httpx.Response:
    form = await client.get(f"/app/{program}/signin", headers=headers)
    assert form.status_code == 200
    return await client.post(
        f"/app/{program}/signin/link",
        data={"csrf_token": csrf_of(form.text), "link_email": email},
        headers=headers,
    )


async def _sent_url(settings: Settings, db: Database, program: str) -> str | None:
    """The URL the message sender would put in the program's latest link message."""
    async with db.read() as session:
        info = await programs_service.get_info(session, program)
        payload = (
            await session.execute(
                select(_outbox.c.payload)
                .where(_outbox.c.program_id == info.id, _outbox.c.type == "member.sign_in_link")
                .order_by(_outbox.c.id.desc())
                .limit(1)
            )
        ).scalar_one()
        return await web_service.sign_in_link_url(
            session, info, payload["link_id"], settings=settings
        )


async def _member(client: httpx.AsyncClient, email: str) -> str:
    program = await create_program(client)
    await enrol(client, program, email=email)
    client.cookies.clear()
    return program


async def test_a_forged_host_never_reaches_the_link(
    site: httpx.AsyncClient, settings: Settings, db: Database
) -> None:
    program = await _member(site, "victim@example.com")
    forged = {"host": "evil.example", "x-forwarded-host": "evil.example"}
    r = await _ask_link(site, program, "victim@example.com", **forged)
    assert r.status_code == 200
    assert "evil.example" not in r.text
    url = await _sent_url(settings.model_copy(update={"public_url": PUBLIC}), db, program)
    assert url is not None
    assert url.startswith(f"{PUBLIC}/app/{program}/signin/link/")
    path = url.removeprefix(PUBLIC)
    async with db.read() as session:
        stored = json.dumps(
            [p for (p,) in await session.execute(select(_outbox.c.payload))], default=str
        )
        tokens = [dict(row) for row in (await session.execute(select(_links))).mappings()]
    assert "evil.example" not in stored
    assert "evil.example" not in json.dumps(tokens, default=str)
    # The URL the member is sent is on the public address, and it signs them in.
    used = await site.get(path, headers=forged)
    assert used.status_code == 303
    assert used.headers["location"] == f"/app/{program}/card"


async def test_the_events_feed_never_shows_a_sign_in_link(
    site: httpx.AsyncClient, db: Database
) -> None:
    program = await _member(site, "feed@example.com")
    key = (
        await site.post(
            f"/v1/programs/{program}/api-keys", json={"name": "crm", "scopes": ["events:read"]}
        )
    ).json()["key"]
    assert (await _ask_link(site, program, "feed@example.com")).status_code == 200
    path = await emailed_link(site, program, "feed@example.com")
    token = path.rsplit("/", 1)[1]
    feed = await site.get(
        f"/v1/programs/{program}/events-feed", headers={"Authorization": f"Bearer {key}"}
    )
    assert feed.status_code == 200
    events = [e for e in feed.json()["items"] if e["type"] == "member.sign_in_link"]
    assert len(events) == 1
    assert set(events[0]["data"]) == {"member_id", "email", "locale", "link_id", "expires_at"}
    assert token not in feed.text
    assert "signin/link" not in feed.text
    assert "url" not in events[0]["data"]
    # The feed read nothing that spends the link: it still signs in, once.
    assert (await site.get(path)).status_code == 303


async def test_a_link_works_once_and_for_fifteen_minutes(
    site: httpx.AsyncClient, settings: Settings, db: Database
) -> None:
    program = await _member(site, "once@example.com")
    r = await _ask_link(site, program, "once@example.com")
    assert "for 15 minutes" in r.text
    first = await emailed_link(site, program, "once@example.com")
    clock.advance(timedelta(minutes=14))
    assert (await site.get(first)).status_code == 303
    site.cookies.clear()
    again = await site.get(first)
    assert again.status_code == 400
    assert "expired or was already used" in again.text
    assert await _sent_url(settings, db, program) is None  # used: the sender has nothing
    # A new link, left unused past its 15 minutes, no longer signs in nor can be sent.
    await _ask_link(site, program, "once@example.com")
    second = await emailed_link(site, program, "once@example.com")
    assert second != first
    clock.advance(timedelta(minutes=15, seconds=1))
    assert await _sent_url(settings, db, program) is None
    assert (await site.get(second)).status_code == 400


async def test_the_lifetime_is_a_setting(settings: Settings, db: Database) -> None:
    app = create_app(settings.model_copy(update={"signin_link_minutes": 5}), db=db)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://test",
            headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        ) as c,
    ):
        program = await _member(c, "five@example.com")
        r = await _ask_link(c, program, "five@example.com")
        assert "for 5 minutes" in r.text
        path = await emailed_link(c, program, "five@example.com")
        clock.advance(timedelta(minutes=5, seconds=1))
        assert (await c.get(path)).status_code == 400


async def test_tokens_are_hashed_at_rest(site: httpx.AsyncClient, db: Database) -> None:
    program = await _member(site, "hash@example.com")
    await _ask_link(site, program, "hash@example.com")
    token = (await emailed_link(site, program, "hash@example.com")).rsplit("/", 1)[1]
    async with db.read() as session:
        rows = [dict(r) for r in (await session.execute(select(_links))).mappings()]
        outbox_text = json.dumps(
            [p for (p,) in await session.execute(select(_outbox.c.payload))], default=str
        )
    digest = hashlib.sha256(token.encode()).hexdigest()
    (row,) = [r for r in rows if r["token_hash"] == digest]
    assert token not in json.dumps(rows, default=str)
    assert token not in outbox_text
    assert row["seed"] and row["seed"] != token
    assert (await site.get(f"/app/{program}/signin/link/{token}")).status_code == 303
    async with db.read() as session:
        used = (await session.execute(select(_links).where(_links.c.id == row["id"]))).one()
    assert used.used_at is not None
    assert used.seed is None  # a used link cannot be made again


async def test_unknown_and_known_emails_get_the_same_answer(
    site: httpx.AsyncClient, db: Database
) -> None:
    program = await _member(site, "known@example.com")
    known = await _ask_link(site, program, "known@example.com")
    unknown = await _ask_link(site, program, "unknown@example.com")
    assert known.status_code == unknown.status_code == 200

    def strip(html: str) -> str:
        return html.replace(csrf_of(html), "")

    assert strip(known.text) == strip(unknown.text)
    async with db.read() as session:
        payloads = [
            p
            for (p,) in await session.execute(
                select(_outbox.c.payload).where(_outbox.c.type == "member.sign_in_link")
            )
        ]
    sent = [p["email"] for p in payloads if p["email"].endswith("known@example.com")]
    assert sent == ["known@example.com"]
