"""Message templates through the API: saving, checks at save time, languages, previews."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from babel.dates import format_date

from tests.conftest import create_program, enrol, purchase

WELCOME_EN = {
    "subject": "Welcome to {{ program_name }}, {{ first_name }}",
    "body": "<p>Hello {{ first_name }}, you have {{ points }} {{ points_name }}.</p>",
}
WELCOME_FR = {
    "subject": "Bienvenue chez {{ program_name }}, {{ first_name }}",
    "body": "<p>Bonjour {{ first_name }}, vous avez {{ points }} {{ points_name }}.</p>",
}


def _url(program: str, code: str = "welcome", channel: str = "email", locale: str = "en") -> str:
    return f"/v1/programs/{program}/message-templates/{code}/{channel}/{locale}"


async def _put(
    client: httpx.AsyncClient, program: str, body: dict[str, Any], **where: str
) -> httpx.Response:
    return await client.put(_url(program, **where), json=body)


async def _preview(
    client: httpx.AsyncClient, program: str, body: dict[str, Any], code: str = "welcome"
) -> httpx.Response:
    return await client.post(f"/v1/programs/{program}/message-templates/{code}/preview", json=body)


async def test_save_read_list_replace_and_delete(client: httpx.AsyncClient, program: str) -> None:
    r = await _put(client, program, WELCOME_EN)
    assert r.status_code == 201, r.text
    assert r.json()["code"] == "welcome"
    assert (r.json()["channel"], r.json()["locale"]) == ("email", "en")
    r = await _put(client, program, {**WELCOME_EN, "subject": "Hi {{ first_name }}"})
    assert r.status_code == 200, r.text
    r = await _put(client, program, {"body": "{{ first_name }}: {{ points }} pts"}, channel="sms")
    assert r.status_code == 201, r.text
    r = await client.get(_url(program))
    assert r.json()["subject"] == "Hi {{ first_name }}"
    r = await client.get(f"/v1/programs/{program}/message-templates")
    assert [(t["code"], t["channel"], t["locale"]) for t in r.json()] == [
        ("welcome", "email", "en"),
        ("welcome", "sms", "en"),
    ]
    r = await client.get(f"/v1/programs/{program}/message-templates", params={"code": "birthday"})
    assert r.json() == []
    r = await client.delete(_url(program, channel="sms"))
    assert r.status_code == 204
    r = await client.get(_url(program, channel="sms"))
    assert r.status_code == 404
    assert r.json()["type"].endswith("/errors/message-template-not-found")
    assert (await client.delete(_url(program, channel="sms"))).status_code == 404


@pytest.mark.parametrize(
    ("body", "field", "says"),
    [
        ({"subject": "Hi", "body": "Hello {{ first_name "}, "body", "line 1"),
        ({"subject": "Hi", "body": "a\n{% if points %}b"}, "body", "line 2"),
        ({"subject": "Hi {{ nickname }}", "body": "x"}, "subject", "unknown variable nickname"),
        ({"subject": "Hi", "body": "{{ balance }} {{ first_name }}"}, "body", "balance"),
        ({"subject": "Hi", "body": "{{ ''.__class__ }}"}, "body", "sandbox"),
        ({"subject": "Hi", "body": "{{ first_name.__class__.__mro__ }}"}, "body", "sandbox"),
        ({"subject": "Hi", "body": "{{ first_name|attr('__globals__') }}"}, "body", "__globals__"),
        ({"subject": "Hi", "body": "{% for x in first_name %}{{ x }}{% endfor %}"}, "body", "loop"),
        ({"subject": "Hi", "body": "{% include 'base.html' %}"}, "body", "include"),
        ({"subject": "Hi", "body": "{{ 'x' * 9999 * 9999 }}"}, "body", "too"),
        ({"subject": "Hi", "body": "{{ first_name.nope }}"}, "body", "nope"),
        ({"subject": "", "body": "no subject"}, "subject", "needs a subject"),
        ({"subject": "Hi", "body": "   "}, "body", "empty"),
    ],
)
async def test_bad_templates_are_refused_at_save_time(
    client: httpx.AsyncClient, program: str, body: dict[str, Any], field: str, says: str
) -> None:
    r = await _put(client, program, body)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    problem = r.json()
    assert problem["type"].endswith("/errors/invalid-message-template")
    assert problem["errors"][0]["field"] == field
    assert says in problem["errors"][0]["message"]
    assert (await client.get(_url(program))).status_code == 404  # nothing written


async def test_channel_rules_and_bad_paths(client: httpx.AsyncClient, program: str) -> None:
    r = await _put(client, program, {"subject": "Hi", "body": "x"}, channel="sms")
    assert r.status_code == 422
    assert r.json()["errors"][0] == {"field": "subject", "message": "a text message has no subject"}
    r = await _put(client, program, {"body": "x" * 1601}, channel="sms")
    assert r.status_code == 422
    r = await _put(
        client, program, {"subject": "Title {{ first_name }}", "body": "x"}, channel="push"
    )
    assert r.status_code == 201, r.text
    for where in ({"channel": "fax"}, {"locale": "de"}, {"code": "Bad-Code"}):
        r = await _put(client, program, WELCOME_EN, **where)
        assert r.status_code == 422, where
        assert r.json()["type"].endswith("/errors/validation")
    r = await _put(client, program, {**WELCOME_EN, "extra": 1})
    assert r.status_code == 422


async def test_each_member_gets_their_language_with_a_fallback(
    client: httpx.AsyncClient, program: str
) -> None:
    assert (await _put(client, program, WELCOME_EN)).status_code == 201
    assert (await _put(client, program, WELCOME_FR, locale="fr")).status_code == 201
    lea = await enrol(client, program, first_name="Léa", locale="fr")
    await purchase(client, program, lea["id"], "1250.00")
    r = await _preview(client, program, {"member_id": lea["id"]})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["locale"] == "fr"
    assert out["subject"] == "Bienvenue chez Test café, Léa"
    assert out["body"] == "<p>Bonjour Léa, vous avez 1\u202f250 points.</p>"
    assert out["variables"]["points"] == "1\u202f250"
    # A Danish member: no Danish text yet, so English, numbers written as the text is.
    mads = await enrol(client, program, first_name="Mads", locale="da")
    await purchase(client, program, mads["id"], "1250.00")
    out = (await _preview(client, program, {"member_id": mads["id"]})).json()
    assert out["locale"] == "en"
    assert out["body"] == "<p>Hello Mads, you have 1,250 points.</p>"
    # A language asked for explicitly wins over the member's.
    out = (await _preview(client, program, {"member_id": lea["id"], "locale": "en"})).json()
    assert out["body"] == "<p>Hello Léa, you have 1,250 points.</p>"


async def test_a_program_writing_only_french_serves_french(client: httpx.AsyncClient) -> None:
    program = await create_program(client)
    assert (await _put(client, program, WELCOME_FR, locale="fr")).status_code == 201
    ann = await enrol(client, program, first_name="Ann", locale="en")
    out = (await _preview(client, program, {"member_id": ann["id"]})).json()
    assert (out["locale"], out["body"]) == ("fr", "<p>Bonjour Ann, vous avez 0 points.</p>")


async def test_member_values_are_escaped_in_email_and_kept_in_text(
    client: httpx.AsyncClient, program: str
) -> None:
    await _put(client, program, WELCOME_EN)
    await _put(client, program, {"body": "Hi {{ first_name }}"}, channel="sms")
    m = await enrol(client, program, first_name="<b>Bo</b>\nBcc: x@example.com")
    out = (await _preview(client, program, {"member_id": m["id"]})).json()
    assert "&lt;b&gt;Bo&lt;/b&gt;" in out["body"]
    assert "<b>Bo" not in out["body"]
    assert "\n" not in out["subject"]  # a subject stays on one line
    out = (await _preview(client, program, {"member_id": m["id"], "channel": "sms"})).json()
    assert out["body"].startswith("Hi <b>Bo</b>")


async def test_tier_card_and_expiring_points(client: httpx.AsyncClient) -> None:
    program = await create_program(client, expiry={"policy": "days", "days": 365})
    ladder = {
        "metric": "qualifying_spend",
        "window": {"kind": "calendar_year"},
        "tiers": [
            {"code": "base", "name": "Bronze", "threshold": "0.00"},
            {"code": "silver", "name": "Silver", "threshold": "100.00"},
        ],
    }
    assert (await client.post(f"/v1/programs/{program}/tiers", json=ladder)).status_code == 201
    m = await enrol(client, program, first_name="Ida")
    await purchase(client, program, m["id"], "150.00")
    body = "{{ tier }}|{{ card_number }}|{{ expiring_points }}|{{ expiring_on }}"
    assert (
        await _put(client, program, {"body": body}, code="points_expiring", channel="push")
    ).status_code == 201
    out = (
        await _preview(
            client, program, {"member_id": m["id"], "channel": "push"}, "points_expiring"
        )
    ).json()
    tier, card, points, on = out["body"].split("|")
    assert (tier, card, points) == ("Silver", m["card_number"], "150")
    balance = (await client.get(f"/v1/programs/{program}/members/{m['id']}/balance")).json()
    expires = datetime.fromisoformat(balance["expiring"][0]["expires_at"])
    paris = expires.astimezone(ZoneInfo("Europe/Paris")).date()
    assert on == format_date(paris, format="long", locale="en")  # e.g. "November 24, 2027"


async def test_previews_with_sample_data_and_drafts(
    client: httpx.AsyncClient, program: str
) -> None:
    await _put(client, program, WELCOME_EN)
    out = (await _preview(client, program, {})).json()
    assert out["body"] == "<p>Hello Alex, you have 1,250 points.</p>"
    assert out["member_id"] is None
    r = await _preview(
        client, program, {"sample": {"first_name": "Zoé", "points": 98765}, "locale": "fr"}
    )
    assert r.status_code == 200, r.text
    assert r.json()["locale"] == "en"  # no French text: English
    assert r.json()["body"] == "<p>Hello Zoé, you have 98,765 points.</p>"
    # A draft (the console's live preview) is rendered without being saved.
    draft = {"subject": "Hej {{ first_name }}", "body": "Du har {{ points }} point", "locale": "da"}
    out = (await _preview(client, program, {**draft, "channel": "push"}, "tier_up")).json()
    assert (out["subject"], out["body"], out["locale"]) == ("Hej Alex", "Du har 1.250 point", "da")
    assert (
        await client.get(_url(program, code="tier_up", channel="push", locale="da"))
    ).status_code == 404
    r = await _preview(client, program, {"body": "{{ ''.__class__ }}", "subject": "x"})
    assert r.status_code == 422
    assert "sandbox" in r.json()["errors"][0]["message"]


async def test_bad_previews(client: httpx.AsyncClient, program: str) -> None:
    await _put(client, program, WELCOME_EN)
    m = await enrol(client, program)
    r = await _preview(client, program, {"sample": {"nickname": "x"}})
    assert (r.status_code, r.json()["errors"][0]["field"]) == (422, "sample.nickname")
    r = await _preview(client, program, {"sample": {}, "member_id": m["id"]})
    assert r.status_code == 422
    r = await _preview(client, program, {"member_id": "no-such-member"})
    assert r.status_code == 404
    r = await _preview(client, program, {"channel": "sms"})
    assert r.status_code == 404
    assert r.json()["type"].endswith("/errors/message-template-not-found")
    other = await create_program(client)
    r = await _preview(client, other, {})
    assert r.status_code == 404  # another program's template is not this one's
    r = await _preview(client, other, {"member_id": m["id"], "body": "x", "subject": "y"})
    assert r.status_code == 404  # nor its members
