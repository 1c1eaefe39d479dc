"""Export (GDPR Art. 15/20): one JSON document of everything held on the member, complete
over the schema."""

from __future__ import annotations

from typing import Any

import httpx

from habitue.db import Base
from habitue.privacy import export as privacy_export
from tests.conftest import create_program, enrol
from tests.privacy.test_erasure import PERSON, _key, _member_with_everything


def test_every_table_holding_a_member_id_is_exported_or_excluded_with_a_reason() -> None:
    tables = privacy_export.member_tables()
    assert {"cards", "events", "postings", "outbox", "coupons"} <= set(tables)
    missing = sorted(
        name
        for name in tables
        if name not in privacy_export.SECTIONS and name not in privacy_export.EXCLUDED
    )
    assert missing == [], f"tables with member_id not covered by the export: {missing}"
    assert not set(privacy_export.SECTIONS) & set(privacy_export.EXCLUDED)
    for name, reason in privacy_export.EXCLUDED.items():
        assert name in Base.metadata.tables, name
        assert len(reason) > 20, name
    for name in privacy_export.SECTIONS:
        assert name in Base.metadata.tables, f"{name}: exported but not in the schema"
    sections = list(privacy_export.SECTIONS.values())
    assert len(sections) == len(set(sections)) and "profile" not in sections


async def test_the_export_holds_everything_about_the_member(client: httpx.AsyncClient) -> None:
    program = await create_program(client)
    base = f"/v1/programs/{program}"
    other = await enrol(client, program, email="other.person@example.org")
    member = await _member_with_everything(client, program)
    m = member["id"]
    r = await client.post(f"{base}/events", json={
        "type": "purchase", "member": {"id": m}, "external_id": "basket-1", "total": "7.00",
        "lines": [{"sku": "latte", "category": "drinks", "quantity": 2, "unit_price": "3.50"}],
    })  # fmt: skip
    assert r.status_code == 201, r.text

    r = await client.get(f"{base}/members/{m}/export")
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    assert body["format"] == privacy_export.FORMAT
    assert body["member_id"] == m and body["program"] == program
    sections = body["sections"]
    expected = {"profile", *privacy_export.SECTIONS.values()}
    assert expected <= set(sections)

    profile = sections["profile"]
    for field in ("email", "phone", "first_name", "last_name", "birth_date", "external_id"):
        assert profile[field] == PERSON[field], field
    assert profile["attributes"] == PERSON["attributes"]
    assert "email_hash" not in profile and "phone_hash" not in profile
    assert profile["consents"]["sms"]["granted"] is False  # changed, with its history
    assert profile["consents"]["sms"]["history"][0]["granted"] is True

    assert [c["number"] for c in sections["cards"]] == [member["card_number"]]
    assert {e["external_id"] for e in sections["events"]} >= {"basket-1"}
    assert [(x["sku"], x["category"]) for x in sections["event_lines"]] == [("latte", "drinks")]
    kinds = {t["kind"] for t in sections["ledger_transactions"]}
    assert {"adjust", "redeem"} <= kinds or {"adjust"} <= kinds
    assert len(sections["ledger_postings"]) >= len(sections["ledger_transactions"])
    assert sum(lot["remaining"] for lot in sections["lots"]) > 0
    assert {a["kind"] for a in sections["ledger_accounts"]} == {"available", "pending"}
    assert [x["reward_code"] for x in sections["redemptions"]] == ["five"]
    assert [x["state"] for x in sections["coupons"]] == ["issued"]
    # Who read or changed the member's data: the audit entries about them.
    assert "create" in {e["action"] for e in sections["access_log"]}
    assert {e["resource_id"] for e in sections["access_log"]} == {member["id"]}
    assert [x["plan_code"] for x in sections["club_subscriptions"]] == ["vip"]
    assert [x["offer_code"] for x in sections["offers"]] == ["spring"]
    assert [x["segment_code"] for x in sections["segments"]] == ["everyone"]
    assert sections["scores"][0]["frequency"] >= 1
    assert {"member.enrolled", "member.updated"} <= {x["type"] for x in sections["messages"]}
    # nothing of another member, no secret
    text = r.text
    assert other["id"] not in text and "other.person@example.org" not in text
    for secret in ("token_hash", "password_hash", "csrf", '"seed"'):
        assert secret not in text

    # operators only: a partner or a till without members:read cannot export
    till = await _key(client, program, "events:write")
    assert (await client.get(f"{base}/members/{m}/export", headers=till)).status_code == 403
    other_program = await create_program(client)
    r = await client.get(f"/v1/programs/{other_program}/members/{m}/export")
    assert r.status_code == 404


async def test_the_portal_download_is_the_same_export(client: httpx.AsyncClient) -> None:
    from tests.web.conftest import signup

    program = await create_program(client)
    assert (await signup(client, program, first_name="Quentavia")).status_code == 303
    body = (await client.get(f"/app/{program}/export")).json()
    assert body["member"]["first_name"] == "Quentavia"
    assert body["format"] == privacy_export.FORMAT
    sections = body["sections"]
    assert sections["profile"]["first_name"] == "Quentavia"
    assert sections["profile"]["has_password"] is True
    assert len(sections["cards"]) == 1
    assert sections["portal_sessions"] and "csrf" not in sections["portal_sessions"][0]
