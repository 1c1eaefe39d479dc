"""Consents: nothing ticked in advance, each change kept with time, source and text version,
and shown in the export."""

from __future__ import annotations

import re

import httpx

from habitue.privacy.consent import PORTAL_TEXT_VERSION
from tests.conftest import create_program
from tests.web.conftest import csrf_of, signup


async def test_no_consent_is_ticked_at_sign_up(client: httpx.AsyncClient) -> None:
    program = await create_program(client)
    page = await client.get(f"/app/{program}/signup")
    boxes = re.findall(r'<input type="checkbox"[^>]*name="consent_[a-z]+"[^>]*>', page.text)
    assert len(boxes) == 6  # email, sms, push, analytics, profiling, partners
    assert [box for box in boxes if "checked" in box] == []


async def test_api_changes_are_recorded_with_source_and_text_version(
    client: httpx.AsyncClient,
) -> None:
    program = await create_program(client)
    base = f"/v1/programs/{program}"
    r = await client.post(f"{base}/members", json={
        "email": "c@example.org", "consents": {"email": True, "sms": True},
        "consent_text_version": "terms-v3"})  # fmt: skip
    assert r.status_code == 201, r.text
    m = r.json()["id"]
    r = await client.patch(
        f"{base}/members/{m}",
        json={"consents": {"sms": False, "email": True}, "consent_text_version": "terms-v4"},
    )
    assert r.status_code == 200, r.text
    history = (await client.get(f"{base}/members/{m}/export")).json()["sections"][
        "consent_history"
    ]
    rows = [(h["purpose"], h["granted"], h["source"], h["text_version"]) for h in history]
    assert rows == [  # email unchanged by the PATCH: not recorded again
        ("email", True, "api", "terms-v3"),
        ("sms", True, "api", "terms-v3"),
        ("sms", False, "api", "terms-v4"),
    ]
    assert all(h["recorded_at"] and h["member_id"] == m for h in history)
    assert history[-1]["actor"] == "operator"


async def test_portal_choices_are_recorded_as_from_the_portal(client: httpx.AsyncClient) -> None:
    program = await create_program(client)
    assert (await signup(client, program, consent_email="")).status_code == 303
    export = (await client.get(f"/app/{program}/export")).json()
    assert {k: v["granted"] for k, v in export["member"]["consents"].items()} == {
        "email": False, "sms": False, "push": False, "analytics": False, "profiling": False,
        "partners": False,
    }  # fmt: skip
    page = await client.get(f"/app/{program}/profile")
    form = {
        "csrf_token": csrf_of(page.text), "first_name": "Ana", "email": "",
        "locale": "en", "consent_profiling": "on",
    }  # fmt: skip
    form["email"] = export["member"]["email"]
    r = await client.post(f"/app/{program}/profile", data=form)
    assert r.status_code == 303, r.text
    history = (await client.get(f"/app/{program}/export")).json()["sections"]["consent_history"]
    assert {(h["source"], h["text_version"]) for h in history} == {("portal", PORTAL_TEXT_VERSION)}
    assert [(h["purpose"], h["granted"]) for h in history][-1] == ("profiling", True)
    assert sum(1 for h in history if h["purpose"] == "profiling") == 2  # refused, then given


async def test_recommendations_are_personal_only_with_consent_to_profiling(
    client: httpx.AsyncClient, program: str
) -> None:
    from tests.conftest import enrol, purchase

    def basket(*skus: str) -> list[dict[str, object]]:
        return [{"sku": s, "category": s, "quantity": 1, "unit_price": "2.00"} for s in skus]

    for _ in range(3):  # their baskets teach the model: with their consent to analytics
        other = await enrol(client, program, consents={"analytics": True})
        r = await purchase(client, program, other["id"], "4.00", lines=basket("coffee", "cake"))
        assert r.status_code == 201, r.text
    loner = await enrol(client, program)
    for _ in range(3):
        r = await purchase(client, program, loner["id"], "2.00", lines=basket("tea"))
        assert r.status_code == 201, r.text
    member = await enrol(client, program, consents={"email": True})
    r = await purchase(client, program, member["id"], "2.00", lines=basket("coffee"))
    assert r.status_code == 201, r.text
    url = f"/v1/programs/{program}/members/{member['id']}/recommendations"
    # No consent to profiling: the program's popular items, nothing drawn from their baskets.
    assert (await client.get(url)).json()["source"] == "popular"
    r = await client.patch(
        f"/v1/programs/{program}/members/{member['id']}", json={"consents": {"profiling": True}}
    )
    assert r.status_code == 200, r.text
    body = (await client.get(url)).json()
    assert (body["source"], body["items"][:1]) == ("item-item", ["cake"])
    r = await client.patch(
        f"/v1/programs/{program}/members/{member['id']}", json={"consents": {"profiling": False}}
    )
    assert (await client.get(url)).json()["source"] == "popular"


async def test_segment_lists_and_scores_show_only_members_consenting_to_profiling(
    client: httpx.AsyncClient, program: str
) -> None:
    from tests.conftest import enrol, purchase

    base = f"/v1/programs/{program}"
    profiled = (await enrol(client, program, consents={"profiling": True}))["id"]
    private = (await enrol(client, program, consents={"email": True}))["id"]
    for m in (profiled, private):
        assert (await purchase(client, program, m, "30.00")).status_code == 201
    assert (await client.post(f"{base}/analytics/scores")).status_code == 200
    r = await client.post(
        f"{base}/segments", json={"code": "all", "condition": 'member.status == "active"'}
    )
    assert r.status_code == 201, r.text
    # The segment counts both (an aggregate); its member list names only the consenting one.
    assert (await client.get(f"{base}/segments/all")).json()["members"] == 2
    assert (await client.get(f"{base}/segments/all/members")).json()["members"] == [profiled]
    scored = (await client.get(f"{base}/members/{profiled}/scores")).json()
    assert scored["frequency"] == 1 and scored["computed_at"] is not None
    hidden = (await client.get(f"{base}/members/{private}/scores")).json()
    assert hidden["member_id"] == private
    assert {k: v for k, v in hidden.items() if v is not None} == {"member_id": private}
    # Withdrawn: out of the list and unscored at once; given: in.
    r = await client.patch(f"{base}/members/{profiled}", json={"consents": {"profiling": False}})
    assert r.status_code == 200, r.text
    r = await client.patch(f"{base}/members/{private}", json={"consents": {"profiling": True}})
    assert r.status_code == 200, r.text
    assert (await client.get(f"{base}/segments/all/members")).json()["members"] == [private]
    assert (await client.get(f"{base}/members/{profiled}/scores")).json()["frequency"] is None
    assert (await client.get(f"{base}/members/{private}/scores")).json()["frequency"] == 1


async def test_the_recommendation_model_learns_only_from_members_consenting_to_analytics(
    client: httpx.AsyncClient, program: str
) -> None:
    from tests.conftest import enrol, purchase

    base = f"/v1/programs/{program}"
    basket = [{"sku": s, "category": s, "quantity": 1, "unit_price": "2.00"}
              for s in ("coffee", "cake")]  # fmt: skip
    others = [(await enrol(client, program))["id"] for _ in range(3)]
    for other in others:
        assert (await purchase(client, program, other, "4.00", lines=basket)).status_code == 201
    member = (await enrol(client, program, consents={"profiling": True}))["id"]
    r = await purchase(client, program, member, "2.00", lines=basket[:1])
    assert r.status_code == 201, r.text
    url = f"{base}/members/{member}/recommendations"
    # Nobody consents to analytics: the model knows no basket, not even the popular items.
    assert (await client.get(url)).json()["items"] == []
    popular = (await client.get(f"{base}/members/{others[0]}/recommendations")).json()
    assert (popular["source"], popular["items"]) == ("popular", [])
    for other in others:
        r = await client.patch(f"{base}/members/{other}", json={"consents": {"analytics": True}})
        assert r.status_code == 200, r.text
    # Given: the next answer learns from them (the cached model is not reused).
    assert (await client.get(url)).json()["items"][:1] == ["cake"]
    r = await client.patch(f"{base}/members/{others[0]}", json={"consents": {"analytics": False}})
    assert r.status_code == 200, r.text
    assert (await client.get(url)).json()["items"][:1] == ["cake"]  # two others still teach it
    for other in others[1:]:
        r = await client.patch(f"{base}/members/{other}", json={"consents": {"analytics": False}})
        assert r.status_code == 200, r.text
    assert "cake" not in (await client.get(url)).json()["items"]
