"""The member page's messages: the member's events, the messages they call for, consents."""

from __future__ import annotations

import asyncio
import html
import re

import httpx
import pytest

from habitue.db import Database
from habitue.messaging import worker
from habitue.settings import Settings
from tests.conftest import enrol, purchase
from tests.web.conftest import csrf_of, make_staff, signup, staff_signin

WELCOME = {"subject": "Welcome, {{ first_name }}", "body": "<p>Hello {{ first_name }}</p>"}


def _row(page: str, type_: str) -> str:
    """The text of the (newest) row of the events table for a domain-event type."""
    found = re.search(rf'<tr data-type="{re.escape(type_)}">(.*?)</tr>', page, re.S)
    assert found, f"no {type_} row"
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", found.group(1))))


def _consent(page: str, channel: str) -> str:
    found = re.search(rf'<tr id="consent-{channel}"[^>]*>(.*?)</tr>', page, re.S)
    assert found, f"no consent row for {channel}"
    return html.unescape(re.sub(r"<[^>]+>|\s+", " ", found.group(1)))


async def _templates(client: httpx.AsyncClient, program: str) -> None:
    base = f"/v1/programs/{program}/message-templates/welcome"
    r = await client.put(f"{base}/email/en", json=WELCOME)
    assert r.status_code == 201, r.text
    r = await client.put(f"{base}/email/fr", json={**WELCOME, "subject": "Bienvenue"})
    assert r.status_code == 201, r.text
    r = await client.put(f"{base}/sms/en", json={"body": "Hi {{ first_name }}"})
    assert r.status_code == 201, r.text


async def test_owner_sees_events_the_welcome_message_and_where_it_would_go(
    client: httpx.AsyncClient, program: str, db: Database
) -> None:
    await _templates(client, program)
    m = await enrol(
        client,
        program,
        email="msg@example.com",
        first_name="Inès",
        locale="fr",
        consents={"email": True, "sms": False},
    )
    r = await purchase(client, program, m["id"], "12.50")
    assert r.status_code == 201, r.text
    await staff_signin(client, await make_staff(db, "owner"))
    page = await client.get(f"/admin/{program}/members/{m['id']}")
    assert page.status_code == 200
    text = page.text
    assert 'id="member-events"' in text
    assert 'id="no-member-deliveries"' in text  # the worker has not run
    # Newest first: the purchase's events, then the enrolment.
    order = re.findall(r"<tr data-type=\"([^\"]+)\">", text)
    assert order == ["event.recorded", "points.earned", "member.enrolled"]
    assert "Purchase recorded" in _row(text, "event.recorded")
    assert "Points earned 12 " in _row(text, "points.earned")
    assert "would be sent" not in _row(text, "event.recorded")  # a purchase calls for none
    welcome = _row(text, "member.enrolled")
    assert "Joined the program" in welcome
    assert "Welcome (welcome)" in welcome
    assert "Email: would be sent" in welcome
    assert "Text message (SMS): would not be sent (no consent)" in welcome
    assert "Push notification" not in welcome  # no push template
    # The link opens the template the member would get (French) previewed for this member.
    link = (
        f"/admin/{program}/messages/edit?code=welcome&amp;channel=email&amp;locale=fr"
        f"&amp;member={m['id']}"
    )
    assert f'href="{link}"' in text
    editor = await client.get(html.unescape(link))
    assert editor.status_code == 200
    assert "Bienvenue" in editor.text
    assert "Inès" in editor.text  # the preview is rendered for this member
    assert "Yes" in _consent(text, "email")
    assert "Given on" in _consent(text, "email")
    assert "No (no consent)" in _consent(text, "sms")
    assert "Not given" in _consent(text, "push")


async def test_without_consent_or_address_nothing_would_be_sent(
    client: httpx.AsyncClient, program: str, db: Database
) -> None:
    await _templates(client, program)
    silent = await enrol(client, program, email="silent@example.com")
    no_phone = await enrol(client, program, email="nophone@example.com", consents={"sms": True})
    no_email = await enrol(client, program, consents={"email": True})
    await staff_signin(client, await make_staff(db, "owner"))
    page = (await client.get(f"/admin/{program}/members/{silent['id']}")).text
    welcome = _row(page, "member.enrolled")
    assert "Email: would not be sent (no consent)" in welcome
    assert "would be sent" not in welcome.replace("would not be sent", "")
    assert "No (no consent)" in _consent(page, "email")
    page = (await client.get(f"/admin/{program}/members/{no_phone['id']}")).text
    assert "Text message (SMS): would not be sent (no phone number)" in _row(
        page, "member.enrolled"
    )
    page = (await client.get(f"/admin/{program}/members/{no_email['id']}")).text
    assert "Email: would not be sent (no email address)" in _row(page, "member.enrolled")
    assert "No (no email address)" in _consent(page, "email")


async def test_tier_up_without_a_template_and_support_sees_no_template_links(
    client: httpx.AsyncClient, program: str, db: Database
) -> None:
    ladder = {
        "metric": "qualifying_spend",
        "window": {"kind": "calendar_year"},
        "tiers": [
            {"code": "base", "name": "Base", "threshold": "0.00"},
            {"code": "silver", "name": "Silver", "threshold": "100.00"},
        ],
    }
    r = await client.post(f"/v1/programs/{program}/tiers", json=ladder)
    assert r.status_code == 201, r.text
    await _templates(client, program)
    m = await enrol(client, program, email="tier@example.com", consents={"email": True})
    r = await purchase(client, program, m["id"], "150.00")
    assert r.status_code == 201, r.text
    await staff_signin(client, await make_staff(db, "owner"))
    page = (await client.get(f"/admin/{program}/members/{m['id']}")).text
    up = _row(page, "tier.changed")
    assert "Moved up a tier" in up
    assert "silver" in up
    assert "New tier reached (tier_up)" in up
    assert "Email" in up and "would be sent" in up  # tier_up ships a built-in email
    # points_earned is off until the program writes it: the page offers to
    earned = _row(page, "points.earned")
    assert "No template for this message yet." in earned
    assert f'href="/admin/{program}/messages/edit?code=points_earned"' in page

    client.cookies.clear()
    await staff_signin(client, await make_staff(db, "support"))
    page = (await client.get(f"/admin/{program}/members/{m['id']}")).text
    assert "Email: would be sent" in _row(page, "member.enrolled")
    assert "/messages/edit" not in page  # support may not open templates


@pytest.mark.email
async def test_the_page_in_french_and_no_sign_in_link_leaks(
    client: httpx.AsyncClient, program: str, db: Database
) -> None:
    await signup(client, program, email="leak@example.com")
    client.cookies.clear()
    form = await client.get(f"/app/{program}/signin")
    r = await client.post(
        f"/app/{program}/signin/link",
        data={"csrf_token": csrf_of(form.text), "link_email": "leak@example.com"},
    )
    assert r.status_code == 200
    client.cookies.clear()
    await staff_signin(client, await make_staff(db, "owner"))
    found = await client.get(f"/admin/{program}/members", params={"q": "leak@example.com"})
    member_url = re.search(rf'href="(/admin/{program}/members/[^"]+)"', found.text)
    assert member_url
    page = (await client.get(member_url.group(1))).text
    assert "Asked for a sign-in link" in _row(page, "member.sign_in_link")
    assert "signin/link/" not in page  # the link's token is never shown
    page = (await client.get(member_url.group(1), headers={"Accept-Language": "fr"})).text
    assert "Inscription au programme" in _row(page, "member.enrolled")
    assert "Où joindre le membre" in page


async def test_the_page_lists_the_messages_the_worker_sent_or_skipped(
    client: httpx.AsyncClient, program: str, db: Database, settings: Settings
) -> None:
    await _templates(client, program)
    m = await enrol(
        client, program, email="w@example.com", phone="+4511223344", consents={"email": True}
    )
    await worker.run_until_idle(db, settings)  # no SMTP here: email is not configured
    await staff_signin(client, await make_staff(db, "owner"))
    page = (await client.get(f"/admin/{program}/members/{m['id']}")).text
    email = _deliveries(page, "email")
    sms = _deliveries(page, "sms")
    assert [(s, r) for s, r, _ in email] == [("skipped", "channel-not-configured")]
    assert "This channel is not set up on the server" in email[0][2]
    assert "Welcome" in email[0][2]
    assert [(s, r) for s, r, _ in sms] == [("skipped", "no-consent")]
    assert "No consent for this channel" in sms[0][2]
    assert 'id="deliveries-push"' not in page and 'id="deliveries-webhook"' not in page
    assert 'id="no-member-deliveries"' not in page
    # Where the member can be reached: the address, the consent, whether this server sends.
    assert _consent(page, "email").split() == [
        "Email",
        "w@example.com",
        *_consent(page, "email").split()[2:],
    ]
    assert "Given on" in _consent(page, "email")
    assert _consent(page, "email").split()[-2:] == ["Yes", "No"]  # reachable; no SMTP here
    assert "+4511223344" in _consent(page, "sms")
    assert "No (no consent)" in _consent(page, "sms")
    assert "The member's app" in _consent(page, "push")


def _deliveries(page: str, channel: str) -> list[tuple[str, str, str]]:
    """The rows of one channel's messages table: (status, reason code, text)."""
    table = rf'<table class="history" id="deliveries-{channel}">(.*?)</table>'
    found = re.search(table, page, re.S)
    assert found, f"no {channel} messages table"
    row = r'<tr data-status="([a-z]+)" data-reason="([^"]*)">(.*?)</tr>'
    return [
        (status, html.unescape(reason), html.unescape(re.sub(r"<[^>]+>|\s+", " ", body)))
        for status, reason, body in re.findall(row, found.group(1), re.S)
    ]


async def test_each_channel_lists_what_was_sent_failed_or_called_with_the_time(
    client: httpx.AsyncClient, program: str, db: Database, settings: Settings
) -> None:
    """A real SMTP server takes the welcome email, an SMS provider answers 500 until the
    retry period ends, a webhook receiver takes the calls: the page shows each per channel."""
    from aiosmtpd.controller import Controller

    from tests.messaging.conftest import Mailbox, free_port
    from tests.messaging.test_webhooks import Receiver

    box, port = Mailbox(), free_port()
    smtp = Controller(box, hostname="127.0.0.1", port=port)
    smtp.start()
    hooks, provider = Receiver(), Receiver()
    provider.mode = "fail"
    for r in (hooks, provider):
        r.thread.start()
    try:
        r = await client.post(
            f"/v1/programs/{program}/webhooks", json={"url": hooks.url, "events": ["*"]}
        )
        assert r.status_code == 201, r.text
        await _templates(client, program)
        m = await enrol(
            client,
            program,
            email="all@example.com",
            phone="+4599887766",
            first_name="Alma",
            consents={"email": True, "sms": True},
        )
        live = settings.model_copy(
            update={
                "smtp_url": f"smtp://127.0.0.1:{port}",
                "mail_from": "club@example.com",
                "sms_webhook_url": provider.url,
                "retry_base_seconds": 0.01,
                "retry_period_hours": 0.00001,  # the second failure parks it
            }
        )
        messages = f"/v1/programs/{program}/members/{m['id']}/messages"
        for _ in range(100):  # until the SMS is parked (its retries are due at once)
            await worker.run_until_idle(db, live)
            items = (await client.get(messages)).json()["items"]
            if all(x["status"] != "pending" for x in items):
                break
            await asyncio.sleep(0.05)
        box.wait(1, to={"all@example.com"})
        assert len(hooks.calls) >= 1 and len(provider.calls) >= 1
    finally:
        smtp.stop()
        for r in (hooks, provider):
            r.server.shutdown()
            r.server.server_close()
    await staff_signin(client, await make_staff(db, "owner"))
    page = (await client.get(f"/admin/{program}/members/{m['id']}")).text
    [(status, reason, text)] = _deliveries(page, "email")
    assert (status, reason) == ("sent", "")
    assert "Welcome" in text and " 1 " in text  # one attempt
    [(status, reason, text)] = _deliveries(page, "sms")
    assert status == "failed"
    assert reason.startswith("gave up after") and "HTTP 500" in reason
    assert "HTTP 500" in text
    webhook = _deliveries(page, "webhook")
    assert {s for s, _, _ in webhook} == {"sent"}
    types = {t.split("→")[0].split()[-1] for _, _, t in webhook}
    assert "member.enrolled" in types
    assert all(hooks.url in t for _, _, t in webhook)
    about = [c for c in hooks.calls if m["id"].encode() in c["body"]]  # not the templates'
    assert len(webhook) == len(about) >= 1
    # The API says the same of the messages (webhook calls are not messages).
    items = (await client.get(messages)).json()["items"]
    assert sorted((x["channel"], x["status"]) for x in items) == [
        ("email", "sent"),
        ("sms", "failed"),
    ]
    page = (
        await client.get(f"/admin/{program}/members/{m['id']}", headers={"Accept-Language": "da"})
    ).text
    assert "Hvor medlemmet kan nås" in page
    assert "Sendt eller sidst forsøgt" in page
