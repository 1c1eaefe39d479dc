"""Email through a real SMTP server: the welcome message, its parts and headers, consent,
unsubscribe, skipped messages, refusals retried then parked."""

from __future__ import annotations

import re
from datetime import timedelta
from urllib.parse import urlsplit

import httpx

from habitue import clock
from habitue.api import create_app
from habitue.db import Database
from habitue.messaging import worker
from habitue.settings import Settings
from tests.conftest import enrol, purchase
from tests.messaging.conftest import Mailbox
from tests.web.conftest import csrf_of


async def _messages(client: httpx.AsyncClient, program: str, member_id: str) -> list[dict]:  # type: ignore[type-arg]
    r = await client.get(f"/v1/programs/{program}/members/{member_id}/messages")
    assert r.status_code == 200, r.text
    items: list[dict] = r.json()["items"]  # type: ignore[type-arg]
    return items


async def test_welcome_email_has_both_parts_the_headers_and_unsubscribes(
    client: httpx.AsyncClient,
    program: str,
    db: Database,
    mail_settings: Settings,
    smtp: tuple[Mailbox, int],
) -> None:
    box, _ = smtp
    m = await enrol(
        client,
        program,
        email="ines@example.com",
        first_name="Inès",
        locale="fr",
        consents={"email": True},
    )
    assert await _messages(client, program, m["id"]) == []  # nothing until the worker runs
    await worker.run_until_idle(db, mail_settings)

    [mail] = box.to("ines@example.com")
    assert mail["Subject"] == "Bienvenue chez Test café"
    assert mail["From"] == "Test café <club@example.com>"
    assert mail.get_content_type() == "multipart/alternative"
    text_part = mail.get_body(preferencelist=("plain",))
    html_part = mail.get_body(preferencelist=("html",))
    assert text_part is not None and html_part is not None
    text, html = text_part.get_content(), html_part.get_content()
    assert "Bonjour Inès" in text and "<p>" not in text
    assert m["card_number"] in text
    assert "<p>Bonjour Inès,</p>" in html
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    link = mail["List-Unsubscribe"].strip("<>")
    assert link.startswith(f"https://loyalty.example.com/v1/programs/{program}/unsubscribe/")
    assert link in text and link in html

    [message] = await _messages(client, program, m["id"])
    assert message["channel"] == "email" and message["template"] == "welcome"
    assert message["status"] == "sent" and message["reason"] is None
    assert message["sent_at"] is not None

    # A forged token is refused; the genuine one withdraws the consent, with no API key.
    path = urlsplit(link).path
    anonymous = httpx.AsyncClient(transport=client._transport, base_url="http://test")
    async with anonymous:
        assert (await anonymous.post(path[:-3] + "abc")).status_code == 404
        page = await anonymous.get(path)
        assert page.status_code == 200 and "<form" in page.text
        r = await anonymous.post(
            path,
            content=b"List-Unsubscribe=One-Click",
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        assert r.status_code == 200, r.text
    profile = (await client.get(f"/v1/programs/{program}/members/{m['id']}")).json()
    assert profile["consents"]["email"]["granted"] is False


async def test_messages_not_sent_say_why(
    client: httpx.AsyncClient,
    program: str,
    db: Database,
    settings: Settings,
    mail_settings: Settings,
    smtp: tuple[Mailbox, int],
) -> None:
    box, _ = smtp
    no_consent = await enrol(client, program, email="nc@example.com")
    no_email = await enrol(client, program, phone="+4512345678", consents={"email": True})
    await worker.run_until_idle(db, mail_settings)
    assert box.messages == []
    [a] = await _messages(client, program, no_consent["id"])
    assert (a["status"], a["reason"]) == ("skipped", "no-consent")
    [b] = await _messages(client, program, no_email["id"])
    assert (b["status"], b["reason"]) == ("skipped", "no-address")

    # Email not configured: skipped, said so.
    unconfigured = await enrol(client, program, email="u@example.com", consents={"email": True})
    await worker.run_until_idle(db, settings)
    [c] = await _messages(client, program, unconfigured["id"])
    assert (c["status"], c["reason"]) == ("skipped", "channel-not-configured")
    assert c["sent_at"] is None


async def test_a_refused_recipient_is_retried_then_parked_and_nothing_is_lost(
    client: httpx.AsyncClient,
    program: str,
    db: Database,
    mail_settings: Settings,
    smtp: tuple[Mailbox, int],
) -> None:
    box, _ = smtp
    box.refuse = "451 4.3.0 try again later"
    first = await enrol(client, program, email="first@example.com", consents={"email": True})
    await worker.run_until_idle(db, mail_settings)
    [msg] = await _messages(client, program, first["id"])
    assert (msg["status"], msg["attempts"]) == ("pending", 1)
    assert box.refused == 1

    # The server accepts again: the next try (after the back-off) delivers it.
    box.refuse = None
    await worker.run_until_idle(db, mail_settings)
    assert box.to("first@example.com") == []  # not due yet
    clock.advance(timedelta(seconds=61))
    await worker.run_until_idle(db, mail_settings)
    assert len(box.to("first@example.com")) == 1
    [msg] = await _messages(client, program, first["id"])
    assert (msg["status"], msg["attempts"]) == ("sent", 2)

    # Refused for longer than the retry period (1 hour here): parked as failed.
    box.refuse = "450 4.2.1 mailbox busy"
    second = await enrol(client, program, email="second@example.com", consents={"email": True})
    for _ in range(12):
        await worker.run_until_idle(db, mail_settings)
        clock.advance(timedelta(minutes=20))
    [msg] = await _messages(client, program, second["id"])
    assert msg["status"] == "failed"
    assert msg["reason"].startswith(f"gave up after {msg['attempts']} attempts")
    assert "450" in msg["reason"] and msg["attempts"] >= 3

    # A permanent refusal (5xx) fails at once.
    box.refuse = "550 5.1.1 no such user"
    third = await enrol(client, program, email="third@example.com", consents={"email": True})
    await worker.run_until_idle(db, mail_settings)
    [msg] = await _messages(client, program, third["id"])
    assert (msg["status"], msg["attempts"]) == ("failed", 1)
    assert "550" in msg["reason"]

    # A parked message is sent again on demand, once the server takes it.
    box.refuse = None
    base = f"/v1/programs/{program}/members/{second['id']}/messages"
    [parked] = await _messages(client, program, second["id"])
    assert (await client.post(f"{base}/nope/retry")).status_code == 404
    other = f"/v1/programs/{program}/members/{third['id']}/messages/{parked['id']}/retry"
    assert (await client.post(other)).status_code == 404  # another member's message
    r = await client.post(f"{base}/{parked['id']}/retry")
    assert r.status_code == 200 and r.json()["status"] == "pending"
    await worker.run_until_idle(db, mail_settings)
    [msg] = await _messages(client, program, second["id"])
    assert msg["status"] == "sent" and msg["reason"] is None
    assert len(box.to("second@example.com")) == 1


async def test_member_messages_of_an_unknown_member_is_404(
    client: httpx.AsyncClient, program: str
) -> None:
    r = await client.get(f"/v1/programs/{program}/members/nope/messages")
    assert r.status_code == 404


async def test_the_worker_emails_the_sign_in_link_and_it_signs_in(
    client: httpx.AsyncClient,
    program: str,
    db: Database,
    mail_settings: Settings,
    smtp: tuple[Mailbox, int],
) -> None:
    box, _ = smtp
    m = await enrol(client, program, email="link@example.com", locale="da")  # no consent given
    app = create_app(mail_settings, db=db)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as web,
    ):
        form = await web.get(f"/app/{program}/signin")
        r = await web.post(
            f"/app/{program}/signin/link",
            data={"csrf_token": csrf_of(form.text), "link_email": "link@example.com"},
        )
        assert r.status_code == 200 and "we have sent a sign-in link" in r.text
        await worker.run_until_idle(db, mail_settings)
        [mail] = box.to("link@example.com")
        assert mail["Subject"] == "Dit login-link til Test café"
        text_part = mail.get_body(preferencelist=("plain",))
        assert text_part is not None
        found = re.search(
            r"https://loyalty\.example\.com(/app/\S+/signin/link/\S+)", text_part.get_content()
        )
        assert found, text_part.get_content()
        used = await web.get(found.group(1))
        assert used.status_code == 303
        assert (await web.get(f"/app/{program}/card")).status_code == 200
    messages = await _messages(client, program, m["id"])
    link = [x for x in messages if x["template"] == "sign_in_link"]
    assert [(x["status"], x["channel"]) for x in link] == [("sent", "email")]
    # The welcome email was not sent: the member gave no consent. The link needs none.
    welcome = [x for x in messages if x["template"] == "welcome"]
    assert [(x["status"], x["reason"]) for x in welcome] == [("skipped", "no-consent")]


async def test_a_template_failing_for_one_member_fails_that_message_only(
    client: httpx.AsyncClient,
    program: str,
    db: Database,
    mail_settings: Settings,
    smtp: tuple[Mailbox, int],
) -> None:
    box, _ = smtp
    r = await client.put(
        f"/v1/programs/{program}/message-templates/welcome/email/en",
        json={"subject": "Hi", "body": "<p>Hi {{ first_name[3] }}</p>"},  # fine for "Alex"
    )
    assert r.status_code == 201, r.text
    short = await enrol(
        client, program, email="al@example.com", first_name="Al", consents={"email": True}
    )
    long = await enrol(
        client, program, email="alexandra@example.com", first_name="Alexandra",
        consents={"email": True},
    )  # fmt: skip
    await worker.run_until_idle(db, mail_settings)
    [failed] = await _messages(client, program, short["id"])
    assert failed["status"] == "failed" and failed["reason"].startswith("template: body")
    [sent] = await _messages(client, program, long["id"])
    assert sent["status"] == "sent"
    assert [m["To"] for m in box.messages] == ["alexandra@example.com"]


async def test_the_weekly_cap_holds_back_messages_but_not_the_welcome(
    client: httpx.AsyncClient,
    program: str,
    db: Database,
    mail_settings: Settings,
    smtp: tuple[Mailbox, int],
) -> None:
    box, _ = smtp
    ladder = {
        "metric": "qualifying_spend",
        "window": {"kind": "calendar_year"},
        "tiers": [
            {"code": "base", "name": "Base", "threshold": "0.00"},
            {"code": "silver", "name": "Silver", "threshold": "100.00"},
            {"code": "gold", "name": "Gold", "threshold": "200.00"},
        ],
    }
    assert (await client.post(f"/v1/programs/{program}/tiers", json=ladder)).status_code == 201
    r = await client.put(
        f"/v1/programs/{program}/message-templates/tier_up/email/en",
        json={"subject": "You reached {{ tier }}", "body": "<p>Welcome to {{ tier }}</p>"},
    )
    assert r.status_code == 201, r.text
    m = await enrol(client, program, email="cap@example.com", consents={"email": True})
    capped = mail_settings.model_copy(update={"message_weekly_cap": 1})
    assert (await purchase(client, program, m["id"], "150.00")).status_code == 201
    await worker.run_until_idle(db, capped)
    assert (await purchase(client, program, m["id"], "100.00")).status_code == 201
    await worker.run_until_idle(db, capped)
    messages = await _messages(client, program, m["id"])
    got = [(x["template"], x["status"], x["reason"]) for x in reversed(messages)]
    assert got == [
        ("welcome", "sent", None),
        ("tier_up", "sent", None),
        ("tier_up", "skipped", "frequency-cap"),
    ]
    assert [x["Subject"] for x in box.to("cap@example.com")][1:] == ["You reached Silver"]
