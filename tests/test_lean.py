"""The lean routes (habitue.lean): the usual request answered as the FastAPI route answers it,
everything else handed to the FastAPI route; control characters refused as before."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from habitue import lean
from habitue.db import Database
from habitue.events.schemas import EventCreate
from habitue.programs import service as programs_service
from habitue.promotions.schemas import BasketIn
from tests.conftest import enrol, new_code

PROBLEM = "application/problem+json"


class Spy:
    """Counts the requests the lean route answered itself and those it handed on."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.lean = 0
        self.declined = 0
        resolve, decline = lean.LeanRoutes._resolve, lean.LeanRoutes._decline

        def resolving(route: lean.LeanRoutes, *args: Any) -> Any:
            call = resolve(route, *args)
            self.lean += call is not None
            return call

        async def declining(route: lean.LeanRoutes, *args: Any) -> None:
            self.declined += 1
            await decline(route, *args)

        monkeypatch.setattr(lean.LeanRoutes, "_resolve", resolving)
        monkeypatch.setattr(lean.LeanRoutes, "_decline", declining)


def force_fastapi(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lean.LeanRoutes, "_resolve", lambda *_: None)


def line(sku: str = "MUG", price: str = "4.50", **extra: Any) -> dict[str, Any]:
    return {"sku": sku, "category": "kitchen", "quantity": 2, "unit_price": price, **extra}


async def till_key(client: httpx.AsyncClient, program: str, *scopes: str) -> dict[str, str]:
    r = await client.post(
        f"/v1/programs/{program}/api-keys", json={"name": new_code("k"), "scopes": list(scopes)}
    )
    assert r.status_code == 201, r.text
    return {"Authorization": f"Bearer {r.json()['key']}"}


async def test_a_priced_basket_is_the_same_answer_either_way(
    client: httpx.AsyncClient, program: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    member = (await enrol(client, program))["id"]
    r = await client.post(
        f"/v1/programs/{program}/promotions",
        json={"code": "mugs", "effect": {"type": "lines_percent", "percent": "10"},
              "line_condition": "line.sku == 'MUG'"},
    )  # fmt: skip
    assert r.status_code == 201, r.text
    basket = {"member": {"id": member}, "lines": [line(), line("TEA", "2.00")]}
    url = f"/v1/programs/{program}/baskets/price"
    await client.post(url, json=basket)  # the program in the cache
    spy = Spy(monkeypatch)
    lean_answer = await client.post(url, json=basket)
    assert (spy.lean, lean_answer.status_code) == (1, 200), lean_answer.text
    monkeypatch.undo()
    force_fastapi(monkeypatch)
    full_answer = await client.post(url, json=basket)
    assert full_answer.status_code == 200
    assert lean_answer.content == full_answer.content
    assert lean_answer.headers["content-type"] == full_answer.headers["content-type"]
    assert lean_answer.json()["discount"] != "0.00"


async def test_a_purchase_recorded_lean_is_replayed_by_the_fastapi_route(
    client: httpx.AsyncClient, program: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    member = (await enrol(client, program))["id"]
    body = {"type": "purchase", "member": {"id": member}, "external_id": new_code("e"),
            "total": "9.00", "lines": [line()]}  # fmt: skip
    url = f"/v1/programs/{program}/events"
    spy = Spy(monkeypatch)
    first = await client.post(url, json=body)
    assert (spy.lean, spy.declined, first.status_code) == (1, 0, 201), first.text
    monkeypatch.undo()
    force_fastapi(monkeypatch)
    again = await client.post(url, json=body)
    assert again.json() == first.json()
    assert again.headers["content-type"] == first.headers["content-type"] == "application/json"
    balance = await client.get(f"/v1/programs/{program}/members/{member}/balance")
    assert balance.json()["lifetime_earned"] == first.json()["points"] > 0


async def test_an_error_of_the_endpoint_is_problem_json_on_the_lean_path(
    client: httpx.AsyncClient, program: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await enrol(client, program)  # the program is in the cache
    spy = Spy(monkeypatch)
    body = {"type": "purchase", "member": {"id": "mem_nobody"}, "external_id": "e1",
            "total": "1.00"}  # fmt: skip
    r = await client.post(f"/v1/programs/{program}/events", json=body)
    assert (spy.lean, spy.declined) == (1, 0)
    assert r.status_code == 404
    assert r.headers["content-type"] == PROBLEM
    assert r.json()["type"].endswith("member-not-found")


async def test_an_idempotency_key_replays_the_first_lean_answer(
    client: httpx.AsyncClient, program: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    member = (await enrol(client, program))["id"]
    spy = Spy(monkeypatch)
    headers = {"Idempotency-Key": new_code("i")}
    url = f"/v1/programs/{program}/events"
    body = {"type": "purchase", "member": {"id": member}, "external_id": new_code("e"),
            "total": "20.00"}  # fmt: skip
    first = await client.post(url, json=body, headers=headers)
    assert (spy.lean, first.status_code) == (1, 201), first.text
    body["external_id"] = new_code("e")  # another body under the same key: refused
    other = await client.post(url, json=body, headers=headers)
    assert other.status_code == 422, other.text
    body["external_id"] = first.json()["external_id"]
    again = await client.post(url, json=body, headers=headers)
    assert again.headers.get("idempotent-replayed") == "true"
    assert (again.status_code, again.json()) == (201, first.json())


@pytest.mark.parametrize(
    ("case", "status"),
    [
        ("no key", 401),
        ("unknown key", 401),
        ("key without the scope", 403),
        ("another program's key", 404),
        ("unknown program", 404),
        ("not JSON", 422),
        ("not a JSON content type", 422),
        ("control character", 422),
        ("unknown field", 422),
    ],
)
async def test_unusual_requests_are_answered_by_the_fastapi_route(
    client: httpx.AsyncClient,
    program: str,
    monkeypatch: pytest.MonkeyPatch,
    case: str,
    status: int,
) -> None:
    member = (await enrol(client, program))["id"]
    body: dict[str, Any] = {"type": "purchase", "member": {"id": member},
                            "external_id": new_code("e"), "total": "5.00"}  # fmt: skip
    headers: dict[str, str] = {}
    url = f"/v1/programs/{program}/events"
    if case == "no key":
        headers["Authorization"] = ""
    elif case == "unknown key":
        headers["Authorization"] = "Bearer hab_nope_0123456789abcdef"
    elif case == "key without the scope":
        headers = await till_key(client, program, "members:read")
    elif case == "another program's key":
        other = await client.post(
            "/v1/programs",
            json={"code": new_code(), "name": "O", "currency": "EUR", "timezone": "UTC"},
        )
        headers = await till_key(client, other.json()["code"], "events:write")
        await client.post(url, json=body, headers=headers)  # the key in the cache
    elif case == "unknown program":
        url = "/v1/programs/nope/events"
    elif case == "control character":
        body["attributes"] = {"store\x07": "x"}
    elif case == "unknown field":
        body["colour"] = "red"
    spy = Spy(monkeypatch)
    if case == "not JSON":
        headers["content-type"] = "application/json"
        r = await client.post(url, content=b"{", headers=headers)
    elif case == "not a JSON content type":
        headers["content-type"] = "text/plain"
        r = await client.post(url, content=b"{}", headers=headers)
    else:
        r = await client.post(url, json=body, headers=headers)
    assert (r.status_code, r.headers["content-type"]) == (status, PROBLEM), r.text
    assert (spy.lean, spy.declined) == (0, 1)
    if case == "control character":
        assert r.json()["errors"][0]["field"] == "attributes"
    balance = await client.get(f"/v1/programs/{program}/members/{member}/balance")
    assert balance.json()["lifetime_earned"] == 0


async def test_a_partner_key_on_a_till_route_is_refused(
    client: httpx.AsyncClient, program: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The baskets' routes are closed to partner keys: the lean route hands them on."""
    from habitue.programs.service import Principal

    partner = Principal(name="p", program_id=None, scopes=frozenset({"events:write"}), partner="x")
    monkeypatch.setattr(
        lean.programs_service, "cached_principal", lambda *_: (True, partner)
    )
    spy = Spy(monkeypatch)
    r = await client.post(f"/v1/programs/{program}/baskets/price", json={"lines": [line()]})
    assert (spy.lean, spy.declined) == (0, 1)
    assert (r.status_code, r.headers["content-type"]) == (403, PROBLEM), r.text


@pytest.mark.parametrize("bad", ["\x00", "\x07", "\x1b[31m", "\x7f", "\x85", "\ud800"])
@pytest.mark.parametrize(
    ("model", "body", "field"),
    [
        (EventCreate, lambda b: {"external_id": f"e{b}"}, "external_id"),
        (EventCreate, lambda b: {"attributes": {f"k{b}": 1}}, "attributes"),
        (EventCreate, lambda b: {"attributes": {"k": [1, {"deep": f"x{b}"}]}}, "attributes"),
        (EventCreate, lambda b: {"lines": [line(sku=f"s{b}")]}, "lines.0.sku"),
        (EventCreate, lambda b: {"member": {"external_id": f"m{b}"}}, "member.external_id"),
        (BasketIn, lambda b: {"codes": ["OK", f"C{b}"]}, "codes"),
    ],
)
def test_control_characters_are_refused_wherever_they_are(
    model: type[EventCreate | BasketIn], body: Any, field: str, bad: str
) -> None:
    base: dict[str, Any] = (
        {"type": "purchase", "external_id": "e1", "total": "1.00"}
        if model is EventCreate
        else {"lines": [line()]}
    )
    model.model_validate(base)
    with pytest.raises(ValidationError) as caught:
        model.model_validate({**base, **body(bad)})
    errors = caught.value.errors()
    assert [".".join(str(p) for p in e["loc"]) for e in errors] == [field]
    # A lone surrogate in a string with a length bound is pydantic's own refusal.
    assert "control characters" in errors[0]["msg"] or bad == "\ud800"


@pytest.mark.parametrize("value", [float("inf"), 2**63, -(2**63)])
def test_numbers_out_of_bounds_are_refused_in_attributes(value: Any) -> None:
    base = {"type": "purchase", "external_id": "e1", "total": "1.00"}
    EventCreate.model_validate({**base, "attributes": {"n": [1, 2**62]}})
    with pytest.raises(ValidationError):
        EventCreate.model_validate({**base, "attributes": {"n": [1, {"m": value}]}})


def test_an_endpoint_given_another_dependency_stops_the_app_at_start() -> None:
    """The lean route calls the endpoint itself: a parameter it does not resolve is refused
    when the app is built, never at a request."""
    from habitue.events import api as events_api

    route = lean._route(events_api.router, events_api.record_event)

    async def run(call: lean.Call) -> Any:
        return None

    lean.Lean(route, run, ("program", "body", "db", "pipeline", "principal"))
    with pytest.raises(TypeError, match="takes"):
        lean.Lean(route, run, ("program", "body", "db", "principal"))


def _expiry(key_header: dict[str, str], program: str) -> tuple[float, float]:
    key = key_header["Authorization"].removeprefix("Bearer ")
    key_hit = programs_service._key_cache[programs_service.hash_key(key)]
    return key_hit[0], programs_service._cache[program][0]


async def test_the_key_and_program_are_read_again_before_they_expire_by_one_request(
    client: httpx.AsyncClient, program: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Requests that see their key and program about to expire: one reads them again, the
    others go on with the cached entries, and all stay on the lean route (before, every request
    in flight at an expiry read them itself, through FastAPI's route)."""
    member = (await enrol(client, program))["id"]
    till = await till_key(client, program, "events:write")
    url = f"/v1/programs/{program}/events"

    def purchase() -> dict[str, Any]:
        return {"type": "purchase", "member": {"id": member}, "external_id": new_code("e"),
                "total": "2.00"}  # fmt: skip

    assert (await client.post(url, json=purchase(), headers=till)).status_code == 201
    before = _expiry(till, program)
    monkeypatch.setattr(programs_service, "_REFRESH_AHEAD", programs_service._CACHE_TTL)
    loads: list[str] = []
    load_principal, load_info = programs_service._load_principal, programs_service._load_info

    async def counting_principal(session: Any, key: str) -> Any:
        loads.append("key")
        return await load_principal(session, key)

    async def counting_info(session: Any, code: str) -> Any:
        loads.append("program")
        return await load_info(session, code)

    monkeypatch.setattr(programs_service, "_load_principal", counting_principal)
    monkeypatch.setattr(programs_service, "_load_info", counting_info)
    spy = Spy(monkeypatch)
    answers = await asyncio.gather(
        *(client.post(url, json=purchase(), headers=till) for _ in range(8))
    )
    assert {r.status_code for r in answers} == {201}, [r.text for r in answers]
    assert (spy.lean, spy.declined) == (8, 0)
    # Every request saw the entries due: one at a time read them (here, one after the other).
    assert 0 < loads.count("key") == loads.count("program") < 8, loads
    after = _expiry(till, program)
    assert after[0] > before[0] and after[1] > before[1]
    assert not programs_service._refreshing


async def test_a_key_revoked_while_it_is_read_again_is_not_cached(
    client: httpx.AsyncClient, program: str, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A revocation (`forget_key`) that lands while a request reads the key again: what that
    read found is not cached, so the process refuses the key from then on."""
    till = await till_key(client, program, "events:write")
    key = till["Authorization"].removeprefix("Bearer ")
    async with db.read() as session:
        assert await programs_service.authenticate(session, key, None) is not None
    monkeypatch.setattr(programs_service, "_REFRESH_AHEAD", programs_service._CACHE_TTL)
    revoked: list[bool] = []

    @contextlib.asynccontextmanager
    async def read_then_revoke() -> AsyncIterator[Any]:
        async with db.read() as session:
            execute = session.execute

            async def executing(*args: Any, **kw: Any) -> Any:
                result = await execute(*args, **kw)
                if not revoked:  # the key revoked after its read, once
                    revoked.append(True)
                    programs_service.forget_key()
                return result

            monkeypatch.setattr(session, "execute", executing)
            yield session

    await programs_service.refresh_ahead(read_then_revoke, key, program)
    assert programs_service.cached_principal(key, None) == (False, None)
    assert not programs_service._refreshing
