"""The console's partners and message-template pages through HTTP: roles, forms, previews."""

from __future__ import annotations

import html
import re
from datetime import datetime
from zoneinfo import ZoneInfo

import httpx
import pytest

from habitue.db import Database
from tests.conftest import enrol, purchase
from tests.web.conftest import csrf_of, make_staff, staff_signin

AIR = {"code": "air", "name": "Air Habitué", "funding_rate": "1.00", "reimbursement_rate": "0.75"}


def _this_month() -> str:
    return datetime.now(ZoneInfo("Europe/Paris")).strftime("%Y-%m")


def _text(page: str, element_id: str) -> str:
    found = re.search(rf'id="{element_id}"[^>]*>(.*?)</', page, re.S)
    assert found, f"no #{element_id}"
    return html.unescape(found.group(1)).strip()


async def test_owner_adds_a_partner_and_reads_its_statement(
    client: httpx.AsyncClient, program: str, db: Database
) -> None:
    await staff_signin(client, await make_staff(db, "owner"))
    page = await client.get(f"/admin/{program}/partners")
    assert page.status_code == 200
    assert 'id="no-partners"' in page.text
    assert f'href="/admin/{program}/partners"' in page.text  # the nav link
    assert f'href="/admin/{program}/messages"' in page.text
    token = csrf_of(page.text)
    url = f"/admin/{program}/partners"
    bad = await client.post(
        url,
        data={"csrf_token": token, **AIR, "code": "default", "funding_rate": "1.001", "name": ""},
    )
    assert bad.status_code == 422
    assert 'id="e-code"' in bad.text
    assert 'id="e-funding_rate"' in bad.text
    assert "Enter an amount such as 1.00." in bad.text
    assert 'id="e-name"' in bad.text
    assert 'id="e-reimbursement_rate"' not in bad.text
    assert 'value="1.001"' in bad.text  # what was typed is kept
    assert 'value="0.75"' in bad.text
    assert (await client.get(f"/v1/programs/{program}/partners")).json() == []
    ok = await client.post(url, data={"csrf_token": token, **AIR})
    assert ok.status_code == 303
    assert ok.headers["location"] == f"/admin/{program}/partners?created=air"
    again = await client.post(url, data={"csrf_token": token, **AIR})
    assert again.status_code == 422
    assert "Another partner already has this code." in again.text
    forged = await client.post(url, data={"csrf_token": "nope", **AIR, "code": "x"})
    assert forged.status_code == 403

    m = await enrol(client, program)
    await purchase(client, program, m["id"], "250.00", source="air")
    await purchase(client, program, m["id"], "20.00", source="air", spend_points=100)
    listing = await client.get(f"/admin/{program}/partners")
    assert "Air Habitué" in listing.text
    assert "€1.94" in listing.text  # this month: 269 points at 1.00 − 100 at 0.75
    month = _this_month()
    r = await client.get(f"/admin/{program}/partners/air", params={"month": month})
    assert r.status_code == 200
    assert _text(r.text, "points-issued") == "269"
    assert _text(r.text, "points-redeemed") == "100"
    assert _text(r.text, "funding") == "€2.69"
    assert _text(r.text, "reimbursement") == "€0.75"
    assert _text(r.text, "balance-due") == "€1.94"
    assert "The partner owes the program €1.94." in r.text
    assert (await client.get(f"/admin/{program}/partners/air")).text.count("€1.94") >= 1
    empty = await client.get(f"/admin/{program}/partners/air", params={"month": "2020-02"})
    assert "Nothing is due for this month." in empty.text
    assert 'href="?month=2020-01"' in empty.text
    wrong = await client.get(f"/admin/{program}/partners/air", params={"month": "2020-13"})
    assert wrong.status_code == 422
    assert 'id="e-month"' in wrong.text
    assert 'value="2020-13"' in wrong.text
    assert 'id="funding"' not in wrong.text
    assert (await client.get(f"/admin/{program}/partners/nope")).status_code == 404


async def test_statements_are_in_french_for_a_french_reader(
    client: httpx.AsyncClient, program: str, db: Database
) -> None:
    await client.post(f"/v1/programs/{program}/partners", json=AIR)
    m = await enrol(client, program)
    await purchase(client, program, m["id"], "1250.00", source="air")
    await staff_signin(client, await make_staff(db, "analyst"))
    client.cookies.set("habitue_locale", "fr")
    r = await client.get(f"/admin/{program}/partners/air", params={"month": _this_month()})
    assert r.status_code == 200
    assert "Relevé de Air Habitué" in r.text
    assert _text(r.text, "points-issued").replace("\u202f", " ") == "1 250"
    assert _text(r.text, "funding").replace("\u202f", " ").replace("\xa0", " ") == "12,50 €"


async def test_roles_on_partners_and_messages(
    client: httpx.AsyncClient, program: str, db: Database
) -> None:
    await client.post(f"/v1/programs/{program}/partners", json=AIR)
    await staff_signin(client, await make_staff(db, "analyst"))
    page = await client.get(f"/admin/{program}/partners")
    assert page.status_code == 200
    assert "Add a partner" not in page.text
    assert f'href="/admin/{program}/messages"' not in page.text
    r = await client.post(
        f"/admin/{program}/partners", data={"csrf_token": csrf_of(page.text), **AIR, "code": "b"}
    )
    assert r.status_code == 403
    assert (await client.get(f"/admin/{program}/partners/air")).status_code == 200
    assert (await client.get(f"/admin/{program}/messages")).status_code == 403
    assert (await client.get(f"/admin/{program}/messages/edit")).status_code == 403
    client.cookies.clear()
    await staff_signin(client, await make_staff(db, "support"))
    for path in ("partners", "partners/air", "messages", "messages/edit"):
        assert (await client.get(f"/admin/{program}/{path}")).status_code == 403, path
    client.cookies.clear()
    await staff_signin(client, await make_staff(db, "marketer"))
    assert (await client.get(f"/admin/{program}/partners")).status_code == 403
    assert (await client.get(f"/admin/{program}/messages")).status_code == 200


async def test_marketer_writes_a_template_with_a_live_preview(
    client: httpx.AsyncClient, program: str, db: Database
) -> None:
    m = await enrol(client, program, first_name="Léa", last_name="Roux", locale="fr")
    await purchase(client, program, m["id"], "1250.00")
    await staff_signin(client, await make_staff(db, "marketer"))
    listing = await client.get(f"/admin/{program}/messages")
    assert listing.status_code == 200
    assert 'id="no-templates"' in listing.text
    assert "?code=welcome" in listing.text
    page = await client.get(f"/admin/{program}/messages/edit", params={"code": "welcome"})
    assert page.status_code == 200
    assert 'hx-post="/admin/' in page.text
    token = csrf_of(page.text)
    url = f"/admin/{program}/messages/edit"
    form = {
        "csrf_token": token,
        "code": "welcome",
        "channel": "email",
        "locale": "fr",
        "subject": "Bienvenue {{ first_name }}",
        "body": "<p>Bonjour {{ first_name }}, vous avez {{ points }} {{ nickname }}.</p>",
        "member": "",
    }
    bad = await client.post(url, data={**form, "action": "save"})
    assert bad.status_code == 422
    assert 'id="e-body"' in bad.text
    assert "Unknown variable: nickname." in bad.text
    assert "{{ nickname }}" in html.unescape(bad.text)  # the typed text is kept
    assert (await client.get(f"/v1/programs/{program}/message-templates")).json() == []
    form["body"] = "<p>Bonjour {{ first_name }}, vous avez {{ points }} {{ points_name }}.</p>"
    # The live preview (htmx) for the member, by card number, in the template's language.
    preview = await client.post(
        url, data={**form, "member": m["card_number"]}, headers={"HX-Request": "true"}
    )
    assert preview.status_code == 200, preview.text
    assert _text(preview.text, "preview-subject") == "Bienvenue Léa"
    body = _text(preview.text, "preview-body")
    assert body == "<p>Bonjour Léa, vous avez 1\u202f250 points.</p>"
    assert "For Léa Roux, in Français." in html.unescape(preview.text)
    sample = await client.post(url, data={**form, "locale": "en", "action": "preview"})
    assert "With sample data, in English." in sample.text
    assert "Alex" in _text(sample.text, "preview-body")
    nobody = await client.post(url, data={**form, "member": "4242 4242", "action": "preview"})
    assert nobody.status_code == 422
    assert 'id="e-member"' in nobody.text
    unsafe = await client.post(url, data={**form, "body": "{{ ''.__class__ }}"})
    assert unsafe.status_code == 422
    assert "The sandbox refused this template:" in html.unescape(unsafe.text)
    saved = await client.post(url, data={**form, "action": "save"})
    assert saved.status_code == 303
    assert saved.headers["location"] == f"/admin/{program}/messages?saved=welcome/email/fr"
    listing = await client.get(saved.headers["location"])
    assert "Bienvenue {{ first_name }}" in html.unescape(listing.text)
    r = await client.get(f"/v1/programs/{program}/message-templates/welcome/email/fr")
    assert r.status_code == 200
    assert r.json()["subject"] == "Bienvenue {{ first_name }}"
    edit = await client.get(url, params={"code": "welcome", "channel": "email", "locale": "fr"})
    assert "Delete this template" in edit.text
    assert "With sample data" in edit.text  # an existing template is previewed at once
    gone = await client.post(url, data={**form, "action": "delete"})
    assert gone.status_code == 303
    assert (await client.get(f"/v1/programs/{program}/message-templates")).json() == []


@pytest.mark.parametrize(
    ("change", "field", "says"),
    [
        ({"code": "Welcome!"}, "code", "lower-case letters"),
        ({"subject": ""}, "subject", "An email needs a subject."),
        ({"channel": "sms"}, "subject", "A text message has no subject"),
        ({"body": "{{ first_name "}, "body", "This is not a valid template: line 1"),
        ({"body": "{% for x in first_name %}{% endfor %}"}, "body", "not available"),
        ({"channel": "fax"}, "channel", "Check this field."),
    ],
)
async def test_template_form_errors_sit_next_to_their_field(
    client: httpx.AsyncClient, program: str, db: Database, change: dict[str, str], field: str,
    says: str,
) -> None:  # fmt: skip
    await staff_signin(client, await make_staff(db, "owner"))
    page = await client.get(f"/admin/{program}/messages/edit")
    form = {
        "csrf_token": csrf_of(page.text),
        "code": "birthday",
        "channel": "email",
        "locale": "en",
        "subject": "Happy birthday",
        "body": "Hi {{ first_name }}",
        "action": "save",
        **change,
    }
    r = await client.post(f"/admin/{program}/messages/edit", data=form)
    assert r.status_code == 422
    error = _text(r.text, f"e-{field}")
    assert says in error
    assert f'id="f-{field}"' in r.text
