import json, httpx
from tests.conftest import create_program

async def test_x(client: httpx.AsyncClient) -> None:
    p = await create_program(client, code="cafe")
    r = await client.post(f"/v1/programs/{p}/rules", json={"code": "review-50", "name": "50 points for a review, at most one a week", "event_type": "review", "effect": {"kind": "fixed", "points": 50}, "caps": [{"period": "week", "count": 1}]})
    print(json.dumps(r.json()))
    r = await client.patch(f"/v1/programs/{p}/rules/review-50", json={"effect": {"kind": "fixed", "points": 60}})
    r = await client.get(f"/v1/programs/{p}/rules/review-50")
    print(json.dumps(r.json()))
    r = await client.post(f"/v1/programs/{p}/rules", json={"code": "x", "event_type": "visit", "condition": "event.totl > 10.0", "effect": {"kind": "fixed", "points": 5}})
    print(r.status_code, json.dumps(r.json()))
    m = (await client.post(f"/v1/programs/{p}/members", json={})).json()
    r = await client.post(f"/v1/programs/{p}/events", json={"type": "review", "member": {"id": m["id"]}, "external_id": "rev-1"})
    print(json.dumps(r.json()))
