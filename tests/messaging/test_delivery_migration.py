"""Migration 0021: what a program wrote to its outbox before the upgrade is not delivered."""

from __future__ import annotations

import httpx
import pytest
from alembic import command
from alembic.script import ScriptDirectory

from habitue.api import create_app
from habitue.db import Database
from habitue.messaging import worker
from habitue.migrate import alembic_config, upgrade
from habitue.settings import Settings
from tests.conftest import ADMIN_KEY, create_program, enrol
from tests.test_migrate import scratch_url  # noqa: F401  (the fixture)


async def test_history_before_the_upgrade_is_not_sent(
    scratch_url: str,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Today's app runs on the schema before 0021, which has no audit log yet (0027): the audit
    # trail, which is not what this test is about, records nothing here.
    from habitue.privacy import audit_http

    monkeypatch.setattr(audit_http, "classify", lambda *_: None)
    upgrade(scratch_url)
    # Down to the revision before 0021, by name (relative steps count from the newest head).
    config = alembic_config(scratch_url)
    before_0021 = ScriptDirectory.from_config(config).get_revision("0021_delivery").down_revision
    assert isinstance(before_0021, str)
    command.downgrade(config, before_0021)
    settings = Settings(
        env="test", database_url=scratch_url, admin_key=ADMIN_KEY, scheduler=False,
        worker=False, hmac_key="k",
    )  # fmt: skip
    db = Database(scratch_url)
    try:
        app = create_app(settings, db=db)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app),
                base_url="http://test",
                headers={"Authorization": f"Bearer {ADMIN_KEY}"},
            ) as client,
        ):
            program = await create_program(client)
            before = await enrol(client, program, email="old@example.com", consents={"email": True})
            # Half the history read by the feed (sequenced), half not.
            assert (await client.get(f"/v1/programs/{program}/events-feed")).status_code == 200
            older = await enrol(client, program, email="old2@example.com", consents={"email": True})
            upgrade(scratch_url)
            after = await enrol(client, program, email="new@example.com", consents={"email": True})
            await worker.run_until_idle(db, settings)
            for member, expected in ((before, []), (older, []), (after, ["welcome"])):
                r = await client.get(f"/v1/programs/{program}/members/{member['id']}/messages")
                assert [m["template"] for m in r.json()["items"]] == expected
    finally:
        await db.dispose()
