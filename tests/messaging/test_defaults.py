"""The built-in texts: every trigger's message in English, French and Danish on email, SMS and
push, each one a valid template; SMS and push sent by a worker with a provider, in the member's
language, and replaced by the program's own template."""

from __future__ import annotations

import json

import httpx

from habitue.db import Database
from habitue.messaging import defaults, render, worker
from habitue.settings import Settings
from tests.conftest import enrol
from tests.messaging.test_webhooks import Receiver

TRIGGERS = ("welcome", "tier_up", "points_earned", "points_expiring", "birthday",
            "reward_available")  # fmt: skip


def test_every_trigger_has_a_text_per_channel_and_language_that_renders() -> None:
    assert set(TRIGGERS) == set(render.SUGGESTED_CODES)
    for code in TRIGGERS:
        for channel in render.CHANNELS:
            texts = defaults.starter(code, channel)
            assert sorted(texts) == ["da", "en", "fr"], (code, channel)
            for locale, (subject, body) in texts.items():
                render.check(channel, subject, body)  # raises InvalidTemplate if it cannot go
                out = render.render(
                    channel, subject, body, render.format_values(render.SAMPLE, locale, "UTC")
                )
                assert "{{" not in out.body and out.body.strip()
                if channel == "sms":
                    assert subject is None and len(out.body) <= 160, (code, locale, out.body)
                if channel == "push":
                    assert out.subject, (code, locale)
    # points_earned is off until the program saves a template: no built-in text is sent.
    assert all(defaults.built_in("points_earned", ch) == {} for ch in render.CHANNELS)
    assert all(defaults.built_in(c, "sms") for c in TRIGGERS if c != "points_earned")



async def _messages(client: httpx.AsyncClient, program: str, member: str) -> list[dict[str, str]]:
    r = await client.get(f"/v1/programs/{program}/members/{member}/messages")
    assert r.status_code == 200, r.text
    items: list[dict[str, str]] = r.json()["items"]
    return items


async def test_built_in_sms_and_push_go_in_the_members_language(
    client: httpx.AsyncClient, program: str, db: Database, settings: Settings, receiver: Receiver
) -> None:
    quiet = await enrol(client, program, phone="+4511111111", first_name="Ida", locale="da",
                        consents={"sms": True, "push": True})  # fmt: skip
    # No provider: the built-in SMS and push are not planned at all (nothing to skip).
    await worker.run_until_idle(db, settings)
    assert {m["channel"] for m in await _messages(client, program, quiet["id"])} <= {"email"}

    sending = settings.model_copy(
        update={"sms_webhook_url": receiver.url, "push_webhook_url": receiver.url}
    )
    fr = await enrol(client, program, phone="+33611111111", first_name="Léa", locale="fr",
                     consents={"sms": True, "push": True})  # fmt: skip
    no_consent = await enrol(client, program, phone="+4522222222", consents={"sms": False})
    await worker.run_until_idle(db, sending)
    bodies = [json.loads(c["body"]) for c in receiver.calls]
    [sms] = [b for b in bodies if b.get("to") == "+33611111111"]
    assert sms["text"].startswith("Bienvenue chez ") and "Léa" in sms["text"]
    [push] = [b for b in bodies if b.get("to") == fr["id"]]
    assert push["title"].startswith("Bienvenue chez ") and "Léa" in push["body"]
    sent = {m["channel"]: m for m in await _messages(client, program, fr["id"])}
    assert sent["sms"]["status"] == "sent" and sent["push"]["status"] == "sent"
    assert sent["sms"]["template"] == "welcome"
    skipped = {m["channel"]: m for m in await _messages(client, program, no_consent["id"])}
    assert skipped["sms"]["status"] == "skipped" and skipped["sms"]["reason"] == "no-consent"

    # The program's own French SMS replaces the built-in one; push keeps the built-in text.
    r = await client.put(
        f"/v1/programs/{program}/message-templates/welcome/sms/fr",
        json={"body": "Salut {{ first_name }} !"},
    )
    assert r.status_code == 201, r.text
    receiver.calls.clear()
    await enrol(client, program, phone="+33622222222", first_name="Noé", locale="fr",
                consents={"sms": True, "push": True})  # fmt: skip
    await worker.run_until_idle(db, sending)
    texts = [json.loads(c["body"]) for c in receiver.calls]
    assert [t["text"] for t in texts if t.get("to") == "+33622222222"] == ["Salut Noé !"]
    assert any(t.get("title", "").startswith("Bienvenue chez ") for t in texts)
