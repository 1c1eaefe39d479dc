"""Newsletters to a dynamic segment through a real SMTP server: sent now or scheduled, a
hold-out for the campaigns room, the send report (sent, consent, cap, bounced), bad input."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx

from habitue import clock
from habitue.db import Database
from habitue.messaging import timed, worker
from habitue.settings import Settings
from tests.conftest import create_program, enrol
from tests.messaging.conftest import Mailbox


async def _setup(client: httpx.AsyncClient) -> tuple[str, list[dict[str, Any]]]:
    program = await create_program(client)
    members = []
    for i in range(12):
        members.append(
            await enrol(
                client,
                program,
                email=f"n{i}@example.com",
                locale="fr" if i == 0 else "en",
                consents={"email": i != 1},  # n1 said no
                attributes={"city": "Lyon" if i == 2 else "Paris"},  # n2 is not in the segment
            )
        )
    r = await client.post(
        f"/v1/programs/{program}/segments",
        json={"code": "paris", "condition": 'member.attributes.city == "Paris"'},
    )
    assert r.status_code == 201, r.text
    for locale, subject in (("en", "December news"), ("fr", "Nouvelles de décembre")):
        r = await client.put(
            f"/v1/programs/{program}/message-templates/december/email/{locale}",
            json={"subject": subject, "body": "<p>Hello {{ first_name }}</p>"},
        )
        assert r.status_code == 201, r.text
    return program, members


async def _report(client: httpx.AsyncClient, program: str, code: str) -> dict[str, Any]:
    r = await client.get(f"/v1/programs/{program}/newsletters/{code}")
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def test_a_newsletter_now_with_a_holdout_and_its_report(
    client: httpx.AsyncClient,
    db: Database,
    mail_settings: Settings,
    smtp: tuple[Mailbox, int],
) -> None:
    box, _ = smtp
    program, members = await _setup(client)
    await worker.run_until_idle(db, mail_settings)  # welcomes
    box.messages.clear()

    r = await client.post(
        f"/v1/programs/{program}/newsletters",
        json={"code": "dec", "segment": "paris", "template": "december", "holdout_share": 0.5},
    )
    assert r.status_code == 201, r.text
    made = r.json()
    assert made["status"] == "sent"
    report = made["report"]
    assert report["targeted"] + report["holdout"] == 11  # the segment: everyone but n2
    # A half share: both groups of the 11 are non-empty but in 2 draws of 2,048 (the hold-out
    # is a hash of the random program's code and the member: 0.25 left it empty in 4 %).
    assert report["holdout"] >= 1 and report["targeted"] >= 1
    await worker.run_until_idle(db, mail_settings)

    report = (await _report(client, program, "dec"))["report"]
    consented_target = len(box.messages)
    assert report["sent"] == consented_target
    assert report["sent"] + report["skipped_consent"] == report["targeted"]
    assert report["pending"] == report["failed"] == report["bounced"] == 0
    assert not box.to("n2@example.com") and not box.to("n1@example.com")
    subjects = {m["To"]: m["Subject"] for m in box.messages}
    if "n0@example.com" in subjects:
        assert subjects["n0@example.com"] == "Nouvelles de décembre"
    assert all(m["List-Unsubscribe"] for m in box.messages)

    # The hold-out is the analytics campaign's: its report splits the same way.
    r = await client.get(f"/v1/programs/{program}/campaigns/dec/report")
    assert r.status_code == 200, r.text
    assert r.json()["holdout"]["members"] >= report["holdout"]

    # The member's messages show it.
    treated = [m for m in members if box.to(m["email"])]
    r = await client.get(f"/v1/programs/{program}/members/{treated[0]['id']}/messages")
    assert [(x["template"], x["status"]) for x in r.json()["items"]][0] == ("december", "sent")

    # Bounced: the server refuses the recipients for good.
    box.refuse = "550 5.1.1 no such user"
    r = await client.post(
        f"/v1/programs/{program}/newsletters",
        json={"code": "dec2", "segment": "paris", "template": "december"},
    )
    assert r.status_code == 201, r.text
    await worker.run_until_idle(db, mail_settings)
    second = (await _report(client, program, "dec2"))["report"]
    assert second["targeted"] == 11 and second["holdout"] == 0
    assert second["bounced"] == 10 and second["sent"] == 0 and second["skipped_consent"] == 1

    # The weekly cap: one message a week, the first newsletter was it.
    box.refuse = None
    r = await client.put(f"/v1/programs/{program}/message-settings", json={"weekly_cap": 1})
    assert r.status_code == 200, r.text
    r = await client.post(
        f"/v1/programs/{program}/newsletters",
        json={"code": "dec3", "segment": "paris", "template": "december"},
    )
    await worker.run_until_idle(db, mail_settings)
    third = (await _report(client, program, "dec3"))["report"]
    assert third["skipped_cap"] == consented_target
    assert third["sent"] == 10 - consented_target

    listed = (await client.get(f"/v1/programs/{program}/newsletters")).json()["items"]
    assert {n["code"] for n in listed} == {"dec", "dec2", "dec3"}


async def test_a_scheduled_newsletter_goes_at_its_time_once_or_is_canceled(
    client: httpx.AsyncClient,
    db: Database,
    mail_settings: Settings,
    smtp: tuple[Mailbox, int],
) -> None:
    box, _ = smtp
    program, _ = await _setup(client)
    await worker.run_until_idle(db, mail_settings)
    box.messages.clear()
    at = (clock.now() + timedelta(hours=2)).isoformat()
    for code in ("later", "never"):
        r = await client.post(
            f"/v1/programs/{program}/newsletters",
            json={"code": code, "segment": "paris", "template": "december", "send_at": at},
        )
        assert r.status_code == 201, r.text
        assert r.json()["status"] == "scheduled"
    r = await client.post(f"/v1/programs/{program}/newsletters/never/cancel")
    assert r.status_code == 200 and r.json()["status"] == "canceled"
    again = await client.post(f"/v1/programs/{program}/newsletters/never/send")
    assert again.status_code == 409
    assert again.json()["type"].endswith("newsletter-not-scheduled")

    await timed.scan(db, mail_settings)
    await worker.run_until_idle(db, mail_settings)
    assert box.messages == []
    clock.advance(timedelta(hours=2, minutes=1))
    await timed.scan(db, mail_settings)
    await timed.scan(db, mail_settings)  # a second scan sends nothing twice
    await worker.run_until_idle(db, mail_settings)
    report = (await _report(client, program, "later"))["report"]
    assert report["targeted"] == 11 and report["sent"] == 10 == len(box.messages)
    assert (await _report(client, program, "never"))["report"]["targeted"] == 0


async def test_bad_newsletters_are_refused_and_nothing_is_written(
    client: httpx.AsyncClient, db: Database, mail_settings: Settings, smtp: tuple[Mailbox, int]
) -> None:
    program, _ = await _setup(client)
    base = {"code": "n", "segment": "paris", "template": "december"}
    cases = [
        ({**base, "segment": "nowhere"}, 422, "segment"),
        ({**base, "template": "nothing"}, 422, "template"),
        ({**base, "holdout_share": 1.0}, 422, None),
        ({**base, "code": "Bad Code"}, 422, None),
        ({**base, "surprise": 1}, 422, None),
    ]
    for body, status, field in cases:
        r = await client.post(f"/v1/programs/{program}/newsletters", json=body)
        assert r.status_code == status, (body, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        if field:
            assert r.json()["errors"][0]["field"] == field
    assert (await client.get(f"/v1/programs/{program}/newsletters")).json()["items"] == []
    assert (await client.post(f"/v1/programs/{program}/newsletters", json=base)).status_code == 201
    dup = await client.post(f"/v1/programs/{program}/newsletters", json=base)
    assert dup.status_code == 409 and dup.json()["type"].endswith("newsletter-exists")
    missing = await client.get(f"/v1/programs/{program}/newsletters/ghost")
    assert missing.status_code == 404
    other = await create_program(client)
    assert (await client.get(f"/v1/programs/{other}/newsletters/n")).status_code == 404
