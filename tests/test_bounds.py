"""Every number and text bounded where it enters (issue #16, defect 1), on both databases.

Each refused request answers 422 problem+json naming the field and writes nothing; the
ledger's balances stay within ±MAX_BALANCE (a CHECK constraint) and `ledger verify` stays ok.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from habitue import clock
from habitue.api import create_app
from habitue.bounds import MAX_BALANCE, MAX_POINTS
from habitue.db import Database
from habitue.ledger import service as ledger_service
from habitue.ledger.service import Leg
from habitue.ledger.verify import verify
from habitue.members import service as members_service
from habitue.programs import service as programs_service
from habitue.settings import Settings
from tests.conftest import ADMIN_KEY, create_program, enrol, new_code, purchase

PROBLEM = "application/problem+json"


async def send(client: httpx.AsyncClient, method: str, url: str, body: Any) -> httpx.Response:
    """A JSON request, escaped to ASCII so that lone surrogates travel as `\\udXXX`."""
    content = json.dumps(body).encode()
    return await client.request(
        method, url, content=content, headers={"content-type": "application/json"}
    )


def assert_refused(r: httpx.Response, field: str, status: int = 422) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM), r.headers
    if status == 422:
        fields = [e["field"] for e in r.json().get("errors", [])]
        assert field in fields, r.json()


async def state(client: httpx.AsyncClient, program: str, member: str) -> tuple[Any, Any]:
    """The member's balance and ledger, to show that nothing was written."""
    base = f"/v1/programs/{program}/members/{member}"
    balance = (await client.get(base + "/balance")).json()
    ledger = (await client.get(base + "/ledger")).json()["items"]
    return (balance["available"], balance["pending"], balance["lifetime_earned"]), ledger


async def seed(db: Database, program: str, member: str, points: int) -> None:
    """Credit `points` in one movement through the ledger (beyond what the API accepts)."""
    async with db.read() as session:
        info = await programs_service.get_info(session, program)
        accounts = (await members_service.resolve(session, info, member_id=member)).accounts

    async def work(session: AsyncSession) -> None:
        await ledger_service.credit(
            session, info, accounts, [Leg(points)], kind="adjust", counter="adjusted",
            reference=f"seed:{secrets.token_hex(6)}", reason="seed",
        )  # fmt: skip

    await db.write(work)


# --- points -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "points",
    [2**63 - 1, 10**19, -(10**19), MAX_POINTS + 1, -MAX_POINTS - 1, "100", True, 1.5, None],
)
async def test_adjustment_points_out_of_range_or_not_integers(
    client: httpx.AsyncClient, program: str, points: Any
) -> None:
    member = (await enrol(client, program))["id"]
    before = await state(client, program, member)
    r = await client.post(
        f"/v1/programs/{program}/members/{member}/adjustments",
        json={"points": points, "reason": "support"},
    )
    assert_refused(r, "points")
    assert await state(client, program, member) == before
    r = await client.get(f"/v1/programs/{program}/reports/monthly")
    assert r.status_code == 200, r.text


async def test_adjustment_at_the_bound_is_exact(client: httpx.AsyncClient, program: str) -> None:
    member = (await enrol(client, program))["id"]
    url = f"/v1/programs/{program}/members/{member}/adjustments"
    r = await client.post(url, json={"points": MAX_POINTS, "reason": "max"})
    assert r.status_code == 201, r.text
    assert r.json()["balance"]["available"] == MAX_POINTS
    assert type(r.json()["balance"]["available"]) is int
    r = await client.post(url, json={"points": -MAX_POINTS, "reason": "back"})
    assert r.status_code == 201, r.text
    assert r.json()["balance"]["available"] == 0


@pytest.mark.parametrize("points", ["100", True, MAX_POINTS + 1, 0])
async def test_spend_points_strict(client: httpx.AsyncClient, program: str, points: Any) -> None:
    member = (await enrol(client, program))["id"]
    before = await state(client, program, member)
    r = await client.post(
        f"/v1/programs/{program}/members/{member}/spends", json={"points": points}
    )
    assert_refused(r, "points")
    assert await state(client, program, member) == before


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("spend_points", "100"),
        ("spend_points", True),
        ("spend_points", 10**19),
        ("total", "1e999999999"),
        ("total", "1.000000000000000000000000000001"),
        ("total", "1.001"),
        ("total", "1E2"),
        ("total", "Infinity"),
        ("total", "NaN"),
        ("total", "-5"),
        ("total", "10000000000000.00"),
        ("total", 12),
    ],
)
async def test_purchase_numbers(
    client: httpx.AsyncClient, program: str, field: str, value: Any
) -> None:
    member = (await enrol(client, program))["id"]
    before = await state(client, program, member)
    body: dict[str, Any] = {"total": "10.00", field: value}
    r = await purchase(client, program, member, **body)
    assert_refused(r, field)
    assert await state(client, program, member) == before


async def test_line_unit_price_and_quantity(client: httpx.AsyncClient, program: str) -> None:
    member = (await enrol(client, program))["id"]
    before = await state(client, program, member)
    for line, field in [
        ({"sku": "a", "unit_price": "1e999999999"}, "lines[0].unit_price"),
        ({"sku": "a", "unit_price": "1.0000000000000000000000000001"}, "lines[0].unit_price"),
        ({"sku": "a", "unit_price": "1.00", "quantity": True}, "lines[0].quantity"),
        ({"sku": "a", "unit_price": "1.00", "quantity": "1e-999999"}, "lines[0].quantity"),
    ]:
        r = await purchase(client, program, member, "1.00", lines=[line])
        assert_refused(r, field)
    assert await state(client, program, member) == before


async def test_trailing_zeros_are_exact_not_rounded(
    client: httpx.AsyncClient, program: str
) -> None:
    member = (await enrol(client, program))["id"]
    r = await purchase(client, program, member, "12.000000000000000000000000000000")
    assert r.status_code == 201, r.text
    assert r.json()["total"] == "12.00"
    assert r.json()["points"] == 12


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("earn_rate", "1e999999999"),
        ("earn_rate", "10001"),
        ("earn_rate", "0.1234567"),
        ("earn_rate", "-1"),
        ("earn_rate", 2),
        ("redeem_rate", "1e-99999"),
        ("pending_days", "3"),
        ("pending_days", True),
        ("redeem_step", 1.0),
    ],
)
async def test_program_numbers(client: httpx.AsyncClient, field: str, value: Any) -> None:
    code = new_code()
    r = await client.post("/v1/programs", json={"code": code, "name": "x", field: value})
    assert_refused(r, field)
    assert (await client.get(f"/v1/programs/{code}")).status_code == 404


async def test_earn_rate_at_its_maximum_then_a_purchase(client: httpx.AsyncClient) -> None:
    program = await create_program(client, earn_rate="10000")
    member = (await enrol(client, program))["id"]
    r = await purchase(client, program, member, "100000.00")
    assert r.status_code == 201, r.text
    assert r.json()["points"] == MAX_POINTS
    # One cent more earns beyond what one movement may carry; 10^17 points too.
    before = await state(client, program, member)
    for total in ("100000.01", "9999999999999.99"):
        r = await purchase(client, program, member, total)
        assert_refused(r, "", status=409)
        assert r.json()["type"].endswith("/movement-limit")
    assert await state(client, program, member) == before


# --- cursors and years ----------------------------------------------------------------------


async def test_cursors_and_years(client: httpx.AsyncClient, program: str) -> None:
    member = (await enrol(client, program))["id"]
    base = f"/v1/programs/{program}"
    assert_refused(await client.get(base + "/events-feed", params={"after": 10**20}), "after")
    assert_refused(await client.get(base + "/events-feed", params={"after": -1}), "after")
    r = await client.get(base + "/events-feed", params={"after": 2**63 - 1})
    assert r.status_code == 200, r.text
    ledger = f"{base}/members/{member}/ledger"
    assert_refused(await client.get(ledger, params={"before": 2**64}), "before")
    assert (await client.get(ledger, params={"before": 2**63 - 1})).status_code == 200
    statement = base + "/donations/statement"
    assert_refused(await client.get(statement, params={"year": 9999}), "year")
    assert (await client.get(statement, params={"year": 2100})).status_code == 200


# --- text -----------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["\x00", "\x07", "\x1b[31m", "\x7f", "\ud800"])
async def test_control_characters_in_text(
    client: httpx.AsyncClient, program: str, bad: str
) -> None:
    member = (await enrol(client, program))["id"]
    before = await state(client, program, member)
    base = f"/v1/programs/{program}"
    r = await send(
        client, "POST", f"{base}/members/{member}/adjustments", {"points": 5, "reason": f"x{bad}yz"}
    )
    assert_refused(r, "reason")
    assert await state(client, program, member) == before

    r = await send(
        client, "POST", f"{base}/members", {"first_name": f"Ann{bad}", "email": "a@b.io"}
    )
    assert_refused(r, "first_name")
    r = await client.get(f"{base}/members", params={"email": "a@b.io"})
    assert r.json()["items"] == []

    r = await send(
        client, "POST", f"{base}/club/plans",
        {"code": "gold", "name": f"Gold{bad}", "price": "9.99", "currency": "EUR",
              "period": "monthly"},
    )  # fmt: skip
    assert_refused(r, "name")
    r = await send(
        client,
        "POST",
        f"{base}/rewards",
        {"code": "mug", "name": f"Mug{bad}", "kind": "product", "cost_points": 10},
    )
    assert_refused(r, "name")
    assert (await client.get(f"{base}/rewards/mug")).status_code == 404
    r = await send(
        client,
        "PUT",
        f"{base}/message-templates/welcome/email/en",
        {"subject": "Hi", "body": f"<p>Hello{bad}</p>"},
    )
    assert_refused(r, "body")
    r = await send(client, "POST", f"{base}/events", {
        "type": "purchase", "member": {"id": member}, "external_id": f"t{bad}1", "total": "1"
    })  # fmt: skip
    assert_refused(r, "external_id")
    r = await send(client, "POST", f"{base}/events", {
        "type": "purchase", "member": {"id": member}, "external_id": "t2", "total": "1",
        "lines": [{"sku": f"a{bad}", "unit_price": "1.00"}],
    })  # fmt: skip
    assert_refused(r, "lines[0].sku")
    assert await state(client, program, member) == before


@pytest.mark.parametrize("number", ["1e400", "-1e400", "100000000000000000000"])
async def test_numbers_nested_in_attributes(
    client: httpx.AsyncClient, program: str, number: str
) -> None:
    base = f"/v1/programs/{program}/members"
    content = '{"external_id": "m1", "attributes": {"size": ' + number + "}}"
    r = await client.post(base, content=content, headers={"content-type": "application/json"})
    assert_refused(r, "attributes")
    assert (await client.get(base, params={"external_id": "m1"})).json()["items"] == []


async def test_multiline_text_keeps_tabs_and_newlines(
    client: httpx.AsyncClient, program: str
) -> None:
    r = await client.put(
        f"/v1/programs/{program}/message-templates/welcome/email/en",
        json={"subject": "Hi", "body": "<p>Hello\n\tthere\r\n</p>"},
    )
    assert r.status_code in (200, 201), r.text
    assert r.json()["body"] == "<p>Hello\n\tthere\r\n</p>"


async def test_nul_in_the_url(client: httpx.AsyncClient, program: str) -> None:
    base = f"/v1/programs/{program}"
    assert_refused(await client.get(base + "/members/a%00b"), "path")
    assert_refused(await client.get(base + "/members", params={"email": "a\x00@b.io"}), "email")
    assert_refused(await client.get(f"/v1/programs/p%00{program}"), "path")


async def test_nul_in_a_web_form(client: httpx.AsyncClient, program: str) -> None:
    r = await client.post(
        f"/app/{program}/signup",
        data={"email": "a\x00@b.io", "password": "long enough password", "first_name": "A"},
    )
    assert_refused(r, "email")
    r = await client.post("/console/login", data={"email": "x\x00", "password": "y"})
    assert r.status_code < 500


# --- the ledger's bound ---------------------------------------------------------------------


async def test_balance_bound_refuses_with_409_and_writes_nothing(
    client: httpx.AsyncClient, db: Database, program: str
) -> None:
    member = (await enrol(client, program))["id"]
    await seed(db, program, member, MAX_BALANCE - 5)
    before = await state(client, program, member)
    assert before[0][0] == MAX_BALANCE - 5
    url = f"/v1/programs/{program}/members/{member}/adjustments"
    r = await client.post(url, json={"points": 6, "reason": "over"})
    assert_refused(r, "", status=409)
    assert r.json()["type"].endswith("/balance-limit")
    assert await state(client, program, member) == before
    r = await client.post(url, json={"points": 5, "reason": "exactly"})
    assert r.status_code == 201, r.text
    assert r.json()["balance"]["available"] == MAX_BALANCE
    r = await purchase(client, program, member, "1.00")
    assert_refused(r, "", status=409)
    async with db.read() as session:
        assert not any((await verify(session)).values())


async def test_one_movement_beyond_any_balance_is_refused(
    client: httpx.AsyncClient, db: Database, program: str
) -> None:
    from habitue.ledger.errors import BalanceLimit

    member = (await enrol(client, program))["id"]
    with pytest.raises(BalanceLimit):
        await seed(db, program, member, MAX_BALANCE + 1)
    with pytest.raises(BalanceLimit):
        await seed(db, program, member, 2**63)


@pytest.mark.parametrize(
    ("table", "column", "value"),
    [
        ("accounts", "balance", MAX_BALANCE + 1),
        ("accounts", "balance", -MAX_BALANCE - 1),
        ("postings", "amount", MAX_BALANCE + 1),
        ("lots", "remaining", MAX_BALANCE + 1),
    ],
)
async def test_check_constraint_refuses_a_direct_write(
    client: httpx.AsyncClient, db: Database, program: str, table: str, column: str, value: int
) -> None:
    member = (await enrol(client, program))["id"]
    await seed(db, program, member, 10)

    async def work(session: AsyncSession) -> None:
        await session.execute(
            text(
                f"UPDATE {table} SET {column} = :v WHERE id = "  # noqa: S608
                f"(SELECT max(id) FROM {table})"
            ),
            {"v": value},
        )

    with pytest.raises(IntegrityError, match="_bounds"):
        await db.write(work)


# --- property: near the bounds, never a 500 nor an overflow ----------------------------------

_URL: dict[str, str] = {}


@pytest.fixture
def _url(db_url: str) -> None:
    _URL["db"] = db_url


movement = st.one_of(
    st.integers(-MAX_POINTS - 2, MAX_POINTS + 2),
    st.sampled_from([MAX_POINTS, -MAX_POINTS, MAX_POINTS + 1, 1, -1, 2**63 - 1, -(2**63)]),
)


@pytest.mark.usefixtures("_url")
@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    start=st.sampled_from([0, MAX_POINTS, MAX_BALANCE - MAX_POINTS, MAX_BALANCE - 1]),
    moves=st.lists(st.tuples(st.sampled_from(["adjust", "earn"]), movement), max_size=6),
)
def test_movements_near_the_bounds_never_overflow(start: int, moves: list[tuple[str, int]]) -> None:
    asyncio.run(_movements(start, moves))


async def _movements(start: int, moves: list[tuple[str, int]]) -> None:
    clock.reset()
    programs_service.forget()
    db = Database(_URL["db"])
    app = create_app(
        Settings(env="test", database_url=_URL["db"], admin_key=ADMIN_KEY, scheduler=False,
                 hmac_key="k"),
        db=db,
    )  # fmt: skip
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://t",
            headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        ) as client:
            program = await create_program(client, earn_rate="10000")
            member = (await enrol(client, program))["id"]
            if start:
                await seed(db, program, member, start)
            balance = start
            for kind, points in moves:
                if kind == "adjust":
                    r = await client.post(
                        f"/v1/programs/{program}/members/{member}/adjustments",
                        json={"points": points, "reason": "property"},
                    )
                    delta = points
                else:
                    # a purchase earning up to 2·10^9 points at 10,000 points per euro
                    cents = abs(points) % (2 * MAX_POINTS + 1) // 100
                    r = await purchase(client, program, member, f"{cents // 100}.{cents % 100:02d}")
                    delta = cents * 100
                assert r.status_code < 500, r.text
                assert r.headers["content-type"].startswith(
                    "application/json" if r.status_code < 400 else PROBLEM
                )
                if kind == "adjust" and (points == 0 or abs(points) > MAX_POINTS):
                    assert r.status_code == 422, r.text
                elif kind == "earn" and delta > MAX_POINTS:
                    assert r.status_code == 409, r.text
                    assert r.json()["type"].endswith("/movement-limit")
                elif not 0 <= balance + delta <= MAX_BALANCE:
                    assert r.status_code == 409, r.text
                    assert r.json()["type"].endswith(
                        "/balance-limit" if delta > 0 else "/insufficient-points"
                    )
                else:
                    assert r.status_code == 201, r.text
                    balance += delta
                got = (await client.get(f"/v1/programs/{program}/members/{member}/balance")).json()[
                    "available"
                ]
                assert type(got) is int
                assert got == balance
            async with db.read() as session:
                assert not any((await verify(session)).values())
    finally:
        await db.dispose()
