"""Enrolment, lookup, cards and statuses through the HTTP API."""

from __future__ import annotations

import httpx

from habitue.members.cards import luhn_check_digit
from tests.conftest import create_program, enrol, purchase


async def test_enrol_returns_id_and_luhn_card(client: httpx.AsyncClient, program: str) -> None:
    m = await enrol(
        client,
        program,
        external_id="C1",
        email="Ana@Example.com",
        first_name="Ana",
        birth_date="1990-04-01",
        locale="fr-FR",
        consents={"email": True},
        attributes={"favourite": "latte"},
    )
    assert len(m["id"]) == 36 and m["card_number"].isdigit()
    assert luhn_check_digit(m["card_number"][:-1]) == m["card_number"][-1]
    assert m["locale"] == "fr" and m["email"] == "ana@example.com"
    assert m["consents"]["email"]["granted"] is True
    for query in ("external_id=C1", "email=ANA@example.com", f"card_number={m['card_number']}"):
        r = await client.get(f"/v1/programs/{program}/members?{query}")
        assert [i["id"] for i in r.json()["items"]] == [m["id"]], query


async def test_card_lookup_by_number_and_qr(client: httpx.AsyncClient, program: str) -> None:
    m = await enrol(client, program)
    qr = m["cards"][0]["qr_payload"]
    assert qr == f"habitue:{program}:{m['card_number']}"
    for value in (m["card_number"], qr):
        r = await client.get(f"/v1/programs/{program}/cards/{value}")
        assert r.status_code == 200
        assert r.json()["member"]["id"] == m["id"]
    bad = m["card_number"][:-1] + str((int(m["card_number"][-1]) + 1) % 10)
    r = await client.get(f"/v1/programs/{program}/cards/{bad}")
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["type"].endswith("/invalid-card-number")
    unknown = "999999999999999"
    unknown += luhn_check_digit(unknown)
    r = await client.get(f"/v1/programs/{program}/cards/{unknown}")
    assert r.status_code == 404 and r.json()["type"].endswith("/card-not-found")


async def test_replacement_card_keeps_balance(client: httpx.AsyncClient, program: str) -> None:
    m = await enrol(client, program)
    await purchase(client, program, m["id"], "25.00")
    r = await client.post(
        f"/v1/programs/{program}/members/{m['id']}/cards", json={"reason": "lost"}
    )
    assert r.status_code == 201, r.text
    new = r.json()["card_number"]
    assert new != m["card_number"]
    old = await client.get(f"/v1/programs/{program}/cards/{m['card_number']}")
    assert old.status_code == 409 and old.json()["type"].endswith("/card-blocked")
    r = await client.post(
        f"/v1/programs/{program}/events",
        json={
            "type": "purchase",
            "member": {"card_number": new},
            "external_id": "after-replace",
            "total": "5.00",
        },
    )
    assert r.status_code == 201
    bal = (await client.get(f"/v1/programs/{program}/members/{m['id']}/balance")).json()
    assert bal["available"] == 30


async def test_duplicate_email_is_refused_and_names_field(
    client: httpx.AsyncClient, program: str
) -> None:
    await enrol(client, program, email="dup@example.com")
    r = await client.post(f"/v1/programs/{program}/members", json={"email": "DUP@example.com"})
    assert r.status_code == 409
    body = r.json()
    assert body["type"].endswith("/duplicate-member")
    assert body["errors"][0]["field"] == "email"
    r = await client.get(f"/v1/programs/{program}/members?email=dup@example.com")
    assert len(r.json()["items"]) == 1


async def test_bad_enrolment_fields(client: httpx.AsyncClient, program: str) -> None:
    for body, field in (
        ({"email": "not-an-email"}, "email"),
        ({"locale": "xx"}, "locale"),
        ({"consents": {"carrier-pigeon": True}}, "consents"),
        ({"birth_date": "2999-01-01"}, "birth_date"),
        ({"nickname": "x"}, "nickname"),
    ):
        r = await client.post(f"/v1/programs/{program}/members", json=body)
        assert r.status_code == 422, body
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["errors"][0]["field"] == field
    r = await client.get(f"/v1/programs/{program}/members")
    assert r.json()["items"] == []


async def test_suspended_member_neither_earns_nor_spends(
    client: httpx.AsyncClient, program: str
) -> None:
    m = await enrol(client, program)
    await purchase(client, program, m["id"], "10.00")
    r = await client.patch(
        f"/v1/programs/{program}/members/{m['id']}", json={"status": "suspended"}
    )
    assert r.status_code == 200 and r.json()["status"] == "suspended"
    r = await purchase(client, program, m["id"], "10.00")
    assert r.status_code == 409 and r.json()["type"].endswith("/member-not-active")
    r = await client.post(f"/v1/programs/{program}/members/{m['id']}/spends", json={"points": 5})
    assert r.status_code == 409
    bal = (await client.get(f"/v1/programs/{program}/members/{m['id']}/balance")).json()
    assert bal["available"] == 10


async def test_consent_history_is_kept(client: httpx.AsyncClient, program: str) -> None:
    m = await enrol(client, program, consents={"email": True})
    r = await client.patch(
        f"/v1/programs/{program}/members/{m['id']}", json={"consents": {"email": False}}
    )
    consent = r.json()["consents"]["email"]
    assert consent["granted"] is False
    assert consent["history"][0]["granted"] is True


async def test_other_programs_key_sees_404(client: httpx.AsyncClient) -> None:
    a = await create_program(client)
    b = await create_program(client)
    m = await enrol(client, a)
    r = await client.post(
        f"/v1/programs/{b}/api-keys", json={"name": "till", "scopes": ["members:read"]}
    )
    key_b = r.json()["key"]
    r = await client.get(
        f"/v1/programs/{a}/members/{m['id']}", headers={"Authorization": f"Bearer {key_b}"}
    )
    assert r.status_code == 404 and r.json()["type"].endswith("/program-not-found")
    r = await client.get(
        f"/v1/programs/{b}/members/{m['id']}", headers={"Authorization": f"Bearer {key_b}"}
    )
    assert r.status_code == 404 and r.json()["type"].endswith("/member-not-found")
