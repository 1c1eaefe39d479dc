"""The console's built-in texts: listed per message, channel and language; the editor opens an
SMS or push text with its preview, saving it replaces the built-in one; `points_earned` starts
from a text that is not sent until saved."""

from __future__ import annotations

import html
import re

import httpx

from habitue.db import Database
from tests.web.conftest import csrf_of, make_staff, staff_signin


def _text(page: str, element_id: str) -> str:
    found = re.search(rf'id="{element_id}"[^>]*>(.*?)</', page, re.S)
    assert found, element_id
    return html.unescape(found.group(1))


async def test_built_in_sms_and_push_texts_are_listed_previewed_and_replaced(
    client: httpx.AsyncClient, program: str, db: Database
) -> None:
    await staff_signin(client, await make_staff(db, "marketer"))
    listing = await client.get(f"/admin/{program}/messages")
    assert listing.status_code == 200
    for code in ("welcome", "tier_up", "points_earned", "points_expiring", "birthday",
                 "reward_available"):  # fmt: skip
        for channel in ("email", "sms", "push"):
            row = f'id="built-in-{code}-{channel}"'
            assert row in listing.text, row
            for locale in ("en", "fr", "da"):
                link = f"?code={code}&amp;channel={channel}&amp;locale={locale}"
                assert link in listing.text, link

    url = f"/admin/{program}/messages/edit"
    sms = await client.get(url, params={"code": "birthday", "channel": "sms", "locale": "da"})
    assert sms.status_code == 200
    assert 'id="built-in-text"' in sms.text and "Delete this template" not in sms.text
    assert "Tillykke med fødselsdagen, {{ first_name }}" in html.unescape(sms.text)
    assert _text(sms.text, "preview-body").startswith("Tillykke med fødselsdagen, Alex")
    push = await client.get(url, params={"code": "tier_up", "channel": "push", "locale": "fr"})
    assert _text(push.text, "preview-subject") == "Vous êtes maintenant Gold"
    off = await client.get(url, params={"code": "points_earned", "channel": "sms", "locale": "en"})
    assert 'id="starting-text"' in off.text
    assert "{{ points }}" in html.unescape(off.text)

    form = {"csrf_token": csrf_of(sms.text), "code": "birthday", "channel": "sms",
            "locale": "da", "subject": "", "body": "Tillykke {{ first_name }}!",
            "member": "", "action": "save"}  # fmt: skip
    saved = await client.post(url, data=form)
    assert saved.status_code == 303, saved.text
    listing = await client.get(saved.headers["location"])
    row = listing.text[listing.text.index('id="built-in-birthday-sms"') :]
    row = row[: row.index("</tr>")]
    assert 'data-saved="yes"' in row and row.count('data-saved="no"') == 2
    mine = await client.get(url, params={"code": "birthday", "channel": "sms", "locale": "da"})
    assert 'id="built-in-text"' not in mine.text and "Delete this template" in mine.text
    assert _text(mine.text, "preview-body") == "Tillykke Alex!"
