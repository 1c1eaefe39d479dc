"""The console's webhooks page: endpoints, their deliveries, a parked one sent again."""

from __future__ import annotations

import httpx

from habitue.db import Database
from habitue.messaging import worker
from habitue.settings import Settings
from tests.conftest import enrol
from tests.web.conftest import csrf_of, make_staff, staff_signin


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
    assert (await client.post(action, data={"csrf_token": "forged-token-xxxx"})).status_code == 403
    r = await client.post(action, data={"csrf_token": csrf_of(page.text)})
    assert r.status_code == 303
    again = (await client.get(r.headers["location"])).text
    assert "The delivery will be sent again shortly." in again
    assert 'data-status="pending"' in again

    client.cookies.clear()
    await staff_signin(client, await make_staff(db, "support"))
    assert (await client.get(f"/admin/{program}/webhooks")).status_code == 403
