"""The member page's messages in Chromium (Playwright): a real SMTP server (aiosmtpd) takes the
welcome email, an SMS provider answers 500 until the message is parked, a webhook receiver takes
the call about the enrolment; the owner reads each per channel, and where the member can be
reached, in English, French and Danish; every page passes axe (serious and critical)."""

# ruff: noqa: F811 (the fixtures are imported from test_browser and requested by name)
from __future__ import annotations

import asyncio
import secrets
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from aiosmtpd.controller import Controller

from habitue.db import Database
from habitue.messaging import worker
from habitue.settings import Settings
from tests.messaging.conftest import Mailbox, free_port
from tests.messaging.test_webhooks import Receiver
from tests.web.test_browser import (  # noqa: F401 (fixtures)
    Pages,
    api,
    artifacts,
    browser,
    owner_on,
    program,
    server,
)


def _deliver(settings: Settings, api: httpx.Client, messages: str) -> None:
    """Run the delivery worker (its own event loop and thread) until no message is waiting."""

    async def work() -> None:
        db = Database(settings.database_url)
        try:
            for _ in range(200):  # the SMS's retries are due at once: until it is parked
                await worker.run_until_idle(db, settings)
                items = api.get(messages).json()["items"]
                if items and all(x["status"] != "pending" for x in items):
                    return
                await asyncio.sleep(0.05)
        finally:
            await db.dispose()

    runner = threading.Thread(target=lambda: asyncio.run(work()))
    runner.start()
    runner.join()


def _cells(page: Any, selector: str) -> list[str]:
    return [" ".join(t.split()) for t in page.locator(selector).all_inner_texts()]


def test_owner_reads_a_members_messages_per_channel(
    server: str, api: httpx.Client, program: str, browser: Any, artifacts: Path, db_url: str
) -> None:
    box, port = Mailbox(), free_port()
    smtp = Controller(box, hostname="127.0.0.1", port=port)
    smtp.start()
    hooks, provider = Receiver(), Receiver()
    provider.mode = "fail"
    for r in (hooks, provider):
        r.thread.start()
    email = f"alma-{secrets.token_hex(3)}@example.com"
    try:
        r = api.post(
            f"/v1/programs/{program}/webhooks",
            json={"url": hooks.url, "events": ["member.enrolled"]},
        )
        assert r.status_code == 201, r.text
        m = api.post(
            f"/v1/programs/{program}/members",
            json={
                "email": email,
                "phone": "+4520304050",
                "first_name": "Alma",
                "consents": {"email": True, "sms": True},
            },
        ).json()
        settings = Settings(
            env="test",
            database_url=db_url,
            hmac_key="test-hmac-key",
            scheduler=False,
            worker=False,
            smtp_url=f"smtp://127.0.0.1:{port}",
            mail_from="club@example.com",
            sms_webhook_url=provider.url,
            public_url=server,
            retry_base_seconds=0.01,
            retry_period_hours=0.00001,
        )
        started = time.time()
        _deliver(settings, api, f"/v1/programs/{program}/members/{m['id']}/messages")
        box.wait(1, to={email})
        about = [c for c in hooks.calls if m["id"].encode() in c["body"]]
        assert len(about) == 1
        assert any(b"+4520304050" in c["body"] for c in provider.calls)
    finally:
        smtp.stop()
        for r in (hooks, provider):
            r.server.shutdown()
            r.server.server_close()
    assert time.time() - started < 60

    page, pages = owner_on(browser, server, artifacts, db_url, program, f"/members/{m['id']}")
    pages.check("admin-member-messages")
    [sent] = _cells(page, "#deliveries-email tbody tr")
    assert "Welcome" in sent and "Sent" in sent
    assert page.locator("#deliveries-email tbody tr").get_attribute("data-status") == "sent"
    [failed] = _cells(page, "#deliveries-sms tbody tr")
    assert "Failed" in failed and "HTTP 500" in failed
    [call] = _cells(page, "#deliveries-webhook tbody tr")
    assert "member.enrolled" in call and hooks.url in call and "Sent" in call
    assert page.locator("#deliveries-push").count() == 0  # no push consent, no provider
    reach = {
        row.get_attribute("id"): " ".join(row.inner_text().split())
        for row in page.locator("#consents tbody tr").all()
    }
    assert email in reach["consent-email"] and "Given on" in reach["consent-email"]
    # the test server sends email (its SMTP URL is set), not SMS or push
    assert reach["consent-email"].endswith("Yes Yes")
    assert "+4520304050" in reach["consent-sms"] and reach["consent-sms"].endswith("Yes No")
    assert "No (no consent)" in reach["consent-push"]

    for locale, caption, status in (
        ("fr-FR", "Où joindre le membre", "Envoyé"),
        ("da-DK", "Hvor medlemmet kan nås", "Sendt"),
    ):
        other = browser.new_context(locale=locale, storage_state=page.context.storage_state())
        localized = other.new_page()
        localized.goto(f"{server}/admin/{program}/members/{m['id']}")
        assert " ".join(localized.locator("#consents caption").inner_text().split()) == caption
        assert status in _cells(localized, "#deliveries-email tbody tr")[0]
        Pages(localized, server, artifacts).check(f"admin-member-messages-{locale[:2]}")
        other.close()
    page.context.close()
