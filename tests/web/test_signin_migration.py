"""Migration 0017: links issued before it are spent, and their URLs leave the outbox."""

from __future__ import annotations

import json

import httpx
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, text

from habitue.api import create_app
from habitue.db import Database, sync_url
from habitue.migrate import alembic_config, upgrade
from habitue.settings import Settings
from tests.conftest import ADMIN_KEY, create_program, enrol
from tests.test_migrate import scratch_url  # noqa: F401  (the fixture)
from tests.web.conftest import csrf_of


async def test_upgrading_spends_old_links_and_strips_their_urls(
    scratch_url: str,  # noqa: F811
) -> None:
    upgrade(scratch_url)
    settings = Settings(
        env="test", database_url=scratch_url, admin_key=ADMIN_KEY, scheduler=False, hmac_key="k",
        worker=False, smtp_url="smtp://127.0.0.1:9",
    )
    db = Database(scratch_url)
    app = create_app(settings, db=db)
    try:
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app),
                base_url="http://test",
                headers={"Authorization": f"Bearer {ADMIN_KEY}"},
            ) as client,
        ):
            program = await create_program(client)
            await enrol(client, program, email="old@example.com")
            form = await client.get(f"/app/{program}/signin")
            r = await client.post(
                f"/app/{program}/signin/link",
                data={"csrf_token": csrf_of(form.text), "link_email": "old@example.com"},
            )
            assert r.status_code == 200
    finally:
        await db.dispose()
    # Down to the revision before 0017 (relative steps would count from the newest head).
    config = alembic_config(scratch_url)
    before = ScriptDirectory.from_config(config).get_revision("0017_signin_tokens").down_revision
    assert isinstance(before, str)
    command.downgrade(config, before)
    engine = create_engine(sync_url(scratch_url))
    old = json.dumps({"email": "old@example.com", "url": "http://evil.example/app/x/signin/link/t"})
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO outbox (program_id, type, member_id, payload, created_at) "
                "VALUES (1, 'member.sign_in_link', NULL, :p, CURRENT_TIMESTAMP)"
            ),
            {"p": old},
        )
        assert (
            conn.execute(
                text("SELECT count(*) FROM member_sign_in_tokens WHERE used_at IS NULL")
            ).scalar_one()
            == 1
        )
    upgrade(scratch_url)
    with engine.connect() as conn:
        unused = conn.execute(
            text("SELECT count(*) FROM member_sign_in_tokens WHERE used_at IS NULL")
        ).scalar_one()
        payloads = [
            p if isinstance(p, dict) else json.loads(p)
            for (p,) in conn.execute(
                text("SELECT payload FROM outbox WHERE type = 'member.sign_in_link'")
            )
        ]
    engine.dispose()
    assert unused == 0
    assert len(payloads) == 2
    assert all("url" not in p for p in payloads)
    assert {p["email"] for p in payloads} == {"old@example.com"}
