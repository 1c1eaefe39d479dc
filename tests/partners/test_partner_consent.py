"""Sharing with partners is a consent: a partner key reaches a member's data (the member,
their card, balance, tier, privileges, offers, what points would pay, using an offer) only
while the member consents to `partners`; the program's own keys are not concerned."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx

from tests.conftest import enrol, new_code
from tests.partners.test_partner_keys import _key, _partner


def _refused(r: httpx.Response) -> bool:
    return (
        r.status_code == 403
        and r.headers["content-type"].startswith("application/problem+json")
        and r.json()["type"].endswith("/no-sharing-consent")
    )


async def test_a_partner_key_reads_a_member_only_with_their_sharing_consent(
    client: httpx.AsyncClient, program: str
) -> None:
    base = f"/v1/programs/{program}"
    await _partner(client, program, "p1")
    p1 = await _key(client, program, "p1")
    external = new_code("c")
    member = await enrol(client, program, external_id=external, first_name="Inès")
    m, card = member["id"], member["card_number"]
    now = datetime.now(UTC)
    r = await client.post(f"{base}/offers", json={
        "code": "share", "texts": {"en": {"name": "Share"}}, "percent": "10",
        "starts_at": (now - timedelta(hours=1)).isoformat(),
        "ends_at": (now + timedelta(days=3)).isoformat(), "members": [m]})  # fmt: skip
    assert r.status_code == 201, r.text
    assert (await client.post(f"{base}/members/{m}/offers/share/clip")).status_code == 200
    reads = [
        ("GET", f"{base}/members?card_number={card}", None),
        ("GET", f"{base}/members?external_id={external}", None),
        ("GET", f"{base}/members/{m}", None),
        ("GET", f"{base}/cards/{card}", None),
        ("GET", f"{base}/members/{m}/balance", None),
        ("GET", f"{base}/members/{m}/tier", None),  # 404: the program has no tier ladder
        ("GET", f"{base}/members/{m}/benefits", None),
        ("GET", f"{base}/members/{m}/offers", None),
        ("POST", f"{base}/members/{m}/pay-with-points/quote", {"total": "10.00"}),
    ]
    use = ("POST", f"{base}/members/{m}/offers/share/use", {"total": "10.00"})

    # Nothing consented (the default): every read is refused, without the member's data.
    for method, url, body in [*reads, use]:
        r = await client.request(method, url, json=body, headers=p1)
        assert _refused(r), (url, r.status_code, r.text)
        assert "Inès" not in r.text and card not in r.text
        # The program's own key is not concerned.
        own = await client.request(method, url, json=body)
        assert own.status_code == (404 if url.endswith("/tier") else 200), url
    # An unknown member is still not found.
    r = await client.get(f"{base}/members/nobody/balance", headers=p1)
    assert r.status_code == 404, r.text

    # Consented: the partner's till sees what it needs (personal data still redacted).
    r = await client.patch(f"{base}/members/{m}", json={"consents": {"partners": True}})
    assert r.status_code == 200, r.text
    for method, url, body in reads:
        r = await client.request(method, url, json=body, headers=p1)
        assert r.status_code == (404 if url.endswith("/tier") else 200), (url, r.text)
    found = (await client.get(f"{base}/members/{m}", headers=p1)).json()
    assert found["first_name"] == "Inès" and found["email"] is None
    r = await client.request(use[0], use[1], json=use[2], headers=p1)
    assert r.status_code == 409 and r.json()["type"].endswith("/offer-already-used"), r.text

    # Withdrawn: refused again at once.
    r = await client.patch(f"{base}/members/{m}", json={"consents": {"partners": False}})
    assert r.status_code == 200, r.text
    for method, url, body in reads:
        assert _refused(await client.request(method, url, json=body, headers=p1)), url
    # Earning and burning at the partner's tills is the member's own act: recorded as before.
    r = await client.post(f"{base}/events", headers=p1, json={
        "type": "purchase", "member": {"id": m}, "external_id": new_code("t"),
        "total": "12.00"})  # fmt: skip
    assert r.status_code == 201, r.text
