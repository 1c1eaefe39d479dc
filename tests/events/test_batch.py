"""`POST /events/batch`: one answer per slot, in order, each event as `POST /events` would."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import create_program, enrol, new_code


def _buy(member: dict[str, Any], total: str, external_id: str | None = None, **extra: Any) -> Any:
    return {
        "type": "purchase",
        "member": {"id": member["id"]},
        "external_id": external_id or new_code("t"),
        "total": total,
        **extra,
    }


async def _batch(client: httpx.AsyncClient, program: str, events: Any, **kw: Any) -> httpx.Response:
    return await client.post(f"/v1/programs/{program}/events/batch", json={"events": events}, **kw)


async def _available(client: httpx.AsyncClient, program: str, member: dict[str, Any]) -> int:
    r = await client.get(f"/v1/programs/{program}/members/{member['id']}/balance")
    assert r.status_code == 200, r.text
    return int(r.json()["available"])


async def test_each_slot_is_answered_in_order_as_post_events_would(
    client: httpx.AsyncClient,
) -> None:
    code = await create_program(client)
    members = [await enrol(client, code) for _ in range(3)]
    events = [_buy(members[i % 3], f"{10 + i}.00", external_id=f"o-{i}") for i in range(30)]
    r = await _batch(client, code, events)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    results = r.json()["results"]
    assert [s["status"] for s in results] == [201] * 30
    assert [s["body"]["external_id"] for s in results] == [f"o-{i}" for i in range(30)]
    assert [s["body"]["points"] for s in results] == [10 + i for i in range(30)]
    assert [s["body"]["member_id"] for s in results] == [members[i % 3]["id"] for i in range(30)]
    # Each slot is the event as recorded: the same as reading it back.
    got = await client.get(f"/v1/programs/{code}/events/{results[7]['body']['id']}")
    assert got.json() == results[7]["body"]
    for k in range(3):
        want = sum(10 + i for i in range(30) if i % 3 == k)
        assert await _available(client, code, members[k]) == want


async def test_a_bad_event_gets_its_own_problem_and_never_rejects_the_others(
    client: httpx.AsyncClient,
) -> None:
    code = await create_program(client)
    m = await enrol(client, code)
    events = [
        _buy(m, "10.00", external_id="good-1"),
        {"type": "purchase", "external_id": "bad-1", "total": "1.00"},  # no member
        _buy(m, "abc", external_id="bad-2"),  # not an amount (the service's check)
        {"type": "purchase", "member": {"id": "mem_nobody"}, "external_id": "bad-3",
         "total": "5.00"},
        "not an object",
        {"type": "purchase", "member": {"id": m["id"]}, "external_id": "bad-5", "total": "1.00",
         "surprise": True},
        _buy(m, "20.00", external_id="good-2"),
        {"type": "refund", "external_id": "bad-7", "refers_to": "nope", "total": "1.00"},
    ]
    r = await _batch(client, code, events)
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [s["status"] for s in results] == [201, 422, 422, 404, 422, 422, 201, 422]
    # The same problem+json as POST /events gives each of them alone.
    for i in (1, 2, 3, 5, 7):
        alone = await client.post(f"/v1/programs/{code}/events", json=events[i])
        assert alone.status_code == results[i]["status"]
        assert alone.json() == results[i]["body"], i
    assert results[1]["body"]["type"] == "https://habitue.dev/errors/validation"
    assert results[1]["body"]["errors"][0]["field"] == "member"
    assert results[4]["body"]["type"] == "https://habitue.dev/errors/validation"
    assert results[5]["body"]["errors"][0]["field"] == "surprise"
    assert results[7]["body"]["type"].endswith("/unknown-purchase")
    assert await _available(client, code, m) == 30
    # Nothing of the bad ones was written.
    for ext in ("bad-1", "bad-2", "bad-3", "bad-5", "bad-7"):
        again = await client.post(
            f"/v1/programs/{code}/events", json=_buy(m, "1.00", external_id=ext)
        )
        assert again.status_code == 201
        assert again.json()["points"] == 1


async def test_duplicates_within_and_across_batches_are_credited_once(
    client: httpx.AsyncClient,
) -> None:
    code = await create_program(client)
    a, b = await enrol(client, code), await enrol(client, code)
    first = [_buy(a, "10.00", "d-1"), _buy(b, "7.00", "d-2"), _buy(a, "10.00", "d-1")]
    r = await _batch(client, code, first)
    results = r.json()["results"]
    # A retry, in the batch or later, answers as POST /events does: the first answer again.
    single = await client.post(f"/v1/programs/{code}/events", json=_buy(b, "7.00", "d-2"))
    assert [s["status"] for s in results] == [201, 201, 201]
    assert results[2]["body"] == results[0]["body"]
    assert single.status_code == 201 and single.json() == results[1]["body"]
    again = await _batch(client, code, [*first, _buy(b, "3.00", "d-3")])
    assert [s["status"] for s in again.json()["results"]] == [201] * 4
    assert [s["body"] for s in again.json()["results"][:3]] == [s["body"] for s in results]
    assert await _available(client, code, a) == 10
    assert await _available(client, code, b) == 10


async def test_a_batch_retries_events_recorded_one_by_one(client: httpx.AsyncClient) -> None:
    code = await create_program(client)
    m = await enrol(client, code)
    alone = await client.post(f"/v1/programs/{code}/events", json=_buy(m, "12.00", "x-1"))
    r = await _batch(client, code, [_buy(m, "12.00", "x-1")])
    assert r.json()["results"] == [{"status": 201, "body": alone.json()}]
    assert await _available(client, code, m) == 12


async def test_a_refund_sees_its_purchase_earlier_in_the_batch(client: httpx.AsyncClient) -> None:
    code = await create_program(client)
    m = await enrol(client, code)
    events = [
        _buy(m, "40.00", "buy-1"),
        {"type": "refund", "external_id": "ref-1", "refers_to": "buy-1", "total": "10.00"},
        _buy(m, "5.00", "buy-2"),
        _buy(m, "20.00", "buy-3", spend_points=30),
    ]
    results = (await _batch(client, code, events)).json()["results"]
    assert [s["status"] for s in results] == [201, 201, 201, 201], results
    assert results[1]["body"]["points"] == -10
    assert results[3]["body"]["points_spent"] == 30
    assert results[3]["body"]["points"] < 0
    assert await _available(client, code, m) == sum(s["body"]["points"] for s in results)


async def test_more_than_1000_events_or_no_list_is_refused_whole(
    client: httpx.AsyncClient, db: Any
) -> None:
    code = await create_program(client)
    m = await enrol(client, code)
    events = [_buy(m, "1.00") for _ in range(1001)]
    for body in ({"events": events}, {"events": {"a": 1}}, {"events": "x"}, {}, [1, 2]):
        r = await client.post(f"/v1/programs/{code}/events/batch", json=body)
        assert r.status_code == 422, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["type"] == "https://habitue.dev/errors/validation"
    assert await _available(client, code, m) == 0
    r = await _batch(client, code, events[:1000])
    assert r.status_code == 200
    assert len(r.json()["results"]) == 1000
    assert await _available(client, code, m) == 1000
    r = await _batch(client, code, [])
    assert r.json() == {"results": []}


async def test_auth_and_scopes(client: httpx.AsyncClient) -> None:
    code = await create_program(client)
    other = await create_program(client)
    m = await enrol(client, code)
    url = f"/v1/programs/{code}/events/batch"
    body = {"events": [_buy(m, "5.00")]}
    r = await client.post(url, json=body, headers={"Authorization": ""})
    assert r.status_code == 401
    assert r.json()["type"].endswith("/unauthorized")

    async def key(program: str, scopes: list[str]) -> dict[str, str]:
        made = await client.post(
            f"/v1/programs/{program}/api-keys", json={"name": new_code("k"), "scopes": scopes}
        )
        assert made.status_code == 201, made.text
        return {"Authorization": f"Bearer {made.json()['key']}"}

    r = await client.post(url, json=body, headers=await key(code, ["events:read"]))
    assert r.status_code == 403
    assert r.json()["type"].endswith("/forbidden")
    r = await client.post(url, json=body, headers=await key(other, ["events:write"]))
    assert r.status_code == 404
    assert await _available(client, code, m) == 0
    r = await client.post(url, json=body, headers=await key(code, ["events:write"]))
    assert r.status_code == 200
    assert r.json()["results"][0]["status"] == 201
    assert await _available(client, code, m) == 5


async def test_a_partner_key_records_its_own_source_only(client: httpx.AsyncClient) -> None:
    code = await create_program(client)
    for partner in ("p1", "p2"):
        r = await client.post(
            f"/v1/programs/{code}/partners",
            json={"code": partner, "name": partner, "funding_rate": "1.00",
                  "reimbursement_rate": "1"},
        )
        assert r.status_code == 201, r.text
    made = await client.post(
        f"/v1/programs/{code}/api-keys",
        json={"name": new_code("k"), "partner": "p1", "scopes": ["events:write", "events:read"]},
    )
    assert made.status_code == 201, made.text
    p1 = {"Authorization": f"Bearer {made.json()['key']}"}
    m = await enrol(client, code, external_id=new_code("c"))
    events = [
        _buy(m, "10.00", "s-1"),
        _buy(m, "10.00", "s-2", source="p2"),
        _buy(m, "10.00", "s-3", source="p1"),
        _buy(m, "10.00", "s-4", source="default"),
    ]
    r = await _batch(client, code, events, headers=p1)
    results = r.json()["results"]
    assert [s["status"] for s in results] == [201, 403, 201, 403]
    assert results[1]["body"]["type"].endswith("/forbidden")
    # Recorded with the partner as source: the partner key reads them as its own.
    got = await client.get(f"/v1/programs/{code}/events/{results[0]['body']['id']}", headers=p1)
    assert got.status_code == 200
    assert await _available(client, code, m) == 20
    # An inactive partner's key records nothing.
    await client.patch(f"/v1/programs/{code}/partners/p1", json={"active": False})
    r = await _batch(client, code, [_buy(m, "10.00", "s-5")], headers=p1)
    assert r.status_code == 403
    assert await _available(client, code, m) == 20


async def test_concurrent_batches_and_single_events_for_the_same_members(
    client: httpx.AsyncClient,
) -> None:
    import asyncio

    code = await create_program(client)
    members = [await enrol(client, code) for _ in range(4)]
    events = [_buy(members[i % 4], "1.00", f"c-{i}") for i in range(200)]
    singles = [
        client.post(f"/v1/programs/{code}/events", json=events[i]) for i in range(0, 200, 7)
    ]
    answers = await asyncio.gather(
        _batch(client, code, events[:120]), _batch(client, code, events[80:]), *singles
    )
    for r in answers:
        assert r.status_code in (200, 201), r.text
    for r in answers[:2]:
        assert {s["status"] for s in r.json()["results"]} == {201}
    for m in members:
        assert await _available(client, code, m) == 50


async def test_members_named_by_external_id_or_card(client: httpx.AsyncClient) -> None:
    code = await create_program(client)
    m = await enrol(client, code, external_id="C-1")
    by_ext = {"type": "purchase", "member": {"external_id": "C-1"}, "total": "4.00"}
    events = [
        {**by_ext, "external_id": "e-1"},
        {**by_ext, "external_id": "e-2", "occurred_at": "2026-11-06T10:00:00+00:00"},
        {**by_ext, "member": {"external_id": "C-404"}, "external_id": "e-3"},
        {**by_ext, "member": {"card_number": m["card_number"]}, "external_id": "e-4"},
        {**by_ext, "external_id": "e-1"},
    ]
    results = (await _batch(client, code, events)).json()["results"]
    assert [s["status"] for s in results] == [201, 201, 404, 201, 201]
    assert {s["body"]["member_id"] for s in results if s["status"] == 201} == {m["id"]}
    assert results[1]["body"]["occurred_at"].startswith("2026-11-06T10:00:00")
    assert results[4]["body"] == results[0]["body"]
    alone = await client.post(f"/v1/programs/{code}/events", json=events[2])
    assert alone.json() == results[2]["body"]
    retry = await client.post(f"/v1/programs/{code}/events", json=events[1])
    assert retry.json() == results[1]["body"]
    assert await _available(client, code, m) == 12
