"""The console's newsletters page: a newsletter sent from the form to a segment, its send
report, bad input kept with its errors, roles, and the page in French and Danish."""

from __future__ import annotations

import httpx

from habitue.db import Database
from habitue.messaging import worker
from habitue.settings import Settings
from tests.conftest import enrol
from tests.web.conftest import csrf_of, make_staff, staff_signin


async def _segment_and_template(client: httpx.AsyncClient, program: str) -> None:
    for i in range(4):
        await enrol(client, program, email=f"w{i}@example.com", consents={"email": i > 0})
    r = await client.post(
        f"/v1/programs/{program}/segments", json={"code": "everyone", "condition": "true"}
    )
    assert r.status_code == 201, r.text
    r = await client.put(
        f"/v1/programs/{program}/message-templates/winter/email/en",
        json={"subject": "Winter", "body": "<p>Hello {{ first_name }}</p>"},
    )
    assert r.status_code == 201, r.text


async def test_a_newsletter_sent_from_the_console_and_its_report(
    client: httpx.AsyncClient, program: str, db: Database, settings: Settings
) -> None:
    await _segment_and_template(client, program)
    assert (await client.get(f"/admin/{program}/newsletters")).status_code in (302, 303, 401)
    await staff_signin(client, await make_staff(db, "marketer"))
    page = await client.get(f"/admin/{program}/newsletters")
    assert page.status_code == 200
    assert 'id="no-newsletters"' in page.text
    assert '<option value="everyone"' in page.text and '<option value="winter"' in page.text
    token = csrf_of(page.text)

    bad = await client.post(
        f"/admin/{program}/newsletters",
        data={"csrf_token": token, "code": "Bad code", "segment": "everyone",
              "template": "winter", "holdout_share": "150"},
    )  # fmt: skip
    assert bad.status_code == 422
    assert 'aria-invalid="true"' in bad.text and 'value="Bad code"' in bad.text
    assert (await client.get(f"/v1/programs/{program}/newsletters")).json()["items"] == []

    r = await client.post(
        f"/admin/{program}/newsletters",
        data={"csrf_token": token, "code": "winter_news", "segment": "everyone",
              "template": "winter", "holdout_share": "0", "send_at": ""},
    )  # fmt: skip
    assert r.status_code == 303, r.text
    await worker.run_until_idle(db, settings)  # email is not configured: skipped, counted
    page = await client.get(r.headers["location"])
    assert 'id="newsletter-sent"' in page.text
    assert 'id="newsletter-winter_news" data-status="sent"' in page.text
    assert '<td class="num" data-figure="targeted">4</td>' in page.text
    assert '<td class="num" data-figure="skipped_consent">1</td>' in page.text

    again = await client.post(
        f"/admin/{program}/newsletters",
        data={"csrf_token": token, "code": "winter_news", "segment": "everyone",
              "template": "winter", "holdout_share": "0"},
    )  # fmt: skip
    assert again.status_code == 422
    assert "A newsletter or a campaign already has this code." in again.text

    client.cookies.clear()
    await staff_signin(client, await make_staff(db, "support"))
    assert (await client.get(f"/admin/{program}/newsletters")).status_code == 403


async def test_the_newsletters_page_in_french_and_danish(
    client: httpx.AsyncClient, program: str, db: Database
) -> None:
    await staff_signin(client, await make_staff(db, "owner"))
    for lang, title, button in (
        ("fr", "Lettres d'information", "Envoyer la lettre"),
        ("da", "Nyhedsbreve", "Send nyhedsbrevet"),
    ):
        page = await client.get(f"/admin/{program}/newsletters", headers={"accept-language": lang})
        assert page.status_code == 200
        assert f"<h1>{title}</h1>" in page.text, lang
        assert button in page.text, lang
