"""The paid club over simulated months: trials, renewals, failing payments, refunds, webhooks."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from habitue import clock
from habitue.clubs.providers import test_provider
from habitue.clubs.service import sign
from tests.conftest import create_program, enrol, purchase
from tests.tiers.helpers import ladder, set_now


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _provider_accepts() -> Iterator[None]:
    test_provider.fail(False)
    test_provider.fail_next = 0
    yield
    test_provider.fail(False)
    test_provider.fail_next = 0


async def plan(client: httpx.AsyncClient, code: str, **overrides: Any) -> httpx.Response:
    body = {
        "code": "vip",
        "name": "VIP club",
        "price": "9.90",
        "currency": "EUR",
        "period": "monthly",
        "trial_days": 14,
        "multiplier": "2",
        "privileges": ["priority_queue"],
        "voucher_points": 100,
        **overrides,
    }
    return await client.post(f"/v1/programs/{code}/club/plans", json=body)


async def subscribe(
    client: httpx.AsyncClient, code: str, member_id: str, **body: Any
) -> httpx.Response:
    return await client.post(
        f"/v1/programs/{code}/members/{member_id}/club/subscriptions",
        json={"plan": "vip", **body},
    )


async def sub(client: httpx.AsyncClient, code: str, sub_id: str) -> dict[str, Any]:
    r = await client.get(f"/v1/programs/{code}/club/subscriptions/{sub_id}")
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()
    return data


async def renew(client: httpx.AsyncClient, code: str) -> dict[str, Any]:
    r = await client.post(f"/v1/programs/{code}/club/renewals/run")
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()
    return data


async def available(client: httpx.AsyncClient, code: str, member_id: str) -> int:
    r = await client.get(f"/v1/programs/{code}/members/{member_id}/balance")
    return int(r.json()["available"])


def ts(value: str) -> datetime:
    return datetime.fromisoformat(value)


async def test_plans_refuse_bad_input(client: httpx.AsyncClient) -> None:
    code = await create_program(client)
    r = await plan(client, code, price="-1.00")
    assert r.status_code == 422
    assert r.json()["type"].endswith("/invalid-club-plan")
    assert (await plan(client, code, currency="USD")).status_code == 422
    assert (await plan(client, code, price="9.999")).status_code == 422
    assert (await plan(client, code, period="weekly")).status_code == 422
    assert (await plan(client, code, multiplier="0.5")).status_code == 422
    assert (await client.get(f"/v1/programs/{code}/club/plans")).json() == []
    assert (await plan(client, code)).status_code == 201
    r = await plan(client, code)
    assert r.status_code == 409
    assert r.json()["type"].endswith("/club-plan-exists")
    plans = (await client.get(f"/v1/programs/{code}/club/plans")).json()
    assert [(p["code"], p["price"], p["period"]) for p in plans] == [("vip", "9.90", "monthly")]


async def test_trial_renewals_and_a_failing_provider_over_months(
    client: httpx.AsyncClient,
) -> None:
    set_now(utc(2026, 1, 10, 10, 0))
    code = await create_program(client)
    await plan(client, code)
    m = await enrol(client, code)
    r = await subscribe(client, code, m["id"], provider="test")
    assert r.status_code == 201, r.text
    s = r.json()
    assert (s["status"], s["benefits_active"]) == ("trialing", True)
    assert ts(s["trial_end"]) == ts(s["current_period_end"])
    assert (ts(s["trial_end"]) - utc(2026, 1, 24, 10, 0)).total_seconds() < 5
    assert (await purchase(client, code, m["id"], "10.00")).json()["points"] == 20
    assert (await subscribe(client, code, m["id"], provider="test")).status_code == 409

    clock.advance(ts(s["trial_end"]) - clock.now())
    clock.advance(ts("2026-01-01T01:00:00+00:00") - ts("2026-01-01T00:00:00+00:00"))
    assert await renew(client, code) == {
        "renewed": 1, "failed": 0, "expired": 0, "ended": 0, "vouchers": 0,
    }  # fmt: skip
    s2 = await sub(client, code, s["id"])
    assert s2["status"] == "active"
    assert ts(s2["current_period_start"]) == ts(s["trial_end"])
    end = ts(s2["current_period_end"])
    assert (end.month, end.day) == (2, 24)
    assert s2["vouchers_granted"] == 1
    assert await available(client, code, m["id"]) == 20 + 100
    assert (await renew(client, code))["renewed"] == 0  # nothing due: idempotent

    test_provider.fail()
    clock.advance(end - clock.now())
    clock.advance(ts("2026-01-01T01:00:00+00:00") - ts("2026-01-01T00:00:00+00:00"))
    assert (await renew(client, code))["failed"] == 1
    s3 = await sub(client, code, s["id"])
    assert (s3["status"], s3["benefits_active"], s3["retry_count"]) == ("past_due", False, 0)
    assert ts(s3["past_due_since"]) == end
    assert (ts(s3["next_retry_at"]) - end).days == 1
    assert (await purchase(client, code, m["id"], "10.00")).json()["points"] == 10
    benefits = (await client.get(f"/v1/programs/{code}/members/{m['id']}/benefits")).json()
    assert benefits["sources"] == []

    for days_after, retry_count, next_retry in ((1, 1, 3), (3, 2, 7)):
        clock.advance(ts(s3["past_due_since"]) - clock.now())
        clock.advance(
            ts(f"2026-01-{1 + days_after:02d}T01:00:00+00:00") - ts("2026-01-01T00:00:00+00:00")
        )
        assert (await renew(client, code))["failed"] == 1
        s4 = await sub(client, code, s["id"])
        assert s4["retry_count"] == retry_count
        assert (ts(s4["next_retry_at"]) - end).days == next_retry
    clock.advance(ts(s4["next_retry_at"]) - clock.now())
    assert (await renew(client, code))["expired"] == 1
    s5 = await sub(client, code, s["id"])
    assert (s5["status"], s5["ended_reason"], s5["benefits_active"]) == (
        "expired",
        "payment_failed",
        False,
    )
    r = await client.get(f"/v1/programs/{code}/club/subscriptions/{s['id']}/payments")
    assert [p["status"] for p in r.json()] == ["succeeded", "failed", "failed", "failed", "failed"]
    assert [p["amount"] for p in r.json()] == ["9.90"] * 5
    r = await client.post(f"/v1/programs/{code}/club/subscriptions/{s['id']}/cancel")
    assert r.status_code == 409
    # A new subscription is allowed once the old one has ended.
    test_provider.fail(False)
    assert (await subscribe(client, code, m["id"], provider="test")).status_code == 201


async def test_grace_keeps_benefits_and_a_retry_that_succeeds_renews(
    client: httpx.AsyncClient,
) -> None:
    set_now(utc(2026, 3, 31, 9, 0))
    code = await create_program(client)
    await plan(client, code, trial_days=0, grace_days=3, voucher_points=0)
    m = await enrol(client, code)
    s = (await subscribe(client, code, m["id"], provider="test")).json()
    assert s["status"] == "active"
    end = ts(s["current_period_end"])
    assert (end.month, end.day) == (4, 30)  # 31 March + 1 month, clamped
    test_provider.fail_next = 1
    clock.advance(end - clock.now())
    clock.advance(ts("2026-01-01T00:01:00+00:00") - ts("2026-01-01T00:00:00+00:00"))
    assert (await renew(client, code))["failed"] == 1
    s2 = await sub(client, code, s["id"])
    assert (s2["status"], s2["benefits_active"]) == ("past_due", True)
    assert (await purchase(client, code, m["id"], "10.00")).json()["points"] == 20
    clock.advance(ts(s2["next_retry_at"]) - clock.now())
    assert (await renew(client, code))["renewed"] == 1
    s3 = await sub(client, code, s["id"])
    assert (s3["status"], s3["past_due_since"], s3["retry_count"]) == ("active", None, 0)
    assert ts(s3["current_period_start"]) == end
    new_end = ts(s3["current_period_end"])
    assert (new_end.month, new_end.day) == (5, 30)


async def test_first_payment_declined_writes_nothing(client: httpx.AsyncClient) -> None:
    code = await create_program(client)
    await plan(client, code, trial_days=0)
    m = await enrol(client, code)
    test_provider.fail()
    r = await subscribe(client, code, m["id"], provider="test")
    assert r.status_code == 402
    assert r.json()["type"].endswith("/club-payment-failed")
    r = await client.get(f"/v1/programs/{code}/members/{m['id']}/club/subscriptions")
    assert r.json() == []
    assert (await subscribe(client, code, m["id"], plan="nope")).status_code == 404


async def test_refund_of_the_fee_ends_benefits_at_once(client: httpx.AsyncClient) -> None:
    code = await create_program(client)
    await ladder(client, code)
    await plan(client, code, trial_days=0, voucher_points=0)
    m = await enrol(client, code)
    s = (await subscribe(client, code, m["id"], provider="test")).json()
    url = f"/v1/programs/{code}/members/{m['id']}/benefits"
    before = (await client.get(url)).json()
    assert before["multiplier"] == "2"
    assert before["privileges"] == ["priority_queue"]
    assert [x["source"] for x in before["sources"]] == ["tier", "club"]
    pay = (await client.get(f"/v1/programs/{code}/club/subscriptions/{s['id']}/payments")).json()
    r = await client.post(f"/v1/programs/{code}/club/payments/{pay[0]['id']}/refund")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "refunded"
    s2 = await sub(client, code, s["id"])
    assert (s2["status"], s2["ended_reason"], s2["benefits_active"]) == (
        "canceled",
        "refunded",
        False,
    )
    after = (await client.get(url)).json()
    assert (after["multiplier"], after["privileges"]) == ("1", [])
    assert (await purchase(client, code, m["id"], "10.00")).json()["points"] == 10
    r = await client.post(f"/v1/programs/{code}/club/payments/{pay[0]['id']}/refund")
    assert r.status_code == 409


async def test_cancel_now_at_period_end_and_twice(client: httpx.AsyncClient) -> None:
    set_now(utc(2026, 5, 1, 12, 0))
    code = await create_program(client)
    await plan(client, code, trial_days=0, voucher_points=0)
    a = await enrol(client, code)
    b = await enrol(client, code)
    sa = (await subscribe(client, code, a["id"], provider="test")).json()
    sb = (await subscribe(client, code, b["id"], provider="test")).json()
    base = f"/v1/programs/{code}/club/subscriptions"
    r = await client.post(f"{base}/{sa['id']}/cancel")
    assert (r.status_code, r.json()["status"], r.json()["benefits_active"]) == (
        200,
        "canceled",
        False,
    )
    r = await client.post(f"{base}/{sa['id']}/cancel")
    assert r.status_code == 409
    assert r.json()["type"].endswith("/club-already-canceled")
    r = await client.post(f"{base}/{sb['id']}/cancel", json={"at_period_end": True})
    assert (r.json()["status"], r.json()["cancel_at_period_end"]) == ("active", True)
    r = await client.post(f"{base}/{sb['id']}/cancel", json={"at_period_end": True})
    assert r.status_code == 409
    clock.advance(ts(sb["current_period_end"]) - clock.now())
    assert (await renew(client, code))["ended"] == 1
    s = await sub(client, code, sb["id"])
    assert (s["status"], s["benefits_active"]) == ("canceled", False)
    assert ts(s["ended_at"]) == ts(sb["current_period_end"])
    assert r.status_code == 409


def _signed(
    secret: str, payload: dict[str, Any], *, msg_id: str = "msg_1"
) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(payload).encode()
    stamp = int(clock.now().timestamp())
    return body, {
        "webhook-id": msg_id,
        "webhook-timestamp": str(stamp),
        "webhook-signature": sign(secret, msg_id, stamp, body),
        "content-type": "application/json",
    }


async def test_manual_payments_by_staff_and_signed_webhook(client: httpx.AsyncClient) -> None:
    set_now(utc(2026, 7, 1, 8, 0))
    code = await create_program(client)
    await plan(client, code, trial_days=0, voucher_points=50)
    m = await enrol(client, code)
    s = (await subscribe(client, code, m["id"])).json()
    assert (s["provider"], s["status"], s["benefits_active"]) == ("manual", "incomplete", False)
    url = f"/v1/programs/{code}/club/subscriptions/{s['id']}/payments"
    r = await client.post(url, json={"amount": "5.00", "reference": "till-1"})
    assert r.status_code == 422
    r = await client.post(url, json={"amount": "9.90", "reference": "till-1"})
    assert r.status_code == 201, r.text
    first = r.json()
    again = await client.post(url, json={"amount": "9.90", "reference": "till-1"})
    assert again.json()["id"] == first["id"]
    s2 = await sub(client, code, s["id"])
    assert (s2["status"], s2["benefits_active"], s2["vouchers_granted"]) == ("active", True, 1)
    end = ts(s2["current_period_end"])
    assert (end.month, end.day) == (8, 1)
    assert await available(client, code, m["id"]) == 50

    secret = (await client.post(f"/v1/programs/{code}/club/webhook-secret")).json()["secret"]
    hook = f"/v1/programs/{code}/club/webhooks/manual"
    payload = {
        "type": "payment.succeeded",
        "data": {"subscription_id": s["id"], "amount": "9.90", "reference": "shop-77"},
    }
    anonymous = httpx.AsyncClient(transport=client._transport, base_url="http://test")
    async with anonymous:
        body, headers = _signed(secret, payload)
        bad = dict(headers, **{"webhook-signature": "v1,AAAA"})
        r = await anonymous.post(hook, content=body, headers=bad)
        assert r.status_code == 401
        assert r.json()["type"].endswith("/bad-webhook-signature")
        r = await anonymous.post(hook, content=body + b" ", headers=headers)
        assert r.status_code == 401
        unknown = {**payload, "data": {**payload["data"], "subscription_id": "nope"}}
        ubody, uheaders = _signed(secret, unknown)
        r = await anonymous.post(hook, content=ubody, headers=uheaders)
        assert r.status_code == 404
        assert ts((await sub(client, code, s["id"]))["current_period_end"]) == end
        r = await anonymous.post(hook, content=body, headers=headers)
        assert r.status_code == 200, r.text
        assert r.json()["reference"] == "shop-77"
        clock.advance(ts("2026-01-01T00:06:00+00:00") - ts("2026-01-01T00:00:00+00:00"))
        r = await anonymous.post(hook, content=body, headers=headers)
        assert r.status_code == 401  # too old
    s3 = await sub(client, code, s["id"])
    renewed_to = ts(s3["current_period_end"])
    assert (renewed_to.month, renewed_to.day) == (9, 1)
    assert s3["status"] == "active"
