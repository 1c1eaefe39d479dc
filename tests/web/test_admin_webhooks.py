"""The console's webhooks pages: an endpoint made, changed, disabled, rotated and deleted from
the forms (CSRF on each), bad input shown on the page with nothing written, its deliveries and
a parked one sent again, roles, and the pages in French and Danish."""

from __future__ import annotations

import re

import httpx

from habitue.db import Database
from habitue.messaging import worker
from habitue.settings import Settings
from tests.conftest import enrol
from tests.web.conftest import csrf_of, make_staff, staff_signin

FORGED = "forged-token-xxxx"


async def _hooks(client: httpx.AsyncClient, program: str) -> list[dict[str, object]]:
    items: list[dict[str, object]] = (
        await client.get(f"/v1/programs/{program}/webhooks")
    ).json()["items"]
    return items


async def test_owner_sees_deliveries_and_sends_a_parked_one_again(
    client: httpx.AsyncClient, program: str, db: Database, settings: Settings
) -> None:
    page = await client.get(f"/admin/{program}/webhooks")
    assert page.status_code in (302, 303, 401)  # signed out
    r = await client.post(
        f"/v1/programs/{program}/webhooks",
        json={"url": "http://127.0.0.1:9/nobody", "events": ["member.enrolled"]},
    )
    assert r.status_code == 201
    hook = r.json()
    await enrol(client, program)
    # Nothing listens there: a network error, retried, then parked after the retry period.
    quick = settings.model_copy(update={"retry_period_hours": 0.000001})
    await worker.run_until_idle(db, quick)
    await staff_signin(client, await make_staff(db, "owner"))
    page = await client.get(f"/admin/{program}/webhooks")
    assert page.status_code == 200
    assert "http://127.0.0.1:9/nobody" in page.text
    assert hook["secret"] not in page.text
    assert 'data-status="failed"' in page.text
    [parked] = (
        await client.get(f"/v1/programs/{program}/webhooks/{hook['id']}/deliveries")
    ).json()["items"]
    action = f"/admin/{program}/webhooks/{hook['id']}/deliveries/{parked['id']}/retry"
    assert f'action="{action}"' in page.text
    assert (await client.post(action, data={"csrf_token": FORGED})).status_code == 403
    r = await client.post(action, data={"csrf_token": csrf_of(page.text)})
    assert r.status_code == 303
    again = (await client.get(r.headers["location"])).text
    assert "The delivery will be sent again shortly." in again
    assert f'id="delivery-{parked["id"]}"' in again
    assert 'data-status="pending"' in again

    client.cookies.clear()
    await staff_signin(client, await make_staff(db, "support"))
    assert (await client.get(f"/admin/{program}/webhooks")).status_code == 403
    assert (await client.get(f"/admin/{program}/webhooks/{hook['id']}")).status_code == 403


async def test_an_endpoint_made_changed_rotated_and_deleted_from_the_console(
    client: httpx.AsyncClient, program: str, db: Database
) -> None:
    await staff_signin(client, await make_staff(db, "owner"))
    page = await client.get(f"/admin/{program}/webhooks")
    assert 'id="no-webhooks"' in page.text
    assert 'name="event-points.earned"' in page.text and 'name="event-*"' in page.text
    token = csrf_of(page.text)
    form = {"url": "https://shop.example.com/hooks", "description": "Shop",
            "event-points.earned": "on", "event-tier.changed": "on"}  # fmt: skip

    # Without a valid CSRF token nothing is made.
    forged = await client.post(f"/admin/{program}/webhooks", data={"csrf_token": FORGED, **form})
    assert forged.status_code == 403
    assert await _hooks(client, program) == []

    # Bad input: the errors on the page, what was typed kept, nothing written.
    for bad, field, message in (
        ({**form, "url": "ftp://shop.example.com/x"}, "url",
         "Enter an address starting with http:// or https://."),
        ({**form, "event-points.spent_twice": "on"}, "events", "Choose event types from the list."),
        ({"url": form["url"]}, "events", "Choose at least one event type."),
    ):  # fmt: skip
        r = await client.post(f"/admin/{program}/webhooks", data={"csrf_token": token, **bad})
        assert r.status_code == 422, field
        assert message in r.text
        assert f'id="e-{field}"' in r.text
        assert f'value="{bad["url"]}"' in r.text
        assert await _hooks(client, program) == []

    made = await client.post(f"/admin/{program}/webhooks", data={"csrf_token": token, **form})
    assert made.status_code == 200
    assert 'id="webhook-made"' in made.text
    secret = re.search(r'id="new-secret">.*?<code>(whsec_[^<]+)</code>', made.text, re.S)
    assert secret is not None
    [hook] = await _hooks(client, program)
    assert hook["url"] == "https://shop.example.com/hooks"
    assert hook["events"] == ["points.earned", "tier.changed"]
    assert hook["description"] == "Shop"
    assert hook["enabled"] is True
    listed = await client.get(f"/admin/{program}/webhooks")
    assert secret.group(1) not in listed.text  # shown once
    url = f"/admin/{program}/webhooks/{hook['id']}"
    assert f'href="{url}"' in listed.text

    # Subscriptions changed and the endpoint made inactive.
    page = await client.get(url)
    assert page.status_code == 200
    assert secret.group(1) not in page.text
    assert 'name="event-points.earned" checked' in page.text
    edit = {"url": hook["url"], "description": "Shop", "event-member.enrolled": "on"}
    assert (await client.post(url, data={"csrf_token": FORGED, **edit})).status_code == 403
    bad = await client.post(url, data={"csrf_token": token, **edit, "event-nope": "on"})
    assert bad.status_code == 422 and "Choose event types from the list." in bad.text
    assert (await _hooks(client, program))[0]["events"] == ["points.earned", "tier.changed"]
    saved = await client.post(url, data={"csrf_token": token, **edit})
    assert saved.status_code == 303
    page = await client.get(saved.headers["location"])
    assert 'id="webhook-saved"' in page.text
    [hook] = await _hooks(client, program)
    assert hook["events"] == ["member.enrolled"] and hook["enabled"] is False
    saved = await client.post(url, data={"csrf_token": token, **edit, "enabled": "on",
                                         "event-*": "on"})  # fmt: skip
    assert saved.status_code == 303
    [hook] = await _hooks(client, program)
    assert hook["events"] == ["*", "member.enrolled"] and hook["enabled"] is True

    # The secret rotated: the new one shown once, on the answer only.
    rotate = f"{url}/rotate-secret"
    assert (await client.post(rotate, data={"csrf_token": FORGED})).status_code == 403
    rotated = await client.post(rotate, data={"csrf_token": token})
    assert rotated.status_code == 200
    fresh = re.search(r'id="new-secret">.*?<code>(whsec_[^<]+)</code>', rotated.text, re.S)
    assert fresh is not None and fresh.group(1) != secret.group(1)
    assert fresh.group(1) not in (await client.get(url)).text

    # Deleted.
    delete = f"{url}/delete"
    assert (await client.post(delete, data={"csrf_token": FORGED})).status_code == 403
    assert len(await _hooks(client, program)) == 1
    gone = await client.post(delete, data={"csrf_token": token})
    assert gone.status_code == 303
    assert 'id="webhook-deleted"' in (await client.get(gone.headers["location"])).text
    assert await _hooks(client, program) == []
    assert (await client.get(url)).status_code == 404
    assert (await client.post(delete, data={"csrf_token": token})).status_code == 404


async def test_the_webhooks_pages_in_french_and_danish(
    client: httpx.AsyncClient, program: str, db: Database
) -> None:
    r = await client.post(
        f"/v1/programs/{program}/webhooks",
        json={"url": "https://crm.example.com/in", "events": ["*"]},
    )
    hook = r.json()
    await staff_signin(client, await make_staff(db, "owner"))
    for lang, new, rotate in (
        ("fr", "Nouveau point de réception", "Changer le secret"),
        ("da", "Nyt modtagepunkt", "Skift hemmeligheden"),
    ):
        lang_header = {"accept-language": lang}
        page = await client.get(f"/admin/{program}/webhooks", headers=lang_header)
        assert f'lang="{lang}"' in page.text and new in page.text, lang
        one = await client.get(f"/admin/{program}/webhooks/{hook['id']}", headers=lang_header)
        assert rotate in one.text, lang
