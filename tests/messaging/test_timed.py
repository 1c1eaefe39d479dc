"""Timed messages: quiet hours, birthdays, points about to expire (once per lot), a reward
within reach (once per crossing) — the pure decisions, then the scan and the real emails."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest

from habitue import clock
from habitue.db import Database
from habitue.messaging import timed, worker
from habitue.settings import Settings
from tests.conftest import create_program, enrol, purchase
from tests.messaging.conftest import Mailbox
from tests.messaging.test_webhooks import Receiver


def test_quiet_hours_over_midnight_and_within_a_day() -> None:
    night = timed.parse_quiet_hours("21:00-08:00")
    paris = "Europe/Paris"
    # 22:30 in Paris (winter, UTC+1) is inside: wait for 08:00 the next morning
    at = datetime(2026, 12, 7, 21, 30, tzinfo=UTC)
    assert timed.quiet_until(at, paris, night) == datetime(2026, 12, 8, 7, 0, tzinfo=UTC)
    # 06:00 in Paris is inside too: the same morning
    early = datetime(2026, 12, 7, 5, 0, tzinfo=UTC)
    assert timed.quiet_until(early, paris, night) == datetime(2026, 12, 7, 7, 0, tzinfo=UTC)
    # noon is outside; no window is never quiet
    assert timed.quiet_until(datetime(2026, 12, 7, 11, 0, tzinfo=UTC), paris, night) is None
    assert timed.quiet_until(at, paris, None) is None
    lunch = timed.parse_quiet_hours("12:00-14:00")
    assert timed.quiet_until(datetime(2026, 7, 1, 10, 30, tzinfo=UTC), paris, lunch) == datetime(
        2026, 7, 1, 12, 0, tzinfo=UTC
    )  # summer: UTC+2
    assert timed.quiet_until(datetime(2026, 7, 1, 12, 0, tzinfo=UTC), paris, lunch) is None
    for bad in ("21-08", "21:00", "08:00-08:00", "25:00-08:00"):
        with pytest.raises(ValueError, match="quiet hours"):
            timed.parse_quiet_hours(bad)


def test_birthdays_and_the_29th_of_february() -> None:
    assert timed.is_birthday(date(1990, 12, 7), date(2026, 12, 7))
    assert not timed.is_birthday(date(1990, 12, 7), date(2026, 12, 8))
    assert timed.is_birthday(date(2000, 2, 29), date(2027, 2, 28))
    assert not timed.is_birthday(date(2000, 2, 29), date(2028, 2, 28))
    assert timed.is_birthday(date(2000, 2, 29), date(2028, 2, 29))


def test_a_reward_within_reach_is_told_once_per_crossing() -> None:
    level, tell = timed.reward_crossing(None, 50, 50)
    assert (level, tell) == (1, True)
    level, tell = timed.reward_crossing(level, 70, 50)
    assert (level, tell) == (1, False)
    level, tell = timed.reward_crossing(level, 100, 50)
    assert (level, tell) == (2, True)  # 50 then 100: two messages
    assert timed.reward_crossing(0, 100, 50) == (2, True)  # 0 to 100: one message
    level, tell = timed.reward_crossing(2, 20, 50)
    assert (level, tell) == (0, False)  # spent: remembered lower
    assert timed.reward_crossing(level, 60, 50) == (1, True)  # crossing again is new
    assert timed.reward_crossing(None, -5, 50) == (0, False)


async def _messages(client: httpx.AsyncClient, program: str, member: str) -> list[tuple[str, str]]:
    r = await client.get(f"/v1/programs/{program}/members/{member}/messages")
    assert r.status_code == 200, r.text
    return [(m["template"], m["status"]) for m in reversed(r.json()["items"])]


async def test_birthday_expiring_points_and_rewards_go_out_once(
    client: httpx.AsyncClient,
    db: Database,
    mail_settings: Settings,
    smtp: tuple[Mailbox, int],
) -> None:
    box, _ = smtp
    tz = "Pacific/Auckland"  # far from UTC: the local day is not the server's
    program = await create_program(client, timezone=tz, expiry={"policy": "days", "days": 10})
    today = clock.now().astimezone(ZoneInfo(tz)).date()
    r = await client.post(
        f"/v1/programs/{program}/rewards",
        json={"code": "mug", "kind": "product", "cost_points": 50,
              "texts": {"en": {"name": "Mug"}}},
    )  # fmt: skip
    assert r.status_code == 201, r.text
    mail = {"consents": {"email": True}, "first_name": "Ana"}
    # Addresses of this test only: the worker also delivers what other tests left in the outbox.
    ana_email = f"ana-{program}@example.com"
    ana = await enrol(
        client, program, email=ana_email, birth_date=today.replace(year=1990).isoformat(),
        **mail,
    )  # fmt: skip
    jump = await enrol(client, program, email=f"jump-{program}@example.com", **mail)
    other_day = today + timedelta(days=1)
    bob = await enrol(
        client, program, email=f"bob-{program}@example.com",
        birth_date=other_day.replace(year=1985).isoformat(), **mail,
    )  # fmt: skip
    await worker.run_until_idle(db, mail_settings)  # the welcomes

    assert (await purchase(client, program, ana["id"], "50.00")).status_code == 201
    assert (await purchase(client, program, jump["id"], "100.00")).status_code == 201
    await timed.scan(db, mail_settings)
    await worker.run_until_idle(db, mail_settings)
    assert await _messages(client, program, ana["id"]) == [
        ("welcome", "sent"),
        ("birthday", "sent"),
        ("points_expiring", "sent"),
        ("reward_available", "sent"),
    ]
    assert await _messages(client, program, jump["id"]) == [
        ("welcome", "sent"),
        ("points_expiring", "sent"),
        ("reward_available", "sent"),  # 0 to 100: one
    ]
    assert await _messages(client, program, bob["id"]) == [("welcome", "sent")]
    [expiring] = [m for m in box.to(ana_email) if "expire" in m["Subject"]]
    assert "50 points expire on" in expiring.get_body(preferencelist=("plain",)).get_content()

    # A second scan sends nothing again; ana reaching 100 is a second crossing, with a new lot.
    await timed.scan(db, mail_settings)
    await worker.run_until_idle(db, mail_settings)
    assert len(await _messages(client, program, ana["id"])) == 4
    assert (await purchase(client, program, ana["id"], "50.00")).status_code == 201
    await timed.scan(db, mail_settings)
    await timed.scan(db, mail_settings)
    await worker.run_until_idle(db, mail_settings)
    assert (await _messages(client, program, ana["id"]))[4:] == [
        ("points_expiring", "sent"),
        ("reward_available", "sent"),
    ]
    assert len(box.to(ana_email)) == 6

    # Webhooks see the timed events too.
    r = await client.get(f"/v1/programs/{program}/events-feed?limit=1000")
    types = [e["type"] for e in r.json()["items"]]
    assert types.count("member.birthday") == 1
    assert types.count("points.expiring") == 3
    assert types.count("reward.available") == 3


async def test_points_expiring_days_is_a_program_setting(
    client: httpx.AsyncClient, db: Database, mail_settings: Settings, smtp: tuple[Mailbox, int]
) -> None:
    program = await create_program(client, expiry={"policy": "days", "days": 30})
    m = await enrol(client, program, email="far@example.com", consents={"email": True})
    assert (await purchase(client, program, m["id"], "10.00")).status_code == 201
    await timed.scan(db, mail_settings)  # 30 days away, 14 by default: not yet
    await worker.run_until_idle(db, mail_settings)
    assert await _messages(client, program, m["id"]) == [("welcome", "sent")]
    r = await client.put(
        f"/v1/programs/{program}/message-settings", json={"points_expiring_days": 31}
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"weekly_cap": None, "quiet_hours": None, "points_expiring_days": 31}
    await timed.scan(db, mail_settings)
    await worker.run_until_idle(db, mail_settings)
    assert await _messages(client, program, m["id"]) == [
        ("welcome", "sent"),
        ("points_expiring", "sent"),
    ]
    bad = await client.put(f"/v1/programs/{program}/message-settings", json={"quiet_hours": "x"})
    assert bad.status_code == 422
    assert bad.headers["content-type"].startswith("application/problem+json")
    got = await client.get(f"/v1/programs/{program}/message-settings")
    assert got.json()["points_expiring_days"] == 31  # nothing written by the bad request



async def test_sms_waits_for_the_end_of_quiet_hours(
    client: httpx.AsyncClient, db: Database, settings: Settings, receiver: Receiver
) -> None:
    sms = settings.model_copy(update={"sms_webhook_url": receiver.url})
    program = await create_program(client, timezone="America/New_York")
    local = clock.now().astimezone(ZoneInfo("America/New_York"))
    start = (local - timedelta(hours=1)).time().replace(second=0, microsecond=0)
    end = (local + timedelta(hours=2)).time().replace(second=0, microsecond=0)
    window = f"{start:%H:%M}-{end:%H:%M}"
    r = await client.put(f"/v1/programs/{program}/message-settings", json={"quiet_hours": window})
    assert r.status_code == 200, r.text
    r = await client.put(
        f"/v1/programs/{program}/message-templates/welcome/sms/en",
        json={"body": "Welcome {{ first_name }}"},
    )
    assert r.status_code == 201, r.text
    m = await enrol(client, program, phone="+4512345678", first_name="Sam", consents={"sms": True})
    await worker.run_until_idle(db, sms)
    assert receiver.calls == []
    r = await client.get(f"/v1/programs/{program}/members/{m['id']}/messages")
    [msg] = [x for x in r.json()["items"] if x["channel"] == "sms"]
    assert msg["status"] == "pending"
    clock.advance(timedelta(hours=2, minutes=1))
    await worker.run_until_idle(db, sms)
    assert [json.loads(c["body"])["text"] for c in receiver.calls] == ["Welcome Sam"]
    r = await client.get(f"/v1/programs/{program}/members/{m['id']}/messages")
    assert [x["status"] for x in r.json()["items"] if x["channel"] == "sms"] == ["sent"]
